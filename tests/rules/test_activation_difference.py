"""`activation_difference`: z - t = phi(h) - phi(h - shift) without the rounding of h - shift."""

from fractions import Fraction

import keras
import numpy as np
import tensorflow as tf

from rlra_tf.rules.lra import activation_difference


def test_relu_and_linear_match_float64_where_float32_rounds():
    rng = np.random.default_rng(0)
    h = (rng.standard_normal(2000) * 100).astype(np.float32)
    shift = (rng.standard_normal(2000) * np.where(rng.random(2000) < 0.5, 1e-6, 50)).astype(
        np.float32)
    s64 = shift.astype(np.float64)
    for name, fn in (("relu", lambda v: max(v, 0)), ("linear", lambda v: v)):
        # Exact rational arithmetic on the float32 inputs, rounded once at the end.
        want = np.array([float(fn(Fraction(float(a))) - fn(Fraction(float(a)) - Fraction(float(b))))
                         for a, b in zip(h, shift)])
        got = activation_difference(keras.activations.get(name), tf.constant(h),
                                    tf.constant(shift)).numpy()
        # Exact to float32 resolution of the shift (not of h, as the plain formula is).
        assert np.all(np.abs(got - want) <= 1e-6 * np.abs(s64)), name
        naive = np.array([fn(a) - fn(a - b) for a, b in zip(h, shift)], np.float64)
        small = np.abs(shift) < 1e-5
        assert np.abs(naive - want)[small].max() > 1e-7  # what the plain formula loses


def test_other_activations_use_the_formula():
    h = tf.constant([-2.0, -0.1, 0.0, 0.3, 4.0])
    shift = tf.constant([0.5, -0.2, 0.1, 0.3, -1.0])
    got = activation_difference(keras.activations.tanh, h, shift).numpy()
    want = np.tanh(h.numpy()) - np.tanh(h.numpy() - shift.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5)
