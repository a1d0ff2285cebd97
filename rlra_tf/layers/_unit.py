"""The unit interface: what every aligned unit provides to the blocks and the learning rules.

A *unit* (docs/ALGORITHM.md#words) is one parameterised operation `A_u`, an optional
normalisation, an optional residual input and an element-wise activation:
`h_u = N_u(A_u(z_{u-1})) + r_u`, `z_u = phi_u(h_u)`. `AlignedUnit` declares what a unit type must
implement (the methods that raise `NotImplementedError` here) and the optional hooks, with the
defaults that suit a unit without normalisation or projection shortcut. The blocks and the
rules call only these. docs/MODELS.md#the-contract-a-new-layer-type-meets walks through them.
"""

import keras
from keras import ops

from rlra_tf.checks import check_positive_int


def default_feedback_initializer():
    """A Gaussian scaled so a displacement keeps the error's scale (variance 1 / fan-out)."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_out", distribution="normal")


def default_skip_initializer():
    """A Gaussian with variance 1 / num_classes for the skip synapse `S` of shape [K, units]."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="normal")


class AlignedUnit(keras.layers.Layer):
    """Base class of the layers that carry error synapses (not used directly).

    A subclass creates, in `build`, `kernel` (the forward weights `feedback` pairs with),
    `feedback` (`F`, same shape as the kernel, non-trainable: `_add_feedback_weights`) and, when
    `skip_classes` is set, `skip_feedback` (`S`, shape `[skip_classes, channels]`), and
    implements:

    - `pre_activation_parts(inputs, residual, training)`: `(h, linear, shortcut_linear)`;
    - `feedback_input(error, input_shape)`: an error at the unit carried down to its input
      through `F`;
    - `mirror_synapses(unit_trace)`: the synapses the weight mirror aligns;
    - `compute_output_shape(input_shape)`;
    - `keras_layers(name)`: the plain Keras layers of its forward function (`to_keras`).

    Optional hooks (defaults here: no normalisation, no projection shortcut):
    `norm_transpose`, `shortcut_norm_transpose`, `shortcut_feedback_input`,
    `feedback_pairs`, `shortcut_feedback_pairs`, `has_projection`, `forward_weight_pairs`,
    `recompute_pre`, `synchronized_norm` (then also `synchronized_norm_backward`),
    `norm_variables`.
    """

    bias = None  # a unit type with a bias sets it in build

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

    # ------------------------------------------------------------------ required of a unit

    def pre_activation_parts(self, inputs, residual=None, training=None):
        """`(h, linear, shortcut_linear)`: the pre-activation and, for a unit with its own
        normalisation, the linear responses in front of each normalisation (else `None`)."""
        raise NotImplementedError(self._missing("pre_activation_parts"))

    def feedback_input(self, error, input_shape=None):
        """Carry an error at this unit down to its input through `F` (shape of the input)."""
        raise NotImplementedError(self._missing("feedback_input"))

    def mirror_synapses(self, unit_trace):
        """The adjacent synapses the weight mirror aligns (docs/ALGORITHM.md#mirror).

        Returns `(feedback variable, noise shape without the batch axis, estimate)` triples;
        `estimate(noise, normalise)` is the correlation `C` of the noise with the linear response
        it causes, whose expectation is the synapse's forward kernel.
        """
        raise NotImplementedError(self._missing("mirror_synapses"))

    def keras_layers(self, name):
        """`(main, norm)`: new plain Keras layers computing `A_u` and `N_u` (`None` without
        normalisation), holding copies of this unit's forward weights, for `to_keras`."""
        raise NotImplementedError(self._missing("keras_layers"))

    def _missing(self, method):
        return (
            f"{type(self).__name__} does not define {method}(), which every unit type must "
            "(docs/MODELS.md#the-contract-a-new-layer-type-meets)."
        )

    # ------------------------------------------------------------------ hooks with defaults

    @property
    def has_projection(self):
        """Whether the unit owns a projection shortcut (it then needs `residual=` to build)."""
        return False

    @property
    def feedback_weights(self):
        """The error synapses of this unit (`F` and, if present, `S`)."""
        return [w for w in (self.feedback, self.skip_feedback) if w is not None]

    @property
    def feedback_pairs(self):
        """`(feedback, kernel)` pairs of the adjacent synapses."""
        return [(self.feedback, self.kernel)]

    @property
    def shortcut_feedback_pairs(self):
        """The `(feedback, kernel)` pair the shortcut path uses (empty for an identity)."""
        return []

    def forward_weight_pairs(self):
        """`(role, variable)` of the forward weights, e.g. `("kernel", v)`, `("norm/gamma",
        v)`: what `keras_layers` copies and a converter fills."""
        return [("kernel", self.kernel)] + (
            [("bias", self.bias)] if getattr(self, "bias", None) is not None else []
        )

    def call(self, inputs, residual=None, training=None):
        return self.activation(self.pre_activation(inputs, residual=residual, training=training))

    def pre_activation(self, inputs, residual=None, training=None):
        """`h`: the first of `pre_activation_parts`."""
        return self.pre_activation_parts(inputs, residual=residual, training=training)[0]

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
        """Carry an error at this unit's pre-activation back through its own normalisation
        (docs/ALGORITHM.md#norm-transpose); here: as it is."""
        return error

    def shortcut_norm_transpose(self, error, unit_trace):
        """`norm_transpose` through a projection's normalisation; here: as it is."""
        return error

    def shortcut_feedback_input(self, error, input_shape=None):
        """Carry this unit's error to the block input along the shortcut: an identity here."""
        return ops.cast(error, self.compute_dtype)

    def activation_derivative(self, pre):
        """`phi'(h)` element-wise (for FA and DFA; LRA never needs it)."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(pre)
            out = self.activation(pre)
        return tape.gradient(out, pre)

    def skip_displacement(self, output_error):
        """`d = e_L @ S`, shape (batch, channels); conv units reshape it to broadcast."""
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
