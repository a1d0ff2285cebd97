"""AlignedConv2D against independent NumPy numbers (explicit loops over kernel offsets)."""

import numpy as np
import pytest
import tensorflow as tf
from conv_reference import (
    EPS,
    np_batch_norm,
    np_batch_norm_backward,
    np_conv,
    np_conv_transpose,
    np_filter_correlation,
)

from rlra_tf.layers import AlignedConv2D

# ------------------------------------------------------------------------------- helpers


def local_update(unit, x, error, residual=None, training=True):
    """The unit's update exactly as AlignedModel forms it: d sum(e * h) / n, input held."""
    n = x.shape[0]
    variables = unit.trainable_variables
    with tf.GradientTape() as tape:
        r = None if residual is None else tf.stop_gradient(tf.constant(residual, tf.float32))
        h = unit.pre_activation(
            tf.stop_gradient(tf.constant(x, tf.float32)), residual=r, training=training
        )
    grads = tape.gradient(h, variables, output_gradients=tf.constant(error / n, tf.float32))
    return {v.path.split("/")[-1]: g.numpy() for v, g in zip(variables, grads)}


def set_weights(unit, rng):
    """Hand-set every weight (forward and feedback) to known random numbers."""
    values = {}
    for v in unit.weights:
        if "moving" in v.path:
            continue
        value = rng.normal(size=v.shape).astype("float32")
        if v.path.endswith("gamma"):
            value = 1.0 + 0.3 * value
        v.assign(value)
        values[v.path.split("/")[-1]] = value.astype("float64")
    return values


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_forward_displacement_and_update_match_numpy(strides, padding):
    rng = np.random.default_rng(10 * strides + len(padding))
    x = rng.normal(size=(3, 7, 6, 2))
    unit = AlignedConv2D(4, 3, strides=strides, padding=padding, activation="relu",
                         skip_classes=5)
    unit.build(x.shape)
    w = set_weights(unit, rng)
    h_np = np_conv(x, w["kernel"], strides, padding) + w["bias"]
    h = unit.pre_activation(tf.constant(x, tf.float32)).numpy()
    assert h.shape == h_np.shape
    assert h.shape[1:] == unit.compute_output_shape((None, 7, 6, 2))[1:]
    np.testing.assert_allclose(h, h_np, atol=1e-5)

    e = rng.normal(size=h.shape)
    d = unit.feedback_input(tf.constant(e, tf.float32)).numpy()
    np.testing.assert_allclose(d, np_conv_transpose(e, w["feedback"], strides, padding, x.shape),
                               atol=1e-5)

    upd = local_update(unit, x, e)
    n = x.shape[0]
    np.testing.assert_allclose(
        upd["kernel"], np_filter_correlation(x, e, w["kernel"].shape, strides, padding) / n,
        atol=1e-5,
    )
    np.testing.assert_allclose(upd["bias"], e.sum(axis=(0, 1, 2)) / n, atol=1e-5)


def test_output_shape_matches_conv():
    cases = [(1, "same", 7), (2, "same", 7), (2, "valid", 8), (3, "valid", 7)]
    for strides, padding, size in cases:
        unit = AlignedConv2D(3, 3, strides=strides, padding=padding)
        unit.build((None, size, size, 2))
        h = unit.pre_activation(tf.zeros((1, size, size, 2)))
        assert tuple(h.shape[1:]) == unit.compute_output_shape((None, size, size, 2))[1:]


def test_skip_displacement_is_channelwise_and_broadcasts():
    rng = np.random.default_rng(0)
    unit = AlignedConv2D(4, 3, skip_classes=3)
    unit.build((None, 5, 5, 2))
    w = set_weights(unit, rng)
    e_out = rng.normal(size=(2, 3))
    d = unit.skip_displacement(tf.constant(e_out, tf.float32)).numpy()
    assert d.shape == (2, 1, 1, 4)
    np.testing.assert_allclose(d[:, 0, 0, :], e_out @ w["skip_feedback"], atol=1e-6)


def test_projection_shortcut_forward_feedback_and_update():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 4, 4, 3))  # the unit's own input
    r = rng.normal(size=(2, 8, 8, 5))  # the block input (projected with strides 2)
    unit = AlignedConv2D(3, 3, shortcut="projection", shortcut_strides=2, activation="relu")
    unit.build(z.shape, residual_shape=r.shape)
    w = set_weights(unit, rng)
    h_np = (np_conv(z, w["kernel"], 1, "same") + w["bias"]
            + np_conv(r, w["shortcut_kernel"], 2, "same") + w["shortcut_bias"])
    h = unit.pre_activation(tf.constant(z, tf.float32), residual=tf.constant(r, tf.float32))
    np.testing.assert_allclose(h.numpy(), h_np, atol=1e-5)

    e = rng.normal(size=h_np.shape)
    d = unit.shortcut_feedback_input(tf.constant(e, tf.float32)).numpy()
    np.testing.assert_allclose(
        d, np_conv_transpose(e, w["shortcut_feedback"], 2, "same", r.shape), atol=1e-5
    )
    upd = local_update(unit, z, e, residual=r)
    np.testing.assert_allclose(
        upd["shortcut_kernel"], np_filter_correlation(r, e, (1, 1, 5, 3), 2, "same") / 2, atol=1e-5
    )
    np.testing.assert_allclose(upd["shortcut_bias"], e.sum(axis=(0, 1, 2)) / 2, atol=1e-5)
    np.testing.assert_allclose(
        upd["kernel"], np_filter_correlation(z, e, (3, 3, 3, 3), 1, "same") / 2, atol=1e-5
    )
    assert [p[0].path for p in unit.shortcut_feedback_pairs] == [unit.shortcut_feedback.path]
    assert {id(w) for w in unit.feedback_weights} == {
        id(unit.feedback), id(unit.shortcut_feedback)
    }
    with pytest.raises(ValueError, match="residual=None"):
        unit.pre_activation(tf.constant(z, tf.float32))


def test_batch_norm_updates_match_numpy_derivative_through_that_norm():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 5, 5, 2))
    unit = AlignedConv2D(3, 3, strides=2, norm="batch", activation="relu")
    unit.build(x.shape)
    assert unit.bias is None  # no conv bias in front of a BatchNorm
    w = set_weights(unit, rng)
    y = np_conv(x, w["kernel"], 2, "same")
    h_np, xhat, mean, var = np_batch_norm(y, w["gamma"], w["beta"])
    h = unit.pre_activation(tf.constant(x, tf.float32), training=True).numpy()
    np.testing.assert_allclose(h, h_np, atol=1e-4)

    e = rng.normal(size=h.shape)
    n = x.shape[0]
    upd = local_update(unit, x, e)
    np.testing.assert_allclose(upd["gamma"], (e * xhat).sum(axis=(0, 1, 2)) / n, atol=1e-5)
    np.testing.assert_allclose(upd["beta"], e.sum(axis=(0, 1, 2)) / n, atol=1e-5)
    dy = np_batch_norm_backward(e, xhat, var, w["gamma"])
    np.testing.assert_allclose(
        upd["kernel"], np_filter_correlation(x, dy, w["kernel"].shape, 2, "same") / n, atol=1e-5
    )


def test_batch_norm_moving_statistics_and_inference_mode():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 5, 5, 2)) + 1.5
    unit = AlignedConv2D(3, 3, norm="batch", norm_momentum=0.9)
    unit.build(x.shape)
    w = set_weights(unit, rng)
    y = np_conv(x, w["kernel"], 1, "same")
    unit.pre_activation(tf.constant(x, tf.float32), training=True)
    # Keras' BatchNormalization moves towards the biased batch variance.
    np.testing.assert_allclose(unit.norm_layer.moving_mean.numpy(), 0.1 * y.mean((0, 1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(unit.norm_layer.moving_variance.numpy(),
                               0.9 + 0.1 * y.var((0, 1, 2)), rtol=1e-5)
    mm, mv = unit.norm_layer.moving_mean.numpy(), unit.norm_layer.moving_variance.numpy()
    h = unit.pre_activation(tf.constant(x, tf.float32), training=False).numpy()
    np.testing.assert_allclose(h, w["gamma"] * (y - mm) / np.sqrt(mv + EPS) + w["beta"],
                               atol=1e-4)
    np.testing.assert_allclose(unit.norm_layer.moving_mean.numpy(), mm)  # unchanged


def test_config_round_trip_and_build_config():
    unit = AlignedConv2D(6, (3, 1), strides=2, padding="valid", norm="batch",
                         activation="relu", skip_classes=4, shortcut="projection",
                         shortcut_strides=2, name="u")
    unit.build((None, 9, 9, 3), residual_shape=(None, 9, 9, 5))
    config = unit.get_config()
    clone = AlignedConv2D.from_config(config)
    assert clone.get_config() == config
    clone.build_from_config(unit.get_build_config())
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in unit.weights]
    assert tuple(clone.shortcut_kernel.shape) == (1, 1, 5, 6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(padding="causal"), "padding"),
        (dict(norm="layer"), "norm"),
        (dict(shortcut="identity"), "shortcut"),
        (dict(strides=0), "strides"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    ],
)
def test_invalid_arguments_are_quoted(kwargs, match):
    args = dict(filters=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        AlignedConv2D(**args)


def test_projection_needs_residual_shape_at_build():
    unit = AlignedConv2D(4, 3, shortcut="projection")
    with pytest.raises(ValueError, match="residual_shape"):
        unit.build((None, 4, 4, 2))


def test_norm_transpose_matches_the_batch_norm_formula():
    """docs/ALGORITHM.md#norm-transpose: `(gamma / sigma_B) (e - mean(e) - xhat mean(e xhat))`
    per channel, for the unit's BatchNorm and for its projection's."""
    from rlra_tf.models.blocks import trace_unit

    rng = np.random.default_rng(11)
    z = rng.normal(size=(4, 3, 3, 3)) + 0.5  # the unit's input
    r = rng.normal(size=(4, 6, 6, 2))  # the block input, projected with strides 2
    unit = AlignedConv2D(3, 3, norm="batch", shortcut="projection", shortcut_strides=2)
    unit.build(z.shape, residual_shape=r.shape)
    kernel, skernel = rng.normal(size=unit.kernel.shape), rng.normal(size=(1, 1, 2, 3))
    gamma, sgamma = 1.0 + 0.3 * rng.normal(size=3), 1.0 + 0.3 * rng.normal(size=3)
    unit.kernel.assign(kernel.astype("float32"))
    unit.shortcut_kernel.assign(skernel.astype("float32"))
    unit.norm_layer.gamma.assign(gamma.astype("float32"))
    unit.shortcut_norm.gamma.assign(sgamma.astype("float32"))
    unit.norm_layer.beta.assign(rng.normal(size=3).astype("float32"))
    ut = trace_unit(unit, tf.constant(z, tf.float32), residual=tf.constant(r, tf.float32),
                    training=True)
    e = rng.normal(size=ut.pre.shape)
    _, xhat, _, var = np_batch_norm(np_conv(z, kernel, 1, "same"), gamma, 0.0)
    got = unit.norm_transpose(tf.constant(e, tf.float32), ut).numpy()
    np.testing.assert_allclose(got, np_batch_norm_backward(e, xhat, var, gamma), atol=1e-5)
    _, sxhat, _, svar = np_batch_norm(np_conv(r, skernel, 2, "same"), sgamma, 0.0)
    got = unit.shortcut_norm_transpose(tf.constant(e, tf.float32), ut).numpy()
    np.testing.assert_allclose(got, np_batch_norm_backward(e, sxhat, svar, sgamma), atol=1e-5)
    # It is the transpose of the normalisation's Jacobian: <e, J v> = <J^T e, v>.
    v = rng.normal(size=e.shape)
    lin = tf.constant(np.asarray(ut.linear), tf.float32)
    with tf.autodiff.ForwardAccumulator(lin, tf.constant(v, tf.float32)) as acc:
        out = unit.norm_layer(lin, training=True)
    jv = acc.jvp(out).numpy()
    np.testing.assert_allclose((e * jv).sum(), (unit.norm_transpose(
        tf.constant(e, tf.float32), ut).numpy() * v).sum(), rtol=1e-4)
    # A unit without BatchNorm passes the error on as it is.
    plain = AlignedConv2D(3, 3)
    plain.build(z.shape)
    pt = trace_unit(plain, tf.constant(z, tf.float32))
    assert pt.linear is None
    np.testing.assert_array_equal(plain.norm_transpose(tf.constant(e, tf.float32), pt), e
                                  .astype("float32"))
