"""`from_keras` / `to_keras`: a Keras model converted computes the same function, its local update
with F = W is the gradient of the *original* Keras model, every rule trains it, and what cannot be
converted is refused by name."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rlra_tf
from rlra_tf.models import ConversionError, from_keras

L = keras.layers
RULES = ("rec_lra", "lra", "fa", "wm", "dfa", "bp")


def sequential_cnn():
    """Conv-BN-ReLU-MaxPool x2, Flatten, Dense, Dropout, Dense (softmax), on raw 0..255 pixels."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Rescaling(1 / 255.0),
        L.Conv2D(8, 3, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
        L.Conv2D(16, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(32, activation="relu"), L.Dropout(0.5, seed=3),
        L.Dense(10, activation="softmax"),
    ], name="cnn")


def small_resnet():
    """A functional ResNet with an identity and a strided projection join, a dense head on
    logits, and Keras' own padding/pooling in front of the first join."""
    x = inputs = keras.Input((16, 16, 3))
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(8, 3, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(8, 3, padding="same")(y)
    y = L.BatchNormalization()(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    s = L.BatchNormalization()(L.Conv2D(12, 1, strides=2)(x))
    y = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(12, 3, strides=2,
                                                             padding="same")(x)))
    y = L.BatchNormalization()(L.Conv2D(12, 3, padding="same")(y))
    x = L.ReLU()(L.Add()([s, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(5)(x), name="small_resnet")


def caffe(x):
    """keras.applications' own input convention for VGG16/ResNet50 (BGR, mean subtracted)."""
    return keras.applications.imagenet_utils.preprocess_input(x * 255.0, mode="caffe")


CASES = {
    # name: (builder, example shape, input maker)
    "cnn": (sequential_cnn, (28, 28, 1), lambda x: x * 255.0),
    "small_resnet": (small_resnet, (16, 16, 3), lambda x: x),
    "vgg16": (lambda: keras.applications.VGG16(weights=None, input_shape=(32, 32, 3),
                                               classes=10), (32, 32, 3), caffe),
    "resnet50": (lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                                     classes=10), (64, 64, 3), caffe),
}


@pytest.fixture(scope="module")
def converted():
    """`{name: (keras model, converted model, batch x, labels y)}`, converted once."""
    out = {}
    for name, (build, shape, make_input) in CASES.items():
        keras.utils.set_random_seed(0)
        original = build()
        rng = np.random.default_rng(1)
        x = make_input(rng.random((8,) + shape, dtype=np.float32)).astype(np.float32)
        y = rng.integers(0, original.output_shape[-1], size=8)
        out[name] = (original, from_keras(original), x, y)
    return out


def keras_logits(original, x, training):
    """The original model's pre-softmax logits: its last Dense applied to what it is fed."""
    head = original.layers[-1]
    features = keras.Model(original.inputs, head.input)(x, training=training)
    return np.asarray(tf.matmul(features, head.kernel) + head.bias)


def sync_dropout(model, original):
    """Both models' dropout seed generators at the same state (as right after conversion)."""
    for block in model.blocks:
        for t in block.transition_layers:
            if isinstance(t, rlra_tf.layers.Dropout):
                t.seed_generator.state.assign(original.get_layer(t.name).seed_generator.state)


def assert_close_to(ours, theirs, rel=1e-5):
    scale = max(1.0, float(np.max(np.abs(theirs))))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rel * scale)


def set_fused(model, fused):
    for unit in model.unit_layers:
        for norm in (unit.norm_layer, getattr(unit, "shortcut_norm", None)):
            if norm is not None:
                norm.fused = fused


@pytest.mark.parametrize("name", list(CASES))
def test_logits_equal_the_original_in_inference_and_training(converted, name):
    """Inference, and training mode (BatchNorm on the batch, dropout with the same masks) with
    Keras' own BatchNorm arithmetic: the same function to 1e-5. With the fused BatchNorm kernel
    (the default) the rounding differs: still 1e-5 on the small models; ResNet-50's 53
    BatchNorms at initialisation amplify it to ~5e-5 relative (measured), checked at 1e-4."""
    original, model, x, _ = converted[name]
    assert_close_to(np.asarray(model(x, training=False)), keras_logits(original, x, False))
    set_fused(model, False)
    sync_dropout(model, original)
    ours = np.asarray(model(x, training=True))
    assert_close_to(ours, keras_logits(original, x, True))
    set_fused(model, True)
    sync_dropout(model, original)
    fused = np.asarray(model(x, training=True))
    assert_close_to(fused, keras_logits(original, x, True), 1e-4 if name == "resnet50" else 1e-5)
    if name == "cnn":  # training mode really differs here: BatchNorm on the batch, dropout
        assert not np.allclose(ours, keras_logits(original, x, False), atol=1e-3)


@pytest.mark.parametrize("name", list(CASES))
def test_identity_against_the_original_keras_model(converted, name):
    """With every F := W, beta = 1e-3 and the revision-2 defaults, every parameter's update is
    the gradient of the original model's cross-entropy, taken by tf.GradientTape on it."""
    original, model, x, y = converted[name]
    for unit in model.unit_layers:
        for feedback, kernel in unit.feedback_pairs:
            feedback.assign(kernel)
    model.compile(optimizer="sgd", rule=rlra_tf.rules.RecLRA(beta=1e-3, synapse_update="fixed"))
    sync_dropout(model, original)
    updates = {id(v): u for u, v in model.local_updates(x, y)}
    pairs = [(ours, theirs) for ours, theirs in model.conversion.weight_pairs if theirs.trainable]
    from_logits = original.layers[-1].activation is keras.activations.linear
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, original(x, training=True), from_logits=from_logits))
    grads = tape.gradient(loss, [theirs.value for _, theirs in pairs])
    kernel_norm = {}
    for (ours, theirs), g in zip(pairs, grads):
        if theirs.path.endswith("/kernel"):
            kernel_norm[theirs.path.rsplit("/", 1)[0]] = float(tf.norm(g))
    checked = negligible = 0
    for (ours, theirs), g in zip(pairs, grads):
        u = updates[id(ours)]
        g_norm, u_norm = float(tf.norm(g)), float(tf.norm(u))
        layer = theirs.path.rsplit("/", 1)[0]
        if theirs.path.endswith("/bias") and g_norm < 1e-3 * kernel_norm[layer]:
            # A conv bias in front of BatchNorm: zero in exact arithmetic, for both.
            assert u_norm < 1e-3 * kernel_norm[layer], theirs.path
            negligible += 1
            continue
        cosine = float(tf.reduce_sum(u * g)) / (u_norm * g_norm)
        assert cosine >= 0.998, (theirs.path, cosine)
        assert 0.95 <= u_norm / g_norm <= 1.05, (theirs.path, u_norm / g_norm)
        checked += 1
    assert checked >= 2 * len(model.unit_layers)  # every kernel, and more
    if name in ("cnn", "resnet50"):
        assert negligible > 0


@pytest.mark.parametrize("name", ["cnn", "small_resnet"])
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_trains_a_converted_model(converted, name, rule):
    original, _, x, y = converted[name]
    model = from_keras(original)
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), rule=rule, metrics=["accuracy"])
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.trainable_weights
    changed = sum(not np.allclose(b, a) for b, a in zip(before, after))
    assert changed >= len(model.unit_layers)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_every_rule_takes_a_step_on_the_large_models(converted, name):
    original, model, x, y = converted[name]
    for rule in RULES:
        model.compile(optimizer=keras.optimizers.SGD(1e-3), rule=rule, run_eagerly=True)
        before = [np.array(w) for w in model.trainable_weights]
        loss = model.train_on_batch(x[:2], y[:2], return_dict=True)["loss"]
        assert np.isfinite(loss), rule
        after = [np.array(w) for w in model.trainable_weights]
        assert all(np.isfinite(a).all() for a in after), rule
        # (LRA-E's raw errors shrink by beta per unit: its lowest units barely move.)
        changed = sum(not np.array_equal(b, a) for b, a in zip(before, after))
        assert changed >= len(model.unit_layers), (rule, changed)


@pytest.mark.parametrize("name", list(CASES))
def test_to_keras_predicts_the_same_logits(converted, name):
    _, model, x, _ = converted[name]
    plain = model.to_keras()
    assert not any(isinstance(layer, (rlra_tf.layers.AlignedUnit, rlra_tf.layers.Transition))
                   for layer in plain.layers)
    assert_close_to(np.asarray(plain(x, training=False)), np.asarray(model(x, training=False)))
    n_forward = sum(int(np.prod(w.shape)) for w in plain.weights)
    assert n_forward == model.count_params_split()[0]  # every weight but the error synapses


def test_parameter_counts_equal_the_original(converted):
    for name, (original, model, _, _) in converted.items():
        ours = rlra_tf.models.parameter_counts(model)
        assert ours["forward"] + ours["statistics"] == original.count_params(), name


def test_save_load_round_trip_and_continued_training(converted, tmp_path):
    original, _, x, y = converted["small_resnet"]
    model = from_keras(original)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), rule="rec_lra", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "converted.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x), model(x))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_exporter_parity_on_a_converted_model(converted, tmp_path):
    from export import export_lib

    original, _, x, y = converted["cnn"]
    model = from_keras(original)
    model.compile(optimizer="adam", rule="rec_lra")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "cnn.keras")
    model.save(path)
    report = export_lib.export_model(path, str(tmp_path / "export"), "savedmodel,onnx,tflite",
                                     dataset="none")
    assert report["passed"], report["failures"]
    assert set(report["formats"]) == {"savedmodel", "onnx", "tflite"}
    assert report["max_abs_diff"] <= 1e-4


def test_the_softmax_is_taken_off_and_said(converted):
    _, model, _, _ = converted["vgg16"]
    assert any("softmax" in note and "predictions" in note for note in model.conversion.notes)
    assert model.conversion.layer_map["fc1"].endswith("/fc1")
    assert "softmax" not in model.conversion.summary().split("note")[0]


def _functional(*layers, shape=(8, 8, 3)):
    x = inputs = keras.Input(shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("model_fn, layer_name, message", [
    (lambda: _functional(L.DepthwiseConv2D(3, name="dw"), L.Flatten(), L.Dense(3)),
     "dw", "DepthwiseConv2D"),
    (lambda: keras.Sequential([keras.Input((5, 4)), L.LSTM(3, name="lstm"), L.Dense(2)]),
     "lstm", "LSTM"),
    (lambda: _functional(L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(name="bn"),
                         L.Flatten(), L.Dense(3)), "bn", "follows an activation"),
    (lambda: _functional(L.Conv2D(4, 3, dilation_rate=2, name="dil"), L.Flatten(),
                         L.Dense(3)), "dil", "dilation_rate"),
    (lambda: _functional(L.Flatten(), L.Dense(4, activation="softmax", name="mid"),
                         L.Dense(3)), "mid", "softmax before the model's output"),
    (lambda: _functional(L.Dense(4, name="d4")), "d4", "flatten or pool"),
    (lambda: _functional(L.Flatten(), L.Dense(3, kernel_regularizer="l2", name="reg")),
     "reg", "kernel_regularizer"),
])
def test_unsupported_layers_are_refused_by_name(model_fn, layer_name, message):
    with pytest.raises(ConversionError) as info:
        from_keras(model_fn())
    text = str(info.value)
    assert f"{layer_name!r}" in text and message in text
    if "supports" in text:
        assert "Conv2D" in text and "GlobalAveragePooling2D" in text


def test_a_sigmoid_head_and_a_wrong_num_classes_are_refused():
    model = _functional(L.Flatten(), L.Dense(3, activation="sigmoid", name="out"))
    with pytest.raises(ConversionError, match="'out'.*sigmoid"):
        from_keras(model)
    with pytest.raises(ConversionError, match="num_classes=4.*gives 3"):
        from_keras(_functional(L.Flatten(), L.Dense(3)), num_classes=4)


def test_shared_layers_and_subclassed_models_are_refused():
    dense = L.Dense(4, name="shared")
    inputs = keras.Input((4,))
    shared = keras.Model(inputs, dense(L.ReLU()(dense(inputs))))
    with pytest.raises(ConversionError, match="'shared'.*more than once"):
        from_keras(shared)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ConversionError, match="subclassed"):
        from_keras(Sub())


def test_normalization_is_folded_into_the_input_preprocessing():
    norm = L.Normalization(mean=[0.5, 0.2, 0.1], variance=[4.0, 1.0, 0.25])
    model = _functional(L.Rescaling(2.0, offset=-1.0), norm, L.Flatten(), L.Dense(3))
    converted = from_keras(model)
    x = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-5, atol=1e-6)
    # (x * 2 - 1 - m) / sd = (x - (1 + m) / 2) / (sd / 2)
    np.testing.assert_allclose(converted.input_mean, [0.75, 0.6, 0.55], rtol=1e-6)
    np.testing.assert_allclose(converted.input_std, [1.0, 0.5, 0.25], rtol=1e-6)


def test_folding_the_biases_in_front_of_batchnorm_keeps_the_function(converted):
    original, _, x, _ = converted["resnet50"]
    kept = from_keras(original)  # (the fixture's converted model has trained by now)
    folded = from_keras(original, fold_batchnorm_bias=True)
    counts = rlra_tf.models.parameter_counts(folded)
    preset = rlra_tf.models.resnet("resnet50", input_shape=(64, 64, 3), num_classes=10)
    assert counts["forward"] == rlra_tf.models.parameter_counts(preset)["forward"]
    biases = sum(int(np.prod(layer.bias.shape)) for layer in original.layers
                 if isinstance(layer, L.Conv2D))
    assert rlra_tf.models.parameter_counts(kept)["forward"] == counts["forward"] + biases
    assert_close_to(np.asarray(folded(x, training=False)), np.asarray(kept(x, training=False)))
    set_fused(folded, False)
    set_fused(kept, False)
    assert_close_to(np.asarray(folded(x, training=True)), np.asarray(kept(x, training=True)))
