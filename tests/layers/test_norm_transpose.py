"""The BatchNorm transpose (docs/ALGORITHM.md#norm-transpose): TensorFlow's fused gradient
kernel, the formula with every mean all-reduced (synchronised BatchNorm), and a unit's updates
through either, all against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf.layers import aligned_conv2d
from rlra_tf.layers.fused_batch_norm import FusedBatchNormalization


def np_backward(e, x, gamma, eps):
    """`(gamma / sigma) (e - mean(e) - xhat mean(e xhat))`, `sum(e xhat)`, `sum(e)`."""
    axes = (0, 1, 2)
    mean, var = x.mean(axes), x.var(axes)
    xhat = (x - mean) / np.sqrt(var + eps)
    dx = gamma / np.sqrt(var + eps) * (e - e.mean(axes) - xhat * (e * xhat).mean(axes))
    return dx, (e * xhat).sum(axes), e.sum(axes)


def norm_with(gamma, beta, synchronized=False, eps=1e-5):
    norm = FusedBatchNormalization(epsilon=eps, synchronized=synchronized)
    norm.build((None, 3, 4, gamma.shape[0]))
    norm.gamma.assign(gamma.astype("float32"))
    norm.beta.assign(beta.astype("float32"))
    return norm


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (1, 2, 2, 3)])
def test_fused_transpose_matches_numpy_and_the_formula(shape):
    rng = np.random.default_rng(shape[0])
    x = rng.normal(1.5, 2.0, shape)
    e = rng.normal(size=shape)
    gamma, beta = 1.0 + 0.4 * rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    norm = norm_with(gamma, beta)
    want, _, _ = np_backward(e, x, gamma, 1e-5)
    xt, et = tf.constant(x, tf.float32), tf.constant(e, tf.float32)
    fused = aligned_conv2d.norm_transpose(norm, et, xt).numpy()
    np.testing.assert_allclose(fused, want, atol=2e-5 * np.abs(want).max())
    # The op-by-op formula (what a synchronised BatchNorm runs; on one device the means are
    # this batch's) gives the same numbers.
    formula = aligned_conv2d._synchronized_norm_backward(norm, et, xt)[0].numpy()
    np.testing.assert_allclose(fused, formula, atol=2e-5 * np.abs(want).max())
    # In a traced function too (where oneDNN may rewrite the kernel).
    traced = tf.function(aligned_conv2d.norm_transpose)(norm, et, xt).numpy()
    np.testing.assert_allclose(traced, fused, atol=1e-6 * np.abs(want).max())


def test_fused_transpose_is_backprops_batch_norm_gradient():
    """Given the forward's own batch statistics, the kernel computes what differentiating the
    layer gives (the gradient backprop takes through it)."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(6, 4, 4, 5)), tf.float32)
    e = tf.constant(rng.normal(size=(6, 4, 4, 5)), tf.float32)
    norm = norm_with(1.0 + 0.3 * rng.normal(size=5), rng.normal(size=5))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = norm(x, training=True)
    want = tape.gradient(y, x, output_gradients=e).numpy()
    got = aligned_conv2d.norm_transpose(norm, e, x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bfloat16_error_keeps_its_dtype():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(4, 3, 3, 2)), tf.bfloat16)
    e = tf.constant(rng.normal(size=(4, 3, 3, 2)), tf.bfloat16)
    norm = norm_with(np.ones(2), np.zeros(2))
    got = aligned_conv2d.norm_transpose(norm, e, x)
    assert got.dtype == tf.bfloat16
    want, _, _ = np_backward(e.numpy().astype("float64"), x.numpy().astype("float64"),
                             np.ones(2), 1e-5)
    np.testing.assert_allclose(got.numpy().astype("float64"), want, atol=0.05)


def test_synchronized_backward_gives_the_parameters_derivatives():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3, 4, 3))
    e = rng.normal(size=(4, 3, 4, 3))
    gamma = 1.0 + 0.3 * rng.normal(size=3)
    norm = norm_with(gamma, rng.normal(size=3), synchronized=True)
    dx, dgamma, dbeta = aligned_conv2d._synchronized_norm_backward(
        norm, tf.constant(e, tf.float32), tf.constant(x, tf.float32))
    want = np_backward(e, x, gamma, 1e-5)
    for got, w in zip((dx, dgamma, dbeta), want):
        np.testing.assert_allclose(got.numpy(), w, atol=2e-5 * np.abs(w).max())


@pytest.mark.parametrize("rule", ["rec_lra", "fa"])
def test_synchronized_units_update_like_plain_ones_on_one_device(rule):
    """A unit with synchronised BatchNorm takes its updates by formula
    (`synchronized_norm_backward`) rather than by differentiating the all-reduces; on one
    device that is the same as a plain BatchNorm's, differentiated by the fused kernel."""
    from rlra_tf.models import resnet

    x = np.random.default_rng(6).uniform(size=(6, 8, 8, 2)).astype("float32")
    y = np.arange(6) % 3
    out = []
    for norm in ("batch", "sync_batch"):
        keras.utils.set_random_seed(9)
        model = resnet("resnet_tiny", (8, 8, 2), 3, norm=norm)
        model.compile(optimizer="sgd", rule=rule, jit_compile=False)
        out.append({v.path: u.numpy() for u, v in model.local_updates(x, y)})
    plain, synced = out
    assert sorted(plain) == sorted(synced)
    for path in plain:
        np.testing.assert_allclose(synced[path], plain[path], atol=1e-5, err_msg=path)
