"""ResNets of aligned units: every rule against NumPy, isolation of units, presets, round trips."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conv_reference import (
    np_batch_norm,
    np_batch_norm_backward,
    np_conv,
    np_conv_transpose,
    np_filter_correlation,
    np_out_and_pad,
)

from rlra_tf import rules
from rlra_tf.models import (
    ResidualBlock,
    ResNetStem,
    parameter_counts,
    parameter_summary,
    resnet,
)

K = 3  # classes


def tiny(stem="cifar", norm=None, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    size = 16 if stem == "imagenet" else 8
    return resnet("resnet_tiny", (size, size, 2), K, stem=stem, norm=norm, **kwargs)


def data(stem="cifar", n=4, seed=0):
    rng = np.random.default_rng(seed)
    size = 16 if stem == "imagenet" else 8
    x = rng.uniform(size=(n, size, size, 2)).astype("float32")
    y = np.arange(n) % K
    return x, y


# ------------------------------------------------------------------------------- NumPy model


def np_max_pool(z, k=3, s=2):
    """TF's SAME max-pool and its transpose (route a value to the window's first maximum)."""
    n, height, width, c = z.shape
    oh, pt = np_out_and_pad(height, k, s, "same")
    ow, pl = np_out_and_pad(width, k, s, "same")
    out = np.zeros((n, oh, ow, c))
    where = np.zeros((n, oh, ow, c, 2), dtype=int)
    for i in range(oh):
        for j in range(ow):
            rows = [r for r in range(i * s - pt, i * s - pt + k) if 0 <= r < height]
            cols = [q for q in range(j * s - pl, j * s - pl + k) if 0 <= q < width]
            win = z[:, rows][:, :, cols]  # (n, len(rows), len(cols), c)
            flat = win.reshape(n, -1, c)
            arg = flat.argmax(axis=1)
            out[:, i, j] = flat.max(axis=1)
            where[:, i, j, :, 0] = np.array(rows)[arg // len(cols)]
            where[:, i, j, :, 1] = np.array(cols)[arg % len(cols)]

    def transpose(d):
        back = np.zeros_like(z)
        for b in range(n):
            for i in range(oh):
                for j in range(ow):
                    for ch in range(c):
                        r, q = where[b, i, j, ch]
                        back[b, r, q, ch] += d[b, i, j, ch]
        return back

    return out, transpose


def weights_of(model):
    """NumPy copies of every unit's weights: {unit name: {weight name: array}}."""
    out = {}
    for block in model.blocks:
        for unit in block.unit_layers:
            key = f"{block.name}/{unit.name}"
            out[key] = {v.path.split("/")[-1]: v.numpy().astype("float64") for v in unit.weights}
    return out


def hand_set(model, seed, stem_bias=0.0):
    rng = np.random.default_rng(seed)
    for block in model.blocks:
        for unit in block.unit_layers:
            for v in unit.weights:
                if "moving" in v.path:
                    continue
                scale = 0.5 if "feedback" in v.path else 0.3
                value = scale * rng.normal(size=v.shape)
                if v.path.endswith("gamma"):
                    value = value + 1.0
                if block.name == "stem" and v.path.endswith("bias"):
                    value = value + stem_bias
                v.assign(value.astype("float32"))


def np_rule(w, x, y, rule, beta, gamma, stem):
    """The updates of `rule` for `resnet_tiny` without BatchNorm, from ALGORITHM.md alone."""
    n = x.shape[0]
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    st, b11, b12 = w["stem/conv"], w["stage1_block1/conv1"], w["stage1_block1/conv2"]
    b21, b22, hd = w["stage2_block1/conv1"], w["stage2_block1/conv2"], w["head/dense"]
    x = x.astype("float64")
    # forward
    h0 = np_conv(x, st["kernel"], 2 if stem == "imagenet" else 1, "same") + st["bias"]
    z0 = relu(h0)
    if stem == "imagenet":
        p0, pool_t = np_max_pool(z0)
    else:
        p0, pool_t = z0, (lambda d: d)
    h1 = np_conv(p0, b11["kernel"], 1, "same") + b11["bias"]
    z1 = relu(h1)
    h2 = np_conv(z1, b12["kernel"], 1, "same") + b12["bias"] + p0
    z2 = relu(h2)
    h3 = np_conv(z2, b21["kernel"], 2, "same") + b21["bias"]
    z3 = relu(h3)
    r4 = np_conv(z2, b22["shortcut_kernel"], 2, "same") + b22["shortcut_bias"]
    h4 = np_conv(z3, b22["kernel"], 1, "same") + b22["bias"] + r4
    z4 = relu(h4)
    pooled = z4.mean(axis=(1, 2))
    logits = pooled @ hd["kernel"] + hd["bias"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    e_out = p / p.sum(1, keepdims=True) - np.eye(K)[y]

    lra_like = rule in ("rec_lra", "rec_lra_first", "lra")
    skip_out = rule in ("rec_lra_first", "dfa")  # block output units
    skip_all = rule == "dfa"
    scale = beta if rule == "rec_lra" else 1.0  # revision 2: error units divided by beta
    moves_f = rule in ("rec_lra_first", "lra")  # dF = gamma dW (the mirror assigns instead)

    def signal(h, z, d):
        if lra_like:
            return (z - relu(h - beta * d)) / scale
        return d * (h > 0)

    def skip(u):
        return (e_out @ u["skip_feedback"])[:, None, None, :]

    used = []  # (unit key, feedback name) of adjacent synapses that carried a signal
    # block 2
    if skip_out:
        d4 = skip(b22)
    else:
        d4 = (e_out @ hd["feedback"].T / (z4.shape[1] * z4.shape[2]))[:, None, None, :]
        used.append(("head/dense", "feedback", "kernel"))
    e4 = signal(h4, z4, d4)
    if skip_all:
        d3 = skip(b21)
    else:
        d3 = np_conv_transpose(e4, b22["feedback"], 1, "same", z3.shape)
        used.append(("stage2_block1/conv2", "feedback", "kernel"))
    e3 = signal(h3, z3, d3)
    # block 1
    if skip_out:
        d2 = skip(b12)
    else:
        d2 = (np_conv_transpose(e3, b21["feedback"], 2, "same", z2.shape)
              + np_conv_transpose(e4, b22["shortcut_feedback"], 2, "same", z2.shape))
        used += [("stage2_block1/conv1", "feedback", "kernel"),
                 ("stage2_block1/conv2", "shortcut_feedback", "shortcut_kernel")]
    e2 = signal(h2, z2, d2)
    if skip_all:
        d1 = skip(b11)
    else:
        d1 = np_conv_transpose(e2, b12["feedback"], 1, "same", z1.shape)
        used.append(("stage1_block1/conv2", "feedback", "kernel"))
    e1 = signal(h1, z1, d1)
    # stem
    if skip_out:
        d0 = skip(st)
    else:
        d0 = pool_t(np_conv_transpose(e1, b11["feedback"], 1, "same", p0.shape) + e2)
        used.append(("stage1_block1/conv1", "feedback", "kernel"))
    e0 = signal(h0, z0, d0)

    def conv_updates(inp, e, u, stride):
        return {
            "kernel": np_filter_correlation(inp, e, u["kernel"].shape, stride, "same") / n,
            "bias": e.sum(axis=(0, 1, 2)) / n,
        }

    upd = {
        "stem/conv": conv_updates(x, e0, st, 2 if stem == "imagenet" else 1),
        "stage1_block1/conv1": conv_updates(p0, e1, b11, 1),
        "stage1_block1/conv2": conv_updates(z1, e2, b12, 1),
        "stage2_block1/conv1": conv_updates(z2, e3, b21, 2),
        "stage2_block1/conv2": conv_updates(z3, e4, b22, 1),
        "head/dense": {"kernel": pooled.T @ e_out / n, "bias": e_out.mean(0)},
    }
    upd["stage2_block1/conv2"]["shortcut_kernel"] = np_filter_correlation(
        z2, e4, b22["shortcut_kernel"].shape, 2, "same") / n
    upd["stage2_block1/conv2"]["shortcut_bias"] = e4.sum(axis=(0, 1, 2)) / n
    if moves_f and gamma > 0:
        for key, fb, kernel in used:
            upd[key][fb] = gamma * upd[key][kernel]
    return upd


def model_updates(model, x, y):
    names = {}
    for block in model.blocks:
        for unit in block.unit_layers:
            for v in unit.weights:
                names[id(v)] = (f"{block.name}/{unit.name}", v.path.split("/")[-1])
    out = {}
    for update, var in model.local_updates(x, y):
        key, name = names[id(var)]
        out.setdefault(key, {})[name] = np.asarray(update)
    return out


RULE_OBJECTS = {
    "rec_lra": lambda: rules.RecLRA(beta=0.3, gamma=0.5),
    # The first reconstruction: skip synapses, raw errors, dF = gamma dW.
    "rec_lra_first": lambda: rules.RecLRA(beta=0.3, gamma=0.5, feedback="skip",
                                          error_scale="raw", norm_feedback="skip",
                                          synapse_update="lra"),
    "lra": lambda: rules.LRA(beta=0.3, gamma=0.5),
    "fa": lambda: rules.FA(),
    "wm": lambda: rules.WM(),
    "dfa": lambda: rules.DFA(),
}


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("rule", ["rec_lra", "rec_lra_first", "lra", "fa", "wm", "dfa"])
def test_every_rule_matches_numpy_on_a_tiny_resnet(rule, stem):
    model = tiny(stem)
    # A positive stem bias keeps ReLU ties (zeros) out of the max-pool windows.
    hand_set(model, seed=5, stem_bias=2.0 if stem == "imagenet" else 0.0)
    x, y = data(stem)
    model.compile(optimizer="sgd", rule=RULE_OBJECTS[rule]())
    got = model_updates(model, x, y)
    want = np_rule(weights_of(model), x, y, "fa" if rule == "wm" else rule, 0.3, 0.5, stem)
    assert set(got) == set(want)
    for key in want:
        assert set(got[key]) == set(want[key]), key
        for name in want[key]:
            # float32 against float64: the absolute tolerance scales with the update's size
            # (beta-scaled errors make updates of order 1 where raw ones were of order beta).
            scale = max(1.0, float(np.abs(want[key][name]).max()))
            np.testing.assert_allclose(got[key][name], want[key][name], rtol=1e-4,
                                       atol=1e-5 * scale, err_msg=f"{rule} {key}/{name}")


def test_max_pool_stem_routes_displacement_to_the_window_maximum():
    stem = ResNetStem(3, kernel_size=3, strides=1, pool_size=3, pool_strides=2)
    stem.build((None, 7, 7, 2))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 7, 2)).astype("float32")
    bt = stem.trace(tf.constant(x), training=True, local=True)
    z = bt.units[0].outputs.numpy().astype("float64") + 0.0
    pooled, pool_t = np_max_pool(z)
    np.testing.assert_allclose(bt.outputs.numpy(), pooled, atol=1e-6)
    d = rng.normal(size=pooled.shape)
    got = stem.output_displacement(bt, tf.constant(d, tf.float32)).numpy()
    np.testing.assert_allclose(got, pool_t(d), atol=1e-6)


# ------------------------------------------------------------------------------- isolation


def test_batch_norm_unit_update_is_local_to_that_unit():
    """gamma/beta/kernel of one BN unit = NumPy through that unit; nothing else moves them."""
    model = tiny(norm="batch", seed=1)
    hand_set(model, seed=3)
    x, _ = data(seed=1)
    block = model.blocks[2]  # stage2_block1: conv1 (BN) reads the block input
    unit = block.unit_layers[0]
    rng = np.random.default_rng(4)

    def updates(signal_seed, local=True):
        with tf.GradientTape() as tape:
            trace = model.trace(tf.constant(x), training=True, local=local)
        units = trace.units
        k = [u.unit for u in units].index(unit)
        sig_rng = np.random.default_rng(signal_seed)
        signals = [tf.constant(sig_rng.normal(size=u.pre.shape), tf.float32) for u in units]
        signals[k] = tf.constant(own_error, tf.float32)
        n = x.shape[0]
        grads = tape.gradient([u.pre for u in units], model.trainable_variables,
                              output_gradients=[s / n for s in signals])
        got = {id(v): g.numpy() for v, g in zip(model.trainable_variables, grads)}
        return units[k].inputs.numpy(), [got[id(v)] for v in unit.trainable_variables]

    own_error = rng.normal(size=(4, 4, 4, 8))
    z_in, base = updates(signal_seed=10)
    # NumPy: d sum(e * h) / n through this unit's conv and BatchNorm alone.
    w = {v.path.split("/")[-1]: v.numpy().astype("float64") for v in unit.weights}
    y = np_conv(z_in.astype("float64"), w["kernel"], 2, "same")
    _, xhat, _, var = np_batch_norm(y, w["gamma"], w["beta"])
    n = x.shape[0]
    want = {
        "kernel": np_filter_correlation(
            z_in, np_batch_norm_backward(own_error, xhat, var, w["gamma"]),
            w["kernel"].shape, 2, "same") / n,
        "gamma": (own_error * xhat).sum(axis=(0, 1, 2)) / n,
        "beta": own_error.sum(axis=(0, 1, 2)) / n,
    }
    for v, g in zip(unit.trainable_variables, base):
        np.testing.assert_allclose(g, want[v.path.split("/")[-1]], atol=1e-5)

    # Other units' signals change: this unit's update does not.
    _, other_signals = updates(signal_seed=11)
    for a, b in zip(base, other_signals):
        np.testing.assert_allclose(a, b, atol=1e-7)
    # Other units' weights (downstream, so this unit's input is unchanged) and every feedback
    # weight change: same input, same error, same update.
    for later in [block.unit_layers[1]] + model.blocks[3].unit_layers:
        for v in later.trainable_variables:
            v.assign(v + 0.5)
    for v in model.feedback_weights:
        v.assign(-2.0 * v)
    z_in_after, after = updates(signal_seed=10)
    np.testing.assert_allclose(z_in_after, z_in, atol=1e-7)
    for a, b in zip(base, after):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Control: without isolation, derivatives from the units above do reach this unit.
    _, leaky_a = updates(signal_seed=10, local=False)
    _, leaky_b = updates(signal_seed=11, local=False)
    assert max(np.abs(a - b).max() for a, b in zip(leaky_a, leaky_b)) > 1e-3


# ------------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "preset, shape, classes, forward",
    [
        ("resnet18", (224, 224, 3), 1000, 11_689_512),
        ("resnet50", (224, 224, 3), 1000, 25_557_032),
        ("resnet20", (32, 32, 3), 10, 272_474),
        ("resnet56", (32, 32, 3), 10, 855_770),
    ],
)
def test_preset_forward_parameter_counts(preset, shape, classes, forward):
    model = resnet(preset, shape, classes)
    counts = parameter_counts(model)
    assert counts["forward"] == forward
    assert counts["forward"] == sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    # Feedback: one F per forward kernel (projections included) and one [K, C] skip per unit.
    units = model.unit_layers
    kernels = sum(int(np.prod(u.kernel.shape)) for u in units)
    kernels += sum(int(np.prod(u.shortcut_kernel.shape)) for u in units
                   if getattr(u, "shortcut_kernel", None) is not None)
    skips = sum(classes * u.kernel.shape[-1] for u in units[:-1])
    assert counts["feedback"] == kernels + skips
    assert model.count_params_split() == (counts["forward"] + counts["statistics"],
                                          counts["feedback"])


def test_preset_structure_and_summary():
    model = resnet(50, (32, 32, 3), 10)  # a depth picks the preset
    assert model.name == "resnet50"
    kinds = [b.kind for b in model.blocks if isinstance(b, ResidualBlock)]
    assert kinds == ["bottleneck"] * 16
    assert model.blocks[0].pool_size == 3 and model.blocks[0].strides == 2
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)
    cifar = resnet("resnet20", (32, 32, 3), 10)
    shortcuts = [b.shortcut for b in cifar.blocks if isinstance(b, ResidualBlock)]
    assert shortcuts == ["identity"] * 3 + ["projection"] + ["identity"] * 2 + ["projection"] + [
        "identity"] * 2
    text = parameter_summary(cifar, print_fn=None)
    assert "272,474" in text and "stage3_block3" in text
    assert resnet(14, (8, 8, 1), 2).name == "resnet14"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(preset="resnet19"), "preset"),
        (dict(preset=19), "depth"),
        (dict(stem="mnist"), "stem"),
        (dict(input_shape=(8, 8)), "input_shape"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_resnet_rejects_bad_arguments(kwargs, match):
    args = dict(preset="resnet_tiny", input_shape=(8, 8, 1), num_classes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        resnet(**args)


def test_identity_shortcut_needs_matching_shapes():
    with pytest.raises(ValueError, match="projection"):
        ResidualBlock(8, strides=2, shortcut="identity").build((None, 8, 8, 8))


# ------------------------------------------------------------------------------- training


@pytest.mark.parametrize("rule", rules.NAMES)
def test_one_fit_step_with_every_rule(rule):
    model = tiny(norm="batch")
    x, y = data()
    model.compile(optimizer=keras.optimizers.SGD(0.1), rule=rule, metrics=["accuracy"])
    before = [v.numpy() for v in model.weights]
    hist = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    changed = {v.path for v, b in zip(model.weights, before) if not np.array_equal(v.numpy(), b)}
    unit_kernels = {u.kernel.path for u in model.unit_layers}
    assert unit_kernels <= changed  # every unit learns, the stem included
    moving = {v.path for v in model.weights if "moving" in v.path}
    assert moving <= changed  # BatchNorm statistics moved in training
    skips = {u.skip_feedback.path for u in model.unit_layers if u.skip_feedback is not None}
    assert not skips & changed  # skip synapses are fixed by default
    feedback = {u.feedback.path for u in model.unit_layers}
    # the mirror (rec_lra, wm), dF = gamma dW (lra) or the kernel's step (kp)
    if rule in ("rec_lra", "lra", "wm", "kp"):
        assert feedback & changed
    else:
        assert not feedback & changed


def test_jit_step_equals_eager_step():
    x, y = data(stem="imagenet")
    out = []
    for jit in (False, True):
        model = tiny("imagenet", norm="batch")
        model.compile(optimizer=keras.optimizers.SGD(0.1), rule="rec_lra", jit_compile=jit)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        out.append([v.numpy() for v in model.weights])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_inference_uses_moving_statistics():
    model = tiny(norm="batch")
    x, y = data()
    model.compile(optimizer="adam", rule="rec_lra")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    moving_vars = [v for v in model.weights if "moving" in v.path]
    moving = [v.numpy() for v in moving_vars]
    pred = model.predict(x, verbose=0)
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    for v, m in zip(moving_vars, moving):  # inference never moves the statistics
        np.testing.assert_array_equal(v.numpy(), m)
    np.testing.assert_allclose(pred, model(x, training=False).numpy(), atol=1e-6)
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, pred)).numpy()
    np.testing.assert_allclose(loss, ce, rtol=1e-5)
    # After one step the moving statistics are still far from this batch's statistics.
    assert np.abs(pred - model(x, training=True).numpy()).max() > 1e-3


def test_keras_round_trip_outputs_and_continued_training(tmp_path):
    model = tiny("imagenet", norm="batch")
    x, y = data(stem="imagenet")
    model.compile(optimizer="adam", rule="rec_lra", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "tiny.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.rule.name == "rec_lra"
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_mirrored_strategy_equals_one_device(mirrored_strategy):
    """rec_lra on two logical CPUs = one device (BatchNorm statistics all-reduced)."""
    x, y = data(n=8, seed=3)
    out = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = tiny(norm="sync_batch", seed=2)
            model.compile(optimizer=keras.optimizers.SGD(0.1), rule="rec_lra")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        out.append([v.numpy() for v in model.weights])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, atol=1e-5)
