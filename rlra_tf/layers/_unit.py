"""What every aligned unit shares: activation, error-synapse weights and their initialisers.

A *unit* (ALGORITHM.md section 2) is one parameterised operation `A_u`, an optional
normalisation, an optional residual input and an element-wise activation:
`h_u = N_u(A_u(z_{u-1})) + r_u`, `z_u = phi_u(h_u)`. The learning rules talk to a unit through
the small interface defined here; the concrete layers fill in the operation.
"""

import keras
from keras import ops


def default_feedback_initializer():
    """A Gaussian scaled so a displacement keeps the error's scale (variance 1 / fan-out)."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_out", distribution="normal")


def default_skip_initializer():
    """A Gaussian with variance 1 / num_classes for the skip synapse `S` of shape [K, units]."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="normal")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Expected a positive integer for {name}, received: {name}={value!r}"
        )
    return value


class AlignedUnit(keras.layers.Layer):
    """Base class of the layers that carry error synapses (not used directly).

    Subclasses create `kernel` (the forward weights that `feedback` pairs with), `feedback`
    (`F`, same shape as the kernel, non-trainable) and, when `skip_classes` is set,
    `skip_feedback` (`S`, shape `[skip_classes, channels]`, non-trainable), and implement
    `pre_activation`, `feedback_input`, `skip_displacement` and `mirror_synapses`; a unit with
    its own normalisation also overrides `pre_activation_parts` and `norm_transpose`.
    """

    def __init__(
        self,
        activation=None,
        skip_classes=None,
        feedback_initializer=None,
        skip_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if skip_classes is not None:
            check_positive_int("skip_classes", skip_classes)
        self.activation = keras.activations.get(activation)
        self.skip_classes = skip_classes
        self.feedback_initializer = keras.initializers.get(
            feedback_initializer or default_feedback_initializer()
        )
        self.skip_initializer = keras.initializers.get(
            skip_initializer or default_skip_initializer()
        )
        self.skip_feedback = None

    def _add_feedback_weights(self, kernel_shape, channels):
        self.feedback = self.add_weight(
            name="feedback",
            shape=kernel_shape,
            initializer=self.feedback_initializer,
            trainable=False,
        )
        if self.skip_classes is not None:
            self.skip_feedback = self.add_weight(
                name="skip_feedback",
                shape=(self.skip_classes, channels),
                initializer=self.skip_initializer,
                trainable=False,
            )

    @property
    def feedback_weights(self):
        """The error synapses of this unit (`F` and, if present, `S`)."""
        return [w for w in (self.feedback, self.skip_feedback) if w is not None]

    def call(self, inputs, training=None):
        return self.activation(self.pre_activation(inputs, training=training))

    def pre_activation_parts(self, inputs, residual=None, training=None):
        """`(h, linear, shortcut_linear)`: the pre-activation and, for a unit with its own
        normalisation, the linear responses in front of each normalisation (`None` here)."""
        return self.pre_activation(inputs, residual=residual, training=training), None, None

    @property
    def feedback_pairs(self):
        """`(feedback, kernel)` pairs of the unit's adjacent synapses (here `F` and `W`)."""
        return [(self.feedback, self.kernel)]

    def recompute_pre(self, unit_trace):
        """The pre-activation of `unit_trace` recomputed from what the trace keeps anyway, or
        `None` where the unit cannot (here: always; the rule then reads `unit_trace.pre`)."""
        return None

    @property
    def synchronized_norm(self):
        """Whether the unit's normalisation all-reduces its batch statistics across replicas.

        The rules then carry errors through it by `norm_transpose` (whose all-reduces run in
        program order) rather than by differentiating it: a `GradientTape` orders the
        all-reduces of a backward pass by the ids of its ops, which need not match between
        replicas, and all-reduces of the same shape could pair up wrongly.
        """
        return False

    @property
    def norm_variables(self):
        """The trainable variables of the unit's normalisations (none here)."""
        return []

    def norm_transpose(self, error, unit_trace):
        """Carry an error at this unit's pre-activation back through its own normalisation.

        ALGORITHM.md 3.5a; a unit without normalisation returns `error` as it is.
        """
        return error

    def mirror_synapses(self, unit_trace):
        """The adjacent synapses the mirror rule aligns (ALGORITHM.md 3.7).

        Returns `(feedback variable, noise shape without the batch axis, estimate)` triples;
        `estimate(noise, normalise)` is the correlation `C` of the noise with the linear response it
        causes, whose expectation is the synapse's forward kernel. Every unit layer
        (`AlignedDense`, `AlignedConv2D`) defines it; a new unit type must too.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define mirror_synapses(), which the weight mirror "
            "(synapse_update='mirror') needs."
        )

    def activation_derivative(self, pre):
        """`phi'(h)` element-wise (for FA and DFA; LRA never needs it)."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(pre)
            out = self.activation(pre)
        return tape.gradient(out, pre)

    def skip_displacement(self, output_error):
        """`d = e_L @ S` reshaped to broadcast over this unit's activity."""
        if self.skip_feedback is None:
            raise ValueError(
                f"Unit {self.name!r} has no skip synapse; build it with skip_classes set."
            )
        skip = ops.cast(self.skip_feedback, output_error.dtype)
        return ops.matmul(output_error, skip)  # (batch, channels)

    def skip_hebbian_update(self, output_error, error):
        """`transpose(e_L) @ e_o / n`, pooled over positions for conv units (shape of `S`)."""
        n = ops.cast(ops.shape(error)[0], error.dtype)
        if len(error.shape) > 2:
            error = ops.mean(error, axis=tuple(range(1, len(error.shape) - 1)))
        return ops.matmul(ops.transpose(output_error), error) / n

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "skip_classes": self.skip_classes,
                "feedback_initializer": keras.initializers.serialize(self.feedback_initializer),
                "skip_initializer": keras.initializers.serialize(self.skip_initializer),
            }
        )
        return config
