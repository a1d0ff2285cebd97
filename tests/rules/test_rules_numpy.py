"""The rules' updates against an independent NumPy computation of docs/ALGORITHM.md#step and
#options.

The network is a tanh MLP 4-5-3-3 with every weight set from a seeded NumPy generator; NumPy
recomputes the forward pass, the targets, the errors and the updates from the equations alone.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf import rules
from rlra_tf.models import mlp

N, IN, HIDDEN, K = 6, 4, (5, 3), 3
TOL = 1e-5
# rec-LRA's first reconstruction (ALGORITHM.md before revision 2), reachable by options.
FIRST = dict(feedback="skip", error_scale="raw", norm_feedback="skip", synapse_update="lra")


def tanh_prime(h):
    return 1.0 - np.tanh(h) ** 2


def softmax(h):
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture()
def net():
    """A model with hand-set weights, and the same weights as NumPy arrays."""
    rng = np.random.RandomState(42)
    model = mlp((IN,), hidden_units=HIDDEN, num_classes=K, block_size=1)
    params = []
    for unit in model.unit_layers:
        p = {
            "W": rng.normal(0, 0.7, unit.kernel.shape).astype("float32"),
            "b": rng.normal(0, 0.3, unit.bias.shape).astype("float32"),
            "F": rng.normal(0, 0.7, unit.feedback.shape).astype("float32"),
        }
        unit.kernel.assign(p["W"])
        unit.bias.assign(p["b"])
        unit.feedback.assign(p["F"])
        if unit.skip_feedback is not None:
            p["S"] = rng.normal(0, 0.7, unit.skip_feedback.shape).astype("float32")
            unit.skip_feedback.assign(p["S"])
        params.append(p)
    x = rng.normal(0, 1, (N, IN)).astype("float32")
    y = np.array([0, 1, 2, 2, 1, 0])
    return model, params, x, y


def regroup(model, block_size):
    """The same units regrouped into blocks of `block_size` (the head stays alone)."""
    from rlra_tf.models import AlignedModel, UnitStack

    units = model.unit_layers
    hidden, head = units[:-1], units[-1]
    blocks = [UnitStack(hidden[i:i + block_size]) for i in range(0, len(hidden), block_size)]
    blocks.append(UnitStack([head]))
    regrouped = AlignedModel(blocks, num_classes=K)
    regrouped.build((None, IN))
    return regrouped


def np_forward(params, x):
    zs, hs = [x], []
    for i, p in enumerate(params):
        h = zs[-1] @ p["W"] + p["b"]
        hs.append(h)
        zs.append(np.tanh(h) if i < len(params) - 1 else h)
    return zs, hs


def np_error(z, t, alpha):
    return alpha * (z - t) + (1 - alpha) * np.sign(z - t)


def np_lra(params, x, y, beta, gamma, block_size=None, alpha=1.0, clip=None, hebbian=False,
           scale=False, synapse_update="lra"):
    """Section 3; `block_size=None` is LRA-E (adjacent everywhere), else rec-LRA's blocks.

    `scale`: error units divided by beta (docs/ALGORITHM.md#targets); `synapse_update="lra"`
    adds `dF = gamma dW` for the synapses that carried an error, anything else adds no F update.
    """
    zs, hs = np_forward(params, x)
    n, L = x.shape[0], len(params)
    y1 = np.eye(K)[y]
    e_out = softmax(hs[-1]) - y1
    errors = [None] * L
    errors[-1] = e_out
    used_f = []  # units whose F carried an error
    skip_used = []
    hidden = list(range(L - 1))
    if block_size is None:
        block_of = {u: u for u in hidden}
        outputs = set()
    else:
        block_of = {u: u // block_size for u in hidden}
        outputs = {u for u in hidden if u + 1 == L - 1 or block_of[u + 1] != block_of[u]}
    for u in reversed(hidden):
        if u in outputs:
            d = e_out @ params[u]["S"]
            skip_used.append(u)
        else:
            d = errors[u + 1] @ params[u + 1]["F"].T
            used_f.append(u + 1)
        t = np.tanh(hs[u] - beta * d)
        errors[u] = np_error(zs[u + 1], t, alpha) / (beta if scale else 1.0)
    ups = {}
    for u in range(L):
        ups[("W", u)] = zs[u].T @ errors[u] / n
        ups[("b", u)] = errors[u].mean(axis=0)
    for u in used_f if synapse_update == "lra" else []:
        ups[("F", u)] = gamma * ups[("W", u)]
    if hebbian:
        for u in skip_used:
            ups[("S", u)] = gamma * e_out.T @ errors[u] / n
    if clip is not None:
        ups = {k: v * min(1.0, clip / np.linalg.norm(v)) for k, v in ups.items()}
    return ups


def np_fa(params, x, y, direct=False, use_forward=False):
    """Section 4: FA (F), DFA (S) and, with `use_forward`, backprop (W in place of F)."""
    zs, hs = np_forward(params, x)
    n, L = x.shape[0], len(params)
    e_out = softmax(hs[-1]) - np.eye(K)[y]
    deltas = [None] * L
    deltas[-1] = e_out
    for u in reversed(range(L - 1)):
        if direct:
            d = e_out @ params[u]["S"]
        else:
            d = deltas[u + 1] @ params[u + 1]["W" if use_forward else "F"].T
        deltas[u] = d * tanh_prime(hs[u])
    ups = {}
    for u in range(L):
        ups[("W", u)] = zs[u].T @ deltas[u] / n
        ups[("b", u)] = deltas[u].mean(axis=0)
    return ups


def model_updates(model, rule, x, y):
    """`local_updates` keyed like the NumPy dicts: (kind, unit index)."""
    model.compile(optimizer="sgd", rule=rule, jit_compile=False)
    index = {}
    for u, unit in enumerate(model.unit_layers):
        index[id(unit.kernel)] = ("W", u)
        index[id(unit.bias)] = ("b", u)
        index[id(unit.feedback)] = ("F", u)
        if unit.skip_feedback is not None:
            index[id(unit.skip_feedback)] = ("S", u)
    out = {}
    for update, variable in model.local_updates(x, y):
        key = index[id(variable)]
        assert key not in out, f"two updates for {key}"
        out[key] = np.asarray(update)
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=TOL, rtol=TOL, err_msg=str(key))


@pytest.mark.parametrize("beta,gamma", [(0.1, 1.0), (0.5, 0.3)])
def test_lra_matches_numpy(net, beta, gamma):
    model, params, x, y = net
    got = model_updates(model, rules.LRA(beta=beta, gamma=gamma), x, y)
    assert_same(got, np_lra(params, x, y, beta, gamma))


def test_lra_name_defaults_are_plain_lra_e(net):
    model, params, x, y = net
    got = model_updates(model, "lra", x, y)
    assert_same(got, np_lra(params, x, y, beta=0.1, gamma=1.0))


@pytest.mark.parametrize("block_size", [1, 2])
def test_rec_lra_matches_numpy(net, block_size):
    model, params, x, y = net
    model = regroup(model, block_size)
    got = model_updates(model, rules.RecLRA(beta=0.2, gamma=0.5, **FIRST), x, y)
    assert_same(got, np_lra(params, x, y, 0.2, 0.5, block_size=block_size))


@pytest.mark.parametrize("block_size", [1, 2])
def test_rec_lra_defaults_match_numpy(net, block_size):
    """Revision 2: adjacent feedback at every block, errors divided by beta, no F update
    through the optimiser (the mirror assigns F outside it; a Dense unit has no
    normalisation to carry errors through)."""
    model, params, x, y = net
    model = regroup(model, block_size)
    got = model_updates(model, rules.RecLRA(beta=0.2, gamma=0.5), x, y)
    assert_same(got, np_lra(params, x, y, 0.2, 0.5, scale=True, synapse_update="mirror"))
    got = model_updates(model, "rec_lra", x, y)
    assert_same(got, np_lra(params, x, y, 0.1, 1.0, scale=True, synapse_update="mirror"))


def test_rec_lra_beta_scaled_errors_with_lra_synapses_match_numpy(net):
    model, params, x, y = net
    rule = rules.RecLRA(beta=0.3, gamma=0.7, alpha=0.6, synapse_update="lra")
    got = model_updates(model, rule, x, y)
    assert_same(got, np_lra(params, x, y, 0.3, 0.7, alpha=0.6, scale=True))
    rule = rules.RecLRA(beta=0.3, synapse_update="fixed")
    got = model_updates(model, rule, x, y)
    assert_same(got, np_lra(params, x, y, 0.3, 1.0, scale=True, synapse_update="fixed"))


def test_rec_lra_variants_match_numpy(net):
    """Sign-mixed error units, norm clipping and Hebbian skip synapses together."""
    model, params, x, y = net
    model = regroup(model, 2)
    rule = rules.RecLRA(beta=0.3, gamma=0.7, alpha=0.6, clip_norm=0.05, skip_update="hebbian",
                        **FIRST)
    got = model_updates(model, rule, x, y)
    want = np_lra(params, x, y, 0.3, 0.7, block_size=2, alpha=0.6, clip=0.05, hebbian=True)
    assert ("S", 1) in want and ("F", 1) in want
    assert_same(got, want)
    # Clipping really bit: some update was longer than 0.05 before clipping.
    raw = np_lra(params, x, y, 0.3, 0.7, block_size=2, alpha=0.6, hebbian=True)
    assert max(np.linalg.norm(v) for v in raw.values()) > 0.05


def test_lra_alpha_and_clip_match_numpy(net):
    model, params, x, y = net
    got = model_updates(model, rules.LRA(beta=0.1, gamma=1.0, alpha=0.3, clip_norm=0.1), x, y)
    assert_same(got, np_lra(params, x, y, 0.1, 1.0, alpha=0.3, clip=0.1))


@pytest.mark.parametrize("rule", ["fa", rules.FA(norm_feedback="skip"), "wm"])
def test_fa_matches_numpy(net, rule):
    """FA, with either norm_feedback (a Dense unit has no normalisation) and as the weight
    mirror (whose F changes by assignment, not through the optimiser): the same updates."""
    model, params, x, y = net
    assert_same(model_updates(model, rule, x, y), np_fa(params, x, y))


def test_dfa_matches_numpy(net):
    model, params, x, y = net
    assert_same(model_updates(model, "dfa", x, y), np_fa(params, x, y, direct=True))


def test_bp_matches_numpy_and_gradient_tape(net):
    model, params, x, y = net
    got = model_updates(model, "bp", x, y)
    assert_same(got, np_fa(params, x, y, use_forward=True))
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    by_id = {id(v): np.asarray(u) for u, v in model.local_updates(x, y)}
    for g, v in zip(grads, model.trainable_variables):
        np.testing.assert_allclose(by_id[id(v)], g.numpy(), atol=TOL)


def test_fa_with_forward_feedback_is_backprop(net):
    model, params, x, y = net
    for unit, p in zip(model.unit_layers, params):
        unit.feedback.assign(p["W"])
    assert_same(model_updates(model, "fa", x, y), np_fa(params, x, y, use_forward=True))


def test_one_hot_labels_equal_class_ids(net):
    model, params, x, y = net
    from_ids = model_updates(model, "rec_lra", x, y)
    from_one_hot = model_updates(model, "rec_lra", x, np.eye(K, dtype="float32")[y])
    assert_same(from_one_hot, from_ids)


def test_label_smoothing_changes_output_error(net):
    model, params, x, y = net
    model.compile(optimizer="sgd", rule="fa", label_smoothing=0.2, jit_compile=False)
    head_bias = {id(v): np.asarray(u) for u, v in model.local_updates(x, y)}[
        id(model.unit_layers[-1].bias)]
    _, hs = np_forward(params, x)
    y_smooth = np.eye(K)[y] * 0.8 + 0.2 / K
    np.testing.assert_allclose(head_bias, (softmax(hs[-1]) - y_smooth).mean(0), atol=TOL)


def test_input_noise_perturbs_training_inputs_only(net):
    model, params, x, y = net
    clean = model_updates(model, rules.RecLRA(), x, y)
    model.compile(optimizer="sgd", rule=rules.RecLRA(input_noise=0.5), jit_compile=False)
    noisy = {id(v): np.asarray(u) for u, v in model.local_updates(x, y)}
    assert not np.allclose(noisy[id(model.unit_layers[0].kernel)], clean[("W", 0)], atol=1e-3)
    np.testing.assert_allclose(model.predict(x, verbose=0), np_forward(params, x)[1][-1],
                               atol=TOL)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rules.RecLRA(beta=-1), "beta=-1"),
        (lambda: rules.RecLRA(feedback="sideways"), "feedback='sideways'"),
        (lambda: rules.RecLRA(alpha=1.5), "alpha=1.5"),
        (lambda: rules.RecLRA(clip_norm=0), "clip_norm=0"),
        (lambda: rules.RecLRA(skip_update="sometimes"), "skip_update='sometimes'"),
        (lambda: rules.RecLRA(error_scale="gamma"), "error_scale='gamma'"),
        (lambda: rules.RecLRA(beta=0.0), "beta=0.0"),
        (lambda: rules.RecLRA(norm_feedback="around"), "norm_feedback='around'"),
        (lambda: rules.RecLRA(synapse_update="kolen"), "synapse_update='kolen'"),
        (lambda: rules.RecLRA(mirror_rate=1.5), "mirror_rate=1.5"),
        (lambda: rules.RecLRA(mirror_rate=-0.1), "mirror_rate=-0.1"),
        (lambda: rules.RecLRA(mirror_batch=0), "mirror_batch=0"),
        (lambda: rules.RecLRA(mirror_batch=2.5), "mirror_batch=2.5"),
        (lambda: rules.RecLRA(mirror_every=0), "mirror_every=0"),
        (lambda: rules.RecLRA(mirror_normalise="pixels"), "mirror_normalise='pixels'"),
        (lambda: rules.WM(mirror_warm_start="yes"), "mirror_warm_start='yes'"),
        (lambda: rules.FA(synapse_update="lra"), "synapse_update='lra'"),
        (lambda: rules.WM(norm_feedback="sideways"), "norm_feedback='sideways'"),
        (lambda: rules.get("backprop"), "'backprop'"),
    ],
)
def test_bad_rule_arguments_are_reported(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_rule_names_and_round_trip():
    assert rules.NAMES == ("rec_lra", "lra", "fa", "wm", "kp", "dfa", "bp")
    rule = rules.RecLRA(beta=0.3, clip_norm=2.0, skip_update="hebbian", mirror_every=4)
    again = rules.get(rules.serialize(rule))
    assert type(again) is rules.RecLRA and again.get_config() == rule.get_config()
    wm = rules.get(rules.serialize(rules.WM(mirror_rate=0.2)))
    assert type(wm) is rules.WM and wm.mirror_rate == 0.2


def test_rule_defaults():
    """rec_lra: revision 2; lra: LRA-E as published; fa: fixed F; wm: FA + mirror + through."""
    rec = rules.get("rec_lra")
    assert (rec.feedback, rec.error_scale, rec.norm_feedback, rec.synapse_update) == (
        "adjacent", "beta", "through", "mirror")
    assert (rec.mirror_rate, rec.mirror_batch, rec.mirror_every) == (0.1, None, 4)
    assert (rec.mirror_track, rec.mirror_warm_start, rec.mirror_first_scale) == (True, True, 16)
    lra = rules.get("lra")
    assert (lra.feedback, lra.error_scale, lra.norm_feedback, lra.synapse_update) == (
        "adjacent", "raw", "skip", "lra")
    fa, wm = rules.get("fa"), rules.get("wm")
    assert (fa.synapse_update, fa.norm_feedback) == ("fixed", "through")
    assert (wm.synapse_update, wm.norm_feedback) == ("mirror", "through")
    assert (wm.mirror_every, wm.mirror_track) == (1, False)  # the baseline as published
    assert rules.get("dfa").get_config() == {}
