"""The blocks of a ResNet: stem, residual blocks (basic and bottleneck) and the pooled head.

Each block owns its units (`unit_layers`, output unit last), traces them with every unit input
held constant in the local path (`isolate`), and tells the rules how an error signal at its
units reaches its input (`input_displacement`). docs/ALGORITHM.md#words to #options.
"""

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from rlra_tf.layers import AlignedDense
from rlra_tf.layers._unit import check_positive_int
from rlra_tf.layers.aligned_conv2d import AlignedConv2D
from rlra_tf.models.blocks import AlignedBlock, isolate, trace_unit
from rlra_tf.rules.trace import BlockTrace

KINDS = ("basic", "bottleneck")
SHORTCUTS = ("identity", "projection")
SPATIAL_FEEDBACK = ("mean", "broadcast")


def _initializer_config(value):
    """An initialiser argument as a config (kept for `get_config`); `None` stays `None`."""
    return None if value is None else keras.initializers.serialize(keras.initializers.get(value))


def _initializer(config):
    """A fresh initialiser from a config (one per unit, so seeded ones differ); or `None`."""
    return None if config is None else keras.initializers.get(config)


@dataclasses.dataclass
class PooledBlockTrace(BlockTrace):
    """A block trace whose output is a non-parameterised op (a max-pool) of its output unit."""

    pooled: Any = None

    @property
    def outputs(self):
        return self.pooled


@keras.saving.register_keras_serializable(package="rlra_tf")
class ResidualBlock(AlignedBlock):
    """A residual block of `AlignedConv2D` units: basic (gap 2) or bottleneck (gap 3).

    Basic: 3x3 (strides) -> 3x3, `filters` channels. Bottleneck (torchvision's "v1.5"):
    1x1 -> 3x3 (strides) -> 1x1 with `filters * expansion` output channels. Every conv has
    BatchNorm (with `norm="batch"`) and the activation; the output unit adds the shortcut
    before its activation: the block input (`"identity"`) or its projection (`"projection"`, a
    1x1 conv with the block's strides plus BatchNorm, owned by the output unit and so updated
    from that unit's error).

    Every unit gets a skip synapse when `skip_classes` is set: `rec_lra` uses the output
    unit's, `dfa` every unit's.

    The error that reaches the block input (`input_displacement`, for `lra` and `fa`) is the
    first unit's feedback of its signal plus the shortcut path: the output unit's signal
    itself (identity) or that signal through the projection's feedback kernel.

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
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        if kind not in KINDS:
            raise ValueError(f"Expected kind to be one of {KINDS}, received: kind={kind!r}")
        self.kind = kind
        self.strides = check_positive_int("strides", strides)
        if shortcut not in SHORTCUTS:
            raise ValueError(
                f"Expected shortcut to be one of {SHORTCUTS}, received: shortcut={shortcut!r}"
            )
        self.shortcut = shortcut
        self.expansion = check_positive_int("expansion", expansion)
        self.norm = norm
        self.activation = activation
        self.skip_classes = skip_classes
        self.kernel_initializer = _initializer_config(kernel_initializer)
        self.feedback_initializer = _initializer_config(feedback_initializer)
        self.skip_initializer = _initializer_config(skip_initializer)
        common = dict(
            norm=norm,
            activation=activation,
            skip_classes=skip_classes,
            dtype=self.dtype_policy,
        )

        def units_kwargs():
            return dict(
                common,
                kernel_initializer=_initializer(self.kernel_initializer),
                feedback_initializer=_initializer(self.feedback_initializer),
                skip_initializer=_initializer(self.skip_initializer),
            )

        projection = dict(
            shortcut="projection" if shortcut == "projection" else None,
            shortcut_strides=strides,
        )
        if kind == "basic":
            self.unit_layers = [
                AlignedConv2D(filters, 3, strides=strides, name="conv1", **units_kwargs()),
                AlignedConv2D(filters, 3, name="conv2", **projection, **units_kwargs()),
            ]
        else:
            self.unit_layers = [
                AlignedConv2D(filters, 1, name="conv1", **units_kwargs()),
                AlignedConv2D(filters, 3, strides=strides, name="conv2", **units_kwargs()),
                AlignedConv2D(
                    filters * expansion, 1, name="conv3", **projection, **units_kwargs()
                ),
            ]

    @property
    def out_channels(self):
        return self.filters * (self.expansion if self.kind == "bottleneck" else 1)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        out_shape = self.compute_output_shape(input_shape)
        if self.shortcut == "identity" and tuple(out_shape[1:]) != tuple(input_shape[1:]):
            raise ValueError(
                "An identity shortcut needs the block output to have the shape of its input; "
                f"use shortcut='projection'. Received: input_shape={input_shape}, "
                f"output shape={out_shape}"
            )
        shape = input_shape
        for i, unit in enumerate(self.unit_layers):
            if not unit.built:
                if i == len(self.unit_layers) - 1 and self.shortcut == "projection":
                    unit.build(shape, residual_shape=input_shape)
                else:
                    unit.build(shape)
            shape = unit.compute_output_shape(shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.unit_layers:
            shape = unit.compute_output_shape(shape)
        return shape

    def trace(self, inputs, training=None, local=False):
        x = isolate(inputs, local)  # the block input, for the first unit and the shortcut
        z, units = x, []
        last = len(self.unit_layers) - 1
        for i, unit in enumerate(self.unit_layers):
            z_in = x if i == 0 else isolate(z, local)
            units.append(
                trace_unit(unit, z_in, residual=x if i == last else None, training=training)
            )
            z = units[-1].outputs
        return BlockTrace(block=self, inputs=inputs, units=units)

    def input_displacement(self, block_trace, leaving):
        """First unit's `conv2d_transpose(e_1, F_1)` plus the shortcut path (see the class).

        `leaving` holds the errors as each unit sends them down: with `norm_feedback="through"`
        the first unit's after its BatchNorm's transpose, and the output unit's shortcut error
        after the projection's BatchNorm (an identity shortcut has none).
        """
        first, out = self.unit_layers[0], self.unit_layers[-1]
        shape = tf.shape(block_trace.inputs)
        d = first.feedback_input(leaving[0][0], input_shape=shape)
        d = d + out.shortcut_feedback_input(leaving[-1][1], input_shape=shape)
        return d, [(first.feedback, first.kernel)] + out.shortcut_feedback_pairs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kind": self.kind,
                "strides": self.strides,
                "shortcut": self.shortcut,
                "expansion": self.expansion,
                "norm": self.norm,
                "activation": self.activation,
                "skip_classes": self.skip_classes,
                "kernel_initializer": self.kernel_initializer,
                "feedback_initializer": self.feedback_initializer,
                "skip_initializer": self.skip_initializer,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="rlra_tf")
class ResNetStem(AlignedBlock):
    """The stem: one conv unit (conv + BatchNorm + activation), optionally a max-pool after it.

    CIFAR stem: `ResNetStem(16, kernel_size=3, strides=1)`; ImageNet stem:
    `ResNetStem(64, kernel_size=7, strides=2, pool_size=3, pool_strides=2)`. The max-pool is a
    non-parameterised op inside the block: the block's output is the pooled activity of its
    unit, and a displacement that reaches the block output from above (`lra`, `fa`) is carried
    back to the unit's activity by the max-pool's transpose (`output_displacement`: the value
    goes to the position that won the max, as backprop routes a gradient).

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
        self.norm = norm
        self.activation = activation
        self.skip_classes = skip_classes
        self.kernel_initializer = _initializer_config(kernel_initializer)
        self.feedback_initializer = _initializer_config(feedback_initializer)
        self.skip_initializer = _initializer_config(skip_initializer)
        self.unit_layers = [
            AlignedConv2D(
                filters,
                kernel_size,
                strides=strides,
                norm=norm,
                activation=activation,
                skip_classes=skip_classes,
                kernel_initializer=_initializer(self.kernel_initializer),
                feedback_initializer=_initializer(self.feedback_initializer),
                skip_initializer=_initializer(self.skip_initializer),
                dtype=self.dtype_policy,
                name="conv",
            )
        ]

    def _pool_args(self):
        stride = self.pool_strides or self.pool_size
        return (1, self.pool_size, self.pool_size, 1), (1, stride, stride, 1)

    def build(self, input_shape):
        unit = self.unit_layers[0]
        if not unit.built:
            unit.build(tuple(input_shape))

    def compute_output_shape(self, input_shape):
        shape = self.unit_layers[0].compute_output_shape(tuple(input_shape))
        if self.pool_size is None:
            return shape
        stride = self.pool_strides or self.pool_size
        return (
            shape[0],
            None if shape[1] is None else -(-shape[1] // stride),
            None if shape[2] is None else -(-shape[2] // stride),
            shape[3],
        )

    def trace(self, inputs, training=None, local=False):
        unit = self.unit_layers[0]
        units = [trace_unit(unit, isolate(inputs, local), training=training)]
        z = units[0].outputs
        if self.pool_size is None:
            return BlockTrace(block=self, inputs=inputs, units=units)
        ksize, strides = self._pool_args()
        pooled = tf.nn.max_pool2d(z, ksize, strides, "SAME")
        return PooledBlockTrace(block=self, inputs=inputs, units=units, pooled=pooled)

    def output_displacement(self, block_trace, displacement):
        """Carry a displacement at the block output back to the unit's activity."""
        if self.pool_size is None:
            return displacement
        z, pooled = block_trace.units[-1].outputs, block_trace.pooled
        displacement = tf.broadcast_to(tf.cast(displacement, z.dtype), tf.shape(pooled))
        ksize, strides = self._pool_args()
        # The max-pool's own gradient op on the stored forward tensors: no recomputation.
        return tf.raw_ops.MaxPoolGrad(
            orig_input=z, orig_output=pooled, grad=displacement, ksize=ksize, strides=strides,
            padding="SAME",
        )

    def input_displacement(self, block_trace, leaving):
        unit = self.unit_layers[0]
        d = unit.feedback_input(leaving[0][0], input_shape=tf.shape(block_trace.inputs))
        return d, [(unit.feedback, unit.kernel)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "pool_size": self.pool_size,
                "pool_strides": self.pool_strides,
                "norm": self.norm,
                "activation": self.activation,
                "skip_classes": self.skip_classes,
                "kernel_initializer": self.kernel_initializer,
                "feedback_initializer": self.feedback_initializer,
                "skip_initializer": self.skip_initializer,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="rlra_tf")
class PooledHead(AlignedBlock):
    """The classifier head: global average pooling, then `AlignedDense(num_classes)` (logits).

    The dense unit's input is the pooled vector. `input_displacement` carries the head's
    signal to the pooled feature map below: `d = e_L @ transpose(F)` per channel, spread over
    the spatial positions by the transpose of the pooling, `d / (H * W)` at every position
    (`spatial_feedback="mean"`, the default: with `F = W` this is exactly backprop's gradient,
    so FA is FA), or copied unscaled to every position (`"broadcast"`). The result has shape
    (batch, 1, 1, C) and broadcasts over the positions.

    Args:
        num_classes: number of classes.
        spatial_feedback: `"mean"` or `"broadcast"` (above).
        kernel_initializer, feedback_initializer: initialisers of the dense unit.

    Example:
        >>> head = PooledHead(10)
    """

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
        if spatial_feedback not in SPATIAL_FEEDBACK:
            raise ValueError(
                f"Expected spatial_feedback to be one of {SPATIAL_FEEDBACK}, received: "
                f"spatial_feedback={spatial_feedback!r}"
            )
        self.spatial_feedback = spatial_feedback
        self.kernel_initializer = _initializer_config(kernel_initializer)
        self.feedback_initializer = _initializer_config(feedback_initializer)
        self.unit_layers = [
            AlignedDense(
                num_classes,
                activation=None,
                kernel_initializer=_initializer(self.kernel_initializer),
                feedback_initializer=_initializer(self.feedback_initializer),
                dtype=self.dtype_policy,
                name="dense",
            )
        ]

    def build(self, input_shape):
        unit = self.unit_layers[0]
        if not unit.built:
            unit.build((input_shape[0], input_shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def trace(self, inputs, training=None, local=False):
        unit = self.unit_layers[0]
        pooled = tf.reduce_mean(inputs, axis=(1, 2))  # (batch, channels)
        units = [trace_unit(unit, isolate(pooled, local), training=training)]
        return BlockTrace(block=self, inputs=inputs, units=units)

    def input_displacement(self, block_trace, leaving):
        unit = self.unit_layers[0]
        d = unit.feedback_input(leaving[0][0])  # (batch, channels)
        if self.spatial_feedback == "mean":
            shape = tf.shape(block_trace.inputs)
            d = d / tf.cast(shape[1] * shape[2], d.dtype)
        return d[:, None, None, :], [(unit.feedback, unit.kernel)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "spatial_feedback": self.spatial_feedback,
                "kernel_initializer": self.kernel_initializer,
                "feedback_initializer": self.feedback_initializer,
            }
        )
        return config


__all__ = ["PooledBlockTrace", "PooledHead", "ResNetStem", "ResidualBlock"]
