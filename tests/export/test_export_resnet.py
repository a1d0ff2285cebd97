"""Export of a tiny ResNet (conv units, BatchNorm, projection shortcut) matches Keras.

SavedModel, ONNX and float32 TFLite to 1e-5 in inference mode; the int8 TFLite model is
integer only, its convolutions with BatchNorm folded in.
"""

import os

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from onnx import numpy_helper

from export import export_lib, tflite_lib
from rlra_tf.models.resnet import resnet

SHAPE = (8, 8, 3)
CLASSES = 3
TOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`(model, folder, report)`: resnet_tiny trained 2 steps with rec_lra, then exported to
    every format (TFLite float32 and int8 too)."""
    keras.utils.set_random_seed(1)
    model = resnet("resnet_tiny", input_shape=SHAPE, num_classes=CLASSES,
                   input_mean=(0.5, 0.4, 0.3), input_std=(0.2, 0.25, 0.3))
    model.compile(optimizer=keras.optimizers.Adam(0.01), rule="rec_lra", jit_compile=False)
    rng = np.random.default_rng(1)
    x = rng.random((16,) + SHAPE, dtype=np.float32)
    model.fit(x, rng.integers(0, CLASSES, 16), batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path_factory.mktemp("resnet") / "tiny_resnet.keras")
    model.save(path)
    folder = str(tmp_path_factory.mktemp("resnet_export") / "out")
    report = export_lib.export_model(path, folder, "savedmodel,onnx,tflite", dataset="none",
                                     tflite_quantize="int8", calibration_images=50)
    return model, folder, report


@pytest.mark.parametrize("batch", [1, 7])
def test_resnet_artefacts_match_keras_in_inference_mode(exported, batch):
    model, folder, _ = exported
    x = np.random.default_rng(batch).random((batch,) + SHAPE, dtype=np.float32)
    logits = np.asarray(model(x, training=False))
    probs = np.asarray(tf.nn.softmax(logits))
    if batch == 7:  # BatchNorm's moving statistics moved: training mode would differ
        assert np.abs(np.asarray(model(x, training=True)) - logits).max() > 1e-3
    serve = tf.saved_model.load(os.path.join(folder, "saved_model")).signatures["serving_default"]
    saved = serve(images=tf.constant(x))
    sess = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"),
                                        providers=["CPUExecutionProvider"])
    onnx_logits, onnx_probs = sess.run(["logits", "probabilities"], {"images": x})
    lite = tflite_lib.interpreter(os.path.join(folder, "model.tflite")).get_signature_runner()
    lite_out = lite(images=x)
    for got_logits, got_probs in ((saved["logits"], saved["probabilities"]),
                                  (onnx_logits, onnx_probs),
                                  (lite_out["logits"], lite_out["probabilities"])):
        np.testing.assert_allclose(np.asarray(got_logits), logits, rtol=0, atol=TOL)
        np.testing.assert_allclose(np.asarray(got_probs), probs, rtol=0, atol=TOL)


def test_resnet_artefacts_hold_no_feedback_weight(exported):
    model, folder, report = exported
    feedback_ids = {id(w) for w in model.feedback_weights}
    forward = [np.asarray(w) for w in model.weights if id(w) not in feedback_ids]
    feedback = [np.asarray(w) for w in model.feedback_weights]
    assert any("moving_mean" in p for p in report["exported_variables"])

    def same(a, b):
        return a.size == b.size and np.array_equal(np.sort(a.ravel()), np.sort(b.ravel()))

    ckpt = tf.train.load_checkpoint(os.path.join(folder, "saved_model", "variables", "variables"))
    stored = {k: ckpt.get_tensor(k) for k in ckpt.get_variable_to_shape_map()
              if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    names = [v.name for v in tf.saved_model.load(
        os.path.join(folder, "saved_model")).forward_variables]
    assert not [n for n in list(stored) + names if "feedback" in n]
    assert sorted(a.shape for a in stored.values()) == sorted(w.shape for w in forward)
    assert not [k for k, a in stored.items() if any(same(a, f) for f in feedback)]

    proto = onnx.load(os.path.join(folder, "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert not [n for n in inits if "feedback" in n]
    assert not [n for n, a in inits.items() if any(same(a, f) for f in feedback)]
    # BatchNorm is folded into the convolutions: fewer values than forward + statistics.
    n_values = sum(a.size for a in inits.values() if a.dtype == np.float32)
    assert 0 < n_values <= sum(w.size for w in forward)


def test_resnet_int8_tflite_is_integer_convolutions(exported):
    model, folder, report = exported
    interp = tflite_lib.interpreter(os.path.join(folder, "model_int8.tflite"))
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert "CONV_2D" in ops and "ADD" in ops  # the residual additions, in int8
    assert not ops & {"DEQUANTIZE", "CAST"}
    assert {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()} == {"int8", "int32"}
    runner = interp.get_signature_runner()
    for batch in (1, 7):
        out = runner(images=np.zeros((batch,) + SHAPE, np.int8))
        assert out["logits"].shape == (batch, CLASSES) and out["logits"].dtype == np.int8
    entry = report["formats"]["tflite_int8"]
    assert entry["integer_only"] and entry["feedback_weights_found"] == []
    assert report["formats"]["tflite"]["feedback_weights_found"] == []
    assert report["passed"] and 0.0 <= entry["evaluation"]["top1_agreement"] <= 1.0
