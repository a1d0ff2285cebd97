"""What `benchmarks/peers/biotorch.py` runs, without its flags (so tests can import it).

- the BioTorch side: finding its Python (`default_torch_python`, `check_peers`, which raises
  `PeersMissingError` with the install command), the spec of a run (`biotorch_spec`) and a
  training run in a subprocess of `benchmarks/peers/torch_side.py` (`run_biotorch`);
- the data both libraries see: the trainer's per-epoch batches as arrays (`epoch_arrays`,
  `write_arrays`);
- the step timing: warm worker processes of both libraries driven round-robin
  (`time_steps`, `run_timing`; rlra_tf's worker is `python -m benchmarks.peers.lib
  --worker=SPEC.json`);
- the PNG and the printed tables (the summaries and ratios are the report's,
  `benchmarks.report.summaries`).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from benchmarks import harness, workers
from benchmarks.report import summaries

ROOT = harness.ROOT
PEERS_VENV_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")
BIOTORCH_RULES = ("bp", "fa", "dfa", "usf", "frsf", "brsf")
PLOT_ORDER = ("bp", "fa", "dfa", "usf", "frsf", "brsf", "lra", "wm", "rec_lra")
WORKER_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
INSTALL_HINT = (
    "Install it with `make bench-peers` (a venv of its own, .venv-peers, about 6.5 GB with "
    "torch's CUDA wheels), or by hand: python3 -m venv .venv-peers && "
    ".venv-peers/bin/pip install -e '.[peers]', then pass --torch_python=.venv-peers/bin/python."
)


class PeersMissingError(RuntimeError):
    """The `peers` extra (torch, torchvision, biotorch) cannot be imported."""


# ------------------------------------------------------------------------- the BioTorch side


def default_torch_python(explicit=None):
    """`explicit`, else `.venv-peers/bin/python` if it exists, else this Python."""
    if explicit:
        return explicit
    return PEERS_VENV_PYTHON if os.path.exists(PEERS_VENV_PYTHON) else sys.executable


def torch_command(python, *args):
    return [python, "-m", "benchmarks.peers.torch_side", *args]


def protocol_objects(proc, echo=True):
    """Yields the protocol objects a worker prints; echoes its other lines (progress)."""
    for line in proc.stdout:
        if line.startswith(workers.PREFIX):
            yield json.loads(line[len(workers.PREFIX):])
        elif echo and line.strip():
            print(line.rstrip(), flush=True)


def check_peers(python):
    """The versions of torch, torchvision and biotorch under `python`.

    Raises:
        PeersMissingError: with the reason and how to install the extra.
    """
    head = ("benchmarks/peers/biotorch.py needs BioTorch and torch (the benchmark-only extra "
            "`peers`)")
    try:
        proc = subprocess.run(torch_command(python, "--probe"), cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PeersMissingError(f"{head}, but {python} could not be run ({err}). "
                                f"{INSTALL_HINT}") from None
    answers = [json.loads(line[len(workers.PREFIX):]) for line in proc.stdout.splitlines()
               if line.startswith(workers.PREFIX)]
    if proc.returncode == 0 and answers and "versions" in answers[0]:
        return answers[0]["versions"]
    reason = (answers[0].get("error") if answers else None) or \
        (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise PeersMissingError(f"{head}, which {python} cannot import ({reason}). {INSTALL_HINT}")


def biotorch_spec(rule, seed, config, steps_per_epoch, ds_info, threads, init="matched"):
    """What defines a BioTorch run (with the versions, the JSON key of a finished run): the
    rule, the seed and the budget of the rlra_tf trainer `config`."""
    return {
        "rule": rule, "seed": seed, "model": config.model, "num_classes": ds_info.num_classes,
        "in_channels": ds_info.image_shape[-1], "init": init,
        "epochs": config.epochs, "batch_size": config.batch_size,
        "steps_per_epoch": steps_per_epoch, "train_limit": config.train_limit,
        "augment": config.augment, "optimizer": config.optimizer,
        "learning_rate": config.learning_rate, "momentum": config.momentum,
        "weight_decay": config.weight_decay, "warmup_epochs": config.warmup_epochs,
        "schedule": config.schedule, "mean": ds_info.mean[0], "std": ds_info.std[0],
        "threads": threads,
    }


def run_biotorch(spec, arrays, python, workdir):
    """Trains one BioTorch run in a subprocess on the arrays in `arrays`; returns its record."""
    path = os.path.join(workdir, f"spec-{spec['rule']}-{spec['seed']}.json")
    with open(path, "w") as f:
        json.dump(dict(spec, arrays=arrays), f)
    proc = subprocess.Popen(torch_command(python, f"--train={path}"), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env=WORKER_ENV)
    run = None
    for obj in protocol_objects(proc):
        run = obj.get("run", run)
    code = proc.wait()
    if code != 0 or run is None:
        raise RuntimeError(f"BioTorch run {spec['rule']} seed {spec['seed']} failed "
                           f"(exit status {code})")
    epochs = run["epochs"]
    tests = sum(e["test_eval_seconds"] for e in epochs)
    return {
        "library": "biotorch", "rule": spec["rule"], "seed": spec["seed"], "spec": spec,
        "epochs": epochs, "final_test_accuracy": epochs[-1]["test_accuracy"],
        "final_test_loss": epochs[-1]["test_loss"],
        "mean_seconds_per_epoch": statistics.mean(e["epoch_seconds"] for e in epochs),
        "wall_seconds": run["wall_seconds"] - tests,
        "wall_seconds_including_per_epoch_tests": run["wall_seconds"],
        "forward_params": run["forward_params"],
    }


# --------------------------------------------------------------------------- the rlra_tf side


def pin_tf_threads(threads):
    """Intra- and inter-op threads of TensorFlow (call before its runtime starts)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def rule_config(config):
    """The resolved rule (its name and every parameter, library defaults included) of a
    trainer config: a finished run is reused only if this is unchanged too."""
    from trainers import train_lib

    return {"name": config.rule, "config": train_lib.make_rule(config).get_config()}


def reused_runs(path, rules, seeds, config_of):
    """rlra_tf records made from the runs of `rules` x `seeds` in a resnet_accuracy JSON.

    A run is taken only if its trainer config equals `config_of(rule, seed)` but for
    `deterministic` (a field its older trainer did not have counts at its default); its record
    says where it came from (`source`: file, date, its `deterministic`).
    """
    from trainers import presets

    with open(path) as f:
        data = json.load(f)
    out = []
    for r in data.get("runs", []):
        if r.get("rule") not in rules or r.get("seed") not in seeds:
            continue
        want = config_of(r["rule"], r["seed"]).to_json()
        got = {**presets.Config().to_json(), **r["config"],
               "deterministic": want["deterministic"]}
        if got != want:
            differ = sorted(k for k in want if got.get(k) != want[k])
            print(f"{path}: {r['rule']} seed {r['seed']} differs in {differ}, not reused")
            continue
        source = {"file": _repo_path(path), "date": data.get("date"),
                  "deterministic": r["config"].get("deterministic")}
        out.append(dict(r, library="rlra_tf", source=source,
                        final_test_loss=r["epochs"][-1]["test_loss"],
                        key={"config": r["config"], "source": source}))
    return out


def _repo_path(path):
    """`path` relative to the repository when inside it (worktrees and clones agree), else
    absolute."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith(os.pardir) else rel


def epoch_arrays(config, ds_info, epoch):
    """The training batches of one epoch as the trainer feeds them, as `(x, y)` arrays."""
    import numpy as np

    from trainers.input_pipeline import train_epoch

    xs, ys = [], []
    for x, y in train_epoch(config, ds_info, epoch):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def dataset_arrays(ds):
    """A finite `(images, labels)` dataset as two arrays."""
    import numpy as np

    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def write_arrays(config, ds_info, test, folder):
    """`epoch<i>.npz` for every epoch of `config` and `test.npz` (`test`: arrays) in `folder`."""
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    for epoch in range(config.epochs):
        x, y = epoch_arrays(config, ds_info, epoch)
        np.savez(os.path.join(folder, f"epoch{epoch}.npz"), x=x, y=y)
    np.savez(os.path.join(folder, "test.npz"), x=test[0], y=test[1])
    return folder


def run_worker(spec_path, lines=None):
    """rlra_tf's timing worker: the run's model and optimiser on one batch; `run N` / `quit`.

    `spec`: `config` (a trainer config as JSON), `steps_per_epoch`, `batch` (an .npz with x, y),
    `warmup` (untimed steps) and `threads`.
    """
    import numpy as np

    with open(spec_path) as f:
        spec = json.load(f)
    pin_tf_threads(spec["threads"])
    import keras
    import tensorflow as tf

    from rlra_tf import data
    from rlra_tf.models.resnet import parameter_counts
    from trainers import presets, train_lib

    config = presets.from_json(spec["config"])
    keras.utils.set_random_seed(config.seed)
    model = train_lib.build_model(config, data.info(config.dataset))
    model.compile(  # as train_lib compiles it
        optimizer=train_lib.make_optimizer(config, spec["steps_per_epoch"]),
        rule=train_lib.make_rule(config), metrics=["accuracy"],
        label_smoothing=config.label_smoothing,
        jit_compile=train_lib.JIT_COMPILE[config.jit_compile],
        steps_per_execution=config.steps_per_execution,
    )
    with np.load(spec["batch"]) as f:
        x, y = tf.constant(f["x"]), tf.constant(f["y"])

    def step():
        return model.train_on_batch(x, y)  # returns the logs as numbers: the step is done

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(spec["warmup"] - 1):
        step()
    workers.send({"ready": True, "first_step_seconds": first,
                  "forward_params": parameter_counts(model)["forward"]})
    workers.serve(step, lines)


def rlra_worker_command(spec_path):
    return [sys.executable, "-m", "benchmarks.peers.lib", f"--worker={spec_path}"]


# ------------------------------------------------------------------------------------ timing


def time_steps(entries, threads, rounds, steps, min_free_gb=2.0):
    """Starts one warm worker per `(library, rule, command)` entry, then times them
    round-robin: in every round each worker times `steps` steps, one worker at a time, the
    order rotated every round (so machine noise hits all alike).

    Returns one row per worker: median/min/mean wall and CPU seconds per step, every step's
    times, the load average after each of its rounds and its first (tracing) step.
    """
    started = []
    try:
        for library, rule, args in entries:
            free = workers.mem_available_gb()
            if free is not None and free < min_free_gb:
                raise RuntimeError(f"Only {free:.1f} GB of memory available (at least "
                                   f"{min_free_gb} GB wanted before a worker starts)")
            w = workers.Worker((library, rule), args, cwd=ROOT, env=WORKER_ENV)
            started.append(w)
            w.ready = w.receive()
            print(f"  ready {library:8} {rule:8} threads={threads} first step "
                  f"{w.ready['first_step_seconds']:5.1f} s", flush=True)
        workers.round_robin(started, rounds, steps)
        rows = []
        for w in started:
            w.quit()
            rows.append({
                "library": w.key[0], "rule": w.key[1], "threads": threads, **w.stats(),
                "first_step_seconds": w.ready["first_step_seconds"],
                "forward_params": w.ready.get("forward_params"),
            })
        return rows
    finally:
        workers.kill_remaining(started)


def run_timing(rlra_specs, biotorch_specs, thread_counts, rounds, steps, workdir,
               python, min_free_gb=2.0):
    """The step-time part: for every thread count, one worker per rule of both libraries
    (interleaved), timed round-robin.

    `rlra_specs` / `biotorch_specs`: `{rule: function(threads) -> worker spec}` (rlra_tf: see
    `run_worker`; BioTorch: a `biotorch_spec` with `batch` and `warmup`).
    """
    rows = []
    load_before = list(os.getloadavg())
    started = time.time()
    for threads in sorted(thread_counts):
        ours = [("rlra_tf", rule, rlra_worker_command, make)
                for rule, make in rlra_specs.items()]
        theirs = [("biotorch", rule, lambda p: torch_command(python, f"--time={p}"), make)
                  for rule, make in biotorch_specs.items()]
        entries = []
        for i in range(max(len(ours), len(theirs))):
            for side in (ours, theirs):
                if i < len(side):
                    library, rule, command, make = side[i]
                    path = os.path.join(workdir, f"time-{library}-{rule}-{threads}.json")
                    with open(path, "w") as f:
                        json.dump(make(threads), f)
                    entries.append((library, rule, command(path)))
        print(f"Step time: {len(entries)} workers, {threads} thread(s), {rounds} rounds of "
              f"{steps} steps", flush=True)
        rows += time_steps(entries, threads, rounds, steps, min_free_gb)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "seconds": time.time() - started,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- the results


def plot(result, path):
    """Test accuracy per epoch, final accuracy and step time per rule of both libraries."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = PLOT_ORDER
    summary = summaries.peer_summaries(result["runs"])
    timing = result.get("step_time") or {}
    threads = max((r["threads"] for r in timing.get("rows") or []), default=None)
    fig = Figure(figsize=(15, 4.6))
    FigureCanvasAgg(fig)
    ax_curve, ax_acc, ax_time = fig.subplots(1, 3)
    styles = {"rlra_tf": "-o", "biotorch": "--s"}
    for li, library in enumerate(summaries.LIBRARIES):
        s = summary.get(library) or {}
        rules = [r for r in order if r in s]
        for rule in rules:
            curve = [100 * a for a in s[rule]["test_accuracy_per_epoch_mean"]]
            ax_curve.plot(range(1, len(curve) + 1), curve, styles[library],
                          color=f"C{order.index(rule)}", label=f"{library} {rule}")
        xs = [order.index(r) + (li - 0.5) * 0.4 for r in rules]
        means = [100 * s[r]["final_test_accuracy_mean"] for r in rules]
        lo = [m - 100 * s[r]["final_test_accuracy_min"] for m, r in zip(means, rules)]
        hi = [100 * s[r]["final_test_accuracy_max"] - m for m, r in zip(means, rules)]
        ax_acc.bar(xs, means, 0.4, yerr=[lo, hi], color=f"C{li}", alpha=0.8, label=library)
        rows = sorted((r for r in timing.get("rows") or []
                       if r["library"] == library and r["threads"] == threads),
                      key=lambda r: order.index(r["rule"]))
        xs = [order.index(r["rule"]) + (li - 0.5) * 0.4 for r in rows]
        ax_time.bar(xs, [r["median_step_seconds"] for r in rows], 0.4, color=f"C{li}",
                    alpha=0.8, label=f"{library} (wall, median)")
        ax_time.plot(xs, [r["median_cpu_seconds"] for r in rows], "k_", markersize=12, mew=2,
                     label="CPU seconds" if li == 0 else None)
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("test accuracy % (mean over seeds)")
    ax_curve.set_title("per epoch: rlra_tf solid, BioTorch dashed", fontsize="small")
    ax_curve.legend(fontsize="x-small", ncol=2)
    ax_curve.grid(True, alpha=0.3)
    ax_acc.set_ylabel("final test accuracy % (mean; bar: min-max)")
    ax_acc.set_title("after the last epoch", fontsize="small")
    ax_time.set_ylabel("seconds per training step")
    if threads is not None:
        load = [x for r in timing["rows"] for x in r.get("load_average_during") or []]
        ax_time.set_title(f"batch {result.get('budget', {}).get('batch_size', '?')}, "
                          f"{threads} thread(s), load {min(load):.1f}-{max(load):.1f}",
                          fontsize="small")
    for ax in (ax_acc, ax_time):
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(result.get("title", ""), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_tables(result):
    """The report's tables and verdicts of a peers result (`result`: its JSON)."""
    from benchmarks.report import claims
    from benchmarks.report import peers as section
    from benchmarks.report.results import Results

    print()
    print(section.accuracy_text(result))
    if result.get("step_time"):
        print()
        print(section.timing_text(result))
    print()
    results = Results.from_data({"peers_biotorch": result})
    for key in claims.of("peers"):
        verdict = claims.judge(key, results)
        print(f"{claims.text(key)}: {verdict.status}. {verdict.text}")


def main(argv):
    del argv
    run_worker(flags.FLAGS.worker)


if __name__ == "__main__":
    # Defined here, not at import: tests import this module beside other absl flags.
    flags.DEFINE_string("worker", None, "rlra_tf's step-time worker: its SPEC.json.",
                        required=True)
    app.run(main)
