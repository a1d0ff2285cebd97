"""Runs the benchmark suite, then regenerates `BENCHMARKS.md` from the JSON it wrote.

    python -m benchmarks.run --suite=quick     # `make bench`: reduced settings, < 30 min here
    python -m benchmarks.run --suite=full      # `make bench-full`: full settings, hours here
    python -m benchmarks.run --suite=quick --only=alignment,export_bench

The quick suite writes to `benchmarks/results/quick/` so it never overwrites the full suite's
`benchmarks/results/`; `benchmarks/report.py` prefers full results where both exist and says
which suite every table comes from. Benchmarks run one after another (each in its own Python
process, so one failing does not stop the others); each one's output goes to
`runs/bench_logs/<suite>/<name>.log`, and `suite_run.json` beside the results records what ran,
for how long and whether it succeeded. A benchmark whose script does not exist (yet) is
recorded as missing. The exit code is non-zero if any benchmark failed.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import report

# name -> (module, quick arguments, full arguments). Each script takes --out=<json path>.
SUITE = {
    # --noresume: a suite run measures again (the script alone resumes an interrupted run).
    "accuracy_mlp": ("benchmarks.accuracy", ["--seeds=0", "--epochs=3", "--noresume"],
                     ["--seeds=0,1,2", "--noresume"]),
    "resnet_accuracy": ("benchmarks.resnet_accuracy",
                        ["--epochs=2", "--train_limit=2560", "--noresume"],
                        ["--seeds=0,1,2", "--noresume"]),
    "step_time": ("benchmarks.step_time", ["--quick"], []),
    "chain_length": ("benchmarks.chain_length", [], []),
    "alignment": ("benchmarks.alignment", ["--epochs=1", "--train_limit=10000", "--every=25"],
                  []),
    "export_bench": ("benchmarks.export_bench", [], []),
    "diagnostics_overhead": ("benchmarks.diagnostics_overhead", ["--steps=600", "--repeats=2"],
                             []),
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


def command(name, suite, out_dir):
    """The command line of benchmark `name` in `suite`, writing `out_dir/name.json`."""
    table = {**SUITE, **OPTIONAL}
    if name not in table:
        raise ValueError(f"Unknown benchmark, received: {name!r}. Expected one of {list(table)}")
    module, quick, full = table[name]
    args = quick if suite == "quick" else full
    return [sys.executable, "-m", module, *args, f"--out={os.path.join(out_dir, name)}.json"]


def script_exists(module):
    return os.path.exists(os.path.join(ROOT, *module.split(".")) + ".py")


def run(suite, names, out_dir, log_dir):
    """Runs the benchmarks one by one; returns the records written to `suite_run.json`."""
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    records = []
    started = time.perf_counter()
    for name in names:
        cmd = command(name, suite, out_dir)
        module = cmd[2]
        log = os.path.join(log_dir, name + ".log")
        if not script_exists(module):
            print(f"[{suite}] {name}: {module} does not exist yet, skipped", flush=True)
            records.append({"name": name, "status": "missing", "command": cmd[1:]})
            continue
        print(f"[{suite}] {name}: {' '.join(cmd[1:])} (log: {log})", flush=True)
        start = time.perf_counter()
        with open(log, "w") as f:
            code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        seconds = time.perf_counter() - start
        status = "ok" if code == 0 else f"failed (exit {code})"
        print(f"[{suite}] {name}: {status} in {seconds / 60:.1f} min", flush=True)
        if code != 0:
            with open(log) as f:
                tail = f.read().splitlines()[-15:]
            print("\n".join("    " + line for line in tail), flush=True)
        records.append({"name": name, "status": status, "seconds": seconds,
                        "command": cmd[1:], "log": os.path.relpath(log, ROOT)})
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
    names = [n for n in args.only.split(",") if n] or list(SUITE)
    if args.with_sweep and "mlp_sweep" not in names:
        names.append("mlp_sweep")
    unknown = [n for n in names if n not in SUITE and n not in OPTIONAL]
    if unknown:
        parser.error(f"Unknown benchmarks {unknown}, received: --only={args.only}. "
                     f"Expected some of {list(SUITE) + list(OPTIONAL)}")
    base = os.path.join(ROOT, report.RESULTS_DIR)
    failed = []
    if not args.report_only:
        out_dir = results_dir(args.suite, base)
        records, total = run(args.suite, names, out_dir,
                             os.path.join(ROOT, "runs", "bench_logs", args.suite))
        log = {"suite": args.suite, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "total_seconds": total, "benchmarks": records}
        with open(os.path.join(out_dir, "suite_run.json"), "w") as f:
            json.dump(log, f, indent=1)
        failed = [r["name"] for r in records if r["status"].startswith("failed")]
        print(f"[{args.suite}] suite finished in {total / 60:.1f} min"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    report.main([f"--results={base}", f"--out={args.out}"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
