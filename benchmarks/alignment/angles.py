"""How each rule's updates line up with backprop's gradient while the MLP trains.

Trains the trainer's `fmnist_mlp` preset (MLP 784-256-256-256-10 tanh, Adam 1e-3 cosine, batch
50) for `--epochs` epochs with each rule, with the trainer's alignment diagnostics on
(`diagnostics_every`: `rlra_tf.diagnostics.AlignmentDiagnostics` on 256 validation images),
and records per unit the angle between the rule's kernel update and backprop's gradient
(0 = backprop's direction, 90 = unrelated) and the angle between the feedback kernel `F` and
the forward kernel `W`, over training. `bp` is the 0-degree reference.

    python -m benchmarks.alignment.angles                  # 6 rules x 3 epochs, ~6 minutes
    python -m benchmarks.alignment.angles --epochs=1 --train_limit=10000 --every=25  # quick
    python -m benchmarks.alignment.angles --model=resnet20 --rules=rec_lra,wm,fa \
        --every=10                                           # ~15 minutes

`--model=resnet20` trains the `fmnist_resnet20` preset at the ResNet-20 benchmark's budget
(the first 12,800 training images, 3 epochs, batch 128, Adam 1e-3 cosine after 0.2 epochs of
warm-up, no augmentation) instead of the MLP. For every rule with error synapses the JSON
also says after how many steps every synapse (projections' included) is within 20 degrees
of its forward kernel (`steps_until_all_synapses_within_20deg`).

`--rules` takes the rule variants of `benchmarks.variants` (the library's defaults but the
variant's parameters). Writes `benchmarks/results/alignment_<model>.json` and a PNG beside it,
and prints a line per rule.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags, logging

from benchmarks import harness, variants

RULES = ("rec_lra", "wm", "lra", "fa", "dfa", "bp")
TRAINABLE = [n for n, v in variants.VARIANTS.items() if not v.keras_batch_norm]
MIRROR_RULES = ("rec_lra", "wm")  # whose synapses follow the weight mirror by default
ALIGNED_DEGREES = 20.0

_RULES = flags.DEFINE_list("rules", list(RULES),
                           "Rule variants to train (benchmarks.variants; bp is the 0 reference).")
_MODEL = flags.DEFINE_enum("model", "mlp", ["mlp", "resnet20"], "The network (see above).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per rule.")
_EVERY = flags.DEFINE_integer("every", 100, "Training steps between probes.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", None, "Use only the first N training images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_OUT = flags.DEFINE_string(
    "out", None, "The JSON results (the PNG goes beside it); default "
    "benchmarks/results/alignment_<model>.json.")


# `--model` -> (preset, description, the budget's changes to the preset).
MODELS = {
    "mlp": ("fmnist_mlp", "MLP 784-256-256-256-10 tanh", {}),
    "resnet20": ("fmnist_resnet20", "ResNet-20 (CIFAR stem, BatchNorm, ReLU), 28x28x1",
                 dict(train_limit=12800, batch_size=128, optimizer="adam", learning_rate=1e-3,
                      momentum=0.9, weight_decay=0.0, schedule="cosine", warmup_epochs=0.2,
                      augment=False, jit_compile="off", backup_every=10**9)),
}


def rule_config(rule, epochs, every, train_limit, seed, model="mlp"):
    """The preset with the rule variant `rule` (the library's defaults but the variant's
    parameters) and the diagnostics on."""
    from trainers import presets

    preset, _, budget = MODELS[model]
    changes = dict(budget)
    changes.update(variants.config_changes(rule))
    changes.update({"epochs": epochs, "diagnostics_every": every, "seed": seed})
    if train_limit is not None or "train_limit" not in changes:
        changes["train_limit"] = train_limit
    return presets.override(presets.get(preset), **changes)


def series(history, metric):
    """`{unit: [value or None per probe]}` from an `AlignmentDiagnostics` history."""
    units = list(history[-1]["units"]) if history else []
    return {u: [(rec["units"].get(u) or {}).get(metric) for rec in history] for u in units}


def synapse_angles(history):
    """`{synapse: [angle per probe]}`: every F-to-W angle the probes logged (units' `F` and
    projections' synapses)."""
    out = {}
    for metric, suffix in (("feedback_angle", ""), ("shortcut_feedback_angle", "/shortcut")):
        for unit, values in series(history, metric).items():
            if any(v is not None for v in values):
                out[unit + suffix] = values
    return out


def steps_until_aligned(steps, angles, limit=ALIGNED_DEGREES):
    """The first probe step at which every synapse is within `limit` degrees of its kernel
    (and stays so at every later probe); None if that never happens."""
    if not angles:
        return None
    ok = [all(v[i] is not None and v[i] < limit for v in angles.values())
          for i in range(len(steps))]
    for i in range(len(steps)):
        if all(ok[i:]):
            return steps[i]
    return None


def summarize_rule(history):
    """Angles at the last probe per unit, and their mean over the hidden units."""
    last = history[-1]["units"]
    hidden = list(last)[:-1]  # every unit but the classifier head (the last)

    def mean(metric, units):
        vals = [last[u].get(metric) for u in units if last[u].get(metric) is not None]
        return sum(vals) / len(vals) if vals else None

    return {
        "final_angle": {u: last[u].get("angle") for u in last},
        "final_feedback_angle": {u: last[u].get("feedback_angle") for u in last},
        "final_angle_hidden_mean": mean("angle", hidden),
        "first_angle_hidden_mean": (
            sum(history[0]["units"][u]["angle"] for u in hidden
                if history[0]["units"][u].get("angle") is not None) / len(hidden)
            if hidden else None),
        "final_feedback_angle_hidden_mean": mean("feedback_angle", hidden),
    }


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rules = list(result["rules"])
    fig = Figure(figsize=(3.6 * len(rules), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(rules), squeeze=False, sharey=True)[0]
    for ax, rule in zip(axes, rules):
        r = result["rules"][rule]
        for i, (unit, values) in enumerate(r["angle"].items()):
            ys = [float("nan") if v is None else v for v in values]
            ax.plot(r["steps"], ys, color=f"C{i}", label=unit)
            fb = r["feedback_angle"].get(unit)
            if fb and any(v is not None for v in fb) and rule in ("lra", "rec_lra", "wm"):
                ax.plot(r["steps"], [float("nan") if v is None else v for v in fb],
                        color=f"C{i}", linestyle=":", alpha=0.7)
        ax.set_title(f"{rule} (test {100 * r['test_accuracy']:.1f}%)", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 120)
        ax.set_yticks([0, 30, 60, 90, 120])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("angle to backprop's gradient (degrees)")
    axes[0].legend(fontsize="small", loc="upper right")
    fig.suptitle("per-unit angle between the rule's update and backprop's gradient "
                 "(dotted: angle between F and W)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        rules = variants.check(_RULES.value, TRAINABLE)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    from trainers import train_lib

    out = _OUT.value or harness.default_out(f"alignment_{_MODEL.value}")
    workroot = tempfile.mkdtemp(prefix="rlra_alignment_")
    result = {
        "benchmark": os.path.splitext(os.path.basename(out))[0],
        "preset": MODELS[_MODEL.value][0],
        "model": MODELS[_MODEL.value][1],
        "budget_changes": MODELS[_MODEL.value][2],
        "epochs": _EPOCHS.value,
        "every_n_steps": _EVERY.value,
        "train_limit": _TRAIN_LIMIT.value,
        "seed": _SEED.value,
        **harness.environment(),
        "rules": {},
    }
    try:
        for rule in rules:
            config = rule_config(rule, _EPOCHS.value, _EVERY.value, _TRAIN_LIMIT.value,
                                 _SEED.value, _MODEL.value)
            start = time.perf_counter()
            metrics = train_lib.train_and_evaluate(
                config, os.path.join(workroot, rule), overwrite=True, verbose=0
            )
            history = metrics["diagnostics"]["history"]
            steps = [rec["step"] for rec in history]
            synapses = synapse_angles(history)
            result["rules"][rule] = {
                "test_accuracy": metrics["test_accuracy"],
                "seconds": time.perf_counter() - start,
                "probe_size": metrics["diagnostics"]["probe_size"],
                "steps": steps,
                "angle": series(history, "angle"),
                "feedback_angle": series(history, "feedback_angle"),
                "error_norm": series(history, "error_norm"),
                "synapse_angle": synapses,
                **summarize_rule(history),
                "steps_until_all_synapses_within_20deg": (
                    steps_until_aligned(steps, synapses)
                    if variants.get(rule).rule in MIRROR_RULES else None),
            }
            s = result["rules"][rule]
            print(f"{rule:8} test {100 * s['test_accuracy']:.2f}%  hidden-unit angle "
                  f"{s['first_angle_hidden_mean']:.1f} -> {s['final_angle_hidden_mean']:.1f} deg  "
                  + " ".join(f"{u}={a:.1f}" for u, a in s["final_angle"].items()
                             if a is not None), flush=True)
            shutil.rmtree(os.path.join(workroot, rule), ignore_errors=True)
            harness.write_json(out, result)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    plot(result, harness.png_path(out))
    print(f"Wrote {out}")


if __name__ == "__main__":
    app.run(main)
