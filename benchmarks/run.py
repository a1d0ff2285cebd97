"""Runs a benchmark suite of `benchmarks.registry`, then regenerates BENCHMARKS.md from its JSON.

    python -m benchmarks.run --suite=quick --list   # what `make bench` would run, and nothing else
    python -m benchmarks.run --suite=quick          # `make bench`: reduced settings, ~10 min here
    python -m benchmarks.run --suite=full           # `make bench-full`: everything, ~8 hours here
    python -m benchmarks.run --suite=quick --only=alignment_mlp,export_artefacts
    python -m benchmarks.run --report_only          # BENCHMARKS.md from the committed JSON

The full suite runs every registered benchmark but those that need an extra (`peers_biotorch`:
`make bench-peers`, or `--only=peers_biotorch` with the extra installed), in the registry's
order: the accuracy runs, the alignment runs, the chain length and the export, and last the
timing runs, so that no timing is taken while another benchmark of the suite starts up. The
quick suite runs the benchmarks with quick arguments (smaller budgets; no ablation, depth,
full-data or mixed-precision runs) into `benchmarks/results/quick/`, so it never overwrites
the full suite's files; the report prefers the full suite's where both exist and says which
suite every table comes from.

Benchmarks run one after another, each invocation in its own Python process (one failing does
not stop the others); each one's output goes to `runs/bench_logs/<suite>/<name>.log`, and
`suite_run.json` beside the results records the machine and what ran: per benchmark its
commands, start and end dates, seconds, the load average before and after, and whether it
succeeded (rewritten after every benchmark, so an interrupted suite keeps the record of what it
finished). The exit code is non-zero if any benchmark failed.
"""

import os
import subprocess
import sys
import time

from absl import app, flags

from benchmarks import harness, registry

_SUITE = flags.DEFINE_enum("suite", "quick", ["quick", "full"], "The suite to run.")
_ONLY = flags.DEFINE_list("only", [], f"A subset of {[b.name for b in registry.BENCHMARKS]}.")
_LIST = flags.DEFINE_bool("list", False, "Print the commands the suite would run, run nothing.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only regenerate BENCHMARKS.md from the existing JSON.")
_RESULTS = flags.DEFINE_string("results", None, "The results folder (default: "
                               "benchmarks/results; the quick suite writes into its quick/).")
_OUT = flags.DEFINE_string("out", None, "The report to write (default: BENCHMARKS.md).")


def selected(suite, only=()):
    """The benchmarks to run: `only` (names; each must be part of `suite`), else `suite`'s."""
    if not only:
        return registry.suite(suite)
    chosen = [registry.get(name) for name in only]
    outside = [b.name for b in chosen if suite == "quick" and b.quick is None]
    if outside:
        raise ValueError(f"Not in the quick suite: {outside}, received: --only={','.join(only)}."
                         " Run them with --suite=full.")
    return chosen


def commands(benchmark, suite, out_dir):
    """The command lines of `benchmark` in `suite`, in order, all writing
    `out_dir/<name>.json`."""
    out = f"--out={os.path.join(out_dir, benchmark.name)}.json"
    return [[sys.executable, "-m", benchmark.module, *args, out]
            for args in benchmark.invocations(suite)]


def _now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


def run(suite, benchmarks, out_dir, log_dir, progress=None):
    """Runs `benchmarks` one by one (a benchmark's invocations in order, stopping at the first
    that fails); returns the records written to `suite_run.json` and the seconds.
    `progress(records, seconds)` is called after every benchmark."""
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    records = []
    started = time.perf_counter()
    for benchmark in benchmarks:
        cmds = commands(benchmark, suite, out_dir)
        log = os.path.join(log_dir, benchmark.name + ".log")
        record = {"name": benchmark.name, "started": _now(), "load_before": list(os.getloadavg())}
        start = time.perf_counter()
        code = 0
        with open(log, "w") as f:
            for cmd in cmds:
                print(f"[{suite}] {benchmark.name}: {' '.join(cmd[1:])} (log: {log})", flush=True)
                f.write(f"$ {' '.join(cmd[1:])}\n")
                f.flush()
                code = subprocess.call(cmd, cwd=harness.ROOT, stdout=f, stderr=subprocess.STDOUT,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                if code != 0:
                    break
        seconds = time.perf_counter() - start
        status = "ok" if code == 0 else f"failed (exit {code})"
        print(f"[{suite}] {benchmark.name}: {status} in {seconds / 60:.1f} min", flush=True)
        if code != 0:
            with open(log) as f:
                print("\n".join("    " + line for line in f.read().splitlines()[-15:]),
                      flush=True)
        record.update({"finished": _now(), "load_after": list(os.getloadavg()),
                       "status": status, "seconds": seconds,
                       "commands": [c[1:] for c in cmds],
                       "log": os.path.relpath(log, harness.ROOT)})
        records.append(record)
        if progress:
            progress(records, time.perf_counter() - started)
    return records, time.perf_counter() - started


def main(argv):
    del argv
    suite = _SUITE.value
    base = _RESULTS.value or os.path.join(harness.ROOT, harness.RESULTS_DIR)
    out_dir = harness.results_dir(suite, base)
    try:
        benchmarks = [] if _REPORT_ONLY.value else selected(suite, _ONLY.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    if _LIST.value:
        for b in benchmarks:
            for cmd in commands(b, suite, out_dir):
                print(" ".join(["python"] + cmd[1:]))
        return 0
    failed = []
    if benchmarks:
        env = harness.environment()  # the machine, and the date and load at the start

        def write_log(records, total, complete=False):
            harness.write_json(os.path.join(out_dir, "suite_run.json"), {
                "suite": suite, "date": env["date"], "finished": _now(), "complete": complete,
                "machine": env["machine"], "versions": env["versions"],
                "load_before": env["machine"]["load_average"],
                "load_after": list(os.getloadavg()), "total_seconds": total,
                "benchmarks": records})

        records, total = run(suite, benchmarks, out_dir,
                             os.path.join(harness.ROOT, "runs", "bench_logs", suite), write_log)
        write_log(records, total, complete=True)
        failed = [r["name"] for r in records if r["status"] != "ok"]
        print(f"[{suite}] suite finished in {total / 60:.1f} min"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    from benchmarks import report

    report.write(base, _OUT.value)
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
