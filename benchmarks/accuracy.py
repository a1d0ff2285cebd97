"""Test accuracy per epoch of every rule on the trainer's `fmnist_mlp` preset, over seeds.

Each run is `trainers.train_lib.train_and_evaluate` of the preset (MLP 784-256-256-256-10
tanh, Adam 1e-3 with cosine decay to 0, batch 50, 10 epochs, 58,000 training examples with
2,000 held out) with only the rule (and, for the labelled variants, one setting) changed, so
what is measured is what the trainer gives a user. A callback evaluates the full 10,000-image
test split after every epoch, outside the timed part: `epoch_seconds` is the trainer's own
timer (training steps plus its validation pass), and the test pass is timed separately.

Variants (`--variants`): `bp`, `fa`, `dfa`, `lra`, `wm` (weight mirror), `rec_lra` (the preset:
beta 0.1, the revision-2 defaults) and `rec_lra_first` (the first reconstruction: skip
synapses from the output error to each block of three units, raw errors, `dF = gamma dW`).
Runs go seed by seed, every variant within a seed, in one process, one after the other; the
JSON is rewritten after every run (a killed benchmark keeps what it finished, and a rerun
with the same settings skips the runs already in the JSON).

    python -m benchmarks.accuracy --seeds=0,1,2          # 21 runs, about 1-1.5 h on 2 cores
    python -m benchmarks.accuracy --seeds=0 --epochs=2   # a quick look, ~5 minutes
    python -m benchmarks.accuracy --sweep                # the settings-tried sweep (seed 0)

Writes `benchmarks/results/accuracy_mlp.json` and `accuracy_mlp.png` (test accuracy per epoch,
mean over seeds with the min-max band); `--sweep` writes `mlp_sweep.json` instead.
"""

import json
import os
import shutil
import tempfile
import time

from absl import app, flags, logging

from benchmarks.curves import THRESHOLDS, summarize, time_to_reach  # noqa: F401 (re-exported)
from benchmarks.environment import environment
from benchmarks.per_epoch_test import TestEvaluator, train_with_tests

PRESET = "fmnist_mlp"

# name -> (label, changes to the preset)
VARIANTS = {
    "bp": ("bp", {"rule": "bp"}),
    "fa": ("fa", {"rule": "fa"}),
    "dfa": ("dfa", {"rule": "dfa"}),
    "lra": ("lra (LRA-E, beta 0.1)", {"rule": "lra", "beta": 0.1, "gamma": 1.0}),
    "wm": ("wm (weight mirror)", {"rule": "wm"}),
    "rec_lra": ("rec_lra (preset: beta 0.1, revision-2 defaults)", {}),
    "rec_lra_first": ("rec_lra, first reconstruction (skip synapses, blocks of 3)",
                      {"feedback": "skip", "error_scale": "raw", "norm_feedback": "skip",
                       "synapse_update": "lra"}),
}
DEFAULT_VARIANTS = tuple(VARIANTS)

# The settings the MLP defaults were chosen from: name -> (label, changes to the preset).
SWEEP = {
    "const_bp": ("constant lr: bp", {"schedule": "constant", "rule": "bp"}),
    "const_rec_lra_b1": ("constant lr: rec_lra beta 0.1, blocks of 1",
                         {"schedule": "constant", "block_size": 1}),
    "const_lra": ("constant lr: lra beta 0.1",
                  {"schedule": "constant", "rule": "lra", "beta": 0.1, "gamma": 1.0}),
    "const_fa": ("constant lr: fa", {"schedule": "constant", "rule": "fa"}),
    "const_dfa": ("constant lr: dfa", {"schedule": "constant", "rule": "dfa"}),
    "const_rec_lra_b3": ("constant lr: rec_lra beta 0.1, blocks of 3", {"schedule": "constant"}),
    "cos_bp": ("cosine: bp", {"rule": "bp"}),
    "cos_rec_lra_b1": ("cosine: rec_lra beta 0.1, blocks of 1", {"block_size": 1}),
    "cos_lra": ("cosine: lra beta 0.1", {"rule": "lra", "beta": 0.1, "gamma": 1.0}),
    "cos_rec_lra_beta0.2": ("cosine: rec_lra beta 0.2, blocks of 1",
                            {"block_size": 1, "beta": 0.2}),
    "cos_rec_lra_beta0.05": ("cosine: rec_lra beta 0.05, blocks of 1",
                             {"block_size": 1, "beta": 0.05}),
    "cos_rec_lra_b3": ("cosine: rec_lra beta 0.1, blocks of 3 (the preset)", {}),
    "cos_fa": ("cosine: fa", {"rule": "fa"}),
    "cos_dfa": ("cosine: dfa", {"rule": "dfa"}),
    "cos_b128_bp": ("cosine, batch 128, lr 2e-3: bp",
                    {"rule": "bp", "batch_size": 128, "learning_rate": 2e-3}),
    "cos_b128_rec_lra_b1": ("cosine, batch 128, lr 2e-3: rec_lra beta 0.1, blocks of 1",
                            {"batch_size": 128, "learning_rate": 2e-3, "block_size": 1}),
}

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (initialisation and data order).")
_VARIANTS = flags.DEFINE_list(
    "variants", list(DEFAULT_VARIANTS), f"Variants to run: {', '.join(VARIANTS)}."
)
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs per run (default: the preset's, 10).")
_MIXED = flags.DEFINE_enum(
    "mixed_precision", "off", ["off", "bfloat16", "float16"],
    "The trainer's --mixed_precision (Keras mixed_bfloat16 / mixed_float16 policy).",
)
_TRAIN_LIMIT = flags.DEFINE_integer(
    "train_limit", None, "Use only the first N training examples (quick suites)."
)
_SWEEP = flags.DEFINE_bool(
    "sweep", False, "Run the settings-tried sweep (seed 0 of --seeds) into mlp_sweep.json."
)
_OUT = flags.DEFINE_string(
    "out", None,
    "The JSON results (the PNG goes beside it). Default: benchmarks/results/accuracy_mlp.json "
    "(mlp_sweep.json with --sweep).",
)
_RESUME = flags.DEFINE_bool("resume", True, "Skip runs already in the JSON with equal config.")


def run_config(name, label, changes, seed, epochs, train_limit):
    """The `Config` of one run: the preset, the variant's changes, the seed and budget."""
    from trainers import presets

    config = presets.get(PRESET)
    changes = dict(changes)
    changes["seed"] = seed
    if epochs is not None:
        changes["epochs"] = epochs
    if train_limit is not None:
        changes["train_limit"] = train_limit
    changes["mixed_precision"] = _MIXED.value
    return presets.override(config, **changes)


def run_one(name, label, config, evaluator, workroot):
    record = {"variant": name, "label": label, "seed": config.seed, "config": config.to_json(),
              "epochs": []}
    workdir = os.path.join(workroot, f"{name}-seed{config.seed}")
    metrics, wall = train_with_tests(config, workdir, evaluator, record)
    eval_total = sum(e["test_eval_seconds"] for e in record["epochs"])
    record.update({
        "final_test_accuracy": metrics["test_accuracy"],
        "final_test_loss": metrics["test_loss"],
        "mean_seconds_per_epoch": metrics["mean_seconds_per_epoch"],
        "wall_seconds": wall - eval_total,
        "wall_seconds_including_per_epoch_tests": wall,
        "steps_per_epoch": metrics["steps_per_epoch"],
        "rule": metrics["rule"],
    })
    return record


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    summary = result["summary"]
    fig = Figure(figsize=(11, 4.4))
    FigureCanvasAgg(fig)
    ax_acc, ax_loss = fig.subplots(1, 2)
    for i, (name, s) in enumerate(summary.items()):
        color = f"C{i % 10}"
        epochs = list(range(1, len(s["test_accuracy_per_epoch_mean"]) + 1))
        acc = [100 * v for v in s["test_accuracy_per_epoch_mean"]]
        ax_acc.plot(epochs, acc, color=color, marker=".",
                    label=f"{s['label']} ({100 * s['final_test_accuracy_mean']:.2f}%)")
        if len(s["seeds"]) > 1:
            ax_acc.fill_between(epochs, [100 * v for v in s["test_accuracy_per_epoch_min"]],
                                [100 * v for v in s["test_accuracy_per_epoch_max"]],
                                color=color, alpha=0.15)
        ax_loss.plot(epochs, s["test_loss_per_epoch_mean"], color=color, marker=".")
    seeds = sorted({seed for s in summary.values() for seed in s["seeds"]})
    for t in result.get("thresholds", []):
        ax_acc.axhline(100 * t, color="grey", linestyle=":", linewidth=0.8)
    ax_acc.set_title(f"test accuracy (%), mean over seeds {seeds}; band: min-max", fontsize=10)
    ax_loss.set_title("test cross-entropy, mean over seeds", fontsize=10)
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    ax_acc.legend(fontsize="small", loc="lower right")
    fig.suptitle(f"{result['model']} on Fashion-MNIST ({result['budget']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _budget(config):
    return (f"{config.epochs} epochs, batch {config.batch_size}, {config.optimizer} "
            f"lr {config.learning_rate:g} {config.schedule}"
            + (f", first {config.train_limit} training examples" if config.train_limit else ""))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # tfds' per-split INFO lines
    from rlra_tf import data

    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise app.UsageError(f"Expected integer seeds, received: --seeds={_SEEDS.value}")
    if not seeds or any(s < 0 for s in seeds):
        raise app.UsageError(f"Expected non-negative seeds, received: --seeds={_SEEDS.value}")
    if _SWEEP.value:
        table, names, seeds = SWEEP, list(SWEEP), seeds[:1]
    else:
        table, names = VARIANTS, list(_VARIANTS.value)
        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            raise app.UsageError(
                f"Unknown variants {unknown}, received: --variants={','.join(names)}. "
                f"Expected some of {list(VARIANTS)}"
            )
    default_name = "mlp_sweep.json" if _SWEEP.value else "accuracy_mlp.json"
    out = _OUT.value or os.path.join("benchmarks", "results", default_name)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)

    previous = []
    if _RESUME.value and os.path.exists(out):
        with open(out) as f:
            previous = json.load(f).get("runs", [])
    evaluator = TestEvaluator(data.load("fashion_mnist", "test", 1000, shuffle=False))
    workroot = tempfile.mkdtemp(prefix="rlra_accuracy_")
    base = run_config(names[0], "", table[names[0]][1], seeds[0], _EPOCHS.value,
                      _TRAIN_LIMIT.value)
    result = {
        "benchmark": "mlp_sweep" if _SWEEP.value else "accuracy_mlp",
        "preset": PRESET,
        "model": "MLP 784-256-256-256-10 tanh",
        "budget": (_budget(base) if not _SWEEP.value else
                   f"{base.epochs} epochs, batch {base.batch_size}, {base.optimizer} lr "
                   f"{base.learning_rate:g}; schedule and the other changes per setting"),
        "epochs": base.epochs,
        "train_limit": base.train_limit,
        "thresholds": list(THRESHOLDS),
        "seeds": seeds,
        "variants": {n: table[n][0] for n in names},
        "notes": ("Test accuracy on the full 10,000-image test split after every epoch (outside "
                  "the timed part). seconds = the trainer's epoch timer (training steps and its "
                  "2,000-example validation pass)."),
        **environment(),
        "runs": [],
    }
    started = time.perf_counter()
    try:
        for seed in seeds:
            for name in names:
                label, changes = table[name]
                config = run_config(name, label, changes, seed, _EPOCHS.value,
                                    _TRAIN_LIMIT.value)
                done = [r for r in previous if r["variant"] == name
                        and r["config"] == config.to_json()]
                if done:
                    print(f"{name} seed {seed}: already in {out}, skipped")
                    result["runs"].append(done[0])
                else:
                    print(f"{name} seed {seed} ({label})", flush=True)
                    rec = run_one(name, label, config, evaluator, workroot)
                    print(f"  -> test {100 * rec['final_test_accuracy']:.2f}% in "
                          f"{rec['wall_seconds']:.0f} s", flush=True)
                    result["runs"].append(rec)
                result["summary"] = summarize(result["runs"])
                result["total_seconds"] = time.perf_counter() - started
                result["complete"] = False
                _write(out, result)
        result["complete"] = True
        _write(out, result)
        plot(result, os.path.splitext(out)[0] + ".png")
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    print(f"\n{'variant':12} {'final test % (mean [min, max])':32} {'s/epoch':>8} "
          + " ".join(f"{'to ' + format(100 * t, '.0f') + '%':>14}" for t in THRESHOLDS))
    for name, s in result["summary"].items():
        reach = []
        for t in THRESHOLDS:
            r = s["reach"][f"{t:.2f}"]
            reach.append(f"{r['epochs_mean']:.1f} ep/{r['seconds_mean']:.0f}s"
                         if r["reached"] else "never")
        print(f"{name:12} {100 * s['final_test_accuracy_mean']:6.2f} "
              f"[{100 * s['final_test_accuracy_min']:.2f}, "
              f"{100 * s['final_test_accuracy_max']:.2f}]{'':10} "
              f"{s['seconds_per_epoch_mean'] or 0:8.1f} " + " ".join(f"{x:>14}" for x in reach))
    print(f"Wrote {out}")


def _write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
    if obj.get("runs"):
        try:
            plot(obj, os.path.splitext(path)[0] + ".png")
        except Exception as err:  # a plot problem must not lose the numbers
            print(f"(plot failed: {err})")


if __name__ == "__main__":
    app.run(main)
