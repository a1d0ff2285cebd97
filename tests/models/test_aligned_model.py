"""AlignedModel: fit with every rule, save/load, MirroredStrategy and XLA equivalence, label
checks, evaluate as Keras, sample and class weights."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import rlra_tf
from rlra_tf import rules
from rlra_tf.models import mlp, resnet
from rlra_tf.models.labels import checked_class_ids


def blobs(n=240, dim=10, k=3, seed=0):
    """Three Gaussian clusters: a small problem any working rule learns quickly."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(0, 1.0, (k, dim))
    y = rng.randint(0, k, n)
    x = centres[y] + rng.normal(0, 0.6, (n, dim))
    return x.astype("float32"), y.astype("int32")


def small_model(seed=1, hidden=(16, 16), block_size=1):
    keras.utils.set_random_seed(seed)
    return mlp((10,), hidden_units=hidden, num_classes=3, block_size=block_size)


@pytest.mark.parametrize("rule", rules.NAMES)
def test_every_rule_learns_a_small_problem(rule):
    x, y = blobs()
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), rule=rule, metrics=["accuracy"],
                  jit_compile=False)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert after["accuracy"] > 0.85, (rule, before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy"}


def test_compile_rejects_a_foreign_loss_and_unknown_rule():
    model = small_model()
    with pytest.raises(ValueError, match="loss='mse'"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="'magic'"):
        model.compile(rule="magic")
    with pytest.raises(ValueError, match="jit_compile='yes'"):
        model.compile(jit_compile="yes")


def test_feedback_weights_are_non_trainable_and_counted_apart():
    model = small_model(hidden=(16, 8))
    n_forward, n_feedback = model.count_params_split()
    assert n_forward == (10 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)
    # F has the kernel's shape; S is [K, units] on hidden units.
    assert n_feedback == 10 * 16 + 16 * 8 + 8 * 3 + 3 * 16 + 3 * 8
    assert all(not w.trainable for w in model.feedback_weights)
    assert not any(w is f for w in model.trainable_weights for f in model.feedback_weights)


def test_which_rules_move_the_error_synapses():
    x, y = blobs(n=32)
    for rule, moves in [("rec_lra", True), ("lra", True), ("fa", False), ("wm", True),
                        ("kp", True), ("dfa", False), (rules.RecLRA(synapse_update="fixed"), False),
                        (rules.RecLRA(mirror_rate=0.0, mirror_track=False), False),
                        (rules.RecLRA(mirror_rate=0.0), True)]:  # tracked: F follows W's steps
        model = small_model()
        before = [w.numpy().copy() for w in model.feedback_weights]
        model.compile(optimizer="sgd", rule=rule, jit_compile=False)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        after = [w.numpy() for w in model.feedback_weights]
        changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
        assert any(changed) == moves, rule
        skips = [w for w in model.feedback_weights if "skip" in w.path]
        assert skips and all(  # skip synapses stay fixed by default
            np.array_equal(w.numpy(), b) for w, b in zip(model.feedback_weights, before)
            if "skip" in w.path
        ), rule


def test_save_load_round_trip_and_continued_training(tmp_path):
    x, y = blobs(n=64)
    model = small_model(block_size=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  rule=rules.RecLRA(beta=0.2, skip_update="hebbian"), metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, rlra_tf.models.AlignedModel)
    assert loaded.rule.get_config() == model.rule.get_config()
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    for a, b in zip(model.feedback_weights, loaded.feedback_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_get_config_round_trip():
    model = small_model(block_size=2)
    clone = rlra_tf.models.AlignedModel.from_config(model.get_config())
    clone.build((None, 10))
    assert [type(b).__name__ for b in clone.blocks] == [type(b).__name__ for b in model.blocks]
    assert [u.units for u in clone.unit_layers] == [u.units for u in model.unit_layers]
    assert [len(b.unit_layers) for b in clone.blocks] == [2, 1]


def train_three_steps(rule, jit_compile, strategy=None):
    x, y = blobs(n=24, seed=3)
    scope = strategy.scope() if strategy is not None else tf.name_scope("single")
    with scope:
        model = small_model(seed=5, block_size=2)
        # SGD, not Adam: Adam is scale-invariant and would hide a wrong replica scaling.
        model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9), rule=rule,
                      jit_compile=jit_compile)
    model.fit(x, y, epochs=3, batch_size=24, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights]


@pytest.mark.parametrize("rule", ["rec_lra", "bp", "lra", "wm"])
def test_mirrored_strategy_equals_one_device(rule, mirrored_strategy):
    single = train_three_steps(rule, False)
    start = [w.copy() for w in single]
    for jit in (False, True):
        mirrored = train_three_steps(rule, jit, mirrored_strategy)
        for a, b in zip(single, mirrored):
            np.testing.assert_allclose(a, b, atol=1e-5)
    model = small_model(seed=5, block_size=2)  # and training did move the weights
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(start, model.weights))


@pytest.mark.parametrize("rule", rules.NAMES)
def test_jit_compile_equals_graph_mode(rule):
    a = train_three_steps(rule, False)
    b = train_three_steps(rule, True)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Labels and inputs that do not fit the model: refused with the value and num_classes.


def out_of_range(value):
    return (f"Received a label value of {value} which is outside the valid range [0, 3) of "
            "this model (num_classes=3)")


@pytest.mark.parametrize("rule", rules.NAMES)
def test_labels_out_of_range_stop_fit_under_every_rule(rule):
    x, y = blobs(n=16)
    model = small_model()
    model.compile(optimizer="sgd", rule=rule, jit_compile=False)
    before = [w.numpy().copy() for w in model.weights]
    bad = y.copy()
    bad[5] = 3
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(out_of_range(3))):
        model.fit(x, bad, epochs=1, batch_size=16, verbose=0)
    for w, b in zip(model.weights, before):  # nothing was applied
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.path)


def test_bad_labels_and_inputs_name_the_value_and_the_model():
    x, y = blobs(n=16)
    cases = [
        (np.where(np.arange(16) == 2, -1, y), tf.errors.InvalidArgumentError, out_of_range(-1)),
        (y.astype("float32") + 0.5, tf.errors.InvalidArgumentError,
         "Received a label value of 0.5, which is not a class id: expected integers in [0, 3) "
         "(this model has num_classes=3) or one-hot labels of width 3"),
        (np.eye(5, dtype="float32")[y], ValueError,
         "Received one-hot labels of width 5 (labels of shape (16, 5)), but this model has "
         "num_classes=3"),
        (np.stack([y, y], -1)[..., None], ValueError, "received: labels of shape (16, 2, 1)"),
    ]
    for labels, error, message in cases:
        model = small_model()
        model.compile(optimizer="sgd", metrics=["accuracy"], jit_compile=False)
        with pytest.raises(error, match=re.escape(message)):
            model.fit(x, labels, epochs=1, batch_size=16, verbose=0)
    model = small_model()
    model.compile(optimizer="sgd", metrics=["accuracy"], jit_compile=False)
    with pytest.raises(ValueError, match=re.escape(
            "Expected inputs of shape (None, 10) (batch first) for model 'mlp', received: "
            "inputs of shape (16, 12)")):
        model.fit(np.zeros((16, 12), "float32"), y, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(out_of_range(7))):
        model.evaluate(x, np.full(16, 7), verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(out_of_range(3))):
        model.local_updates(x, np.full(16, 3))
    # Whole floats and (batch, 1) columns are class ids; int one-hot rows are one-hot.
    ids = model.class_labels(y.astype("float32").reshape(-1, 1))
    np.testing.assert_array_equal(ids.numpy(), np.eye(3)[y])
    np.testing.assert_array_equal(model.class_labels(np.eye(3, dtype="int64")[y]).numpy(),
                                  np.eye(3)[y])


def test_checked_class_ids_in_a_tf_data_pipeline_name_the_source():
    ds = tf.data.Dataset.from_tensor_slices(np.array([0, 4, 11, 2], "int32")).batch(4)
    ds = ds.map(lambda y: checked_class_ids(y, 10, where="train data"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            "Received a label value of 11 (train data) which is outside the valid range "
            "[0, 10) of this model (num_classes=10)")):
        list(ds)


# ---------------------------------------------------------------------------------------------
# evaluate and the logs, as a Keras model compiled with the same loss and metrics.


def plain_keras_copy(model):
    """A Keras functional MLP with `model`'s forward weights (tanh hidden units)."""
    inputs = keras.Input((10,))
    z = inputs
    for unit in model.unit_layers:
        layer = keras.layers.Dense(unit.units, activation=unit.activation)
        z = layer(z)
        layer.set_weights([unit.kernel.numpy(), unit.bias.numpy()])
    return keras.Model(inputs, z)


@pytest.mark.parametrize("one_hot", [False, True], ids=["class_ids", "one_hot"])
def test_evaluate_returns_and_names_results_as_keras(one_hot):
    x, y = blobs(n=40)
    labels = np.eye(3, dtype="float32")[y] if one_hot else y
    weights = np.linspace(0.0, 2.0, 40).astype("float32")
    model = small_model()
    model.compile(optimizer="sgd", metrics=["accuracy"], weighted_metrics=["accuracy"],
                  jit_compile=False)
    plain = plain_keras_copy(model)
    loss = (keras.losses.CategoricalCrossentropy if one_hot
            else keras.losses.SparseCategoricalCrossentropy)(from_logits=True)
    plain.compile(optimizer="sgd", loss=loss, metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0),
                               atol=1e-6)
    assert model.metrics_names == plain.metrics_names
    for kwargs in ({}, {"sample_weight": weights}):
        ours = model.evaluate(x, labels, batch_size=16, verbose=0, **kwargs)
        theirs = plain.evaluate(x, labels, batch_size=16, verbose=0, **kwargs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        ours = model.evaluate(x, labels, batch_size=16, verbose=0, return_dict=True, **kwargs)
        theirs = plain.evaluate(x, labels, batch_size=16, verbose=0, return_dict=True, **kwargs)
        assert list(ours) == list(theirs)
        np.testing.assert_allclose(list(ours.values()), list(theirs.values()), rtol=1e-5)
    assert model.metrics_names == plain.metrics_names
    history = model.fit(x, labels, epochs=1, batch_size=40, verbose=0, sample_weight=weights,
                        validation_data=(x, labels, weights))
    assert set(history.history) == set(plain.fit(
        x, labels, epochs=1, batch_size=40, verbose=0, sample_weight=weights,
        validation_data=(x, labels, weights)).history)
    model.compile(optimizer="sgd", metrics=["accuracy"], jit_compile=False)
    loss_value, accuracy = model.evaluate(x, labels, verbose=0)
    assert loss_value > 0.0 and accuracy == pytest.approx(np.mean(
        np.argmax(model.predict(x, verbose=0), -1) == y))


# ---------------------------------------------------------------------------------------------
# Sample and class weights.


def conv_model():
    keras.utils.set_random_seed(2)
    return resnet("resnet_tiny", input_shape=(6, 6, 2), num_classes=3, norm=None)


def weighted_and_repeated(model, x, y, w):
    n = len(w)
    weighted = {v.path: np.asarray(u) for u, v in model.local_updates(x, y, sample_weight=w)}
    repeated = {v.path: np.asarray(u) * w.sum() / n
                for u, v in model.local_updates(np.repeat(x, w, 0), np.repeat(y, w, 0))}
    return weighted, repeated


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_integer_sample_weights_equal_repeated_examples_under_every_rule(architecture):
    """Without BatchNorm, weights w give the update of the batch with example i repeated
    w_i times, times sum(w) / n, under every rule."""
    w = np.array([1, 0, 3, 2, 1, 2])
    if architecture == "mlp":
        x, y = blobs(n=6, seed=4)
    else:
        rng = np.random.RandomState(4)
        x, y = rng.rand(6, 6, 6, 2).astype("float32"), rng.randint(0, 3, 6)
    for rule in rules.NAMES:
        model = small_model() if architecture == "mlp" else conv_model()
        model.compile(optimizer="sgd", rule=rule, jit_compile=False)
        weighted, repeated = weighted_and_repeated(model, x, y, w)
        assert weighted.keys() == repeated.keys() and weighted
        for path, update in weighted.items():
            np.testing.assert_allclose(update, repeated[path], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{rule} {path}")
        unweighted = {v.path: np.asarray(u) for u, v in model.local_updates(x, y)}
        assert any(not np.allclose(unweighted[p], weighted[p], atol=1e-6) for p in weighted)


def test_unit_sample_weights_change_nothing_with_batchnorm():
    """With BatchNorm the errors sent down come from a second, unweighted backward pass:
    weights of one reproduce the unweighted update exactly."""
    rng = np.random.RandomState(5)
    x, y = rng.rand(4, 6, 6, 2).astype("float32"), rng.randint(0, 3, 4)
    for rule in ("rec_lra", "fa", "bp"):
        keras.utils.set_random_seed(2)
        model = resnet("resnet_tiny", input_shape=(6, 6, 2), num_classes=3)
        model.compile(optimizer="sgd", rule=rule, jit_compile=False)
        ones = {v.path: np.asarray(u)
                for u, v in model.local_updates(x, y, sample_weight=np.ones(4))}
        plain = {v.path: np.asarray(u) for u, v in model.local_updates(x, y)}
        for path in plain:
            np.testing.assert_allclose(ones[path], plain[path], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{rule} {path}")


@pytest.mark.parametrize("rule", ["rec_lra", "bp"])
def test_fit_applies_the_weighted_update_and_class_weight_equals_sample_weight(rule):
    x, y = blobs(n=12, seed=6)
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    w = np.array([class_weight[c] for c in y], "float32")
    trained = []
    for kwargs in ({"sample_weight": w}, {"class_weight": class_weight}):
        model = small_model()
        model.compile(optimizer=keras.optimizers.SGD(1.0), rule=rule, jit_compile=False)
        start = {v.path: v.numpy().copy() for v in model.trainable_variables}
        expected = {v.path: np.asarray(u) for u, v in model.local_updates(x, y, sample_weight=w)}
        model.fit(x, y, epochs=1, batch_size=12, shuffle=False, verbose=0, **kwargs)
        for v in model.trainable_variables:
            np.testing.assert_allclose(v.numpy(), start[v.path] - expected[v.path], atol=1e-6,
                                       err_msg=v.path)
        trained.append([v.numpy() for v in model.weights])
    for a, b in zip(*trained):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=re.escape("received: 5 sample weights for 12")):
        model.local_updates(x, y, sample_weight=np.ones(5))
