"""Exact identities of the rules on a tiny ResNet (issue 3 investigation of the ResNet gap).

These pin the error paths of the conv/shortcut/pool/head code to backprop where the rules
must reduce to it, independently of the NumPy model in `test_resnet.py`:
- FA with every feedback kernel equal to its forward kernel (no BatchNorm) is backprop, for
  every forward parameter, both stems;
- rec-LRA with `F = W` and the last block's skip synapse equal to the head's transpose over
  the pooled positions gives backprop's direction (times `beta`) in the last block;
- rec-LRA with `beta = 0` trains the head alone, exactly as a NumPy softmax regression on the
  pooled features, and hands the optimiser nothing else.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlra_tf import rules
from rlra_tf.models import resnet

K = 3  # classes
# rec-LRA's first reconstruction (skip synapses, raw errors, nothing through BatchNorm).
FIRST = dict(feedback="skip", error_scale="raw", norm_feedback="skip", synapse_update="lra")


def tiny(stem="cifar", norm=None, seed=0):
    keras.utils.set_random_seed(seed)
    size = 16 if stem == "imagenet" else 8
    return resnet("resnet_tiny", (size, size, 2), K, stem=stem, norm=norm)


def data(stem="cifar", n=6, seed=1):
    rng = np.random.default_rng(seed)
    size = 16 if stem == "imagenet" else 8
    x = rng.uniform(size=(n, size, size, 2)).astype("float32")
    return x, np.arange(n) % K


def tie_feedback(model):
    """`F = W` for every unit, and the projection's feedback equal to the projection."""
    for unit in model.unit_layers:
        unit.feedback.assign(unit.kernel)
        if getattr(unit, "shortcut_feedback", None) is not None:
            unit.shortcut_feedback.assign(unit.shortcut_kernel)


def bp_gradients(model, x, y):
    labels = model.one_hot_labels(y)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
    return {id(v): g for v, g in zip(variables, tape.gradient(loss, variables))}


def angle(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_fa_with_feedback_equal_to_forward_weights_is_backprop(stem):
    model = tiny(stem)
    # A positive stem bias keeps ReLU ties (zeros) out of the max-pool windows.
    stem_unit = model.blocks[0].unit_layers[0]
    stem_unit.bias.assign(tf.fill(stem_unit.bias.shape, 0.5))
    tie_feedback(model)
    x, y = data(stem)
    model.compile(optimizer="sgd", rule=rules.FA())
    pairs = model.local_updates(x, y)
    want = bp_gradients(model, x, y)
    assert {id(v) for _, v in pairs} == set(want)  # every forward parameter, nothing else
    for update, var in pairs:
        np.testing.assert_allclose(update, want[id(var)], rtol=1e-4, atol=1e-6,
                                   err_msg=var.path)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_rec_lra_last_block_follows_backprop_when_its_synapses_are_backprops(norm):
    model = tiny(norm=norm)
    tie_feedback(model)
    head = model.blocks[-1].unit_layers[0]
    last = model.blocks[-2]
    x, y = data()
    positions = np.prod(model.trace(x).blocks[-2].outputs.shape[1:3])
    # Backprop's error at the last block output: e_L @ transpose(W_head) / (H * W).
    last.unit_layers[-1].skip_feedback.assign(tf.transpose(head.kernel) / positions)
    beta = 1e-2
    model.compile(optimizer="sgd", rule=rules.RecLRA(beta=beta, gamma=0.0, **FIRST))
    got = {id(v): u for u, v in model.local_updates(x, y)}
    want = bp_gradients(model, x, y)
    output_unit = last.unit_layers[-1]
    # The output unit's BatchNorm is inside its local update, so it follows backprop exactly;
    # the first unit's target comes through F of the unit above, which skips that BatchNorm's
    # Jacobian (docs/ALGORITHM.md#norm-transpose), so it is checked without BatchNorm only.
    # Along the adjacent chain the error shrinks by `beta` per unit (docs/ALGORITHM.md#targets):
    # the output unit's update is `beta` times backprop's, the unit below it `beta**2` times.
    units = [output_unit] if norm else last.unit_layers
    for unit in units:
        depth = len(last.unit_layers) - last.unit_layers.index(unit)
        g, u = want[id(unit.kernel)], got[id(unit.kernel)]
        assert angle(u, g) < 3.0, unit.name
        np.testing.assert_allclose(
            np.linalg.norm(u) / np.linalg.norm(g), beta**depth, rtol=0.05, err_msg=unit.name
        )


def test_rec_lra_with_zero_beta_trains_the_head_alone_as_softmax_regression():
    model = tiny(norm="batch")
    x, y = data(n=8)
    lr, steps = 0.5, 4
    features = model.trace(x, training=True).blocks[-1].units[0].inputs.numpy()
    head = model.blocks[-1].unit_layers[0]
    w, b = head.kernel.numpy().astype("float64"), head.bias.numpy().astype("float64")
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  rule=rules.RecLRA(beta=0.0, gamma=0.0, **FIRST))
    pairs = model.local_updates(x, y)
    for update, var in pairs:
        if var is not head.kernel and var is not head.bias:
            assert not np.any(np.asarray(update)), var.path
    model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    onehot = np.eye(K)[y]
    for _ in range(steps):  # NumPy softmax regression on the (fixed) pooled features
        logits = features @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        err = (p - onehot) / len(x)
        w, b = w - lr * features.T @ err, b - lr * err.sum(0)
    np.testing.assert_allclose(head.kernel.numpy(), w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(head.bias.numpy(), b, rtol=1e-4, atol=1e-5)
    for v in model.trainable_variables:
        if v is not head.kernel and v is not head.bias:
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)


def cosine_and_ratio(update, grad):
    a, b = np.ravel(update).astype("float64"), np.ravel(grad).astype("float64")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return a @ b / (na * nb), na / nb


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_rec_lra_with_exact_synapses_through_batch_norm_is_backprop(stem):
    """The identity that pins revision 2 (docs/ALGORITHM.md#identity).

    A tiny ResNet with BatchNorm in training mode in every unit and a strided projection
    shortcut (with its own BatchNorm); every error synapse set to its forward kernel; errors
    scaled by 1/beta with beta = 1e-3 and carried through each unit's BatchNorm: every
    parameter's rec-LRA update points where backprop's gradient does (cosine >= 0.999) with
    the same length (ratio 0.97-1.03). ReLU makes `(z - t) / beta` a finite difference of
    `phi' * d`, exact except where `h` is within `beta * d` of zero.
    """
    model = tiny(stem, norm="batch", seed=3)
    tie_feedback(model)
    assert any(u.shortcut == "projection" for u in model.unit_layers[1:-1])
    x, y = data(stem, n=8)
    rule = rules.RecLRA(beta=1e-3, error_scale="beta", norm_feedback="through",
                        synapse_update="fixed")
    model.compile(optimizer="sgd", rule=rule)
    want = bp_gradients(model, x, y)
    pairs = model.local_updates(x, y)
    assert {id(v) for _, v in pairs} == set(want)  # every forward parameter, BN's included
    for update, var in pairs:
        cos, ratio = cosine_and_ratio(update, want[id(var)])
        assert cos >= 0.999, (var.path, cos)
        assert 0.97 <= ratio <= 1.03, (var.path, ratio)
    # Without the path through BatchNorm the same exact synapses do not give backprop's
    # direction for the units below the head's block (docs/ALGORITHM.md#norm-transpose).
    model.compile(optimizer="sgd", rule=rules.RecLRA(beta=1e-3, norm_feedback="skip",
                                                     synapse_update="fixed"))
    skipped = {id(v): u for u, v in model.local_updates(x, y)}
    stem_kernel = model.unit_layers[0].kernel
    assert cosine_and_ratio(skipped[id(stem_kernel)], want[id(stem_kernel)])[0] < 0.99


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_fa_with_exact_synapses_through_batch_norm_is_backprop(stem):
    """FA's default carries signals through each unit's BatchNorm: with F = W it is backprop
    on a ResNet with BatchNorm too (the version without BatchNorm is tested above)."""
    model = tiny(stem, norm="batch", seed=4)
    stem_unit = model.blocks[0].unit_layers[0]
    stem_unit.norm_layer.beta.assign(tf.fill(stem_unit.norm_layer.beta.shape, 3.0))
    tie_feedback(model)
    x, y = data(stem, n=8)
    model.compile(optimizer="sgd", rule="fa")
    want = bp_gradients(model, x, y)
    pairs = model.local_updates(x, y)
    assert {id(v) for _, v in pairs} == set(want)
    for update, var in pairs:
        scale = max(1e-3, float(np.abs(want[id(var)]).max()))
        np.testing.assert_allclose(update, want[id(var)], rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=var.path)
