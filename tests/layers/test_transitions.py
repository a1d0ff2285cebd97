"""Transitions: forward as Keras' layers, transposes against NumPy loops, config round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf.layers import Dropout, Flatten, GlobalPooling2D, Pooling2D, ZeroPadding2D

RNG = np.random.default_rng(0)


def _x(shape=(2, 5, 6, 3)):
    return RNG.standard_normal(shape).astype(np.float32)


def _windows(h, w, pool, stride, padding):
    """`(out_h, out_w, [(i, j) -> list of input positions])` of a 2D pooling, as TF pads."""
    if padding == "valid":
        oh, ow = (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1
        top = left = 0
    else:
        oh, ow = -(-h // stride[0]), -(-w // stride[1])
        top = max((oh - 1) * stride[0] + pool[0] - h, 0) // 2
        left = max((ow - 1) * stride[1] + pool[1] - w, 0) // 2
    win = {}
    for i in range(oh):
        for j in range(ow):
            rows = range(i * stride[0] - top, i * stride[0] - top + pool[0])
            cols = range(j * stride[1] - left, j * stride[1] - left + pool[1])
            win[(i, j)] = [(r, c) for r in rows for c in cols if 0 <= r < h and 0 <= c < w]
    return oh, ow, win


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("pool, stride, padding", [
    ((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "valid"), ((3, 3), (2, 2), "same"),
    ((2, 3), (1, 2), "same"),
])
def test_pooling_forward_and_transpose_against_numpy(mode, pool, stride, padding):
    x = _x()
    layer = Pooling2D(pool, strides=stride, padding=padding, mode=mode)
    tt = layer.trace(tf.constant(x))
    n, h, w, c = x.shape
    oh, ow, win = _windows(h, w, pool, stride, padding)
    d = RNG.standard_normal((n, oh, ow, c)).astype(np.float32)
    want_y = np.zeros((n, oh, ow, c), np.float32)
    want_t = np.zeros_like(x)
    for b in range(n):
        for k in range(c):
            for (i, j), cells in win.items():
                vals = [x[b, r, q, k] for r, q in cells]
                if mode == "max":
                    want_y[b, i, j, k] = max(vals)
                    r, q = cells[int(np.argmax(vals))]
                    want_t[b, r, q, k] += d[b, i, j, k]
                else:  # TF's average pool divides by the cells inside the image
                    want_y[b, i, j, k] = np.mean(vals)
                    for r, q in cells:
                        want_t[b, r, q, k] += d[b, i, j, k] / len(cells)
    np.testing.assert_allclose(tt.outputs, want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.transpose(tf.constant(d), tt), want_t, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == want_y.shape
    plain = layer.keras_layer()
    np.testing.assert_allclose(plain(x), want_y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_against_numpy(keepdims):
    x = _x()
    x[0, 1, 2, 0] = x[0, 3, 4, 0] = x[0].max() + 1.0  # a tie for the max
    d = RNG.standard_normal((2, 3)).astype(np.float32)
    d_in = d[:, None, None, :] if keepdims else d
    n, h, w, c = x.shape
    for mode in ("avg", "max"):
        layer = GlobalPooling2D(mode=mode, keepdims=keepdims)
        tt = layer.trace(tf.constant(x))
        reduce = np.mean if mode == "avg" else np.max
        np.testing.assert_allclose(tt.outputs, reduce(x, axis=(1, 2), keepdims=keepdims),
                                   rtol=1e-6)
        got = layer.transpose(tf.constant(d_in), tt).numpy()
        if mode == "avg":
            want = np.broadcast_to(d[:, None, None, :] / (h * w), x.shape)
        else:
            wins = (x == x.max(axis=(1, 2), keepdims=True)).astype(np.float32)
            want = d[:, None, None, :] * wins / wins.sum(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got[0, 1, 2, 0] == pytest.approx(d[0, 0] / 2)  # the tie shares it
    broadcast = GlobalPooling2D(spatial_feedback="broadcast")
    tt = broadcast.trace(tf.constant(x))
    np.testing.assert_allclose(broadcast.transpose(tf.constant(d), tt),
                               np.broadcast_to(d[:, None, None, :], x.shape))


def test_flatten_and_padding_against_numpy():
    x = _x()
    flat = Flatten()
    tt = flat.trace(tf.constant(x))
    np.testing.assert_array_equal(tt.outputs, x.reshape(2, -1))
    np.testing.assert_array_equal(keras.layers.Flatten()(x), tt.outputs)
    d = RNG.standard_normal((2, 90)).astype(np.float32)
    np.testing.assert_array_equal(flat.transpose(tf.constant(d), tt), d.reshape(x.shape))

    pad = ZeroPadding2D(((1, 2), (0, 3)))
    tt = pad.trace(tf.constant(x))
    want = np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)))
    np.testing.assert_array_equal(tt.outputs, want)
    np.testing.assert_array_equal(pad.keras_layer()(x), want)
    d = RNG.standard_normal(want.shape).astype(np.float32)
    np.testing.assert_array_equal(pad.transpose(tf.constant(d), tt), d[:, 1:6, 0:6, :])
    assert ZeroPadding2D(2).padding == ((2, 2), (2, 2))
    with pytest.raises(ValueError, match="padding=.*-1"):
        ZeroPadding2D(((1, -1), (0, 0)))


def test_dropout_masks_equal_keras_dropout_and_transpose_uses_them():
    x = np.abs(_x((4, 50))) + 0.1
    ours, theirs = Dropout(0.3, seed=5), keras.layers.Dropout(0.3, seed=5)
    tt = ours.trace(tf.constant(x), training=True)
    np.testing.assert_array_equal(tt.outputs, theirs(x, training=True))
    kept = tt.outputs.numpy() != 0
    assert 0.5 < kept.mean() < 0.9
    np.testing.assert_allclose(tt.state, kept / 0.7, rtol=1e-6)
    d = RNG.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(ours.transpose(tf.constant(d), tt), d * kept / 0.7, rtol=1e-6)
    infer = ours.trace(tf.constant(x), training=False)
    np.testing.assert_array_equal(infer.outputs, x)
    np.testing.assert_array_equal(ours.transpose(tf.constant(d), infer), d)
    with pytest.raises(ValueError, match="rate=1.0"):
        Dropout(1.0)


@pytest.mark.parametrize("layer", [
    Flatten(), Pooling2D(3, strides=2, padding="same", mode="avg"),
    GlobalPooling2D(mode="max", keepdims=True), ZeroPadding2D(((1, 0), (2, 1))),
    Dropout(0.25, seed=2),
])
def test_config_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    x = _x()
    np.testing.assert_array_equal(again(x), layer(x))
