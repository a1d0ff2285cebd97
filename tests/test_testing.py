"""`rlra_tf.testing`: the one-call checks pass on the library's own layers and rules, and catch a
wrong transpose, a wrong feedback and a rule that does not reload."""

import pytest
import tensorflow as tf

from rlra_tf import layers, rules, testing


@pytest.mark.parametrize("layer, shape", [
    (layers.Flatten(), (2, 4, 5, 3)),
    (layers.Pooling2D(3, 2, "same"), (2, 7, 6, 3)),
    (layers.Pooling2D(2, mode="avg"), (2, 6, 6, 2)),
    (layers.GlobalPooling2D("max"), (2, 5, 5, 3)),
    (layers.ZeroPadding2D(((1, 2), (3, 0))), (2, 4, 4, 2)),
    (layers.Dropout(0.4, seed=3), (3, 10)),
])
def test_check_transition_passes_on_the_library_transitions(layer, shape):
    testing.check_transition(layer, shape)


@pytest.mark.parametrize("unit, shape", [
    (layers.AlignedDense(5, activation="tanh"), (4, 6)),
    (layers.AlignedDense(5, norm="batch", activation="relu"), (6, 7)),
    (layers.AlignedConv2D(4, 3, strides=2, norm="batch", activation="relu"), (3, 7, 7, 2)),
    (layers.AlignedConv2D(3, (1, 3), padding="valid", activation="relu"), (2, 5, 6, 2)),
])
def test_check_unit_passes_on_the_library_units(unit, shape):
    testing.check_unit(unit, shape)


def test_the_checks_catch_mistakes():
    class BadTranspose(layers.Flatten):
        def transpose(self, displacement, transition_trace):
            return 2.0 * super().transpose(displacement, transition_trace)

    with pytest.raises(AssertionError, match="transpose vs gradient"):
        testing.check_transition(BadTranspose(), (2, 3, 3, 1))

    class BadFeedback(layers.AlignedDense):
        def feedback_input(self, error, input_shape=None):
            return tf.matmul(error, tf.transpose(self.feedback)) + 0.1

    with pytest.raises(AssertionError, match="feedback_input"):
        testing.check_unit(BadFeedback(4), (3, 5))


@pytest.mark.parametrize("rule", ["rec_lra", "fa", "bp"])
def test_check_rule_passes_on_built_in_rules(rule):
    testing.check_rule(rule)


def test_check_rule_catches_a_rule_that_does_not_reload():
    class Forgetful(rules.FA):
        name = "forgetful_fa"

        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale  # not in get_config: the reloaded rule has scale 1

        def updates(self, trace, labels, local_gradients):
            pairs = super().updates(trace, labels, local_gradients)
            return [(self.scale * u, v) for u, v in pairs]

    rules.register(Forgetful)
    with pytest.raises(AssertionError, match="after reloading"):
        testing.check_rule(Forgetful(scale=2.0))
    rules.RULES.pop("forgetful_fa")
