"""Test accuracy per epoch of every rule on ResNet-20 (CIFAR stem, 28x28x1) on Fashion-MNIST.

Each run is `trainers.train_lib.train_and_evaluate` of the trainer's `fmnist_resnet20`
preset (ResNet-20, 16/32/64 channels, BatchNorm, ReLU, inputs standardised in the model) with
one budget for every rule, small enough for a 2-core machine: the first `--train_limit`
examples of the training split (58,000 with 2,000 held out), `--epochs` epochs, batch 128,
Adam 1e-3 with cosine decay after a short linear warm-up, no weight decay, no augmentation
(`--optimizer=sgd --learning_rate=0.05 --weight_decay=5e-4` gives the preset's recipe at this
budget). Only the rule changes between runs: `--rules` takes the rule names (each at its
defaults; `rec_lra` and `lra` with `--beta`) and the named ablations of `VARIANTS` (rec-LRA's
default with one revision-2 change removed, and the first reconstruction). After every epoch
a callback evaluates the full 10,000-image test split, outside the trainer's epoch timer. Runs
go seed by seed, every rule within a seed, one after the other in this process; the JSON is
rewritten after every run, and a rerun with the same settings skips the runs it already holds
(`--noresume` retrains them). `--model=resnet32` (or `resnet56`, any CIFAR-family depth) runs
the same budget on a deeper network of the same family (the depth study).

    python -m benchmarks.resnet_accuracy --seeds=0,1,2              # ~1 h on 2 shared cores
    python -m benchmarks.resnet_accuracy --rules=bp,rec_lra --epochs=1 --train_limit=2560
    python -m benchmarks.resnet_accuracy --rules=rec_lra,rec_lra-no_mirror,rec_lra-no_through,\
        rec_lra-raw_errors,rec_lra-first --out=benchmarks/results/resnet_ablation.json

Writes `benchmarks/results/resnet_accuracy.json` and `resnet_accuracy.png` (test accuracy per
epoch per rule, mean over seeds with the min-max band) and prints a table with the bar of the
revision-2 issue: rec_lra within 1.0 point of bp and at least 10 points above fa and dfa.
"""

import json
import os
import shutil
import tempfile
import time

from absl import app, flags

from benchmarks.environment import environment
from benchmarks.per_epoch_test import TestEvaluator, train_with_tests

PRESET = "fmnist_resnet20"
RULES = ("bp", "fa", "dfa", "lra", "wm", "rec_lra")
# Ablations of rec-LRA's revision-2 default (ALGORITHM.md section 7): name -> rule parameters.
FIRST_RECONSTRUCTION = dict(
    feedback="skip", error_scale="raw", norm_feedback="skip", synapse_update="lra"
)
VARIANTS = {
    "rec_lra-no_mirror": dict(synapse_update="lra"),  # dF = gamma dW: F stays random
    "rec_lra-no_through": dict(norm_feedback="skip"),
    "rec_lra-raw_errors": dict(error_scale="raw"),
    "rec_lra-first": FIRST_RECONSTRUCTION,
    # Not a revision-2 change removed but the other way to reach block outputs: from the
    # output error through fixed skip synapses (blocks independent, chain of one block).
    "rec_lra-skip_synapses": dict(feedback="skip"),
}
# Mirror settings tried beyond the default (not an ablation: something added).
VARIANTS.update({
    # Conv estimates divided by the positions each kernel tap saw: no shrinking of border taps.
    "rec_lra-mirror_taps": dict(mirror_normalise="taps"),
    # ... and a slower moving average (less noise in F) that starts as a running mean.
    "rec_lra-mirror_taps_slow": dict(mirror_normalise="taps", mirror_rate=0.02,
                                     mirror_warm_start=True),
    # Per-tap estimates from the first step on (a running mean), then the default rate.
    "rec_lra-mirror_taps_warm": dict(mirror_normalise="taps", mirror_warm_start=True),
    # ... with four times the noise images per conv estimate (less noise in F).
    # The fmnist_resnet20 preset's own setting (`trainers.presets.SGD_MIRROR`).
    "rec_lra-mirror_taps_warm_m32": dict(mirror_normalise="taps", mirror_warm_start=True,
                                         mirror_batch=32),
    # A ten times smaller target displacement (closer to the derivative).
    "rec_lra-beta0.01": dict(beta=0.01),
})
NAMES = RULES + tuple(VARIANTS)
BAR_TO_BP = 1.0  # points: rec_lra at most this far below bp
BAR_ABOVE_FA_DFA = 10.0  # points: rec_lra at least this far above fa and dfa

_MODEL = flags.DEFINE_string(
    "model", "resnet20", "The ResNet of the CIFAR family: resnet20, resnet32, resnet56, ..."
)
_RULES = flags.DEFINE_list(
    "rules", list(RULES), f"Rules and ablations to train: {', '.join(NAMES)}."
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (initialisation and data order).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per run.")
_TRAIN_LIMIT = flags.DEFINE_integer(
    "train_limit", 12800, "Use the first N examples of the training split (0: all 58,000)."
)
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_OPTIMIZER = flags.DEFINE_enum(
    "optimizer", "adam", ["sgd", "adam", "adamw"],
    "Optimiser (Adam: the rules' updates differ in scale by orders of magnitude, e.g. rec_lra's "
    "skip-driven conv updates are not divided by the pooled positions; Adam's per-parameter "
    "normalisation treats them alike).",
)
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
_WD = flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (not on biases/BN).")
_WARMUP = flags.DEFINE_float("warmup_epochs", 0.2, "Linear warm-up, in epochs.")
_SCHEDULE = flags.DEFINE_enum("schedule", "cosine", ["constant", "cosine"], "Decay after warm-up.")
_AUGMENT = flags.DEFINE_bool("augment", False, "Pad-and-crop augmentation of the train split.")
_MIXED = flags.DEFINE_enum(
    "mixed_precision", "off", ["off", "bfloat16", "float16"],
    "The trainer's --mixed_precision (Keras mixed_bfloat16 / mixed_float16 policy).",
)
_BETA = flags.DEFINE_float("beta", 0.1, "beta of rec_lra and lra (target displacement).")
_OUT = flags.DEFINE_string(
    "out", "benchmarks/results/resnet_accuracy.json", "The JSON results (the PNG goes beside it)."
)
_RESUME = flags.DEFINE_bool("resume", True, "Skip runs already in the JSON with equal config.")


def run_config(name, seed):
    """The trainer `Config` of one run: the preset with this benchmark's budget and the rule
    (or ablation) `name`."""
    from trainers import presets

    if name not in NAMES:
        raise ValueError(f"Expected rules among {NAMES}, received: {name!r}")
    rule = "rec_lra" if name in VARIANTS else name
    changes = dict(
        model=_MODEL.value,
        rule=rule,
        seed=seed,
        epochs=_EPOCHS.value,
        train_limit=_TRAIN_LIMIT.value or None,
        batch_size=_BATCH.value,
        optimizer=_OPTIMIZER.value,
        learning_rate=_LR.value,
        momentum=_MOMENTUM.value,
        weight_decay=_WD.value,
        warmup_epochs=_WARMUP.value,
        schedule=_SCHEDULE.value,
        augment=_AUGMENT.value,
        mixed_precision=_MIXED.value,
        jit_compile="off",
        backup_every=10**9,  # the benchmark keeps no backups (the trainer still saves per epoch)
    )
    if rule in ("rec_lra", "lra"):
        changes.update(beta=_BETA.value, gamma=1.0)
    if rule == "rec_lra":  # the library's default mirror unless a variant says otherwise
        changes.update({k: None for k in presets.SGD_MIRROR})
    changes.update(VARIANTS.get(name, {}))
    return presets.override(presets.get(PRESET), **changes)


def run_one(name, config, evaluator, workroot):
    record = {"rule": name, "seed": config.seed, "config": config.to_json(), "epochs": []}
    workdir = os.path.join(workroot, f"{name}-seed{config.seed}")
    metrics, wall = train_with_tests(config, workdir, evaluator, record)
    record.update({
        "final_test_accuracy": record["epochs"][-1]["test_accuracy"],
        "trainer_test_accuracy": metrics["test_accuracy"],
        "mean_seconds_per_epoch": metrics["mean_seconds_per_epoch"],
        "steps_per_epoch": metrics["steps_per_epoch"],
        "wall_seconds": wall,
    })
    return record


def summarize(runs, rules):
    """Per rule: final test accuracy (mean, min, max over seeds) and mean per-epoch curve."""
    import numpy as np

    rows = []
    for rule in rules:
        rs = [r for r in runs if r["rule"] == rule]
        if not rs:
            continue
        finals = [100 * r["final_test_accuracy"] for r in rs]
        epochs = min(len(r["epochs"]) for r in rs)
        curve = [float(np.mean([100 * r["epochs"][e]["test_accuracy"] for r in rs]))
                 for e in range(epochs)]
        rows.append({
            "rule": rule,
            "seeds": [r["seed"] for r in rs],
            "final_test_accuracy_mean": float(np.mean(finals)),
            "final_test_accuracy_min": min(finals),
            "final_test_accuracy_max": max(finals),
            "test_accuracy_per_epoch_mean": curve,
            "seconds_per_epoch_mean": float(np.mean([r["mean_seconds_per_epoch"] for r in rs])),
        })
    return rows


def verdict(summary):
    by = {s["rule"]: s["final_test_accuracy_mean"] for s in summary}
    if not all(r in by for r in ("bp", "rec_lra")):
        return None
    out = {"rec_lra_minus_bp": by["rec_lra"] - by["bp"],
           "within_1_point_of_bp": by["rec_lra"] >= by["bp"] - BAR_TO_BP}
    for r in ("fa", "dfa"):
        if r in by:
            out[f"rec_lra_minus_{r}"] = by["rec_lra"] - by[r]
            out[f"at_least_10_above_{r}"] = by["rec_lra"] - by[r] >= BAR_ABOVE_FA_DFA
    if "wm" in by:
        out["rec_lra_minus_wm"] = by["rec_lra"] - by["wm"]
    out["passes"] = all(v for k, v in out.items() if k.startswith(("within", "at_least")))
    return out


def plot(runs, rules, path, title):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, rule in enumerate(rules):
        rs = [r for r in runs if r["rule"] == rule]
        if not rs:
            continue
        n = min(len(r["epochs"]) for r in rs)
        acc = np.array([[100 * r["epochs"][e]["test_accuracy"] for e in range(n)] for r in rs])
        xs = np.arange(1, n + 1)
        ax.plot(xs, acc.mean(0), marker="o", color=f"C{i}",
                label=f"{rule} ({acc.mean(0)[-1]:.2f}%)")
        if len(rs) > 1:
            ax.fill_between(xs, acc.min(0), acc.max(0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), full 10k test split")
    ax.set_title(title, fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    from rlra_tf import data

    rules = list(_RULES.value)
    for r in rules:
        if r not in NAMES:
            raise ValueError(f"Expected rules among {NAMES}, received: {r!r}")
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise ValueError(f"Expected integer seeds, received: --seeds={_SEEDS.value}") from None
    if _EPOCHS.value < 1:
        raise ValueError(f"Expected a positive number of epochs, received: {_EPOCHS.value}")
    out = _OUT.value
    png = os.path.splitext(out)[0] + ".png"
    budget = {
        "preset": PRESET,
        "model": f"{_MODEL.value} (CIFAR stem, 16/32/64 channels, BatchNorm, ReLU), 28x28x1 "
                 "input",
        "dataset": "fashion_mnist",
        "train_examples": _TRAIN_LIMIT.value or 58000,
        "epochs": _EPOCHS.value,
        "batch_size": _BATCH.value,
        "optimizer": _OPTIMIZER.value,
        "learning_rate": _LR.value,
        "momentum": _MOMENTUM.value if _OPTIMIZER.value == "sgd" else None,
        "weight_decay": _WD.value,
        "schedule": f"{_SCHEDULE.value} after {_WARMUP.value} epochs of linear warm-up",
        "augment": _AUGMENT.value,
        "mixed_precision": _MIXED.value,
        "beta (rec_lra, lra)": _BETA.value,
        "ablations": {k: v for k, v in VARIANTS.items() if k in rules},
        "test": "full 10,000-image test split after every epoch",
        "jit_compile": False,
    }
    runs = []
    if _RESUME.value and os.path.exists(out):
        with open(out) as f:
            old = json.load(f)
        runs = old.get("runs", [])
    evaluator = TestEvaluator(data.load("fashion_mnist", "test", 500))
    depth = _MODEL.value.replace("resnet", "ResNet-")
    title = (f"{depth} on Fashion-MNIST: {budget['train_examples']} train examples, "
             f"{_EPOCHS.value} epochs, {_OPTIMIZER.value} lr {_LR.value} {_SCHEDULE.value}, "
             f"batch {_BATCH.value}")
    start = time.time()
    workroot = tempfile.mkdtemp(prefix="resnet_accuracy_")
    try:
        for seed in seeds:
            for rule in rules:
                config = run_config(rule, seed)
                if any(r["config"] == config.to_json() for r in runs):
                    print(f"{rule} seed {seed}: already in {out}, skipped", flush=True)
                    continue
                runs = [r for r in runs if (r["rule"], r["seed"]) != (rule, seed)]
                print(f"{rule} seed {seed}", flush=True)
                runs.append(run_one(rule, config, evaluator, workroot))
                summary = summarize(runs, rules)
                result = {
                    "benchmark": "resnet_accuracy",
                    **environment(),
                    "budget": budget,
                    "results": [
                        {"rule": r["rule"], "seed": r["seed"], **e}
                        for r in runs for e in r["epochs"]
                    ],
                    "summary": summary,
                    "bar": verdict(summary),
                    "runs": runs,
                    "png": png,
                }
                os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
                with open(out, "w") as f:
                    json.dump(result, f, indent=2)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    summary = summarize(runs, rules)
    # Every rule in the file, not only this invocation's: the depth study runs the script twice
    # into one file (bp and rec_lra over two seeds, then wm and fa over one).
    plot(runs, list(dict.fromkeys(rules + [r["rule"] for r in runs])), png, title)
    by = {s["rule"]: s for s in summary}
    print(f"\n{title}")
    print(f"{'rule':20} {'test %':>7} {'min':>6} {'max':>6} {'vs bp':>6} {'s/epoch':>8}  "
          "per epoch")
    for s in summary:
        diff = (s["final_test_accuracy_mean"] - by["bp"]["final_test_accuracy_mean"]
                if "bp" in by else float("nan"))
        print(f"{s['rule']:20} {s['final_test_accuracy_mean']:7.2f} "
              f"{s['final_test_accuracy_min']:6.2f} {s['final_test_accuracy_max']:6.2f} "
              f"{diff:+6.2f} {s['seconds_per_epoch_mean']:8.1f}  "
              + " ".join(f"{a:.2f}" for a in s["test_accuracy_per_epoch_mean"]))
    bar = verdict(summary)
    if bar:
        print("Bar: " + ", ".join(f"{k}={v:+.2f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in bar.items()))
    print(f"Wrote {out} and {png} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)
