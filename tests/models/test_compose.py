"""Models composed by hand from units, transitions and blocks: they build themselves, check their
head, and their F = W local update is backprop's gradient of the same network as plain Keras
layers (`to_keras`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rlra_tf
from rlra_tf.layers import (
    AlignedConv2D,
    AlignedDense,
    Dropout,
    Flatten,
    GlobalPooling2D,
    Pooling2D,
    ZeroPadding2D,
)
from rlra_tf.models import AlignedModel, ResidualStack, UnitStack


def cnn(dropout=0.0):
    conv = dict(norm="batch", activation="relu", skip_classes=10)
    return AlignedModel([
        UnitStack([ZeroPadding2D(1), AlignedConv2D(8, 3, padding="valid", **conv),
                   Pooling2D(2)], name="conv1"),
        UnitStack([AlignedConv2D(16, 3, strides=2, **conv), Pooling2D(3, 2, "same", "avg"),
                   Flatten()], name="conv2"),
        UnitStack([AlignedDense(32, activation="relu", norm="batch", skip_classes=10)]
                  + ([Dropout(dropout, seed=1)] if dropout else []), name="dense"),
        ResidualStack([AlignedDense(32, activation="tanh", skip_classes=10),
                       AlignedDense(32, activation="relu", skip_classes=10)], name="res"),
        UnitStack([AlignedDense(10)], name="head"),
    ], num_classes=10, name="hand_cnn")


def batch(n=8, shape=(16, 16, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, 10, n)


def test_an_unbuilt_model_builds_itself_in_fit_and_trains_under_every_rule():
    x, y = batch(16)
    for rule in ("rec_lra", "lra", "fa", "wm", "dfa", "bp"):
        keras.utils.set_random_seed(0)
        model = cnn(dropout=0.3)
        assert not model.built
        model.compile(optimizer="adam", rule=rule, metrics=["accuracy"])
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert model.built and np.isfinite(history.history["loss"]).all(), rule


@pytest.mark.parametrize("rule", ["rec_lra", "fa"])
def test_identity_against_the_same_network_in_plain_keras(rule):
    """F := W (and beta = 1e-3 for rec_lra): the update of every parameter is backprop's
    gradient of the plain Keras copy (to_keras) on the same batch, in training mode: exactly
    for FA (linear in the error), to the finite difference of beta for rec_lra (the bar of
    the conversion identity: cosine >= 0.998, norm ratio 0.95-1.05)."""
    low, ratio = (0.998, 0.05) if rule == "rec_lra" else (0.99999, 1e-4)
    keras.utils.set_random_seed(1)
    model = cnn()
    x, y = batch()
    model.build((None,) + x.shape[1:])
    for unit in model.unit_layers:
        for feedback, kernel in unit.feedback_pairs:
            feedback.assign(kernel)
    plain = model.to_keras()
    chosen = rlra_tf.rules.RecLRA(beta=1e-3, synapse_update="fixed") if rule == "rec_lra" \
        else rlra_tf.rules.FA()
    model.compile(optimizer="sgd", rule=chosen)
    updates = {id(v): u for u, v in model.local_updates(x, y)}
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, plain(x, training=True), from_logits=True))
    theirs = plain.trainable_weights
    grads = dict(zip((w.path for w in theirs), tape.gradient(loss, theirs)))
    ours = [w for w in model.trainable_weights]
    assert len(ours) == len(theirs)
    for mine, their in zip(ours, theirs):  # the same order: to_keras copies unit by unit
        assert tuple(mine.shape) == tuple(their.shape)
        u, g = updates[id(mine)], grads[their.path]
        g_norm = float(tf.norm(g))
        if g_norm < 1e-6:  # a bias in front of BatchNorm: zero in exact arithmetic
            assert float(tf.norm(u)) < 1e-5, mine.path
            continue
        cosine = float(tf.reduce_sum(u * g)) / (float(tf.norm(u)) * g_norm)
        assert cosine >= low, (mine.path, cosine)
        assert abs(float(tf.norm(u)) / g_norm - 1) <= ratio, mine.path


def test_the_head_is_checked_when_the_model_is_built():
    def model(head):
        return AlignedModel([UnitStack([Flatten(), AlignedDense(8, activation="relu")]),
                             UnitStack([head])], num_classes=10)

    with pytest.raises(ValueError, match="head unit 'out' has activation='softmax'.*logits"):
        model(AlignedDense(10, activation="softmax", name="out")).build((None, 4, 4, 1))
    with pytest.raises(ValueError, match=r"output has shape \(None, 7\).*num_classes=10"):
        model(AlignedDense(7, name="out")).build((None, 4, 4, 1))
    with pytest.raises(ValueError, match="takes blocks.*Dense"):
        AlignedModel([keras.layers.Dense(10)], num_classes=10).build((None, 4))
    with pytest.raises(ValueError, match="transitions after its output unit"):
        AlignedModel([UnitStack([Flatten(), AlignedDense(10), Dropout(0.1)])],
                     num_classes=10).build((None, 4, 4, 1))


def test_a_dense_unit_after_convolutions_needs_a_transition():
    model = AlignedModel([UnitStack([AlignedConv2D(4, 3)]), UnitStack([AlignedDense(10)])],
                         num_classes=10)
    with pytest.raises(ValueError, match="expects inputs of shape \\(batch, features\\).*Flatten"):
        model.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="units .* and transitions .*received .*ReLU"):
        UnitStack([AlignedDense(4), keras.layers.ReLU()])


def test_a_composed_model_saves_and_reloads(tmp_path):
    keras.utils.set_random_seed(2)
    model = cnn(dropout=0.2)
    x, y = batch()
    model.compile(optimizer="adam", rule="rec_lra")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "hand.keras")
    loaded = keras.saving.load_model(tmp_path / "hand.keras")
    np.testing.assert_array_equal(loaded(x), model(x))
    assert [type(b).__name__ for b in loaded.blocks] == [type(b).__name__ for b in model.blocks]
    assert isinstance(loaded.blocks[1].transition_layers[-1], Flatten)


def test_pooled_head_is_a_unit_stack_of_a_global_pool_and_a_dense_unit():
    head = rlra_tf.models.PooledHead(5)
    assert isinstance(head, UnitStack)
    assert [type(layer) for layer in head.layers_in_order] == [GlobalPooling2D, AlignedDense]
    assert rlra_tf.models.PooledHead.from_config(head.get_config()).num_classes == 5
