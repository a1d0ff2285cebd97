"""Diagnostics: angles and norms against NumPy, the callback, state restore, the update chain."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf import diagnostics, rules
from rlra_tf.layers import AlignedDense
from rlra_tf.models import AlignedModel, UnitStack, mlp


def np_angle(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def batch(n=8, dim=6, k=3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, dim)).astype("float32"), rng.randint(0, k, n).astype("int32")


def tiny_mlp(hidden=(8, 8), seed=1, rule="rec_lra", dim=6):
    keras.utils.set_random_seed(seed)
    model = mlp((dim,), hidden_units=hidden, num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), rule=rule)
    return model


def run_probe(model, x, y):
    return diagnostics._to_python(tf.function(
        lambda a, b: diagnostics.probe(model, a, b), autograph=False)(x, y))


def test_angle_degrees_matches_numpy_and_is_exact_at_the_ends():
    rng = np.random.RandomState(3)
    for _ in range(5):
        a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
        assert float(diagnostics.angle_degrees(a, b)) == pytest.approx(np_angle(a, b), abs=1e-3)
    a = rng.normal(size=(7,)).astype("float32")
    assert float(diagnostics.angle_degrees(a, 3.0 * a)) < 1e-4
    assert float(diagnostics.angle_degrees(a, -a)) == pytest.approx(180.0, abs=1e-4)
    assert float(diagnostics.angle_degrees([1.0, 0.0], [0.0, 2.0])) == pytest.approx(90.0)
    assert np.isnan(float(diagnostics.angle_degrees([0.0, 0.0], [1.0, 0.0])))


def test_rec_lra_probe_matches_numpy():
    """One hidden tanh unit under the default rule: every number worked out in NumPy."""
    x, y = batch()
    model = tiny_mlp(hidden=(5,))
    beta = model.rule.beta
    hidden, head = model.unit_layers
    w1, b1, f1, s1 = (np.asarray(v, np.float64) for v in
                      (hidden.kernel, hidden.bias, hidden.feedback, hidden.skip_feedback))
    w2, b2, f2 = (np.asarray(v, np.float64) for v in (head.kernel, head.bias, head.feedback))
    n, onehot = len(x), np.eye(3)[y]
    h1 = x @ w1 + b1
    z1 = np.tanh(h1)
    logits = z1 @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e_out = p - onehot
    # rec-LRA's error unit (revision 2): the head's F carries e_L down, errors scaled by 1/beta.
    e1 = (z1 - np.tanh(h1 - beta * (e_out @ f2.T))) / beta
    rule = {"dense_0": x.T @ e1 / n, "head": z1.T @ e_out / n}
    bp = {"dense_0": x.T @ ((e_out @ w2.T) * (1 - z1 ** 2)) / n, "head": z1.T @ e_out / n}
    errors = {"dense_0": e1, "head": e_out}
    weights = {"dense_0": (w1, f1), "head": (w2, f2)}

    got = run_probe(model, x, y)
    assert got["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(n), y])), rel=1e-5)
    assert list(got["units"]) == ["dense_0", "head"]
    for name, m in got["units"].items():
        assert m["angle"] == pytest.approx(np_angle(rule[name], bp[name]), abs=2e-2)
        assert m["update_norm"] == pytest.approx(np.linalg.norm(rule[name]), rel=1e-4)
        assert m["bp_norm"] == pytest.approx(np.linalg.norm(bp[name]), rel=1e-4)
        assert m["error_norm"] == pytest.approx(np.sqrt((errors[name] ** 2).sum() / n), rel=1e-4)
        w, f = weights[name]
        assert m["weight_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-5)
        assert m["feedback_angle"] == pytest.approx(np_angle(f, w), abs=2e-2)
    assert 1.0 < got["units"]["dense_0"]["angle"] < 179.0
    assert got["units"]["head"]["angle"] < 1e-3  # the head's update is backprop's


def test_bp_angles_are_zero():
    x, y = batch()
    got = run_probe(tiny_mlp(rule="bp"), x, y)
    for m in got["units"].values():
        assert m["angle"] < 1e-3 and m["bias_angle"] < 1e-3
        assert m["update_norm"] == pytest.approx(m["bp_norm"], rel=1e-5)


def test_fa_angles_zero_with_feedback_equal_to_forward_weights_else_strictly_between():
    x, y = batch()
    model = tiny_mlp(rule="fa")
    got = run_probe(model, x, y)
    for name in ("dense_0", "dense_1"):
        assert 1.0 < got["units"][name]["angle"] < 179.0, got["units"][name]
    for unit in model.unit_layers:  # F = W: d = e @ transpose(W), exactly backprop
        unit.feedback.assign(unit.kernel)
    got = run_probe(model, x, y)
    for m in got["units"].values():
        assert m["angle"] < 1e-3 and m["feedback_angle"] < 1e-3


def test_probe_leaves_batchnorm_statistics_and_weights_alone():
    x, y = batch()
    keras.utils.set_random_seed(2)
    model = AlignedModel(
        [UnitStack([AlignedDense(5, activation="tanh", skip_classes=3, norm="batch",
                                 norm_momentum=0.5)]),
         UnitStack([AlignedDense(3)])],
        num_classes=3,
    )
    model.build((None, 6))
    model.compile(optimizer="sgd", rule="rec_lra")
    before = [np.array(v) for v in model.variables]
    diag = diagnostics.AlignmentDiagnostics(x, y)
    diag.set_model(model)
    diag.run_probe()
    diag.run_probe()
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, np.array(v), err_msg=v.path)
    moving_mean = model.unit_layers[0].norm_layer.moving_mean
    model.local_updates(x, y)  # a plain training-mode pass does move them: the test can fail
    assert not np.allclose(np.array(moving_mean), 0.0)


def test_callback_history_tensorboard_and_metrics_json(tmp_path):
    x, y = batch(n=40)
    model = tiny_mlp(rule="dfa")
    log_dir = tmp_path / "tb"
    diag = diagnostics.AlignmentDiagnostics(x[:8], y[:8], every_n_steps=2, log_dir=log_dir)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[diag], verbose=0)  # 5 steps
    assert [r["step"] for r in diag.history] == [0, 2, 4, 5]
    record = diag.history[-1]
    assert set(record["units"]) == {"dense_0", "dense_1", "head"}
    assert set(record["units"]["dense_0"]) == set(diagnostics.UNIT_METRICS) - {
        "shortcut_feedback_angle"}  # a dense unit has no projection
    assert 0.0 < record["units"]["dense_0"]["angle"] < 180.0

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"diagnostics": diag.as_dict()}))
    loaded = json.loads(path.read_text())["diagnostics"]
    assert loaded["rule"] == "dfa" and loaded["every_n_steps"] == 2 and loaded["probe_size"] == 8
    assert loaded["history"] == diag.history

    (event_file,) = os.listdir(log_dir)
    logged = {}
    for event in tf.compat.v1.train.summary_iterator(str(log_dir / event_file)):
        for value in event.summary.value:
            logged[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
            assert value.metadata.plugin_data.plugin_name == "scalars"
    assert logged[("diagnostics/dense_1/angle", 4)] == pytest.approx(
        diag.history[2]["units"]["dense_1"]["angle"])
    assert logged[("diagnostics/loss", 0)] == pytest.approx(diag.history[0]["loss"])


def test_callback_rejects_bad_arguments():
    x, y = batch()
    with pytest.raises(ValueError, match="every_n_steps=0"):
        diagnostics.AlignmentDiagnostics(x, y, every_n_steps=0)
    with pytest.raises(ValueError, match=r"probe_y.shape=\(7,\)"):
        diagnostics.AlignmentDiagnostics(x, y[:7])


def test_longest_chain_on_a_known_graph():
    @tf.function(autograph=False)
    def f(x):
        a = x * 2.0
        c = tf.tanh(a + 1.0)  # x -> Mul -> AddV2 -> Tanh: 3 ops
        d = x - 1.0  # x -> Sub: 1 op
        e = tf.identity(c)  # not counted when weighted by BOOKKEEPING_OPS
        return c, d, e

    cf = f.get_concrete_function(tf.TensorSpec((2,)))
    source = cf.graph.inputs[0].op
    c, d, e = (diagnostics._producer(t) for t in cf.outputs)
    assert c.type == "Tanh" and d.type == "Sub"
    length, path = diagnostics.longest_chain(cf.graph, source, [c, d])
    assert length == 3 and [op.type for op in path] == ["Mul", "AddV2", "Tanh"]
    assert diagnostics.longest_chain(cf.graph, source, [d])[0] == 1
    assert diagnostics.longest_chain(cf.graph, c, [d]) == (-1, [])


def chain(hidden, rule):
    return diagnostics.update_chain(tiny_mlp(hidden=hidden, rule=rule, dim=4), (4,))


SKIP = rules.RecLRA(feedback="skip")  # block outputs from e_L through the skip synapses


def test_update_chain_grows_with_depth_for_bp_not_for_rec_lra_with_skip_synapses():
    bp2, bp6 = chain((4,) * 2, "bp"), chain((4,) * 6, "bp")
    rec2, rec6 = chain((4,) * 2, SKIP), chain((4,) * 6, SKIP)
    # Every extra layer adds a MatMul (delta @ W^T) and a TanhGrad to backprop's chain.
    assert bp6.compute_ops - bp2.compute_ops == 2 * 4
    assert bp6.path.count("TanhGrad") == 6 and bp6.ops > bp6.compute_ops
    # rec-LRA: output error -> skip synapse -> target -> error unit -> update, at any depth.
    assert rec6.compute_ops == rec2.compute_ops
    assert rec6.compute_ops < bp6.compute_ops
    assert "TanhGrad" not in rec6.path and rec6.path[0] == "Softmax"
    # The default (adjacent synapses) passes targets down unit by unit: its chain grows.
    default2, default6 = chain((4,) * 2, "rec_lra"), chain((4,) * 6, "rec_lra")
    assert default6.compute_ops > default2.compute_ops
    assert "TanhGrad" not in default6.path


def tiny_resnet(depth, rule):
    from rlra_tf.models import resnet

    keras.utils.set_random_seed(4)
    model = resnet(depth, input_shape=(8, 8, 1), num_classes=3, width=4)
    model.compile(optimizer="sgd", rule=rule)
    return model


def test_update_chain_on_tiny_resnets_of_two_depths():
    depths = ("resnet_tiny", 8)  # 2 and 3 residual blocks
    bp2, bp3 = (diagnostics.update_chain(tiny_resnet(d, "bp"), (8, 8, 1)) for d in depths)
    rec2, rec3 = (diagnostics.update_chain(tiny_resnet(d, SKIP), (8, 8, 1)) for d in depths)
    assert bp3.compute_ops > bp2.compute_ops
    assert rec3.compute_ops == rec2.compute_ops < bp2.compute_ops
    # One block: the skip synapse into the block output (after scaling e_L by beta: the walk
    # carries beta * e), F into the first unit, its filter.
    assert rec3.path[:4] == ["Softmax", "Sub", "Mul", "MatMul"]
    assert rec3.path.count("Conv2DBackpropInput") == 1
    # Its filter's update, then the scale (1 / (beta * n)) on the parameter-sized result.
    assert rec3.path[-2:] == ["Conv2DBackpropFilter", "Mul"]
    default2, default3 = (diagnostics.update_chain(tiny_resnet(d, "rec_lra"), (8, 8, 1))
                          for d in depths)
    assert default3.compute_ops > default2.compute_ops


def test_probe_on_a_tiny_resnet_bp_is_zero_and_batchnorm_is_untouched():
    rng = np.random.RandomState(5)
    x = rng.uniform(size=(4, 8, 8, 1)).astype("float32")
    y = np.array([0, 1, 2, 1], "int32")
    model = tiny_resnet("resnet_tiny", "bp")
    before = [np.array(v) for v in model.variables]
    diag = diagnostics.AlignmentDiagnostics(x, y)
    diag.set_model(model)
    units = diag.run_probe()["units"]
    assert len(units) == len(model.unit_layers)
    for m in units.values():
        assert m["angle"] < 1e-3 and 0.0 < m["feedback_angle"] < 180.0
    model.compile(optimizer="sgd", rule="rec_lra")
    units = diag.run_probe()["units"]
    assert list(units)[:2] == ["stem/conv", "stage1_block1/conv1"]  # names repeat: qualified
    hidden = list(units.values())[:-1]
    assert all(1.0 < m["angle"] < 179.0 for m in hidden)
    assert list(units.values())[-1]["angle"] < 1e-3  # the head's update is backprop's
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, np.array(v), err_msg=v.path)


def test_feedback_angles_show_the_mirror_converging(tmp_path):
    """With rec_lra's mirror, every synapse's F-to-W angle (the projection's too) falls from
    about 90 degrees, in the history that goes to metrics.json and in TensorBoard."""
    rng = np.random.RandomState(5)
    x = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
    y = rng.randint(0, 3, 64).astype("int32")
    model = tiny_resnet("resnet_tiny", "rec_lra")
    model.compile(optimizer=keras.optimizers.SGD(0.01), rule="rec_lra")
    log_dir = tmp_path / "tb"
    diag = diagnostics.AlignmentDiagnostics(x[:8], y[:8], every_n_steps=10, log_dir=log_dir)
    model.fit(x, y, batch_size=8, epochs=5, callbacks=[diag], verbose=0)  # 40 steps
    first, last = diag.history[0]["units"], diag.history[-1]["units"]
    assert diag.history[-1]["step"] == 40
    angles = [(n, k) for n, m in first.items() for k in m if k.endswith("feedback_angle")]
    assert ("stage2_block1/conv2", "shortcut_feedback_angle") in angles
    for name, key in angles:
        assert first[name][key] > 60.0 and last[name][key] < 25.0, (name, key)
    (event_file,) = os.listdir(log_dir)
    logged = {}
    for event in tf.compat.v1.train.summary_iterator(str(log_dir / event_file)):
        for value in event.summary.value:
            logged[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    tag = "diagnostics/stage2_block1/conv2/shortcut_feedback_angle"
    assert logged[(tag, 40)] == pytest.approx(last["stage2_block1/conv2"][
        "shortcut_feedback_angle"])
    assert json.loads(json.dumps(diag.as_dict()))["history"][-1]["units"] == last
