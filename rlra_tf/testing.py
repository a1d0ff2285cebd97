"""Checks for a new unit type, transition type or rule: one call each, usable in any test suite.

`check_transition` and `check_unit` compare what a learning rule needs of a layer (the
transpose of a transition, the error a unit sends down through `F = W`) with TensorFlow's own
gradient of the same forward op, an independent reference; they also check the config round
trip and saving inside a model. `check_rule` trains a tiny MLP and a tiny ResNet one step with
the rule and checks that a model saved with it reloads and continues identically.
docs/MODELS.md and docs/RULES.md show them in use.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


def _close(a, b, what, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shape {a.shape} != {b.shape}")
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    if err > tol * scale:
        raise AssertionError(f"{what}: max |difference| {err:.3g} > {tol} x {scale:.3g}")


def _round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    if again.get_config() != config:
        raise AssertionError(f"{type(layer).__name__}: get_config/from_config do not round trip")
    return again


def check_transition(layer, input_shape, training=True, seed=0, tol=1e-5):
    """Checks a `rlra_tf.layers.Transition` on random inputs of `input_shape` (batch included).

    - `transpose(d)` equals the gradient of `sum(forward(x) * d)` with respect to `x`;
    - `compute_output_shape` matches the output; `keras_layer()` computes the same op
      (in inference mode);
    - the config round trips.
    """
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal(input_shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        tt = layer.trace(x, training=training)
        d = tf.constant(rng.standard_normal(tt.outputs.shape), tf.float32)
        total = tf.reduce_sum(tt.outputs * d)
    _close(layer.transpose(d, tt), tape.gradient(total, x), "transpose vs gradient", tol)
    shape = tuple(layer.compute_output_shape(tuple(input_shape)))
    if shape != tuple(tt.outputs.shape):
        raise AssertionError(f"compute_output_shape {shape} != output {tuple(tt.outputs.shape)}")
    _close(layer.keras_layer()(x, training=False), layer.trace(x, training=False).outputs,
           "keras_layer vs forward", tol)
    _round_trip(layer)


def check_unit(unit, input_shape, seed=0, tol=1e-4):
    """Checks an `rlra_tf.layers.AlignedUnit` on random inputs of `input_shape`.

    - with every `F := W`, `feedback_input(e)` equals the gradient of `sum(A(x) * e)` with
      respect to `x` (the transpose of the unit's linear op);
    - `norm_transpose(e)` equals the gradient of `sum(h * e)` with respect to the linear
      response in front of the normalisation (training mode);
    - the mirror estimate from many noise examples is close to the kernel (cosine > 0.9);
    - `keras_layers` computes the same pre-activation; the config round trips; a one-unit
      model saves and reloads with the same outputs.
    """
    from rlra_tf.layers import AlignedDense, GlobalPooling2D
    from rlra_tf.models import AlignedModel, UnitStack
    from rlra_tf.trace import UnitTrace

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal(input_shape), tf.float32)
    if not unit.built:
        unit.build(tuple(input_shape))
    for feedback, kernel in unit.feedback_pairs:
        feedback.assign(kernel)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h, linear, _ = unit.pre_activation_parts(x, training=True)
        e = tf.constant(rng.standard_normal(h.shape), tf.float32)
        a = linear if linear is not None else h
        total = tf.reduce_sum(a * e)
        through = tf.reduce_sum(h * e)
    _close(unit.feedback_input(e, input_shape=tf.shape(x)), tape.gradient(total, x),
           "feedback_input with F = W vs the gradient of the linear op", tol)
    ut = UnitTrace(unit=unit, inputs=x, pre=h, outputs=unit.activation(h), linear=linear)
    if linear is not None:
        _close(unit.norm_transpose(e, ut), tape.gradient(through, linear),
               "norm_transpose vs the gradient through the normalisation", tol)
    for feedback, shape, estimate in unit.mirror_synapses(ut):
        noise = tf.constant(rng.choice([-1.0, 1.0], (256,) + tuple(shape)), tf.float32)
        c = np.asarray(estimate(noise, "taps")).ravel()
        w = np.asarray(feedback).ravel()
        cosine = float(c @ w / (np.linalg.norm(c) * np.linalg.norm(w) + 1e-30))
        if cosine < 0.9:
            raise AssertionError(f"mirror estimate of {feedback.path}: cosine {cosine:.3f} < 0.9")
    main, norm = unit.keras_layers("check")
    plain = main(x)
    if norm is not None:
        plain = norm(plain, training=False)
    _close(plain, unit.pre_activation(x, training=False), "keras_layers vs pre_activation", tol)
    _round_trip(unit)
    pool = [GlobalPooling2D()] if len(input_shape) == 4 else []
    model = AlignedModel([UnitStack([unit] + pool), UnitStack([AlignedDense(3)])], num_classes=3)
    model.build(tuple(input_shape))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "unit.keras")
        model.save(path)
        again = keras.saving.load_model(path)
    _close(again(x), model(x), "reloaded model", 1e-6)


def check_rule(rule, seed=0):
    """Checks a rule (a `Rule` object or a registered name) on a tiny MLP and a tiny ResNet:
    one training step gives finite updates for every trainable weight it changes, a model
    compiled with it saves and reloads with the rule, and training continues identically."""
    from rlra_tf import models, rules

    rule = rules.get(rule)
    rng = np.random.default_rng(seed)
    x = rng.random((8, 8, 8, 3), dtype=np.float32)
    y = rng.integers(0, 3, 8)
    for name, build in (
        ("mlp", lambda: models.mlp((8, 8, 3), hidden_units=(6, 5), num_classes=3)),
        ("resnet", lambda: models.resnet("resnet_tiny", input_shape=(8, 8, 3), num_classes=3)),
    ):
        keras.utils.set_random_seed(seed)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(0.05), rule=rule,
                      metrics=["accuracy"])
        before = [np.array(w) for w in model.weights]
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        after = [np.array(w) for w in model.weights]
        if not all(np.isfinite(a).all() for a in after):
            raise AssertionError(f"{rule!r} on the {name}: non-finite weights after one step")
        if not any(not np.array_equal(b, a) for b, a in zip(before, after)):
            raise AssertionError(f"{rule!r} on the {name}: one step changed no weight")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            again = keras.saving.load_model(path)
        if rules.serialize(again.rule) != rules.serialize(model.rule):
            raise AssertionError(f"{rule!r}: reloaded as {again.rule!r}")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        again.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        _close(again(x), model(x), f"{name} trained on after reloading", 1e-5)
