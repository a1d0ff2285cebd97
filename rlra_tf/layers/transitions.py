"""Transitions: the non-parameterised ops between units (flatten, pooling, padding, dropout).

A transition has no weights and no error synapse; what a learning rule needs of it is its
*transpose*: a displacement at its output carried back to its input, the way the op routes a
signal (a max-pool to the position that won the max, an average pool spread over its window, a
flatten reshaped back, a padding cropped, a dropout through the same mask). With these the rules
carry targets through a network built from units and transitions exactly as backprop carries a
gradient through the same ops, and without any learning.

Several small classes share this file (STYLE.md asks for one public class per file): each is a
few lines over the shared base, and they are read together.

Blocks (`rlra_tf.models.UnitStack`, `ResidualStack`) take transitions in their layer list
between units, e.g. `UnitStack([AlignedConv2D(8, 3, norm="batch", activation="relu"),
Pooling2D(2), Flatten()])`.
"""

import keras
import tensorflow as tf

from rlra_tf.checks import check_choice, check_pair, window_output_size
from rlra_tf.trace import TransitionTrace

PADDINGS = ("valid", "same")


class Transition(keras.layers.Layer):
    """Base class of the transitions: a weight-free op with a transpose.

    Subclasses implement `forward(inputs, training)` -> `(outputs, state)`,
    `transpose(displacement, transition_trace)` and `compute_output_shape`, and
    `keras_layer()` (the same op as a plain Keras layer, for `AlignedModel.to_keras`).
    """

    def forward(self, inputs, training=None):
        """`(outputs, state)`: the op, and what its transpose needs beyond inputs and outputs."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def transpose(self, displacement, transition_trace):
        """A displacement at the output carried back to the input (shape of the input)."""
        raise NotImplementedError(f"{type(self).__name__} does not define transpose()")

    def keras_layer(self, name=None):
        """The same op as a plain Keras layer (named `name`, default: this layer's name)."""
        raise NotImplementedError(f"{type(self).__name__} does not define keras_layer()")

    def trace(self, inputs, training=None):
        outputs, state = self.forward(inputs, training=training)
        return TransitionTrace(layer=self, inputs=inputs, outputs=outputs, state=state)

    def call(self, inputs, training=None):
        return self.forward(inputs, training=training)[0]


@keras.saving.register_keras_serializable(package="rlra_tf")
class Flatten(Transition):
    """Flattens each example (row-major, as `keras.layers.Flatten` with channels last), so a
    dense unit can follow convolutional ones. Transpose: the reshape back.

    Example:
        >>> UnitStack([AlignedConv2D(8, 3, activation="relu"), Flatten()])
    """

    def forward(self, inputs, training=None):
        return tf.reshape(inputs, (tf.shape(inputs)[0], -1)), None

    def transpose(self, displacement, transition_trace):
        return tf.reshape(displacement, tf.shape(transition_trace.inputs))

    def keras_layer(self, name=None):
        return keras.layers.Flatten(name=name or self.name)

    def compute_output_shape(self, input_shape):
        size = 1
        for s in input_shape[1:]:
            size = None if (size is None or s is None) else size * s
        return (input_shape[0], size)


@keras.saving.register_keras_serializable(package="rlra_tf")
class Pooling2D(Transition):
    """Max or average pooling over windows (channels last).

    Transpose: a max-pool sends the displacement of each window to the position that won the
    max (TensorFlow's `MaxPoolGrad` on the stored tensors, as backprop routes a gradient); an
    average pool spreads it evenly over the window (`AvgPoolGrad`).

    Args:
        pool_size: integer or pair.
        strides: integer or pair; `None`: `pool_size`.
        padding: `"valid"` or `"same"`.
        mode: `"max"` or `"avg"`.

    Example:
        >>> Pooling2D(2)  # a 2x2 max-pool with stride 2
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", mode="max", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_pair("pool_size", pool_size)
        self.strides = self.pool_size if strides is None else check_pair("strides", strides)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.mode = check_choice("mode", mode, ("max", "avg"))

    def _args(self):
        return (1,) + self.pool_size + (1,), (1,) + self.strides + (1,), self.padding.upper()

    def forward(self, inputs, training=None):
        ksize, strides, padding = self._args()
        pool = tf.nn.max_pool2d if self.mode == "max" else tf.nn.avg_pool2d
        return pool(inputs, ksize, strides, padding), None

    def transpose(self, displacement, transition_trace):
        ksize, strides, padding = self._args()
        x, y = transition_trace.inputs, transition_trace.outputs
        displacement = tf.broadcast_to(tf.cast(displacement, y.dtype), tf.shape(y))
        if self.mode == "max":
            return tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=displacement,
                                          ksize=ksize, strides=strides, padding=padding)
        return tf.raw_ops.AvgPoolGrad(orig_input_shape=tf.shape(x), grad=displacement,
                                      ksize=ksize, strides=strides, padding=padding)

    def keras_layer(self, name=None):
        cls = keras.layers.MaxPooling2D if self.mode == "max" else keras.layers.AveragePooling2D
        return cls(self.pool_size, strides=self.strides, padding=self.padding,
                   name=name or self.name)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tuple(input_shape)
        return (b, window_output_size(h, self.pool_size[0], self.strides[0], self.padding),
                window_output_size(w, self.pool_size[1], self.strides[1], self.padding), c)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "strides": self.strides,
                       "padding": self.padding, "mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package="rlra_tf")
class GlobalPooling2D(Transition):
    """Average or max over all positions, per channel: (batch, h, w, c) -> (batch, c).

    Transpose: the average spreads `d / (h * w)` over every position (`spatial_feedback="mean"`,
    what backprop does) or copies `d` to every position unscaled (`"broadcast"`); the max sends
    `d` to the position of the maximum (split evenly between ties, as TensorFlow's gradient of a
    max does).

    Args:
        mode: `"avg"` or `"max"`.
        keepdims: keep the positions as (batch, 1, 1, c).
        spatial_feedback: `"mean"` or `"broadcast"` (average pooling only).

    Example:
        >>> UnitStack([GlobalPooling2D(), AlignedDense(10)])  # a pooled classifier head
    """

    def __init__(self, mode="avg", keepdims=False, spatial_feedback="mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, ("avg", "max"))
        self.keepdims = bool(keepdims)
        self.spatial_feedback = check_choice(
            "spatial_feedback", spatial_feedback, ("mean", "broadcast")
        )

    def forward(self, inputs, training=None):
        reduce = tf.reduce_mean if self.mode == "avg" else tf.reduce_max
        return reduce(inputs, axis=(1, 2), keepdims=self.keepdims), None

    def transpose(self, displacement, transition_trace):
        x = transition_trace.inputs
        d = tf.cast(displacement, x.dtype)
        if not self.keepdims:
            d = d[:, None, None, :]
        if self.mode == "max":
            top = transition_trace.outputs
            top = top if self.keepdims else top[:, None, None, :]
            wins = tf.cast(tf.equal(x, top), x.dtype)
            return d * wins / tf.reduce_sum(wins, axis=(1, 2), keepdims=True)
        if self.spatial_feedback == "mean":
            shape = tf.shape(x)
            d = d / tf.cast(shape[1] * shape[2], d.dtype)
        return tf.broadcast_to(d, tf.shape(x))

    def keras_layer(self, name=None):
        cls = (keras.layers.GlobalAveragePooling2D if self.mode == "avg"
               else keras.layers.GlobalMaxPooling2D)
        return cls(keepdims=self.keepdims, name=name or self.name)

    def compute_output_shape(self, input_shape):
        b, c = input_shape[0], input_shape[-1]
        return (b, 1, 1, c) if self.keepdims else (b, c)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "keepdims": self.keepdims,
                       "spatial_feedback": self.spatial_feedback})
        return config


@keras.saving.register_keras_serializable(package="rlra_tf")
class ZeroPadding2D(Transition):
    """Zero rows and columns around each feature map. Transpose: the crop back.

    Args:
        padding: an integer, `(rows, cols)`, or `((top, bottom), (left, right))`.

    Example:
        >>> ZeroPadding2D(3)  # before a 7x7 "valid" convolution
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = ((padding, padding), (padding, padding))
        padding = tuple(tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in padding)
        if len(padding) != 2 or any(len(p) != 2 for p in padding) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 0 for p in padding
                for v in p):
            raise ValueError(
                "Expected padding as an integer, (rows, cols) or ((top, bottom), "
                f"(left, right)) of non-negative integers, received: padding={padding!r}"
            )
        self.padding = padding

    def forward(self, inputs, training=None):
        (t, b), (left, r) = self.padding
        return tf.pad(inputs, [[0, 0], [t, b], [left, r], [0, 0]]), None

    def transpose(self, displacement, transition_trace):
        (t, _), (left, _) = self.padding
        shape = tf.shape(transition_trace.inputs)
        d = tf.broadcast_to(displacement, tf.shape(transition_trace.outputs))
        return tf.slice(d, [0, t, left, 0], shape)

    def keras_layer(self, name=None):
        return keras.layers.ZeroPadding2D(self.padding, name=name or self.name)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tuple(input_shape)
        (t, bo), (left, r) = self.padding
        return (b, None if h is None else h + t + bo, None if w is None else w + left + r, c)

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding
        return config


@keras.saving.register_keras_serializable(package="rlra_tf")
class Dropout(Transition):
    """Dropout as `keras.layers.Dropout` (same `seed`, same masks): in training each value is
    kept with probability `1 - rate` and scaled by `1 / (1 - rate)`; otherwise the identity.
    Transpose: the same mask and scale (stored in the trace).

    Args:
        rate: the fraction dropped, in [0, 1).
        noise_shape: as Keras' (`None`: independent per value).
        seed: seed of the masks.

    Example:
        >>> Dropout(0.5, seed=1)
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Expected a rate in [0, 1), received: rate={rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def forward(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs, None
        # The mask applied to ones: 1 / (1 - rate) where kept, 0 elsewhere; drawn exactly as
        # keras.layers.Dropout draws its mask from the same seed generator state.
        keep = keras.random.dropout(tf.ones_like(inputs), self.rate, noise_shape=self.noise_shape,
                                    seed=self.seed_generator)
        return inputs * keep, keep

    def transpose(self, displacement, transition_trace):
        keep = transition_trace.state
        return displacement if keep is None else tf.cast(displacement, keep.dtype) * keep

    def keras_layer(self, name=None):
        return keras.layers.Dropout(self.rate, noise_shape=self.noise_shape, seed=self.seed,
                                    name=name or self.name)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed})
        return config


TRANSITIONS = (Flatten, Pooling2D, GlobalPooling2D, ZeroPadding2D, Dropout)
