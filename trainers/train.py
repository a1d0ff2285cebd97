r"""Train an rlra_tf model: `python -m trainers.train --preset=fmnist_mlp --workdir=runs/x`.

`--preset` (default `fmnist_mlp`) gives every setting; any other flag overrides one. Rerunning
the same command resumes an interrupted run (also after SIGKILL); a workdir holding a run
with other settings is refused unless `--overwrite`, and so is a workdir another trainer is
running in (`WORKDIR/lock.json` names it; a lock whose process is gone is taken over).

SIGTERM (what preemptible and spot machines send before they stop) and SIGINT (Ctrl-C) stop the
run cleanly: the step in progress finishes, a backup of it is written, and the same command
resumes at exactly that step. A second signal while the backup is written is ignored. Under
`--strategy=multi_worker` every worker saves at the same step, whichever one got the signal.

Exit status:
  0    finished (metrics.json written), or the workdir already held the finished run
  2    bad input: flags, data, a workdir holding another run or used by another trainer, or
       no readable backup to resume from (--overwrite starts again); a message says which
  3    the run diverged (non-finite loss); the last good checkpoint and backup are kept
  143  stopped by SIGTERM, 130 stopped by SIGINT (128 + the signal): the backup of the last
       step is written; rerun the same command to resume

Examples:
  python -m trainers.train                                   # fmnist_mlp into runs/fmnist_mlp
  python -m trainers.train --preset=fmnist_mlp --rule=bp --workdir=runs/bp
  python -m trainers.train --preset=cifar10_resnet18 --strategy=mirrored --batch_size=512
  python -m trainers.train --list_presets
"""

import sys

from absl import app, flags, logging

from trainers import presets

_PRESET = flags.DEFINE_string(
    "preset", presets.DEFAULT_PRESET, f"Named configuration: {', '.join(presets.PRESETS)}."
)
_LIST_PRESETS = flags.DEFINE_bool("list_presets", False, "Print the presets and exit.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<preset>).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete a run of another config in --workdir instead of refusing."
)

# Every flag below defaults to None: unset, the preset's value is used.
_DATASET = flags.DEFINE_string(
    "dataset", None, "mnist, fashion_mnist, cifar10, cifar100 or imagenet2012."
)
_MODEL = flags.DEFINE_string("model", None, "mlp or a ResNet: resnet20, resnet18, resnet50, ...")
_HIDDEN_UNITS = flags.DEFINE_list("hidden_units", None, "MLP widths, e.g. 256,256,256.")
_ACTIVATION = flags.DEFINE_string("activation", None, "Hidden activation (tanh, relu, ...).")
_BLOCK_SIZE = flags.DEFINE_integer("block_size", None, "MLP units per rec-LRA block.")
_STEM = flags.DEFINE_string("stem", None, "ResNet stem: cifar or imagenet.")
_WIDTH = flags.DEFINE_integer("width", None, "ResNet first-stage width.")
_NORMALIZE = flags.DEFINE_bool("normalize", None, "Standardise inputs (dataset mean/std).")
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", None, "Classes the model must have (checked against the dataset)."
)
_IMAGE_SHAPE = flags.DEFINE_list(
    "image_shape", None, "Input shape the model must have, e.g. 28,28,1 (checked likewise)."
)
_RULE = flags.DEFINE_string("rule", None, "rec_lra, lra, fa, wm, dfa or bp.")
_BETA = flags.DEFINE_float("beta", None, "LRA target displacement.")
_GAMMA = flags.DEFINE_float("gamma", None, "LRA error-synapse update scale.")
_FEEDBACK = flags.DEFINE_string("feedback", None, "LRA block feedback: adjacent or skip.")
_ALPHA = flags.DEFINE_float("alpha", None, "LRA error unit mix of z - t and its sign (1: z - t).")
_CLIP_NORM = flags.DEFINE_float("clip_norm", None, "Per-tensor update norm clipping.")
_SKIP_UPDATE = flags.DEFINE_string("skip_update", None, "Skip synapses: fixed or hebbian.")
_INPUT_NOISE = flags.DEFINE_float("input_noise", None, "Std of Gaussian input noise in training.")
_ERROR_SCALE = flags.DEFINE_string(
    "error_scale", None, "LRA error units: beta ((z - t) / beta) or raw (z - t)."
)
_NORM_FEEDBACK = flags.DEFINE_string(
    "norm_feedback", None, "Errors leave a unit through its BatchNorm: through or skip."
)
_SYNAPSE_UPDATE = flags.DEFINE_string(
    "synapse_update", None, "Error synapses F: mirror, lra (dF = gamma dW) or fixed."
)
_MIRROR_RATE = flags.DEFINE_float("mirror_rate", None, "Mirror: F <- (1 - rate) F + rate C.")
_MIRROR_BATCH = flags.DEFINE_integer(
    "mirror_batch", None, "Mirror noise examples per estimate (default: 256 dense, 8 conv)."
)
_MIRROR_EVERY = flags.DEFINE_integer("mirror_every", None, "Run the mirror every N steps.")
_MIRROR_NORMALISE = flags.DEFINE_string(
    "mirror_normalise", None,
    "Mirror conv estimate divided by output positions (positions) or by the positions each "
    "kernel tap saw (taps).",
)
_MIRROR_WARM_START = flags.DEFINE_bool(
    "mirror_warm_start", None, "Mirror: running mean of the first 1/mirror_rate estimates."
)
_LABEL_SMOOTHING = flags.DEFINE_float("label_smoothing", None, "Label smoothing.")
_OPTIMIZER = flags.DEFINE_string("optimizer", None, "sgd (with --momentum), adam or adamw.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", None, "SGD momentum.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", None, "Decoupled weight decay.")
_SCHEDULE = flags.DEFINE_string("schedule", None, "constant, cosine or step.")
_WARMUP_EPOCHS = flags.DEFINE_float("warmup_epochs", None, "Epochs of linear warm-up.")
_STEP_EPOCHS = flags.DEFINE_list("step_epochs", None, "Step schedule: epochs where lr drops.")
_STEP_FACTOR = flags.DEFINE_float("step_factor", None, "Step schedule: lr multiplier per drop.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Training epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size (all replicas).")
_AUGMENT = flags.DEFINE_bool("augment", None, "Random augmentation of training images.")
_SEED = flags.DEFINE_integer("seed", None, "Seed of initialisation, data order, augmentation.")
_DETERMINISTIC = flags.DEFINE_bool("deterministic", None, "Bit-reproducible run (slower).")
_STRATEGY = flags.DEFINE_string("strategy", None, "auto, one_device, mirrored, multi_worker, tpu.")
_TPU_ADDRESS = flags.DEFINE_string("tpu_address", None, "TPU name, grpc:// address or local.")
_JIT_COMPILE = flags.DEFINE_string("jit_compile", None, "XLA: auto (on for GPU/TPU), on, off.")
_MIXED_PRECISION = flags.DEFINE_string(
    "mixed_precision", None,
    "Keras mixed precision: off, bfloat16, float16 or auto (bfloat16 on TPU, float16 on GPU, "
    "off on CPU).",
)
_DIAGNOSTICS_EVERY = flags.DEFINE_integer(
    "diagnostics_every", None, "Steps between alignment probes (0: off)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with raw dataset files.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", None, "Use only the first N training examples.")
_EVAL_LIMIT = flags.DEFINE_integer(
    "eval_limit", None, "Use only the first N validation and test examples."
)
_BACKUP_EVERY = flags.DEFINE_integer("backup_every", None, "Steps between fault-tolerance backups.")
_STEPS_PER_EXECUTION = flags.DEFINE_integer("steps_per_execution", None, "Steps per compiled call.")

_INT_LISTS = ("hidden_units", "image_shape", "step_epochs")


def resolve_config():
    """The preset named by `--preset` with every flag that was given applied."""
    from trainers import train_lib

    try:
        config = presets.get(_PRESET.value)
    except ValueError as err:
        raise train_lib.TrainerError(str(err)) from None
    changes = {}
    for name in presets.FIELDS:
        holder = flags.FLAGS[name] if name in flags.FLAGS else None
        if holder is None or holder.value is None:
            continue
        value = holder.value
        if name in _INT_LISTS:
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise train_lib.TrainerError(
                    f"Expected comma-separated integers for --{name}, received: {','.join(value)}"
                ) from None
        changes[name] = value
    return presets.override(config, **changes)


def main(argv):
    from trainers import train_lib

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # tfds logs every pipeline it builds at INFO
    if _LIST_PRESETS.value:
        for name in presets.PRESETS:
            print(f"{name}:\n  {presets.describe(name).strip()}\n")
        return
    try:
        config = resolve_config()
        workdir = _WORKDIR.value or f"runs/{_PRESET.value}"
        metrics = train_lib.train_and_evaluate(config, workdir, overwrite=_OVERWRITE.value)
    except train_lib.TrainerError as err:
        print(f"rlra-train: {err.kind}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(f"test_accuracy={metrics['test_accuracy']:.4f} test_loss={metrics['test_loss']:.4f} "
          f"({workdir}/metrics.json)")


def run():
    """Console-script entry point (`rlra-train`)."""
    app.run(main)


if __name__ == "__main__":
    run()
