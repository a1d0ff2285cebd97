"""ResNets made of aligned units: the ImageNet family (18/34/50) and the CIFAR family (20/32/56).

Each residual block is one rec-LRA block; the stem and the head are blocks of their own. By
default (`feedback="adjacent"`) targets pass down unit by unit through the error synapses `F`:
a block's output unit gets its displacement from the block above, through that block's first
unit's synapse and its shortcut (docs/ALGORITHM.md#displacements); with `feedback="skip"` it
takes it from the output error through its skip synapse instead.

Forward parameter counts match the standard networks (torchvision's ResNet-18/34/50 with conv
layers without bias; He et al.'s CIFAR ResNets with 1x1 projection shortcuts where the shape
changes, "option B"). The error synapses are extra, non-trainable weights, counted apart by
`parameter_counts`.
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from rlra_tf.checks import check_positive_int
from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.residual_blocks import PooledHead, ResidualBlock, ResNetStem

STEMS = ("cifar", "imagenet")


@dataclasses.dataclass(frozen=True)
class ResNetPreset:
    """An architecture: blocks per stage, block kind, first-stage width and default stem."""

    stage_blocks: Tuple[int, ...]
    kind: str
    width: int
    stem: str
    expansion: int = 4


PRESETS = {
    # ImageNet family (He et al. 2016, torchvision): 4 stages of 64/128/256/512 channels.
    "resnet18": ResNetPreset((2, 2, 2, 2), "basic", 64, "imagenet"),
    "resnet34": ResNetPreset((3, 4, 6, 3), "basic", 64, "imagenet"),
    "resnet50": ResNetPreset((3, 4, 6, 3), "bottleneck", 64, "imagenet"),
    # CIFAR family (He et al. 2016 section 4.2; the BioTorch benchmark nets): 3 stages of
    # 16/32/64 channels, depth 6n + 2.
    "resnet20": ResNetPreset((3, 3, 3), "basic", 16, "cifar"),
    "resnet32": ResNetPreset((5, 5, 5), "basic", 16, "cifar"),
    "resnet56": ResNetPreset((9, 9, 9), "basic", 16, "cifar"),
    # For tests: 2 stages of one basic block each, 4/8 channels (the first block has an
    # identity shortcut, the second a strided projection).
    "resnet_tiny": ResNetPreset((1, 1), "basic", 4, "cifar"),
}
IMAGENET_DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50"}


def preset_from_depth(depth):
    """A preset for a depth: 18/34/50 (ImageNet family) or 6n + 2 (CIFAR family)."""
    check_positive_int("depth", depth)
    if depth in IMAGENET_DEPTHS:
        return PRESETS[IMAGENET_DEPTHS[depth]]
    if depth >= 8 and (depth - 2) % 6 == 0:
        n = (depth - 2) // 6
        return ResNetPreset((n, n, n), "basic", 16, "cifar")
    raise ValueError(
        f"Expected a depth of 18, 34, 50 or 6n + 2 (CIFAR ResNets: 8, 14, 20, 32, 44, 56, ...), "
        f"received: depth={depth!r}"
    )


def resnet(
    preset="resnet20",
    input_shape=(32, 32, 3),
    num_classes=10,
    stem=None,
    width=None,
    norm="batch",
    activation="relu",
    spatial_feedback="mean",
    kernel_initializer=None,
    feedback_initializer=None,
    skip_initializer=None,
    name=None,
    **model_kwargs,
):
    """A built ResNet `AlignedModel` (call returns logits).

    Args:
        preset: a name in `PRESETS` (`"resnet18"`, `"resnet34"`, `"resnet50"`, `"resnet20"`,
            `"resnet32"`, `"resnet56"`, `"resnet_tiny"`) or a depth (18, 34, 50 or 6n + 2).
        input_shape: shape of one example, `(height, width, channels)`.
        num_classes: number of classes.
        stem: `"cifar"` (3x3/1 conv + BN + activation) or `"imagenet"` (7x7/2 conv + BN +
            activation + 3x3/2 max-pool); `None`: the preset's (ImageNet family: imagenet).
        width: channels of the stem and first stage (stages double it); `None`: the preset's.
        norm: `"batch"` (BatchNorm in every unit), `"sync_batch"` (BatchNorm with statistics
            all-reduced across replicas) or `None` (conv biases instead).
        activation: hidden activation.
        spatial_feedback: how the head's feedback reaches the pooled feature map
            (`PooledHead`): `"mean"` or `"broadcast"`.
        kernel_initializer, feedback_initializer, skip_initializer: initialisers of the conv
            units (`None`: their defaults).
        name: model name (default: the preset's name).
        **model_kwargs: passed to `AlignedModel` (`input_mean`, `input_std`, `noise_seed`).

    Every hidden unit carries a channel-wise skip synapse (`[num_classes, channels]`), so the
    same model trains with `RecLRA(feedback="skip")` (block outputs use theirs) and `dfa`
    (all units); the default `rec_lra` does not use them.
    Blocks change shape through 1x1 projection shortcuts (with BatchNorm), owned by the
    block's output unit.

    Example:
        >>> model = resnet("resnet20", input_shape=(28, 28, 1), num_classes=10)
        >>> model.compile(optimizer="adam", rule="rec_lra", metrics=["accuracy"])
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(
                f"Unknown ResNet preset {preset!r}; expected one of {sorted(PRESETS)} or a "
                f"depth, received: preset={preset!r}"
            )
        spec, default_name = PRESETS[preset], preset
    else:
        spec, default_name = preset_from_depth(preset), f"resnet{preset}"
    num_classes = check_positive_int("num_classes", num_classes)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"Expected input_shape=(height, width, channels), received: input_shape={input_shape}"
        )
    stem = stem or spec.stem
    if stem not in STEMS:
        raise ValueError(f"Expected stem to be one of {STEMS}, received: stem={stem!r}")
    width = check_positive_int("width", spec.width if width is None else width)
    inits = dict(
        kernel_initializer=kernel_initializer,
        feedback_initializer=feedback_initializer,
        skip_initializer=skip_initializer,
    )
    unit_args = dict(norm=norm, activation=activation, skip_classes=num_classes, **inits)
    if stem == "imagenet":
        blocks = [ResNetStem(width, kernel_size=7, strides=2, pool_size=3, pool_strides=2,
                             name="stem", **unit_args)]
    else:
        blocks = [ResNetStem(width, kernel_size=3, strides=1, name="stem", **unit_args)]
    channels = width
    for s, n_blocks in enumerate(spec.stage_blocks):
        filters = width * 2**s
        out_channels = filters * (spec.expansion if spec.kind == "bottleneck" else 1)
        for i in range(n_blocks):
            strides = 2 if (s > 0 and i == 0) else 1
            shortcut = "projection" if (strides != 1 or channels != out_channels) else "identity"
            blocks.append(
                ResidualBlock(
                    filters, kind=spec.kind, strides=strides, shortcut=shortcut,
                    expansion=spec.expansion, name=f"stage{s + 1}_block{i + 1}", **unit_args,
                )
            )
            channels = out_channels
    blocks.append(
        PooledHead(
            num_classes, spatial_feedback=spatial_feedback,
            feedback_initializer=feedback_initializer, name="head",
        )
    )
    model = AlignedModel(blocks, num_classes=num_classes, name=name or default_name,
                         **model_kwargs)
    model.build((None,) + input_shape)
    return model


def parameter_counts(model):
    """Parameter counts of an `AlignedModel`, split the way papers report them.

    Returns a dict: `forward` (trainable forward weights: what torchvision's
    `sum(p.numel())` counts), `statistics` (BatchNorm moving mean/variance: buffers, not
    parameters), `feedback` (error synapses `F`, projection feedback and skip synapses `S`)
    and `total`.
    """
    feedback_ids = {id(w) for w in model.feedback_weights}
    trainable_ids = {id(w) for w in model.trainable_weights}
    counts = {"forward": 0, "statistics": 0, "feedback": 0}
    for w in model.weights:
        n = int(tf.size(w))
        if id(w) in feedback_ids:
            counts["feedback"] += n
        elif id(w) in trainable_ids:
            counts["forward"] += n
        else:
            counts["statistics"] += n
    counts["total"] = sum(counts.values())
    return counts


def parameter_summary(model, print_fn: Optional[callable] = print):
    """A `model.summary()`-style table of forward and feedback parameters per block.

    Returns the text (and prints it with `print_fn` unless that is `None`).
    """
    feedback_ids = {id(w) for w in model.feedback_weights}
    trainable_ids = {id(w) for w in model.trainable_weights}
    rows = []
    for block in model.blocks:
        fwd = sum(int(tf.size(w)) for w in block.weights if id(w) in trainable_ids)
        fb = sum(int(tf.size(w)) for w in block.weights if id(w) in feedback_ids)
        rows.append((block.name, type(block).__name__, fwd, fb))
    counts = parameter_counts(model)
    lines = [f"Model: {model.name}", f"{'block':<18}{'type':<16}{'forward':>14}{'feedback':>14}"]
    lines += [f"{n:<18}{t:<16}{f:>14,}{b:>14,}" for n, t, f, b in rows]
    lines += [
        f"Forward (trainable) parameters: {counts['forward']:,}",
        f"BatchNorm moving statistics:    {counts['statistics']:,}",
        f"Feedback (error synapse) weights: {counts['feedback']:,}",
        f"Total: {counts['total']:,}",
    ]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
