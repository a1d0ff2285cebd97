"""Feedback alignment (FA) and direct feedback alignment (DFA), docs/ALGORITHM.md#options."""

import tensorflow as tf

from rlra_tf.checks import check_choice
from rlra_tf.rules.base import (
    MirrorOptions,
    Rule,
    UnitUpdates,
    output_error,
    propagate,
)


class FA(MirrorOptions, Rule):
    """Feedback alignment (Lillicrap et al., 2016), and the weight mirror on top of it.

    `delta_u = (F_{u+1} applied to delta_{u+1}) * phi'(h_u)`, `dW_u` from `delta_u` and the
    unit's own input. By default the feedback synapses stay fixed and a signal leaving a unit
    goes back through that unit's own BatchNorm first, as in FA implementations that
    differentiate through normalisation (BioTorch); `norm_feedback="skip"` applies `F` to the
    signal as it is. With `synapse_update="mirror"` the synapses align to the forward weights
    by the local weight mirror (docs/ALGORITHM.md#mirror): that is the rule `WM`.

    Args:
        synapse_update: `"fixed"` (FA) or `"mirror"` (weight mirror).
        norm_feedback: `"through"` or `"skip"` (see above).
        mirror_rate, mirror_batch, mirror_every, mirror_normalise, mirror_warm_start: the
            mirror's settings, as for `RecLRA`.

    Example:
        >>> model.compile(optimizer="adam", rule="fa")
    """

    name = "fa"
    direct = False
    defaults = dict(synapse_update="fixed", norm_feedback="through")

    def __init__(self, synapse_update=None, norm_feedback=None, mirror_rate=0.1,
                 mirror_batch=None, mirror_every=1, mirror_normalise="positions",
                 mirror_warm_start=False, mirror_first_scale=1, mirror_track=False):
        self.synapse_update = check_choice(
            "synapse_update", synapse_update or self.defaults["synapse_update"],
            {"fixed", "mirror", "kp"},
        )
        self.norm_feedback = check_choice(
            "norm_feedback", norm_feedback or self.defaults["norm_feedback"],
            {"through", "skip"},
        )
        self._init_mirror(mirror_rate, mirror_batch, mirror_every, mirror_normalise,
                          mirror_warm_start, mirror_first_scale, mirror_track)

    def get_config(self):
        return {
            "synapse_update": self.synapse_update,
            "norm_feedback": self.norm_feedback,
            **self.mirror_config(),
        }

    def _walk(self, trace, labels, signal_fn, on_unit=None):
        e_out = output_error(tf.stop_gradient(trace.logits), labels)

        def use_skip(b, i, bt):
            return self.direct

        return e_out, propagate(
            trace, e_out, signal_fn, use_skip, on_unit,
            through=self.norm_feedback == "through",
        )

    def signals(self, trace, labels):
        """The output error and every unit's `delta_u` (head: `e_L`), as `RecLRA.signals`."""

        def delta(ut, d):  # float32 whatever the compute dtype (mixed precision)
            pre = tf.cast(tf.stop_gradient(ut.pre), tf.float32)
            return tf.cast(d, tf.float32) * ut.unit.activation_derivative(pre)

        return self._walk(trace, labels, delta)

    def updates(self, trace, labels, local_gradients):
        # Each unit's backward pass starts at its activity with the displacement `d`, so
        # `delta = d * phi'(h)` comes from the activation's own gradient kernel (ReLU's from
        # `z`): no `phi'` tensor, and the pre-activation need not be kept for it.
        weight_updates = UnitUpdates(local_gradients, self.norm_feedback == "through",
                                     at="outputs")

        def displacement(ut, d):
            # A displacement of shape (batch, 1, 1, C) (the pooled head's, a skip synapse's)
            # spread over the feature map; a no-op when the shapes already agree.
            return tf.broadcast_to(tf.cast(d, tf.float32), tf.shape(ut.outputs))

        self._walk(trace, labels, displacement, weight_updates)
        return list(weight_updates.grads.values())


class WM(FA):
    """Weight mirror (Akrout, Wilson, Humphreys, Lillicrap & Tweed, NeurIPS 2019).

    Feedback alignment whose synapses `F` align to the forward weights by the local mirror
    rule (noise into each unit, `F <- (1 - lambda) F + lambda C`, docs/ALGORITHM.md#mirror),
    with the signals carried back through each unit's own BatchNorm: the strongest published peer of
    rec-LRA that transports no weights. `WM()` is `FA(synapse_update="mirror",
    norm_feedback="through")`.

    Args: as `FA`, with `synapse_update="mirror"` by default.

    Example:
        >>> model.compile(optimizer="adam", rule="wm")
    """

    name = "wm"
    defaults = dict(synapse_update="mirror", norm_feedback="through")


class KP(FA):
    """Kolen-Pollack (Akrout, Wilson, Humphreys, Lillicrap & Tweed, NeurIPS 2019).

    Feedback alignment whose synapses receive the same optimiser step as their forward
    kernels, plus their own weight decay: `F <- F + (W's step without W's decay) - c_F * F`,
    with `c_F = learning_rate * weight_decay` when the optimiser's decoupled weight decay
    applies to `F` (by its own exclusion rules, as if `F` were one of its variables) and 0
    otherwise. So `F - W` shrinks by `1 - c` each step when both decay; without weight decay
    it never changes and `F` aligns only as far as `W` moves away from where it started.
    Every step is local (a synapse sees its own kernel's step, which its unit computed) and
    the same on every replica. `KP()` is `FA(synapse_update="kp")`, signals carried back
    through each unit's BatchNorm.

    Args: as `FA`, with `synapse_update="kp"` by default.

    Example:
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1, weight_decay=5e-4), rule="kp")
    """

    name = "kp"
    defaults = dict(synapse_update="kp", norm_feedback="through")


class DFA(FA):
    """Direct feedback alignment (Nokland, 2016).

    Every hidden unit gets `delta_u = (S_u applied to e_L) * phi'(h_u)` through its own skip
    synapse; the synapses stay fixed. It takes no parameters.

    Example:
        >>> model.compile(optimizer="adam", rule="dfa")
    """

    name = "dfa"
    direct = True

    def __init__(self):
        super().__init__()

    def get_config(self):
        return {}


class BP(Rule):
    """Backpropagation: Keras' own gradient of the cross-entropy through the whole model.

    The model computes this one itself (`uses_backprop`); it is a rule object so that every
    rule is chosen the same way.
    """

    name = "bp"
    uses_backprop = True

    def updates(self, trace, labels, local_gradients):
        raise TypeError("BP has no local updates: the model differentiates the loss instead.")
