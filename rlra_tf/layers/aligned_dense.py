"""`AlignedDense`: a dense unit that carries its error synapses."""

import keras
from keras import ops

from rlra_tf.layers._unit import AlignedUnit, check_positive_int


@keras.saving.register_keras_serializable(package="rlra_tf")
class AlignedDense(AlignedUnit):
    """A fully connected unit `z = phi(x @ W + b)` with adjacent and skip error synapses.

    Besides `kernel` and `bias` the layer owns `feedback` (`F`, shape of `kernel`), which
    carries this unit's error down to its input (`d = e @ transpose(F)`), and, when
    `skip_classes` is set, `skip_feedback` (`S`, shape `[skip_classes, units]`), which carries
    the network's output error straight to this unit (`d = e_L @ S`). Both are non-trainable:
    only a learning rule in `rlra_tf.rules` changes them.

    Args:
        units: positive integer, the output width.
        activation: a Keras activation (name or callable); `None` is linear.
        use_bias: whether to add a bias.
        skip_classes: number of classes `K` of the skip synapse, or `None` for no skip synapse.
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
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                "AlignedDense expects inputs of shape (batch, features), received: "
                f"input_shape={tuple(input_shape)}"
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
        self._add_feedback_weights((in_features, self.units), self.units)

    def pre_activation(self, inputs, residual=None, training=None):
        """`h = x @ W + b (+ residual)`."""
        h = ops.matmul(inputs, ops.cast(self.kernel, inputs.dtype))  # (batch, units)
        if self.bias is not None:
            h = h + ops.cast(self.bias, h.dtype)
        if residual is not None:
            h = h + residual
        return h

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

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
