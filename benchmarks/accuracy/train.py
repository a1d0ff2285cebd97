"""Test accuracy after every epoch of each rule variant, on the MLP or a ResNet, over seeds.

Each run is `trainers.train_lib.train_and_evaluate` of a trainer preset with one budget for
every rule and only the rule changed (`--rules` takes the names of `benchmarks.variants`), so
what is measured is what the trainer gives a user. After every epoch a callback evaluates the
full 10,000-image test split, outside the trainer's epoch timer.

- `--model=mlp`: the `fmnist_mlp` preset as it is (MLP 784-256-256-256-10 tanh, blocks of
  three units, Adam 1e-3 with cosine decay to 0, batch 50, 10 epochs, the 58,000 training
  images with 2,000 held out).
- `--model=resnet20` (or `resnet32`, `resnet56`, any depth of the CIFAR family: the depth
  study): the `fmnist_resnet20` preset at a budget small enough for a 2-core machine: the first
  12,800 training images, 3 epochs, batch 128, Adam 1e-3 with cosine decay after 0.2 epochs of
  linear warm-up, no weight decay, no augmentation (`--optimizer=sgd --learning_rate=0.05
  --weight_decay=5e-4` gives the preset's recipe at this budget; `--train_limit=0` all
  58,000 images).

Any flag of the budget overrides the model's. Runs go seed by seed, every rule within a seed,
one after the other in this process; the JSON is rewritten after every run, and a rerun with
the same settings skips the runs it already holds (`--noresume` trains them again).
`--sweep` trains the MLP settings the preset was chosen from (`SWEEP`, seed 0) instead.

    python -m benchmarks.accuracy.train --model=mlp --seeds=0,1,2      # about 1-1.5 h here
    python -m benchmarks.accuracy.train --model=resnet20 --seeds=0,1,2  # about 1 h here
    python -m benchmarks.accuracy.train --model=resnet20 --rules=bp,rec_lra --epochs=1 \
        --train_limit=2560 --out=/tmp/quick.json

Writes `benchmarks/results/accuracy_<model>.json` (`accuracy_mlp_sweep.json` with `--sweep`)
and a PNG beside it (test accuracy per epoch, mean over seeds with the min-max band), and
prints a table.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags, logging

from benchmarks import curves, harness, variants
from benchmarks.accuracy import keras_models
from benchmarks.accuracy.per_epoch_test import TestEvaluator, train_with_tests

# The budget of the ResNets, also that of the Keras models ("Your own model").
SMALL_BUDGET = dict(train_limit=12800, epochs=3, batch_size=128, optimizer="adam",
                    learning_rate=1e-3, momentum=0.9, weight_decay=0.0, warmup_epochs=0.2,
                    schedule="cosine", augment=False, jit_compile="off",
                    backup_every=10**9)  # the benchmark keeps no backups
# The model families: the preset, what the network is, and the budget's changes to the preset.
FAMILIES = {
    "mlp": ("fmnist_mlp", "MLP 784-256-256-256-10 tanh", {}),
    "resnet": ("fmnist_resnet20", "{model} (CIFAR stem, 16/32/64 channels, BatchNorm, ReLU), "
               "28x28x1 input", SMALL_BUDGET),
    # A Keras model of `keras_models` (`--model=keras_cnn`, `keras_vgg`), saved to a .keras
    # file and trained through the trainer's --keras_model, 5 epochs (Keras' BatchNorm
    # momentum, 0.99, needs a few hundred steps for its moving statistics).
    "keras": ("fmnist_resnet20", "{model}", dict(SMALL_BUDGET, epochs=5)),
}
KERAS_DIR = os.path.join(harness.RESULTS_DIR, "tmp", "keras_models")
# The MLP settings the `fmnist_mlp` preset was chosen from: name -> (label, changes).
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
TRAINABLE = [n for n, v in variants.VARIANTS.items() if not v.keras_batch_norm]

_MODEL = flags.DEFINE_string(
    "model", "mlp", "mlp, a ResNet of the CIFAR family (resnet20, resnet32, resnet56, ...), or a "
    f"Keras model of benchmarks.accuracy.keras_models: "
    f"{', '.join('keras_' + k for k in keras_models.MODELS)}.")
_RULES = flags.DEFINE_list("rules", list(variants.RULES),
                           f"Rule variants to train (benchmarks.variants): {', '.join(TRAINABLE)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (initialisation and data order).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs per run (default: the model's budget).")
_TRAIN_LIMIT = flags.DEFINE_integer(
    "train_limit", None, "The first N examples of the training split (0: all 58,000).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", None, ["sgd", "adam", "adamw"], "Optimiser.")
_LR = flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", None, "SGD momentum.")
_WD = flags.DEFINE_float("weight_decay", None, "Decoupled weight decay (not on biases/BN).")
_WARMUP = flags.DEFINE_float("warmup_epochs", None, "Linear warm-up, in epochs.")
_SCHEDULE = flags.DEFINE_enum("schedule", None, ["constant", "cosine"], "Decay after warm-up.")
_AUGMENT = flags.DEFINE_bool("augment", None, "Pad-and-crop augmentation of the train split.")
_MIXED = flags.DEFINE_enum(
    "mixed_precision", "off", ["off", "bfloat16", "float16"],
    "The trainer's --mixed_precision (Keras mixed_bfloat16 / mixed_float16 policy).")
_BETA = flags.DEFINE_float("beta", 0.1, "beta of rec_lra and lra (target displacement).")
_SWEEP = flags.DEFINE_bool("sweep", False, "Train the MLP settings of SWEEP (seed 0 of --seeds).")
_OUT = flags.DEFINE_string(
    "out", None, "The JSON results (the PNG goes beside it). Default: "
    "benchmarks/results/accuracy_<model>.json (accuracy_mlp_sweep.json with --sweep).")
_RESUME = flags.DEFINE_bool("resume", True, "Skip runs already in the JSON with equal config.")


def family(model):
    """`"mlp"` or `"resnet"` for a `--model`."""
    if model == "mlp":
        return "mlp"
    if model.startswith("resnet") and model[6:].isdigit():
        return "resnet"
    if model.startswith("keras_") and model[6:] in keras_models.MODELS:
        return "keras"
    raise ValueError(f"Expected --model mlp, resnetN (N = 6n + 2) or one of "
                     f"{['keras_' + k for k in keras_models.MODELS]}, received: {model!r}")


def budget_changes(model=None):
    """The changes to the model's preset that make this run's budget: the family's, then the
    flags given."""
    model = model or _MODEL.value
    preset, _, changes = FAMILIES[family(model)]
    changes = dict(changes, mixed_precision=_MIXED.value)
    if family(model) == "resnet":
        changes["model"] = model
    for key, flag in (("epochs", _EPOCHS), ("batch_size", _BATCH), ("optimizer", _OPTIMIZER),
                      ("learning_rate", _LR), ("momentum", _MOMENTUM), ("weight_decay", _WD),
                      ("warmup_epochs", _WARMUP), ("schedule", _SCHEDULE),
                      ("augment", _AUGMENT)):
        if flag.value is not None:
            changes[key] = flag.value
    if _TRAIN_LIMIT.value is not None:
        changes["train_limit"] = _TRAIN_LIMIT.value or None
    return preset, changes


def run_config(name, seed, model=None):
    """The trainer `Config` of one run: the model's preset with this benchmark's budget and the
    rule variant `name` (or, with `--sweep`, the setting `name` of `SWEEP`)."""
    from trainers import presets

    preset, changes = budget_changes(model)
    if _SWEEP.value:
        changes.update(SWEEP[name][1])
    else:
        if variants.get(name).keras_batch_norm:
            raise ValueError(f"Variant {name!r} is for the step-time benchmark only (Keras' "
                             "BatchNorm path), received: --rules with it")
        changes.update(variants.config_changes(name, _BETA.value))
    changes["seed"] = seed
    model = model or _MODEL.value
    if family(model) == "keras":  # its weights from the seed, in a file of its own
        path = os.path.join(KERAS_DIR, f"{model}-seed{seed}.keras")
        if not os.path.exists(path):
            os.makedirs(KERAS_DIR, exist_ok=True)
            keras_models.save(model[6:], path, seed=seed)
        changes.update(model="keras", keras_model=path)
    return presets.override(presets.get(preset), **changes)


def run_one(name, config, evaluator, workroot, setting=None):
    """Trains one run with the per-epoch test; returns its record."""
    record = {"rule": name, "seed": config.seed, "config": config.to_json(), "epochs": []}
    if setting is not None:
        record.update(setting=setting, label=SWEEP[setting][0])
    workdir = os.path.join(workroot, f"{setting or name}-seed{config.seed}")
    metrics, wall = train_with_tests(config, workdir, evaluator, record)
    tests = sum(e["test_eval_seconds"] for e in record["epochs"])
    record.update({
        "final_test_accuracy": record["epochs"][-1]["test_accuracy"],
        "final_test_loss": record["epochs"][-1]["test_loss"],
        "trainer_test_accuracy": metrics["test_accuracy"],
        "mean_seconds_per_epoch": metrics["mean_seconds_per_epoch"],
        "steps_per_epoch": metrics["steps_per_epoch"],
        "wall_seconds": wall - tests,
        "wall_seconds_including_per_epoch_tests": wall,
    })
    return record


def budget(config, description):
    """The budget every run of the file shares, as the report quotes it."""
    return {
        "preset": FAMILIES[family(_MODEL.value)][0], "model": description,
        "dataset": config.dataset, "train_examples": config.train_limit or 58000,
        "epochs": config.epochs, "batch_size": config.batch_size, "optimizer": config.optimizer,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum if config.optimizer == "sgd" else None,
        "weight_decay": config.weight_decay,
        "schedule": f"{config.schedule} after {config.warmup_epochs} epochs of linear warm-up",
        "augment": config.augment, "mixed_precision": config.mixed_precision,
        "test": "full 10,000-image test split after every epoch",
        "jit_compile": config.jit_compile,
    }


def plot(runs, key, path, title):
    """Test accuracy per epoch of every `key` (rule or sweep setting): mean over seeds, with
    the min-max band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = curves.summarize(runs, key=key)
    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (name, s) in enumerate(summary.items()):
        xs = list(range(1, len(s["test_accuracy_per_epoch_mean"]) + 1))
        ax.plot(xs, [100 * a for a in s["test_accuracy_per_epoch_mean"]], marker=".",
                color=f"C{i % 10}", label=f"{name} ({100 * s['final_test_accuracy_mean']:.2f}%)")
        if len(s["seeds"]) > 1:
            ax.fill_between(xs, [100 * a for a in s["test_accuracy_per_epoch_min"]],
                            [100 * a for a in s["test_accuracy_per_epoch_max"]],
                            color=f"C{i % 10}", alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), full 10k test split")
    ax.set_title(title, fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(runs, key):
    summary = curves.summarize(runs, key=key)
    bp = (summary.get("bp") or {}).get("final_test_accuracy_mean")
    print(f"\n{key:28} {'test %':>7} {'min':>6} {'max':>6} {'vs bp':>6} {'s/epoch':>8}  per epoch")
    for name, s in summary.items():
        diff = 100 * (s["final_test_accuracy_mean"] - bp) if bp is not None else float("nan")
        print(f"{name:28} {100 * s['final_test_accuracy_mean']:7.2f} "
              f"{100 * s['final_test_accuracy_min']:6.2f} "
              f"{100 * s['final_test_accuracy_max']:6.2f} {diff:+6.2f} "
              f"{s['seconds_per_epoch_mean'] or 0:8.1f}  "
              + " ".join(f"{100 * a:.2f}" for a in s["test_accuracy_per_epoch_mean"]))


def _names_and_seeds():
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise app.UsageError(f"Expected integer seeds, received: --seeds={_SEEDS.value}") from None
    if not seeds or min(seeds) < 0:
        raise app.UsageError(f"Expected non-negative seeds, received: --seeds={_SEEDS.value}")
    try:
        family(_MODEL.value)
        if _SWEEP.value:
            if _MODEL.value != "mlp":
                raise ValueError(f"--sweep trains the MLP, received: --model={_MODEL.value}")
            return list(SWEEP), seeds[:1]
        return variants.check(_RULES.value, TRAINABLE), seeds
    except ValueError as err:
        raise app.UsageError(str(err)) from None


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # tfds' per-split INFO lines
    names, seeds = _names_and_seeds()
    from rlra_tf import data

    model = _MODEL.value
    name = "accuracy_mlp_sweep" if _SWEEP.value else f"accuracy_{model}"
    out = _OUT.value or harness.default_out(name)
    png = harness.png_path(out)
    first = run_config(names[0], seeds[0])
    description = FAMILIES[family(model)][1].format(model=model)
    if family(model) == "keras":
        description = (f"{keras_models.DESCRIPTIONS[model[6:]]}, converted by "
                       "rlra_tf.models.from_keras")
    runs = harness.read_json(out).get("runs", []) if _RESUME.value and os.path.exists(out) \
        else []
    key = "setting" if _SWEEP.value else "rule"
    title = (f"{description} on Fashion-MNIST: {first.train_limit or 58000} train examples, "
             f"{first.epochs} epochs, {first.optimizer} lr {first.learning_rate:g} "
             f"{first.schedule}, batch {first.batch_size}")
    evaluator = TestEvaluator(data.load("fashion_mnist", "test", 500, shuffle=False))
    result = {"benchmark": name, "preset": FAMILIES[family(model)][0], "model": description,
              "budget": budget(first, description), **harness.environment(), "runs": runs,
              "complete": False}
    start = time.time()
    workroot = tempfile.mkdtemp(prefix="accuracy_")
    try:
        for seed in seeds:
            for n in names:
                config = run_config(n, seed)
                if any(r["config"] == config.to_json() for r in runs):
                    print(f"{n} seed {seed}: already in {out}, skipped", flush=True)
                    continue
                runs[:] = [r for r in runs if (r.get(key), r["seed"]) != (n, seed)]
                print(f"{n} seed {seed}", flush=True)
                rule = config.rule if _SWEEP.value else n
                runs.append(run_one(rule, config, evaluator, workroot,
                                    setting=n if _SWEEP.value else None))
                harness.write_json(out, result)
        result["complete"] = True
        harness.write_json(out, result)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    plot(runs, key, png, title)
    print_table(runs, key)
    print(f"Wrote {out} and {png} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)
