"""Every rule under the Keras mixed-precision policies: float32 variables and updates, and
updates close to the float32 step's (issue: mixed precision for every rule)."""

import keras
import numpy as np
import pytest

from rlra_tf import rules
from rlra_tf.models import mlp, resnet

RULES = ("rec_lra", "lra", "fa", "wm", "dfa", "bp")
# Stated tolerances, per parameter tensor, against the float32 step on the same weights and
# batch. bfloat16 keeps 8 significant bits, so the forward pass and the error convolutions
# differ from float32 by about 1% per value; on the tiny ResNet the worst tensor (a BatchNorm
# beta or gamma) measured cosine 0.954 and norm ratio 0.87-1.22 (backprop itself 0.961 and
# 0.87-1.01). float16 keeps 11: worst cosine 0.996, ratio 0.99-1.05.
TOLERANCE = {
    "mixed_bfloat16": {"cosine": 0.9, "ratio": (0.75, 1.33)},
    "mixed_float16": {"cosine": 0.99, "ratio": (0.9, 1.1)},
}


@pytest.fixture()
def policy_scope():
    """Restores the global float32 policy after the test, whatever happens."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def build(kind, seed=0):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(0)
    if kind == "mlp":
        model = mlp((6,), hidden_units=(8, 8), num_classes=3)
        return model, rng.normal(size=(8, 6)).astype("float32")
    return resnet("resnet_tiny", (8, 8, 2), 3), rng.uniform(size=(8, 8, 8, 2)).astype("float32")


def cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("rule", RULES)
def test_one_step_under_a_mixed_policy_matches_float32(policy_scope, policy, kind, rule):
    y = np.arange(8) % 3
    reference, x = build(kind)
    reference.compile(optimizer="sgd", rule=rule)
    want = {v.path: np.asarray(u) for u, v in reference.local_updates(x, y)}

    policy_scope(policy)
    model, x = build(kind)
    assert model.unit_layers[0].compute_dtype != "float32"
    model.compile(optimizer="sgd", rule=rule)
    updates, assigns = model.step_effects(x, y)
    assert {v.path for _, v in updates} == set(want)
    tol = TOLERANCE[policy]
    for update, var in updates:
        assert update.dtype == "float32", var.path  # handed to the optimiser in float32
        u = np.asarray(update)
        assert np.isfinite(u).all(), var.path
        cos = cosine(u, want[var.path])
        ratio = np.linalg.norm(u) / np.linalg.norm(want[var.path])
        assert cos >= tol["cosine"], (var.path, cos)
        assert tol["ratio"][0] <= ratio <= tol["ratio"][1], (var.path, ratio)
    for value, var in assigns:  # the mirror estimate is float32 too
        assert value.dtype == "float32" and np.isfinite(np.asarray(value)).all()
    assert (len(assigns) > 0) == (rule in ("rec_lra", "wm"))


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize("rule", ["rec_lra", "bp"])
def test_fit_keeps_every_variable_float32_and_finite(policy_scope, policy, rule):
    policy_scope(policy)
    model, x = build("resnet", seed=1)
    y = np.arange(8) % 3
    model.compile(optimizer=keras.optimizers.SGD(0.05), rule=rule, metrics=["accuracy"])
    if policy == "mixed_float16":  # Keras' loss scaling for backprop only
        scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert scaled == (rule == "bp")
    hist = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    for v in model.weights:
        assert v.dtype == "float32", v.path
        assert np.isfinite(v.numpy()).all(), v.path
    logits = model.predict(x, verbose=0)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_keras_file_saved_under_a_policy_reloads_and_keeps_training(policy_scope, tmp_path):
    policy_scope("mixed_bfloat16")
    model, x = build("resnet", seed=2)
    y = np.arange(8) % 3
    model.compile(optimizer="adam", rule="rec_lra")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "mixed.keras"
    model.save(path)
    policy_scope("float32")  # a fresh process would start with the default policy
    loaded = keras.saving.load_model(path)
    assert all(u.compute_dtype == "bfloat16" for u in loaded.unit_layers)
    norms = [u.norm_layer for u in loaded.unit_layers if getattr(u, "norm_layer", None)]
    assert norms and all(n.compute_dtype == "bfloat16" for n in norms)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_a_rule_object_under_float16_needs_no_loss_scaling(policy_scope):
    """The local rules differentiate no loss: their optimiser is the one given."""
    policy_scope("mixed_float16")
    model, x = build("mlp")
    optimizer = keras.optimizers.SGD(0.1)
    model.compile(optimizer=optimizer, rule=rules.RecLRA())
    assert model.optimizer is optimizer
