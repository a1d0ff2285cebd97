"""Synapses that track their kernels (Kolen-Pollack, `synapse_update="kp"`, and the mirror with
`mirror_track`), and the mirror's first estimate (docs/ALGORITHM.md#mirror), against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf import rules
from rlra_tf.models import mlp, resnet

N, IN, HIDDEN, K = 6, 4, (5, 3), 3


def tanh_prime(h):
    return 1.0 - np.tanh(h) ** 2


def softmax(h):
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_net(seed=42):
    """A tanh MLP 4-5-3-3 with hand-set weights, and the same weights as NumPy arrays."""
    rng = np.random.RandomState(seed)
    model = mlp((IN,), hidden_units=HIDDEN, num_classes=K, block_size=1)
    params = []
    for unit in model.unit_layers:
        p = {
            "W": rng.normal(0, 0.7, unit.kernel.shape),
            "b": rng.normal(0, 0.3, unit.bias.shape),
            "F": rng.normal(0, 0.7, unit.feedback.shape),
        }
        for name, var in (("W", unit.kernel), ("b", unit.bias), ("F", unit.feedback)):
            p[name] = p[name].astype("float32")
            var.assign(p[name])
        params.append({k: v.astype("float64") for k, v in p.items()})
    x = rng.normal(0, 1, (N, IN)).astype("float32")
    y = np.array([0, 1, 2, 2, 1, 0])
    return model, params, x, y


def np_fa_grads(params, x, y):
    """FA's updates (ALGORITHM.md section 4) of the tanh MLP, from the equations alone."""
    zs, hs = [x.astype("float64")], []
    for i, p in enumerate(params):
        h = zs[-1] @ p["W"] + p["b"]
        hs.append(h)
        zs.append(np.tanh(h) if i < len(params) - 1 else h)
    deltas = [None] * len(params)
    deltas[-1] = softmax(hs[-1]) - np.eye(K)[y]
    for u in reversed(range(len(params) - 1)):
        deltas[u] = (deltas[u + 1] @ params[u + 1]["F"].T) * tanh_prime(hs[u])
    return [{"W": zs[u].T @ deltas[u] / len(x), "b": deltas[u].mean(axis=0)}
            for u in range(len(params))]


def np_kp_steps(params, x, y, steps, lr, momentum, wd, decay_feedback=True):
    """Keras SGD (decoupled decay `v -= lr * wd * v` first, then `m = momentum * m - lr * g`,
    `v += m`) on W and b; every F gets W's momentum step and its own decay."""
    params = [dict(p) for p in params]
    moms = [{"W": 0.0, "b": 0.0} for _ in params]
    for _ in range(steps):
        grads = np_fa_grads(params, x, y)
        for p, m, g in zip(params, moms, grads):
            p["W"] = p["W"] - lr * wd * p["W"]  # "bias" is excluded from decay below
            for k in ("W", "b"):
                m[k] = momentum * m[k] - lr * g[k]
                p[k] = p[k] + m[k]
            p["F"] = p["F"] - (lr * wd * p["F"] if decay_feedback else 0.0) + m["W"]
    return params


@pytest.mark.parametrize("decay_feedback", [True, False])
def test_kp_matches_numpy_over_two_momentum_steps(decay_feedback):
    """The `kp` rule: FA's updates through SGD with momentum and decoupled weight decay; every
    synapse receives its kernel's step and its own decay (none when the optimiser's
    exclusions leave it out, which the model reads from the optimiser)."""
    keras.utils.set_random_seed(0)
    model, params, x, y = make_net()
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.05)
    excluded = ["bias"] + ([] if decay_feedback else ["feedback"])
    optimizer.exclude_from_weight_decay(var_names=excluded)
    model.compile(optimizer=optimizer, rule="kp", jit_compile=False)
    model.fit(x, y, batch_size=N, epochs=2, shuffle=False, verbose=0)
    want = np_kp_steps(params, x, y, 2, 0.1, 0.9, 0.05, decay_feedback)
    for unit, p in zip(model.unit_layers, want):
        for name, var in (("W", unit.kernel), ("b", unit.bias), ("F", unit.feedback)):
            np.testing.assert_allclose(var.numpy(), p[name], atol=2e-5, err_msg=name)


def test_kp_without_decay_keeps_f_minus_w():
    """Without weight decay (Adam here) tracking leaves `F - W` exactly where it started."""
    keras.utils.set_random_seed(1)
    model = resnet("resnet_tiny", (8, 8, 2), 3)
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 2)).astype("float32")
    y = np.arange(8) % 3
    pairs = [p for u in model.unit_layers for p in u.feedback_pairs]
    before = [f.numpy() - w.numpy() for f, w in pairs]
    model.compile(optimizer=keras.optimizers.Adam(0.01), rule=rules.RecLRA(synapse_update="kp"))
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert len(pairs) == 7  # 6 conv kernels (a projection among them) and the head
    for (f, w), d in zip(pairs, before):
        assert not np.allclose(w.numpy() - (f.numpy() - d), w.numpy())  # W moved
        np.testing.assert_allclose(f.numpy() - w.numpy(), d, atol=2e-6, err_msg=f.path)


# The previous default's mirror (an estimate at every step, untracked, no warm start): each
# test below sets on top of it only the options it is about.
PLAIN = dict(mirror_every=1, mirror_warm_start=False, mirror_first_scale=1, mirror_track=False)


def rec(**options):
    return rules.RecLRA(**{**PLAIN, **options})


def test_tracked_mirror_moves_f_minus_w_by_the_mirror_only():
    """With `mirror_track`, one step: `F' - W' = (1 - lambda) F + lambda C - W` (the mirror's
    value, then the kernel's step added to it)."""
    x = np.random.default_rng(2).uniform(size=(4, 8, 8, 2)).astype("float32")
    y = np.arange(4) % 3
    keras.utils.set_random_seed(3)
    model = resnet("resnet_tiny", (8, 8, 2), 3)
    rule = rec(mirror_rate=0.3, mirror_track=True)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), rule=rule)
    trace = model.trace(tf.constant(x), training=False, local=True)
    step = tf.constant(0, tf.int64)
    estimates = {id(f): c.numpy() for c, f in
                 rec(mirror_rate=1.0).synapse_assignments(trace, step)}
    pairs = [p for u in model.unit_layers for p in u.feedback_pairs]
    start = [(f.numpy(), w.numpy()) for f, w in pairs]
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for (f, w), (f0, w0) in zip(pairs, start):
        want = 0.7 * f0 + 0.3 * estimates[id(f)] - w0
        np.testing.assert_allclose(f.numpy() - w.numpy(), want, atol=2e-5, err_msg=f.path)


@pytest.mark.parametrize("rule", ["kp", "tracked_mirror"])
def test_tracking_is_identical_across_replicas(mirrored_strategy, rule):
    """Two replicas keep bit-identical synapses and train exactly as one device does
    (synchronised BatchNorm, weight decay on)."""
    make = {"kp": lambda: "kp",
            "tracked_mirror": lambda: rec(mirror_track=True, mirror_every=2,
                                                   mirror_warm_start=True)}[rule]
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 2)).astype("float32")
    y = np.arange(8) % 3
    out = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            keras.utils.set_random_seed(7)
            model = resnet("resnet_tiny", (8, 8, 2), 3, norm="sync_batch")
            model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01),
                          rule=make())
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        out.append(model)
    single, mirrored = out
    for a, b in zip(single.weights, mirrored.weights):
        replicas = [v.numpy() for v in b.value.values] if hasattr(b.value, "values") \
            else [b.numpy()]
        for r in replicas[1:]:
            np.testing.assert_array_equal(replicas[0], r, err_msg=b.path)
        np.testing.assert_allclose(replicas[0], a.numpy(), atol=1e-5, err_msg=b.path)


def test_first_estimate_draws_more_noise_and_weighs_it():
    """`mirror_first_scale=s`: at step 0 the estimate uses `s` times the noise examples (so it
    is closer to `W`) and replaces `F`; the k-th later estimate gets rate
    `max(mirror_rate, 1 / (s + k))` under warm start (a running mean of the noise examples
    until its rate falls to `mirror_rate`)."""
    keras.utils.set_random_seed(4)
    model = resnet("resnet_tiny", (8, 8, 2), 3)
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 2)).astype("float32")
    trace = model.trace(x, training=True, local=True)
    kernels = {id(f): w.numpy() for u in model.unit_layers for f, w in u.feedback_pairs}

    def cos(a, b):
        a, b = a.ravel(), b.ravel()
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    first = rec(mirror_rate=0.01, mirror_first_scale=16, mirror_warm_start=True)
    big = first.synapse_assignments(trace, tf.constant(0, tf.int64))
    small = rec(mirror_rate=1.0).synapse_assignments(trace, tf.constant(0, tf.int64))
    exact = rec(mirror_rate=1.0, mirror_batch=8 * 16).synapse_assignments(
        trace, tf.constant(0, tf.int64))
    for (b, f), (s, _), (e, _) in zip(big, small, exact):
        if len(f.shape) == 4:  # a conv synapse: 16 x 8 noise images (the head: 16 x 256 rows)
            np.testing.assert_allclose(b, e, atol=1e-5)
        assert cos(b.numpy(), kernels[id(f)]) > cos(s.numpy(), kernels[id(f)]), f.path
    for step, lam in [(1, 1 / 17), (5, 1 / 21), (200, 0.01)]:
        s = tf.constant(step, tf.int64)
        c = [v for v, _ in rec(mirror_rate=1.0).synapse_assignments(trace, s)]
        for (value, f), ci in zip(first.synapse_assignments(trace, s), c):
            np.testing.assert_allclose(value, (1 - lam) * f.numpy() + lam * ci.numpy(),
                                       atol=1e-6, err_msg=str(step))


def test_options_are_checked_and_round_trip():
    for bad in (dict(mirror_first_scale=0), dict(mirror_first_scale=1.5),
                dict(mirror_track=1), dict(synapse_update="kolen")):
        with pytest.raises(ValueError, match=list(bad)[0]):
            rec(**bad)
    rule = rec(mirror_track=True, mirror_first_scale=8, synapse_update="mirror")
    again = rules.get(rules.serialize(rule))
    assert again.get_config() == rule.get_config()
    kp = rules.get("kp")
    assert isinstance(kp, rules.FA) and kp.synapse_update == "kp"
    assert rules.get(rules.serialize(kp)).get_config() == kp.get_config()
    assert rules.FA(synapse_update="kp").get_config() == kp.get_config()
    model = resnet("resnet_tiny", (8, 8, 2), 3)
    assert rec().tracked_synapses(model.unit_layers) == []
    assert len(rules.RecLRA().tracked_synapses(model.unit_layers)) == 7  # the default tracks
    assert len(rules.WM(mirror_track=True).tracked_synapses(model.unit_layers)) == 7
    assert rules.DFA().tracked_synapses(model.unit_layers) == []
