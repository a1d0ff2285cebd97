"""`Config`, the one declaration of a training run's settings, and the named presets.

Every setting of a run is a field of `Config`, declared once with its default, its help, its
choices or range, and (where it matters) which models or optimisers use it. From that one
declaration `trainers/config_flags.py` makes a flag of every field (any field can be
overridden: `--epochs=2`), `trainers/config_checks.py` checks a config before a run, and
`--help` says what each flag does. The parameters of the learning rules are not declared
here at all: they are the `__init__` parameters of the rule classes in `rlra_tf.rules.RULES`
(`rule_parameters`), with their help taken from each rule's docstring, so a rule that gains a
parameter (in its own file: `__init__` and `get_config`) gains a `Config` field and a flag
without any change in `trainers/`.

A preset is a function returning a `Config`; its docstring says the command, the machine and
where its measured results are (BENCHMARKS.md). `fmnist_mlp` is also what the trainer runs
when no preset is named.
"""

import dataclasses
import inspect
import re
from typing import Any, Optional, Tuple

from rlra_tf import data, distribute, rules
from rlra_tf.models.resnet import STEMS
from trainers import builders

DEFAULT_PRESET = "fmnist_mlp"


@dataclasses.dataclass(frozen=True)
class When:
    """The settings a field applies under: `field` is one of `values` (or, with `negate`, none
    of them). A flag given for a field that does not apply is refused."""

    field: str
    values: Tuple[Any, ...]
    negate: bool = False

    def holds(self, config):
        return (getattr(config, self.field) in self.values) != self.negate

    def why_not(self, config):
        """Why the field does not apply to `config` (where `holds` is False)."""
        value = getattr(config, self.field)
        if self.negate:
            return f"it is not used with {self.field}={value!r}"
        shown = " or ".join(f"{self.field}={v!r}" for v in self.values)
        return f"it is used only with {shown} (received: {self.field}={value!r})"


def setting(default, help, *, choices=None, check=None, applies=None):
    """A `Config` field: its default, its help text, and what `config_checks.validate` checks.

    Args:
        choices: the values allowed (`None` is always allowed for a field that defaults to it).
        check: `("int", minimum)`, `("ints", minimum)` (a tuple of integers), or
            `("number", low, high, low_open, high_open)` (`high=None`: unbounded).
        applies: a `When`: the field is used only then.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "check": check, "applies": applies})


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The settings of a run that are not parameters of the rule (see `Config`)."""

    dataset: str = setting("fashion_mnist", "Dataset (rlra_tf.data).", choices=data.DATASETS)
    model: str = setting(
        "mlp", "mlp, a ResNet preset of rlra_tf.models.resnet, or keras (the saved Keras model "
        "of --keras_model, which sets it).", choices=builders.model_names())
    keras_model: Optional[str] = setting(
        None, "A Keras Sequential or functional classifier saved as .keras, converted by "
        "rlra_tf.models.from_keras and trained (docs/MODELS.md); sets --model=keras.",
        applies=When("model", (builders.KERAS_MODEL,)))
    hidden_units: Tuple[int, ...] = setting(
        (256, 256, 256), "MLP widths, e.g. 256,256,256.", check=("ints", 1),
        applies=When("model", ("mlp",)))
    activation: str = setting("tanh", "Hidden activation (tanh, relu, ...).",
                              applies=When("model", (builders.KERAS_MODEL,), negate=True))
    block_size: int = setting(
        1, "MLP units per block (matters with feedback='skip').", check=("int", 1),
        applies=When("model", ("mlp",)))
    stem: Optional[str] = setting(
        None, "ResNet stem (none: the ResNet preset's).", choices=STEMS,
        applies=When("model", ("mlp", builders.KERAS_MODEL), negate=True))
    width: Optional[int] = setting(
        None, "ResNet first-stage width (none: the ResNet preset's).", check=("int", 1),
        applies=When("model", ("mlp", builders.KERAS_MODEL), negate=True))
    normalize: bool = setting(
        False, "Standardise inputs with the dataset's mean and std (a Keras model keeps its "
        "own input preprocessing).", applies=When("model", (builders.KERAS_MODEL,), negate=True))
    num_classes: Optional[int] = setting(
        None, "Classes the model must have (checked against the dataset; none: the "
        "dataset's).", check=("int", 1))
    image_shape: Optional[Tuple[int, ...]] = setting(
        None, "Input shape the model must have, e.g. 28,28,1 (checked likewise).",
        check=("ints", 1))
    rule: str = setting("rec_lra", "Learning rule (rlra_tf.rules).", choices=rules.NAMES)
    label_smoothing: float = setting(
        0.0, "Label smoothing of the cross-entropy (and of the output error).",
        check=("number", 0.0, 1.0, False, True))
    optimizer: str = setting("adam", "Optimiser (sgd with --momentum).",
                             choices=builders.OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Peak learning rate.",
                                   check=("number", 0.0, None, True, True))
    momentum: float = setting(0.9, "SGD momentum.", check=("number", 0.0, 1.0, False, True),
                              applies=When("optimizer", ("sgd",)))
    weight_decay: float = setting(
        0.0, "Decoupled weight decay (biases and BatchNorm parameters are left alone).",
        check=("number", 0.0, None, False, True))
    schedule: str = setting(
        "constant", "Learning-rate decay after the warm-up (docs/ALGORITHM.md#schedule).",
        choices=builders.SCHEDULES)
    warmup_epochs: float = setting(0.0, "Epochs of linear warm-up.",
                                   check=("number", 0.0, None, False, True))
    step_epochs: Tuple[int, ...] = setting(
        (), "Step schedule: epochs at which the rate drops, e.g. 80,120.", check=("ints", 1),
        applies=When("schedule", ("step",)))
    step_factor: float = setting(
        0.1, "Step schedule: the rate's multiplier at each drop.",
        check=("number", 0.0, None, True, True), applies=When("schedule", ("step",)))
    epochs: int = setting(10, "Training epochs (raising it extends a finished run).",
                          check=("int", 1))
    batch_size: int = setting(50, "Global batch size (all replicas together).",
                              check=("int", 1))
    augment: bool = setting(False, "Random augmentation of the training images.")
    seed: int = setting(0, "Seed of initialisation, data order, augmentation and noise.",
                        check=("int", 0))
    deterministic: bool = setting(False, "Reproducible to the bit (slower).")
    strategy: str = setting("auto", "tf.distribute strategy.", choices=distribute.STRATEGIES)
    tpu_address: Optional[str] = setting(
        None, "TPU name, grpc:// address or local.", applies=When("strategy", ("tpu",)))
    jit_compile: str = setting("auto", "XLA: auto (on for GPU/TPU, off on CPU), on or off.",
                               choices=tuple(builders.JIT_COMPILE))
    mixed_precision: str = setting(
        "off", "Keras mixed precision: off (float32), bfloat16, float16, or auto (bfloat16 on "
        "a TPU, float16 on a GPU, off on a CPU). Variables, errors and updates stay float32.",
        choices=tuple(builders.MIXED_PRECISION))
    diagnostics_every: int = setting(0, "Steps between alignment probes (0: none).",
                                     check=("int", 0))
    data_dir: Optional[str] = setting(None, "tfds data directory (none: $TFDS_DATA_DIR).")
    manual_dir: Optional[str] = setting(None, "Folder with the raw dataset files.")
    train_limit: Optional[int] = setting(
        None, "Use only the first N training examples (none: all).", check=("int", 1))
    eval_limit: Optional[int] = setting(
        None, "Use only the first N validation and test examples (none: all).",
        check=("int", 1))
    backup_every: int = setting(
        500, "Steps between fault-tolerance backups (also at every epoch's end; 0: only "
        "there).", check=("int", 0))
    steps_per_execution: int = setting(1, "Training steps per call into the compiled step.",
                                       check=("int", 1))

    def rule_params(self):
        """The rule parameters that are set (not `None`)."""
        return {k: getattr(self, k) for k in RULE_PARAMS if getattr(self, k) is not None}

    def to_json(self):
        """A JSON-ready dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


# ---------------------------------------------------------------------------------------------
# The rule parameters, from the rule classes.


@dataclasses.dataclass(frozen=True)
class RuleParameter:
    """A parameter of one or more rules of `rlra_tf.rules.RULES`.

    Attributes:
        name: the `__init__` argument (and `get_config` key).
        rules: the names of the rules that take it.
        default: its value in the first of those rules when built with no arguments (what
            the rule resolves its `None` default to, where it does).
        help: the first line group of its entry in the `Args:` of a rule's docstring.
    """

    name: str
    rules: Tuple[str, ...]
    default: Any
    help: str


def _docstring_args(cls):
    """`{name: help}` from the `Args:` section of `cls`'s docstring (Google style); an entry
    naming several parameters (`a, b: ...`) goes to each of them, after single entries."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Args:\s*\n(.*?)(?:\n\S|\Z)", doc, re.S | re.M)
    if not match:
        return {}
    single, shared = {}, {}
    entry = None
    for line in match.group(1).splitlines():
        head = re.match(r"^ {4}([A-Za-z_][\w, ]*):\s*(.*)$", line)
        if head:
            names = [n.strip() for n in head.group(1).split(",")]
            entry = [names, head.group(2).strip()]
            (single if len(names) == 1 else shared).setdefault(tuple(names), entry)
        elif entry is not None and line.strip():
            entry[1] += " " + line.strip()
    out = {}
    for table in (single, shared):
        for names, (_, text) in table.items():
            for n in names:
                out.setdefault(n, text)
    return out


def rule_parameters():
    """`{name: RuleParameter}` of every `__init__` parameter of every rule, in rule order."""
    found = {}
    helps = {}
    for name, cls in rules.RULES.items():
        parameters = [
            p for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if not parameters:
            continue
        try:
            resolved = cls().get_config()
        except (TypeError, ValueError):
            resolved = {}
        docs = _docstring_args(cls)
        for p in parameters:
            entry = found.setdefault(p.name, {"rules": [], "default": None})
            entry["rules"].append(name)
            if entry["default"] is None:
                default = resolved.get(p.name, p.default)
                entry["default"] = None if default is inspect.Parameter.empty else default
            if p.name not in helps and docs.get(p.name):
                helps[p.name] = docs[p.name]
    return {
        n: RuleParameter(n, tuple(e["rules"]), e["default"],
                         helps.get(n, f"a parameter of {', '.join(e['rules'])}"))
        for n, e in found.items()
    }


RULE_PARAMETERS = rule_parameters()
RULE_PARAMS = tuple(RULE_PARAMETERS)


Config = dataclasses.make_dataclass(
    "Config",
    [(p.name, Optional[Any], dataclasses.field(default=None, metadata={
        "help": p.help, "choices": None, "check": None,
        "applies": When("rule", p.rules), "rule_parameter": p}))
     for p in RULE_PARAMETERS.values()],
    bases=(_Settings,),
    frozen=True,
    namespace={"__module__": __name__},
)
Config.__doc__ = """Everything a training run depends on (the trainer writes it to `config.json`).

The fields of `_Settings` (dataset, model, optimiser, schedule, ...; each declared with its
help, choices and range in this module), plus one field per parameter of the learning rules
(`RULE_PARAMS`: `beta`, `mirror_rate`, ...), generated from `rlra_tf.rules.RULES`: `None`
keeps the rule's default, and a rule refuses a parameter it does not take. `python -m
trainers.train --help` lists them all with their help.
"""

FIELDS = tuple(f.name for f in dataclasses.fields(Config))
_TUPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Config)
                      if (f.metadata.get("check") or ("",))[0] == "ints")


def field_info(name):
    """The `dataclasses.Field` of `Config` named `name`."""
    return {f.name: f for f in dataclasses.fields(Config)}[name]


def not_applying(config, names):
    """`{name: reason}` for the fields of `names` that `config` does not use (an MLP width for
    a ResNet, `beta` for `fa`, `momentum` for Adam, ...)."""
    out = {}
    for name in names:
        applies = field_info(name).metadata.get("applies")
        if applies is not None and not applies.holds(config):
            if applies.field == "rule":
                takes = [p for p, r in RULE_PARAMETERS.items()
                         if config.rule in r.rules]
                out[name] = (f"rule {config.rule!r} takes "
                             f"{', '.join(takes) if takes else 'no parameters'}")
            else:
                out[name] = applies.why_not(config)
    return out


def from_json(values):
    """A `Config` from `Config.to_json()` output (fields it lacks take their defaults);
    unknown keys are a `ValueError`."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}; expected fields of {list(FIELDS)}")
    values = {
        k: tuple(v) if k in _TUPLE_FIELDS and v is not None else v for k, v in values.items()
    }
    return Config(**values)


def override(config, **changes):
    """`config` with `changes` applied.

    Changing the rule to another one drops the preset's rule parameters that `changes` does
    not set again (a `beta` tuned for `rec_lra` means nothing to `bp`).
    """
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}; expected fields of {list(FIELDS)}")
    if changes.get("keras_model") and "model" not in changes:
        changes["model"] = builders.KERAS_MODEL  # --keras_model=PATH says which model
    if "rule" in changes and changes["rule"] != config.rule:
        for k in RULE_PARAMS:
            changes.setdefault(k, None)
    changes = {
        k: tuple(v) if k in _TUPLE_FIELDS and v is not None else v for k, v in changes.items()
    }
    return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------------------------------
# The presets. Each is a function so that its docstring documents it.


def fmnist_mlp():
    """rec-LRA MLP 784-256-256-256-10 (tanh) on Fashion-MNIST: the trainer's defaults.

    Command: `python -m trainers.train --preset=fmnist_mlp --workdir=runs/fmnist_mlp`
    (or `make demo`).
    Machine: 2 CPU cores (no GPU); 10 epochs take a few minutes.
    Results: BENCHMARKS.md, "Accuracy", MLP 784-256-256-256-10 on Fashion-MNIST
    (BENCHMARKS.md#mlp-784-256-256-256-10-tanh-on-fashion-mnist), which also shows the settings
    this preset was chosen from. `block_size=3` matters only with `feedback="skip"` (with the
    default adjacent feedback every unit passes targets on).
    """
    return Config(
        dataset="fashion_mnist",
        model="mlp",
        hidden_units=(256, 256, 256),
        activation="tanh",
        block_size=3,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="adam",
        learning_rate=1e-3,
        schedule="cosine",
        batch_size=50,
        epochs=10,
    )


def fmnist_resnet20():
    """rec-LRA ResNet-20 (CIFAR stem, 16/32/64 channels) on Fashion-MNIST, with augmentation.

    Command: `python -m trainers.train --preset=fmnist_resnet20 --workdir=runs/fmnist_resnet20`
    Machine: one GPU for the 30 epochs (on 2 CPU cores an epoch of 58,000 images takes
    minutes).
    Results: not run at 30 epochs here. The recipe (SGD, cosine, warm-up, weight decay,
    augmentation) for 5 epochs on the full split, and at a reduced budget, is in
    BENCHMARKS.md, "Scaling" (BENCHMARKS.md#the-presets-recipe-on-the-full-training-split)
    and "Accuracy" (BENCHMARKS.md#resnet-20-with-the-presets-sgd-recipe); its step cost in
    "Speed" (BENCHMARKS.md#speed-what-does-a-rec-lra-step-cost).
    The rule is the library's default rec-LRA (tracked synapses, the mirror every 4 steps).
    Mixed precision: `auto` (float16 on a GPU, bfloat16 on a TPU, off on a CPU).
    """
    return Config(
        dataset="fashion_mnist",
        model="resnet20",
        activation="relu",
        normalize=True,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="sgd",
        learning_rate=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1,
        epochs=30,
        batch_size=128,
        augment=True,
        mixed_precision="auto",
        backup_every=500,
    )


def cifar10_resnet18():
    """rec-LRA ResNet-18 on CIFAR-10 (CIFAR stem), SGD + cosine, standard augmentation.

    Command: `python -m trainers.train --preset=cifar10_resnet18 --workdir=runs/c10_r18`
    (several GPUs: add `--strategy=mirrored`; the batch is global).
    Machine: one GPU (tfds must have prepared cifar10 once, which needs network).
    Results: not run here (BENCHMARKS.md#not-measured-here-cifar-10-and-imagenet lists the
    published figures to compare with).
    Mixed precision: `auto` (float16 on a GPU, bfloat16 on a TPU, off on a CPU).
    """
    return Config(
        dataset="cifar10",
        model="resnet18",
        stem="cifar",
        activation="relu",
        normalize=True,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1,
        epochs=200,
        batch_size=128,
        augment=True,
        mixed_precision="auto",
        backup_every=1000,
    )


def cifar10_resnet20():
    """rec-LRA ResNet-20 on CIFAR-10 (the BioTorch benchmark network), SGD + step decay.

    Command: `python -m trainers.train --preset=cifar10_resnet20 --workdir=runs/c10_r20`
    Machine: one GPU.
    Results: not run here (BENCHMARKS.md#not-measured-here-cifar-10-and-imagenet lists the
    published figures to compare with).
    Mixed precision: `auto` (float16 on a GPU, bfloat16 on a TPU, off on a CPU).
    """
    return Config(
        dataset="cifar10",
        model="resnet20",
        activation="relu",
        normalize=True,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        step_epochs=(80, 120),
        step_factor=0.1,
        warmup_epochs=1,
        epochs=160,
        batch_size=128,
        augment=True,
        mixed_precision="auto",
        backup_every=1000,
    )


def imagenet_resnet18():
    """rec-LRA ResNet-18 on ImageNet (ILSVRC-2012), SGD + cosine, 90 epochs.

    Command: `python -m trainers.train --preset=imagenet_resnet18 --workdir=gs://.../r18
    --data_dir=... --manual_dir=DIR_WITH_THE_TWO_TARS --strategy=tpu --tpu_address=local`
    (or `--strategy=mirrored` on a multi-GPU machine).
    Machine: a TPU v3-8 / v4-8 VM or 8 GPUs (tfds prepares ImageNet first: hours).
    Results: not run here (BENCHMARKS.md#not-measured-here-cifar-10-and-imagenet).
    Mixed precision: `auto` (float16 on a GPU, bfloat16 on a TPU, off on a CPU).
    """
    return Config(
        dataset="imagenet2012",
        model="resnet18",
        activation="relu",
        normalize=True,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        label_smoothing=0.1,
        optimizer="sgd",
        learning_rate=0.4,
        momentum=0.9,
        weight_decay=5e-5,
        schedule="cosine",
        warmup_epochs=5,
        epochs=90,
        batch_size=1024,
        augment=True,
        mixed_precision="auto",
        backup_every=1000,
    )


def imagenet_resnet50():
    """rec-LRA ResNet-50 on ImageNet (ILSVRC-2012), SGD + cosine, 90 epochs.

    Command: `python -m trainers.train --preset=imagenet_resnet50 --workdir=gs://.../r50
    --data_dir=... --manual_dir=DIR_WITH_THE_TWO_TARS --strategy=tpu --tpu_address=local`
    Machine: a TPU v3-8 / v4-8 VM or 8 GPUs.
    Results: not run here (BENCHMARKS.md#not-measured-here-cifar-10-and-imagenet).
    The recipe is `imagenet_resnet18`'s with the deeper network.
    """
    return override(imagenet_resnet18(), model="resnet50")


def tiny_mlp():
    """A 784-8-8-10 rec-LRA MLP on 64 Fashion-MNIST examples, 2 epochs: for tests.

    Command: `python -m trainers.train --preset=tiny_mlp --workdir=/tmp/tiny_mlp`
    Machine: any CPU; seconds (after tfds has prepared Fashion-MNIST once).
    Results: none to expect (64 examples); it checks the plumbing.
    """
    return Config(
        dataset="fashion_mnist",
        model="mlp",
        hidden_units=(8, 8),
        activation="tanh",
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="adam",
        learning_rate=1e-3,
        epochs=2,
        batch_size=8,
        train_limit=64,
        eval_limit=32,
        deterministic=True,
        backup_every=4,
    )


def tiny_resnet():
    """The 2-block, 4/8-channel `resnet_tiny` on 32 Fashion-MNIST examples, 1 epoch: for tests.

    Command: `python -m trainers.train --preset=tiny_resnet --workdir=/tmp/tiny_resnet`
    Machine: any CPU; seconds. Results: none to expect.
    """
    return Config(
        dataset="fashion_mnist",
        model="resnet_tiny",
        activation="relu",
        normalize=True,
        rule="rec_lra",
        beta=0.1,
        gamma=1.0,
        optimizer="sgd",
        learning_rate=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.5,
        epochs=1,
        batch_size=8,
        augment=True,
        train_limit=32,
        eval_limit=16,
        deterministic=True,
        backup_every=2,
    )


PRESETS = {
    fn.__name__: fn
    for fn in (
        fmnist_mlp,
        fmnist_resnet20,
        cifar10_resnet18,
        cifar10_resnet20,
        imagenet_resnet18,
        imagenet_resnet50,
        tiny_mlp,
        tiny_resnet,
    )
}


def get(name):
    """The `Config` of preset `name`.

    Raises:
        ValueError: for an unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset, received: preset={name!r}. Expected one of {list(PRESETS)}"
        )
    return PRESETS[name]()


def describe(name):
    """The docstring of preset `name` (command, machine, where its results are)."""
    get(name)
    return PRESETS[name].__doc__
