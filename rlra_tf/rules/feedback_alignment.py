"""Feedback alignment (FA) and direct feedback alignment (DFA), ALGORITHM.md section 4."""

import tensorflow as tf

from rlra_tf.rules.base import Rule, block_updates, output_error, propagate


class FA(Rule):
    """Feedback alignment (Lillicrap et al., 2016).

    `delta_u = (F_{u+1} applied to delta_{u+1}) * phi'(h_u)`, `dW_u` from `delta_u` and the
    unit's own input; the feedback synapses stay fixed.

    Example:
        >>> model.compile(optimizer="adam", rule="fa")
    """

    name = "fa"
    direct = False

    def signals(self, trace, labels, after_block=None):
        """The output error and every unit's `delta_u` (head: `e_L`), as `RecLRA.signals`."""
        e_out = output_error(tf.stop_gradient(trace.logits), labels)

        def delta(ut, d):
            return d * ut.unit.activation_derivative(tf.stop_gradient(ut.pre))

        def use_skip(b, i, bt):
            return self.direct

        return e_out, propagate(trace, e_out, delta, use_skip, after_block)

    def updates(self, trace, labels, local_gradients):
        grads = {}
        self.signals(trace, labels, block_updates(trace, local_gradients, grads))
        return list(grads.values())


class DFA(FA):
    """Direct feedback alignment (Nokland, 2016).

    Every hidden unit gets `delta_u = (S_u applied to e_L) * phi'(h_u)` through its own skip
    synapse; the synapses stay fixed.

    Example:
        >>> model.compile(optimizer="adam", rule="dfa")
    """

    name = "dfa"
    direct = True


class BP(Rule):
    """Backpropagation: Keras' own gradient of the cross-entropy through the whole model.

    The model computes this one itself (`uses_backprop`); it is a rule object so that every
    rule is chosen the same way.
    """

    name = "bp"
    uses_backprop = True

    def updates(self, trace, labels, local_gradients):
        raise TypeError("BP has no local updates: the model differentiates the loss instead.")
