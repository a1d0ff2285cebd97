"""The blocks of a ResNet: stem, residual blocks (basic and bottleneck) and the pooled head.

Each is a `UnitStack` or `ResidualStack` (`blocks.py`) whose units and transitions it builds
from a few architectural arguments, so it saves and reloads by those arguments.
"""

import keras

from rlra_tf.checks import check_choice, check_positive_int
from rlra_tf.layers import AlignedDense, GlobalPooling2D, Pooling2D
from rlra_tf.layers.aligned_conv2d import AlignedConv2D
from rlra_tf.models.blocks import AlignedBlock, ResidualStack, UnitStack

KINDS = ("basic", "bottleneck")
SHORTCUTS = ("identity", "projection")
SPATIAL_FEEDBACK = ("mean", "broadcast")


def _initializer_config(value):
    """An initialiser argument as a config (kept for `get_config`); `None` stays `None`."""
    return None if value is None else keras.initializers.serialize(keras.initializers.get(value))


def _initializer(config):
    """A fresh initialiser from a config (one per unit, so seeded ones differ); or `None`."""
    return None if config is None else keras.initializers.get(config)


class _Built:
    """Config handling of the blocks that build their own layers: `get_config` gives the
    architectural arguments (`_arguments`), never the layer list."""

    _arguments = ()
    _builds_own_layers = True

    def get_config(self):
        config = AlignedBlock.get_config(self)
        config.update({name: getattr(self, name) for name in self._arguments})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _unit_kwargs(block, **extra):
    return dict(
        norm=block.norm, activation=block.activation, skip_classes=block.skip_classes,
        kernel_initializer=_initializer(block.kernel_initializer),
        feedback_initializer=_initializer(block.feedback_initializer),
        skip_initializer=_initializer(block.skip_initializer),
        dtype=block.dtype_policy, **extra,
    )


def _set_common(block, norm, activation, skip_classes, kernel_initializer, feedback_initializer,
                skip_initializer):
    block.norm = norm
    block.activation = activation
    block.skip_classes = skip_classes
    block.kernel_initializer = _initializer_config(kernel_initializer)
    block.feedback_initializer = _initializer_config(feedback_initializer)
    block.skip_initializer = _initializer_config(skip_initializer)


_COMMON = ("norm", "activation", "skip_classes", "kernel_initializer", "feedback_initializer",
           "skip_initializer")


@keras.saving.register_keras_serializable(package="rlra_tf")
class ResidualBlock(_Built, ResidualStack):
    """A residual block of `AlignedConv2D` units: basic (gap 2) or bottleneck (gap 3).

    Basic: 3x3 (strides) -> 3x3, `filters` channels. Bottleneck (torchvision's "v1.5"):
    1x1 -> 3x3 (strides) -> 1x1 with `filters * expansion` output channels. Every conv has
    BatchNorm (with `norm="batch"`) and the activation; the output unit adds the shortcut
    before its activation: the block input (`"identity"`) or its projection (`"projection"`, a
    1x1 conv with the block's strides plus BatchNorm, owned by the output unit and so updated
    from that unit's error). A `ResidualStack` of those units.

    Every unit gets a skip synapse when `skip_classes` is set: `rec_lra` with `feedback="skip"`
    uses the output unit's, `dfa` every unit's.

    Args:
        filters: channels of the 3x3 convolutions (bottleneck: of the inner units).
        kind: `"basic"` or `"bottleneck"`.
        strides: strides of the block (on the first 3x3 conv and on the projection).
        shortcut: `"identity"` or `"projection"`.
        expansion: bottleneck output channels are `filters * expansion`.
        norm: `"batch"`, `"sync_batch"` or `None` (see `AlignedConv2D`).
        activation: activation of every unit.
        skip_classes: number of classes of the skip synapses, or `None`.
        kernel_initializer, feedback_initializer, skip_initializer: initialisers (`None`:
            the units' defaults).

    Example:
        >>> block = ResidualBlock(32, strides=2, shortcut="projection", skip_classes=10)
        >>> block.build((None, 32, 32, 16))
    """

    _arguments = ("filters", "kind", "strides", "shortcut", "expansion") + _COMMON

    def __init__(
        self,
        filters,
        kind="basic",
        strides=1,
        shortcut="identity",
        expansion=4,
        norm="batch",
        activation="relu",
        skip_classes=None,
        kernel_initializer=None,
        feedback_initializer=None,
        skip_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)  # the dtype policy, before the units need it
        self.filters = check_positive_int("filters", filters)
        self.kind = check_choice("kind", kind, KINDS)
        self.strides = check_positive_int("strides", strides)
        self.shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        self.expansion = check_positive_int("expansion", expansion)
        _set_common(self, norm, activation, skip_classes, kernel_initializer,
                    feedback_initializer, skip_initializer)
        projection = dict(
            shortcut="projection" if shortcut == "projection" else None,
            shortcut_strides=strides,
        )
        if kind == "basic":
            units = [
                AlignedConv2D(filters, 3, strides=strides, name="conv1", **_unit_kwargs(self)),
                AlignedConv2D(filters, 3, name="conv2", **projection, **_unit_kwargs(self)),
            ]
        else:
            units = [
                AlignedConv2D(filters, 1, name="conv1", **_unit_kwargs(self)),
                AlignedConv2D(filters, 3, strides=strides, name="conv2", **_unit_kwargs(self)),
                AlignedConv2D(filters * expansion, 1, name="conv3", **projection,
                              **_unit_kwargs(self)),
            ]
        self._set_layers(units)

    @property
    def out_channels(self):
        return self.filters * (self.expansion if self.kind == "bottleneck" else 1)


@keras.saving.register_keras_serializable(package="rlra_tf")
class ResNetStem(_Built, UnitStack):
    """The stem: one conv unit (conv + BatchNorm + activation), optionally a max-pool after it.

    CIFAR stem: `ResNetStem(16, kernel_size=3, strides=1)`; ImageNet stem:
    `ResNetStem(64, kernel_size=7, strides=2, pool_size=3, pool_strides=2)`. The max-pool
    (`"same"` padding) is a transition after the block's unit: a displacement that reaches the
    block output from above is carried back to the unit's activity by the max-pool's transpose
    (the value goes to the position that won the max, as backprop routes a gradient).

    Args:
        filters: output channels.
        kernel_size, strides: of the convolution.
        pool_size: max-pool window (`None`: no pool).
        pool_strides: max-pool strides (default: `pool_size`).
        norm, activation, skip_classes, kernel_initializer, feedback_initializer,
            skip_initializer: as for `ResidualBlock`.

    Example:
        >>> stem = ResNetStem(64, kernel_size=7, strides=2, pool_size=3, pool_strides=2)
    """

    _arguments = ("filters", "kernel_size", "strides", "pool_size", "pool_strides") + _COMMON

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        pool_size=None,
        pool_strides=None,
        norm="batch",
        activation="relu",
        skip_classes=None,
        kernel_initializer=None,
        feedback_initializer=None,
        skip_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        if pool_size is not None:
            check_positive_int("pool_size", pool_size)
        if pool_strides is not None:
            check_positive_int("pool_strides", pool_strides)
        self.pool_size = pool_size
        self.pool_strides = pool_strides
        _set_common(self, norm, activation, skip_classes, kernel_initializer,
                    feedback_initializer, skip_initializer)
        layers = [AlignedConv2D(filters, kernel_size, strides=strides, name="conv",
                                **_unit_kwargs(self))]
        if pool_size is not None:
            layers.append(Pooling2D(pool_size, strides=pool_strides or pool_size, padding="same",
                                    mode="max", dtype=self.dtype_policy, name="pool"))
        self._set_layers(layers)


@keras.saving.register_keras_serializable(package="rlra_tf")
class PooledHead(_Built, UnitStack):
    """The classifier head: global average pooling, then `AlignedDense(num_classes)` (logits).

    The dense unit's input is the pooled vector. The head's signal reaches the pooled feature
    map below through the pooling's transpose: `d = e_L @ transpose(F)` per channel, spread
    over the positions as `d / (H * W)` (`spatial_feedback="mean"`, the default: with `F = W`
    this is exactly backprop's gradient, so FA is FA), or copied unscaled to every position
    (`"broadcast"`).

    Args:
        num_classes: number of classes.
        spatial_feedback: `"mean"` or `"broadcast"` (above).
        kernel_initializer, feedback_initializer: initialisers of the dense unit.

    Example:
        >>> head = PooledHead(10)
    """

    _arguments = ("num_classes", "spatial_feedback", "kernel_initializer",
                  "feedback_initializer")

    def __init__(
        self,
        num_classes,
        spatial_feedback="mean",
        kernel_initializer="glorot_uniform",
        feedback_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.spatial_feedback = check_choice("spatial_feedback", spatial_feedback,
                                             SPATIAL_FEEDBACK)
        self.kernel_initializer = _initializer_config(kernel_initializer)
        self.feedback_initializer = _initializer_config(feedback_initializer)
        layers = [
            GlobalPooling2D(spatial_feedback=spatial_feedback, dtype=self.dtype_policy,
                            name="pool"),
            AlignedDense(num_classes, activation=None,
                         kernel_initializer=_initializer(self.kernel_initializer),
                         feedback_initializer=_initializer(self.feedback_initializer),
                         dtype=self.dtype_policy, name="dense"),
        ]
        self._set_layers(layers)
