"""Runs the benchmark suite, then regenerates `BENCHMARKS.md` from the JSON it wrote.

    python -m benchmarks.run --suite=quick     # `make bench`: reduced settings, ~9 min here
    python -m benchmarks.run --suite=full      # `make bench-full`: everything, ~7 hours here
    python -m benchmarks.run --suite=quick --only=alignment,export_bench

The full suite runs every benchmark the report renders, in this order: the accuracy runs
(MLP, ResNet-20 with every rule, its ablation, the preset's SGD recipe, the depth study on
ResNet-32 and ResNet-56 and its plot, the preset's recipe on the full training split, the
mixed-precision accuracy runs), the alignment runs, the chain length and the export, and last
the timing runs (diagnostics overhead, mixed-precision step time, step time), so that the
timings are not taken while other benchmarks of the suite start up. The quick suite runs a
reduced version of the accuracy, alignment, export, chain-length and timing benchmarks (no
ablation, depth, full-data or mixed-precision runs): 9.3 minutes here on 2026-11-30 (2 shared
cores, load 1.0 before; `results/quick/suite_run.json`), 16.0 minutes before the conv units'
BatchNorm ran the fused kernel (per benchmark in the comments of `SUITE`, older).

The quick suite writes to `benchmarks/results/quick/` so it never overwrites the full suite's
`benchmarks/results/`; `benchmarks/report.py` prefers full results where both exist and says
which suite every table comes from. Benchmarks run one after another (each in its own Python
process, so one failing does not stop the others); each one's output goes to
`runs/bench_logs/<suite>/<name>.log`, and `suite_run.json` beside the results records the
machine and what ran: per benchmark its commands, start and end dates, seconds, the load
average before and after, and whether it succeeded (rewritten after every benchmark, so an
interrupted suite keeps the record of what it finished). A benchmark whose script does not
exist (yet) is recorded as missing. The exit code is non-zero if any benchmark failed.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import report

_ABLATION = ("--rules=rec_lra,rec_lra-no_mirror,rec_lra-no_through,rec_lra-raw_errors,"
             "rec_lra-skip_synapses,rec_lra-first")
_SGD = ["--optimizer=sgd", "--learning_rate=0.05", "--weight_decay=5e-4"]


def _depth(model):
    """The depth study at `model`: bp and rec_lra over two seeds, then wm and fa over one into
    the same file (the second invocation resumes, so it keeps the first's runs)."""
    return ([f"--model={model}", "--seeds=0,1", "--rules=bp,rec_lra", "--noresume"],
            [f"--model={model}", "--seeds=0", "--rules=wm,fa"])


# name -> (module, quick arguments or None (not in the quick suite), full arguments), in the
# order the suites run them. Each script takes --out=<json path> (`<out_dir>/<name>.json`);
# arguments that are a tuple of lists are several invocations into that one file, one after
# the other. --noresume: a suite run measures again (a script alone resumes an interrupted
# run). The full suite's commands are report_common.SCRIPTS' (the tests check they agree).
# Quick-suite minutes measured here on 2026-11-30 (load 1-2; suite_run.json): in the comments.
SUITE = {
    "accuracy_mlp": ("benchmarks.accuracy",  # quick: 3.0 (4 variants)
                     ["--seeds=0", "--epochs=3", "--variants=bp,fa,wm,rec_lra", "--noresume"],
                     ["--seeds=0,1,2", "--noresume"]),
    "resnet_accuracy": ("benchmarks.resnet_accuracy",  # quick: 2.8 (4 rules)
                        ["--epochs=2", "--train_limit=2560", "--rules=bp,rec_lra,wm,fa",
                         "--noresume"],
                        ["--seeds=0,1,2", "--noresume"]),
    "resnet_ablation": ("benchmarks.resnet_accuracy", None, ["--seeds=0", _ABLATION, "--noresume"]),
    "resnet_sgd": ("benchmarks.resnet_accuracy", None,
                   ["--seeds=0,1", "--rules=bp,rec_lra", *_SGD, "--noresume"]),
    "resnet32_accuracy": ("benchmarks.resnet_accuracy", None, _depth("resnet32")),
    "resnet56_accuracy": ("benchmarks.resnet_accuracy", None, _depth("resnet56")),
    "resnet_depth": ("benchmarks.depth_plot", None, []),  # the plot of the three depths
    "resnet_full": ("benchmarks.resnet_accuracy", None,
                    ["--train_limit=0", "--epochs=5", *_SGD, "--warmup_epochs=1", "--augment",
                     "--seeds=0,1", "--rules=bp,rec_lra,rec_lra-mirror_taps_warm_m32",
                     "--noresume"]),
    "resnet_accuracy_bf16": ("benchmarks.resnet_accuracy", None,
                             ["--seeds=0", "--rules=bp,rec_lra", "--mixed_precision=bfloat16",
                              "--noresume"]),
    "accuracy_mlp_bf16": ("benchmarks.accuracy", None,
                          ["--seeds=0", "--variants=bp,rec_lra", "--mixed_precision=bfloat16",
                           "--noresume"]),
    "alignment": ("benchmarks.alignment",  # quick: 0.6
                  ["--epochs=1", "--train_limit=10000", "--every=25"], []),
    "alignment_resnet20": ("benchmarks.alignment",  # quick: 0.9 (20 steps, 5 probes per rule)
                           ["--model=resnet20", "--rules=rec_lra,wm", "--epochs=1",
                            "--train_limit=2560", "--every=5"],
                           ["--model=resnet20", "--rules=rec_lra,wm,fa", "--every=10"]),
    "chain_length": ("benchmarks.chain_length",  # quick: 0.2
                     ["--models=mlp2,mlp8,resnet8,resnet20"], []),
    "export_bench": ("benchmarks.export_bench", ["--models=fmnist_mlp"], []),  # quick: 0.1
    # The timing runs, last.
    "diagnostics_overhead": ("benchmarks.diagnostics_overhead",  # quick: 0.9
                             ["--steps=600", "--repeats=2"], []),
    "mixed_precision": ("benchmarks.mixed_precision", None, []),
    "step_time": ("benchmarks.step_time",  # quick: 0.9 (4 workers)
                  ["--quick", "--rules=bp,rec_lra,rec_lra_nomirror"],
                  ["--models=resnet18", "--jit=off",
                   "--rules=bp,fa,wm,rec_lra,rec_lra_every4,rec_lra_nomirror,rec_lra_m32",
                   "--steps=4"]),
    # Our ResNet-20 step with Keras' op-by-op BatchNorm against the fused kernel.
    "step_time_bn": ("benchmarks.step_time", None,
                     ["--models=resnet20", "--jit=off", "--rules=bp,fa,rec_lra,bp_keras_bn,"
                      "fa_keras_bn,rec_lra_keras_bn", "--steps=4"]),
}
OPTIONAL = {"mlp_sweep": ("benchmarks.accuracy", ["--sweep", "--epochs=3", "--noresume"],
                          ["--sweep", "--noresume"]),
            # Against BioTorch: needs the `peers` extra (`make bench-peers` installs it).
            "peers": ("benchmarks.peers",
                      ["--seeds=0", "--epochs=1", "--train_limit=2560", "--timing_rounds=2",
                       "--timing_steps=2", "--noresume"],
                      ["--noresume"])}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results_dir(suite, base=report.RESULTS_DIR):
    """Where a suite's JSON goes: `base` for the full suite, `base/quick` for the quick one."""
    return base if suite == "full" else os.path.join(base, report.QUICK)


def in_suite(name, suite):
    """Whether benchmark `name` is part of `suite` (every one is part of the full suite)."""
    table = {**SUITE, **OPTIONAL}
    return name in table and (suite == "full" or table[name][1] is not None)


def commands(name, suite, out_dir):
    """The command lines of benchmark `name` in `suite`, in order, all writing
    `out_dir/name.json`."""
    table = {**SUITE, **OPTIONAL}
    if name not in table:
        raise ValueError(f"Unknown benchmark, received: {name!r}. Expected one of {list(table)}")
    if not in_suite(name, suite):
        raise ValueError(f"Benchmark {name!r} is not part of the {suite} suite, received: "
                         f"suite={suite!r}")
    module, quick, full = table[name]
    args = quick if suite == "quick" else full
    out = f"--out={os.path.join(out_dir, name)}.json"
    return [[sys.executable, "-m", module, *a, out]
            for a in (args if isinstance(args, tuple) else (args,))]


def script_exists(module):
    return os.path.exists(os.path.join(ROOT, *module.split(".")) + ".py")


def _now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


def run(suite, names, out_dir, log_dir, progress=None):
    """Runs the benchmarks one by one (a benchmark's invocations in order, stopping at the
    first that fails); returns the records written to `suite_run.json` and the seconds.
    `progress(records, seconds)` is called after every benchmark."""
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    records = []
    started = time.perf_counter()
    for name in names:
        cmds = commands(name, suite, out_dir)
        log = os.path.join(log_dir, name + ".log")
        missing = [c[2] for c in cmds if not script_exists(c[2])]
        if missing:
            print(f"[{suite}] {name}: {', '.join(missing)} does not exist yet, skipped",
                  flush=True)
            records.append({"name": name, "status": "missing",
                            "commands": [c[1:] for c in cmds]})
            if progress:
                progress(records, time.perf_counter() - started)
            continue
        record = {"name": name, "started": _now(), "load_before": list(os.getloadavg())}
        start = time.perf_counter()
        code = 0
        with open(log, "w") as f:
            for cmd in cmds:
                print(f"[{suite}] {name}: {' '.join(cmd[1:])} (log: {log})", flush=True)
                f.write(f"$ {' '.join(cmd[1:])}\n")
                f.flush()
                code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                if code != 0:
                    break
        seconds = time.perf_counter() - start
        status = "ok" if code == 0 else f"failed (exit {code})"
        print(f"[{suite}] {name}: {status} in {seconds / 60:.1f} min", flush=True)
        if code != 0:
            with open(log) as f:
                tail = f.read().splitlines()[-15:]
            print("\n".join("    " + line for line in tail), flush=True)
        record.update({"finished": _now(), "load_after": list(os.getloadavg()),
                       "status": status, "seconds": seconds,
                       "commands": [c[1:] for c in cmds], "log": os.path.relpath(log, ROOT)})
        records.append(record)
        if progress:
            progress(records, time.perf_counter() - started)
    return records, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("quick", "full"), default="quick")
    parser.add_argument("--only", default="",
                        help=f"Comma-separated subset of {list(SUITE) + list(OPTIONAL)}.")
    parser.add_argument("--with_sweep", action="store_true",
                        help="Also re-run the MLP settings sweep (mlp_sweep.json).")
    parser.add_argument("--report_only", action="store_true",
                        help="Only regenerate BENCHMARKS.md from the existing JSON.")
    parser.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or [
        n for n in SUITE if in_suite(n, args.suite)]
    if args.with_sweep and "mlp_sweep" not in names:
        names.append("mlp_sweep")
    unknown = [n for n in names if n not in SUITE and n not in OPTIONAL]
    if unknown:
        parser.error(f"Unknown benchmarks {unknown}, received: --only={args.only}. "
                     f"Expected some of {list(SUITE) + list(OPTIONAL)}")
    full_only = [n for n in names if not in_suite(n, args.suite)]
    if full_only:
        parser.error(f"Not in the {args.suite} suite: {full_only}, received: --only={args.only}. "
                     "Run them with --suite=full.")
    base = os.path.join(ROOT, report.RESULTS_DIR)
    failed = []
    if not args.report_only:
        from benchmarks.environment import environment

        out_dir = results_dir(args.suite, base)
        env = environment()  # the machine, and the date and load at the start

        def write_log(records, total, complete=False):
            log = {"suite": args.suite, "date": env["date"], "finished": _now(),
                   "complete": complete, "machine": env["machine"],
                   "versions": env["versions"], "load_before": env["machine"]["load_average"],
                   "load_after": list(os.getloadavg()), "total_seconds": total,
                   "benchmarks": records}
            tmp = os.path.join(out_dir, "suite_run.json.tmp")
            with open(tmp, "w") as f:
                json.dump(log, f, indent=1)
            os.replace(tmp, os.path.join(out_dir, "suite_run.json"))

        os.makedirs(out_dir, exist_ok=True)
        records, total = run(args.suite, names, out_dir,
                             os.path.join(ROOT, "runs", "bench_logs", args.suite), write_log)
        write_log(records, total, complete=True)
        failed = [r["name"] for r in records if r["status"].startswith("failed")]
        print(f"[{args.suite}] suite finished in {total / 60:.1f} min"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    report.main([f"--results={base}", f"--out={args.out}"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
