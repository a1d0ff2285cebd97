"""The weight mirror (docs/ALGORITHM.md#mirror): estimates against NumPy, convergence, replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conv_reference import np_conv, np_filter_correlation, np_taps

from rlra_tf import rules
from rlra_tf.layers import AlignedConv2D, AlignedDense
from rlra_tf.models import mlp, resnet
from rlra_tf.trace import UnitTrace

TOL = 1e-5


def signs(rng, shape):
    return rng.choice([-1.0, 1.0], size=shape)


def synapse_pairs(model):
    """`(feedback, forward kernel)` of every adjacent synapse, projections included."""
    pairs = []
    for unit in model.unit_layers:
        pairs.append((unit.feedback, unit.kernel))
        if getattr(unit, "shortcut_feedback", None) is not None:
            pairs.append((unit.shortcut_feedback, unit.shortcut_kernel))
    return pairs


def cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


# ------------------------------------------------------------------------------- estimates


def test_dense_mirror_estimate_matches_numpy():
    rng = np.random.default_rng(0)
    unit = AlignedDense(5)
    unit.build((None, 7))
    w = rng.normal(size=(7, 5))
    unit.kernel.assign(w.astype("float32"))
    unit.bias.assign(np.full(5, 3.0, "float32"))  # the linear response has no bias
    x = rng.normal(size=(9, 7))
    got = unit.mirror_estimate(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(got, x.T @ (x @ w) / 9, atol=TOL, rtol=TOL)
    (feedback, shape, _), = unit.mirror_synapses(None)
    assert feedback is unit.feedback and shape == (7,)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_mirror_estimate_matches_numpy(strides, padding):
    rng = np.random.default_rng(10 * strides + len(padding))
    x = rng.normal(size=(3, 7, 6, 2))
    unit = AlignedConv2D(4, 3, strides=strides, padding=padding, norm="batch")
    unit.build(x.shape)
    w = rng.normal(size=unit.kernel.shape)
    unit.kernel.assign(w.astype("float32"))
    y = np_conv(x, w, strides, padding)  # linear response: no norm, no activation
    positions = y.shape[1] * y.shape[2]
    want = np_filter_correlation(x, y, w.shape, strides, padding) / (x.shape[0] * positions)
    got = unit.mirror_estimate(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(got, want, atol=TOL * np.abs(want).max(), rtol=1e-4)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_mirror_estimate_per_tap_matches_numpy(strides, padding):
    """`mirror_normalise="taps"`: each tap divided by the positions at which it saw the
    input, so its expectation is exactly the kernel, border taps included."""
    rng = np.random.default_rng(20 * strides + len(padding))
    x = rng.normal(size=(3, 7, 6, 2))
    unit = AlignedConv2D(4, 3, strides=strides, padding=padding)
    unit.build(x.shape)
    w = rng.normal(size=unit.kernel.shape)
    unit.kernel.assign(w.astype("float32"))
    y = np_conv(x, w, strides, padding)
    _, taps = np_taps(x.shape, w.shape, strides, padding)
    seen = np.zeros(w.shape[:2])
    for _, _, a, b, _, _ in taps:
        seen[a, b] += 1
    want = np_filter_correlation(x, y, w.shape, strides, padding) / (
        x.shape[0] * seen[:, :, None, None])
    got = unit.mirror_estimate(tf.constant(x, tf.float32), "taps").numpy()
    np.testing.assert_allclose(got, want, atol=TOL * np.abs(want).max(), rtol=1e-4)
    if padding == "same":  # the two normalisations differ exactly at the border taps
        assert not np.allclose(got, unit.mirror_estimate(tf.constant(x, tf.float32)).numpy())


def test_per_tap_estimate_is_unbiased_at_the_border():
    """Averaged over much noise, the per-tap estimate is the kernel at every tap, while the
    per-position one shrinks the border taps of a small feature map (7x7: corner taps by 6/7
    in each direction)."""
    unit = AlignedConv2D(3, 3, padding="same")
    unit.build((None, 7, 7, 2))
    w = np.random.default_rng(1).normal(size=unit.kernel.shape).astype("float32")
    unit.kernel.assign(w)
    noise = rules.base.rademacher([4096, 7, 7, 2], tf.constant([1, 2], tf.int64))
    taps = unit.mirror_estimate(noise, "taps").numpy()
    positions = unit.mirror_estimate(noise, "positions").numpy()
    np.testing.assert_allclose(taps, w, atol=0.05)
    np.testing.assert_allclose(positions[0, 0] / w[0, 0], (6 / 7) ** 2, atol=0.05)


def test_warm_start_begins_as_a_running_mean():
    model = tiny_resnet()
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 2)).astype("float32")
    trace = model.trace(x, training=True, local=True)
    warm = rules.RecLRA(mirror_rate=0.1, mirror_warm_start=True)
    for step, lam in [(0, 1.0), (3, 0.25), (9, 0.1), (40, 0.1)]:
        s = tf.constant(step, tf.int64)
        c = [v for v, _ in rules.RecLRA(mirror_rate=1.0).synapse_assignments(trace, s)]
        for (value, f), ci in zip(warm.synapse_assignments(trace, s), c):
            np.testing.assert_allclose(value, (1 - lam) * f.numpy() + lam * ci.numpy(),
                                       atol=1e-6, err_msg=str(step))


def test_projection_mirror_estimate_matches_numpy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 4, 4, 3))
    r = rng.normal(size=(2, 8, 8, 5))
    unit = AlignedConv2D(3, 3, shortcut="projection", shortcut_strides=2, norm="batch")
    unit.build(z.shape, residual_shape=r.shape)
    w = rng.normal(size=unit.shortcut_kernel.shape)
    unit.shortcut_kernel.assign(w.astype("float32"))
    y = np_conv(r, w, 2, "same")
    want = np_filter_correlation(r, y, w.shape, 2, "same") / (2 * y.shape[1] * y.shape[2])
    got = unit.shortcut_mirror_estimate(tf.constant(r, tf.float32)).numpy()
    np.testing.assert_allclose(got, want, atol=TOL * np.abs(want).max(), rtol=1e-4)
    # The unit lists both of its synapses, each with the shape of the noise it needs.
    h, linear, shortcut_linear = unit.pre_activation_parts(
        tf.constant(z, tf.float32), residual=tf.constant(r, tf.float32), training=True)
    ut = UnitTrace(unit=unit, inputs=tf.constant(z, tf.float32), pre=h, outputs=h,
                   linear=linear, residual=tf.constant(r, tf.float32),
                   shortcut_linear=shortcut_linear)
    synapses = unit.mirror_synapses(ut)
    assert [(s[0] is f, s[1]) for s, f in zip(synapses, (unit.feedback,
                                                            unit.shortcut_feedback))] == [
        (True, (4, 4, 3)), (True, (8, 8, 5))]


def test_rademacher_noise_is_signs_with_zero_mean_and_unit_variance():
    noise = rules.base.rademacher([4000], tf.constant([7, 3], tf.int64)).numpy()
    assert set(np.unique(noise)) == {-1.0, 1.0}
    assert abs(noise.mean()) < 0.05 and noise.var() == pytest.approx(1.0, abs=0.01)
    again = rules.base.rademacher([4000], tf.constant([7, 3], tf.int64)).numpy()
    other = rules.base.rademacher([4000], tf.constant([7, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(noise, again)  # deterministic in the seed
    assert (noise != other).mean() > 0.4  # and another step draws other noise
    jit = tf.function(rules.base.rademacher, jit_compile=True)(
        [4000], tf.constant([7, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(noise, jit)  # the same under XLA


# ------------------------------------------------------------------------------- the rule


def tiny_resnet(seed=0, norm="batch"):
    keras.utils.set_random_seed(seed)
    return resnet("resnet_tiny", (8, 8, 2), 3, norm=norm)


def test_assignment_is_a_step_of_rate_lambda_towards_the_estimate():
    model = tiny_resnet()
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 2)).astype("float32")
    trace = model.trace(x, training=True, local=True)
    step = tf.constant(5, tf.int64)
    plain = dict(mirror_every=1, mirror_warm_start=False)  # an estimate at every step
    full = rules.RecLRA(mirror_rate=1.0, **plain).synapse_assignments(trace, step)
    part = rules.RecLRA(mirror_rate=0.25, **plain).synapse_assignments(trace, step)
    assert [v for _, v in full] == [f for f, _ in synapse_pairs(model)]
    for (c, f), (value, g) in zip(full, part):
        assert f is g
        np.testing.assert_allclose(value, 0.75 * f.numpy() + 0.25 * c.numpy(), atol=1e-6)
    again = rules.RecLRA(mirror_rate=1.0, **plain).synapse_assignments(trace, step)
    later = rules.RecLRA(mirror_rate=1.0, **plain).synapse_assignments(trace, step + 1)
    for (c, _), (c2, _), (c3, _) in zip(full, again, later):
        np.testing.assert_array_equal(c, c2)  # the noise is a function of the step
        assert not np.allclose(c, c3)
    every = rules.RecLRA(mirror_every=3)
    for s, moves in [(3, True), (4, False), (6, True)]:
        for value, f in every.synapse_assignments(trace, tf.constant(s, tf.int64)):
            assert np.array_equal(value, f.numpy()) != moves, s
    assert rules.RecLRA(synapse_update="lra").synapse_assignments(trace, step) == []
    assert rules.FA().synapse_assignments(trace, step) == []
    assert len(rules.WM().synapse_assignments(trace, step)) == len(full)


@pytest.mark.parametrize("kind", ["resnet", "mlp"])
@pytest.mark.parametrize("rule", ["rec_lra", "wm"])
def test_mirror_aligns_every_synapse_of_a_fixed_model(kind, rule):
    """SGD with a zero learning rate keeps W fixed; after 60 steps every F (and the
    projection's) has cosine > 0.95 with its W, from random synapses (cosine < 0.5)."""
    if kind == "resnet":
        model = tiny_resnet(seed=2)
        x = np.random.default_rng(0).uniform(size=(16, 8, 8, 2)).astype("float32")
    else:
        keras.utils.set_random_seed(2)
        model = mlp((12,), hidden_units=(16, 8), num_classes=3)
        x = np.random.default_rng(0).normal(size=(16, 12)).astype("float32")
    y = np.arange(16) % 3
    kernels = [w.numpy().copy() for _, w in synapse_pairs(model)]
    assert max(cosine(f.numpy(), w) for (f, _), w in zip(synapse_pairs(model), kernels)) < 0.5
    model.compile(optimizer=keras.optimizers.SGD(0.0), rule=rule)
    model.fit(x, y, batch_size=16, epochs=60, verbose=0)
    for (f, w), before in zip(synapse_pairs(model), kernels):
        np.testing.assert_array_equal(w.numpy(), before)  # the model stayed fixed
        assert cosine(f.numpy(), w.numpy()) > 0.95, f.path


def test_mirror_rate_zero_equals_fixed_synapses():
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 2)).astype("float32")
    y = np.arange(8) % 3
    out = []
    # (Untracked: a tracked synapse would follow its kernel's steps even without the mirror.)
    for rule in (rules.RecLRA(mirror_rate=0.0, mirror_track=False),
                 rules.RecLRA(synapse_update="fixed")):
        model = tiny_resnet(seed=6)
        before = [f.numpy().copy() for f in model.feedback_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1), rule=rule)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        for f, b in zip(model.feedback_weights, before):
            np.testing.assert_array_equal(f.numpy(), b)
        out.append([v.numpy() for v in model.weights])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(out[0], before))


# XLA under a multi-replica strategy does not take synchronised BatchNorm (AlignedConv2D), so
# with jit each replica normalises its own half batch and only the replicas are compared.
@pytest.mark.parametrize("norm, jit", [("sync_batch", False), ("batch", True)])
def test_two_replicas_keep_identical_synapses(mirrored_strategy, norm, jit):
    """Each replica draws the same noise, so the synapses stay identical across replicas
    without communication (and, with synchronised BatchNorm, equal to one device's)."""
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 2)).astype("float32")
    y = np.arange(8) % 3
    out = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = tiny_resnet(seed=7, norm=norm)
            model.compile(optimizer=keras.optimizers.SGD(0.1), rule="rec_lra",
                          jit_compile=jit and strategy is mirrored_strategy)
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        out.append(model)
    single, mirrored = out
    start = tiny_resnet(seed=7, norm=norm).feedback_weights
    for f, g, f0 in zip(single.feedback_weights, mirrored.feedback_weights, start):
        replicas = [v.numpy() for v in g.value.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1], err_msg=g.path)
        if norm == "sync_batch":
            np.testing.assert_allclose(replicas[0], f.numpy(), atol=1e-5, err_msg=g.path)
        if "skip" not in g.path:
            assert not np.allclose(replicas[0], f0.numpy()), g.path  # the mirror moved it
