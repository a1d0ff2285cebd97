"""`AlignedDense`: a dense unit that carries its error synapses."""

import keras
import tensorflow as tf
from keras import ops

from rlra_tf.checks import check_choice, check_positive_int
from rlra_tf.layers import aligned_conv2d
from rlra_tf.layers._unit import AlignedUnit
from rlra_tf.layers.fused_batch_norm import FusedBatchNormalization

NORMS = (None, "batch")


@keras.saving.register_keras_serializable(package="rlra_tf")
class AlignedDense(AlignedUnit):
    """A fully connected unit `z = phi(N(x @ W + b) + r)` with adjacent and skip error synapses.

    Besides `kernel` and `bias` the layer owns `feedback` (`F`, shape of `kernel`), which
    carries this unit's error down to its input (`d = e @ transpose(F)`), and, when
    `skip_classes` is set, `skip_feedback` (`S`, shape `[skip_classes, units]`), which carries
    the network's output error straight to this unit (`d = e_L @ S`). Both are non-trainable:
    only a learning rule in `rlra_tf.rules` changes them. With `norm="batch"` a BatchNorm
    follows the matrix product (before any residual input and the activation); an error leaving
    the unit is carried back through it as through a conv unit's.

    Args:
        units: positive integer, the output width.
        activation: a Keras activation (name or callable); `None` is linear.
        use_bias: whether to add a bias.
        skip_classes: number of classes `K` of the skip synapse, or `None` for no skip synapse.
        norm: `None` or `"batch"`.
        norm_momentum, norm_epsilon: the BatchNorm's momentum and epsilon.
        kernel_initializer, bias_initializer: Keras initialisers of the forward weights.
        feedback_initializer: initialiser of `F` (default: Gaussian, variance 1 / units).
        skip_initializer: initialiser of `S` (default: Gaussian, variance 1 / skip_classes).

    Example:
        >>> layer = AlignedDense(16, activation="tanh", skip_classes=10)
        >>> y = layer(np.zeros((2, 8), "float32"))  # (2, 16)

    Reference: Ororbia & Mali, AAAI 2019; Ororbia et al., arXiv 2002.03911.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        skip_classes=None,
        norm=None,
        norm_momentum=0.9,
        norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        feedback_initializer=None,
        skip_initializer=None,
        **kwargs,
    ):
        super().__init__(
            activation=activation,
            skip_classes=skip_classes,
            feedback_initializer=feedback_initializer,
            skip_initializer=skip_initializer,
            **kwargs,
        )
        self.units = check_positive_int("units", units)
        self.use_bias = bool(use_bias)
        self.norm = check_choice("norm", norm, NORMS)
        self.norm_momentum = float(norm_momentum)
        self.norm_epsilon = float(norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.norm_layer = None
        if norm is not None:
            self.norm_layer = FusedBatchNormalization(
                momentum=self.norm_momentum, epsilon=self.norm_epsilon,
                dtype=self.dtype_policy, name="norm",
            )

    def build(self, input_shape, residual_shape=None):
        if len(input_shape) != 2:
            raise ValueError(
                f"AlignedDense {self.name!r} expects inputs of shape (batch, features), "
                f"received: input_shape={tuple(input_shape)}; flatten or pool a feature map "
                "first (rlra_tf.layers.Flatten, GlobalPooling2D)"
            )
        in_features = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(in_features, self.units), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        if self.norm_layer is not None and not self.norm_layer.built:
            self.norm_layer.build((input_shape[0], self.units))
        self._add_feedback_weights((in_features, self.units), self.units)

    def pre_activation_parts(self, inputs, residual=None, training=None):
        """`(h, linear, None)`: `h = N(x @ W + b) (+ residual)`, `linear = x @ W + b` when the
        unit has a BatchNorm (else `None`)."""
        h = ops.matmul(inputs, ops.cast(self.kernel, inputs.dtype))  # (batch, units)
        if self.bias is not None:
            h = h + ops.cast(self.bias, h.dtype)
        linear = None
        if self.norm_layer is not None:
            linear = h
            h = self.norm_layer(h, training=training)
        if residual is not None:
            h = h + ops.cast(residual, h.dtype)
        return h, linear, None

    def norm_transpose(self, error, unit_trace):
        """`N'^T e` through the unit's BatchNorm with this batch's statistics (as a conv
        unit's, on a (batch, 1, 1, units) view); without BatchNorm: `e`."""
        if self.norm_layer is None:
            return error
        as_map = aligned_conv2d.norm_transpose(
            self.norm_layer, error[:, None, None, :], unit_trace.linear[:, None, None, :]
        )
        return as_map[:, 0, 0, :]

    def feedback_input(self, error, input_shape=None):
        """Carry an error at this unit's activity down to its input: `e @ transpose(F)`."""
        error = ops.cast(error, self.compute_dtype)
        feedback = ops.cast(self.feedback, self.compute_dtype)
        return ops.matmul(error, ops.transpose(feedback))  # (batch, in_features)

    def mirror_estimate(self, noise, normalise="positions", kernel=None):
        """`C = transpose(x) @ (x @ W) / m` for noise `x` of shape (m, in_features).

        (`normalise` matters for convolutions only.) `kernel`: the value of `W` to use
        (default: read the variable).
        """
        kernel = self.kernel if kernel is None else kernel
        m = ops.cast(ops.shape(noise)[0], noise.dtype)
        y = ops.matmul(noise, ops.cast(kernel, noise.dtype))  # linear response, no bias
        return ops.matmul(ops.transpose(noise), y) / m  # (in_features, units)

    def mirror_synapses(self, unit_trace=None):
        return [(self.feedback, (self.kernel.shape[0],), self.mirror_estimate)]

    def forward_weight_pairs(self):
        pairs = super().forward_weight_pairs()
        if self.norm_layer is not None:
            pairs += aligned_conv2d.norm_weight_pairs("norm", self.norm_layer)
        return pairs

    def keras_layers(self, name):
        dense = keras.layers.Dense(self.units, use_bias=self.use_bias, name=name)
        dense.build((None, self.kernel.shape[0]))
        dense.set_weights([tf.convert_to_tensor(w) for w in ([self.kernel] + (
            [self.bias] if self.bias is not None else []))])
        return dense, aligned_conv2d.keras_norm(self.norm_layer, f"{name}_bn", self.units,
                                                rank=2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "norm": self.norm,
                "norm_momentum": self.norm_momentum,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
