"""FusedBatchNormalization against BatchNorm worked out in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf.layers import FusedBatchNormalization

EPS = 1e-5


def _data(seed=0, shape=(4, 3, 5, 6)):
    rng = np.random.RandomState(seed)
    x = (rng.randn(*shape) * 2.0 + 0.7).astype("float32")  # (batch, height, width, channels)
    g = rng.randn(*shape).astype("float32")  # an upstream gradient
    gamma = (1.0 + 0.3 * rng.randn(shape[-1])).astype("float32")
    beta = (0.2 * rng.randn(shape[-1])).astype("float32")
    return x, g, gamma, beta


def _numpy_bn(x, g, gamma, beta):
    """Training-mode BatchNorm in float64: output, batch mean, biased variance and gradients."""
    x, g = x.astype("float64"), g.astype("float64")
    mean = x.mean(axis=(0, 1, 2))
    var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mean) * inv
    y = gamma * xhat + beta
    dx = gamma * inv * (g - g.mean(axis=(0, 1, 2)) - xhat * (g * xhat).mean(axis=(0, 1, 2)))
    return y, mean, var, dx, (g * xhat).sum(axis=(0, 1, 2)), g.sum(axis=(0, 1, 2))


def _layer(x, gamma, beta, momentum=0.9, **kwargs):
    layer = FusedBatchNormalization(momentum=momentum, epsilon=EPS, **kwargs)
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    return layer


@pytest.mark.parametrize("jit", [False, True])
def test_training_step_matches_numpy(jit):
    x, g, gamma, beta = _data()
    layer = _layer(x, gamma, beta)
    moving_mean0 = np.linspace(-1, 1, 6).astype("float32")
    moving_var0 = np.linspace(0.5, 2, 6).astype("float32")
    layer.moving_mean.assign(moving_mean0)
    layer.moving_variance.assign(moving_var0)

    @tf.function(jit_compile=jit)
    def step(xt, gt):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
        return (y,) + tuple(tape.gradient(y, [xt, layer.gamma, layer.beta], output_gradients=gt))

    y, dx, dgamma, dbeta = [t.numpy() for t in step(tf.constant(x), tf.constant(g))]
    ny, mean, var, ndx, ndgamma, ndbeta = _numpy_bn(x, g, gamma, beta)
    np.testing.assert_allclose(y, ny, atol=2e-5)
    np.testing.assert_allclose(dx, ndx, atol=2e-5)
    np.testing.assert_allclose(dgamma, ndgamma, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbeta, ndbeta, rtol=1e-4, atol=1e-4)
    # The moving statistics move towards the batch mean and the *biased* batch variance.
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * moving_mean0 + 0.1 * mean,
                               atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 * moving_var0 + 0.1 * var,
                               atol=1e-5)


def test_inference_uses_moving_statistics():
    x, _, gamma, beta = _data(1)
    layer = _layer(x, gamma, beta)
    layer.moving_mean.assign(np.full(6, 0.5, "float32"))
    layer.moving_variance.assign(np.full(6, 4.0, "float32"))
    y = layer(x, training=False).numpy()
    np.testing.assert_allclose(y, gamma * (x - 0.5) / np.sqrt(4.0 + EPS) + beta, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5)  # untouched


def test_falls_back_to_keras_for_what_the_kernel_does_not_cover():
    # 2D inputs (a Dense layer's) and masks take Keras' path; the results are still BatchNorm's.
    rng = np.random.RandomState(2)
    x = rng.randn(8, 6).astype("float32")
    layer = FusedBatchNormalization(epsilon=EPS)
    y = layer(x, training=True).numpy()
    expect = (x - x.mean(0)) / np.sqrt(x.var(0) + EPS)
    np.testing.assert_allclose(y, expect, atol=1e-5)
    layer4 = FusedBatchNormalization(epsilon=EPS, synchronized=True)
    x4, *_ = _data(3)
    y4 = layer4(x4, training=True).numpy()
    mean, var = x4.mean((0, 1, 2)), x4.var((0, 1, 2))
    np.testing.assert_allclose(y4, (x4 - mean) / np.sqrt(var + EPS), atol=1e-5)
    assert not layer4._fusable(tf.constant(x4), True, None)
    assert FusedBatchNormalization()._fusable(tf.constant(x4), True, None)


def test_mixed_precision_keeps_float32_statistics():
    x, g, gamma, beta = _data(4)
    layer = FusedBatchNormalization(momentum=0.9, epsilon=EPS, dtype="mixed_bfloat16")
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    y = layer(tf.cast(x, tf.bfloat16), training=True)
    assert y.dtype == tf.bfloat16
    assert layer.moving_mean.dtype == "float32"
    xb = tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()
    ny, mean, *_ = _numpy_bn(xb, g, gamma, beta)
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), ny, atol=0.05)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, atol=1e-4)


def test_config_round_trip():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-3, name="bn")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, FusedBatchNormalization)
    assert (clone.momentum, clone.epsilon) == (0.8, 1e-3)


@pytest.mark.parametrize("rule", ["bp", "rec_lra"])
def test_a_resnet_step_equals_the_step_with_keras_batch_norm(rule, monkeypatch):
    # The whole step through the conv units' BatchNorms (forward, the rule's local backward
    # passes, the through-BatchNorm errors, the moving statistics) against Keras' own
    # BatchNormalization code path on the same model, weights and batch.
    from rlra_tf.models import resnet

    rng = np.random.RandomState(5)
    x = rng.rand(8, 12, 12, 1).astype("float32")
    y = rng.randint(0, 4, 8)

    def step():
        keras.utils.set_random_seed(0)
        model = resnet("resnet_tiny", input_shape=(12, 12, 1), num_classes=4)
        model.compile(optimizer="adam", rule=rule)
        updates = {v.path: u.numpy() for u, v in model.local_updates(x, y)}
        moving = {w.path: w.numpy() for w in model.weights if "moving" in w.path}
        return updates, moving

    fused_updates, fused_moving = step()
    monkeypatch.setattr(FusedBatchNormalization, "_fusable", lambda *args: False)
    keras_updates, keras_moving = step()
    assert fused_updates.keys() == keras_updates.keys() and len(fused_updates) > 10
    assert any("norm/gamma" in k for k in fused_updates)
    for k, a in fused_updates.items():
        b = keras_updates[k]
        cosine = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)
        assert cosine > 0.9999, (k, cosine)
        np.testing.assert_allclose(np.linalg.norm(a), np.linalg.norm(b), rtol=1e-2, err_msg=k)
    assert len(fused_moving) > 4
    for k, a in fused_moving.items():
        np.testing.assert_allclose(a, keras_moving[k], atol=1e-5, err_msg=k)


def test_a_single_value_per_channel_gives_zero_batch_variance():
    # n = 1 (batch 1, 1x1 map): the kernel's Bessel correction would divide by n - 1 = 0.
    layer = FusedBatchNormalization(momentum=0.9, epsilon=EPS)
    y = layer(tf.fill((1, 1, 1, 3), 2.0), training=True)
    np.testing.assert_allclose(y.numpy(), 0.0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.2, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9, rtol=1e-6)  # 0.9 * 1 + 0
