"""A model saved under a mixed-precision policy still exports a float32 serving graph.

The models here are built and saved under `mixed_bfloat16` without training (training under a
mixed policy is the trainers' business). The artefacts must compute what the same weights
compute in float32, not what bfloat16 computes, and the report must say so.
"""

import json
import os

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

import rlra_tf
from export import export_lib, serving, tflite_lib
from rlra_tf.models.resnet import resnet

TOL = 1e-5


def _mlp():
    return rlra_tf.models.mlp((8, 8, 1), hidden_units=(6, 5), num_classes=3,
                              input_mean=(0.4,), input_std=(0.3,))


def _resnet():
    return resnet("resnet_tiny", input_shape=(8, 8, 3), num_classes=3)


@pytest.fixture(params=[_mlp, _resnet], ids=["mlp", "resnet_tiny"])
def mixed(request, tmp_path):
    """`(path, float32 twin)`: a model built and saved under mixed_bfloat16, and the same
    architecture built in float32 holding the same weights."""
    keras.utils.set_random_seed(3)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = request.param()
        path = str(tmp_path / "mixed.keras")
        model.save(path)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.dtype_policy.name == "mixed_bfloat16"
    twin = request.param()
    twin.set_weights(model.get_weights())
    return path, model, twin


def test_mixed_policy_model_exports_float32_graphs(mixed, tmp_path):
    path, model, twin = mixed
    assert serving.dtype_policies(serving.load_aligned_model(path)) == ["mixed_bfloat16"]
    out = tmp_path / "out"
    report = export_lib.export_model(path, str(out), "savedmodel,onnx,tflite", dataset="none")
    assert report["passed"] and report["serving_dtype"] == "float32"
    assert report["model_dtype_policies"] == ["mixed_bfloat16"]
    assert "float32" in report["serving_dtype_note"]
    assert json.load(open(out / "export_report.json"))["model_dtype_policies"] == \
        ["mixed_bfloat16"]

    shape = tuple(report["image_shape"])
    x = np.random.default_rng(0).random((7,) + shape, dtype=np.float32)
    reference = np.asarray(twin(x, training=False))  # the same weights, computed in float32
    assert reference.dtype == np.float32
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    sess = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                        providers=["CPUExecutionProvider"])
    lite = tflite_lib.interpreter(str(out / "model.tflite")).get_signature_runner()
    for got in (serve(images=tf.constant(x))["logits"], sess.run(["logits"], {"images": x})[0],
                lite(images=x)["logits"]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.asarray(got), reference, rtol=0, atol=TOL)
    # bfloat16 keeps 8 bits of mantissa: rounding the float32 logits to it alone moves them by
    # more than 100 times the tolerance, so a graph computing in bfloat16 would fail above.
    bf16 = np.asarray(tf.cast(tf.cast(reference, tf.bfloat16), tf.float32))
    assert np.abs(bf16 - reference).max() > 100 * TOL


def test_serving_module_of_a_mixed_model_has_no_half_precision_op(mixed):
    path, _, _ = mixed
    model = serving.load_aligned_model(path)
    module = serving.ServingModule(model)
    assert module.model_dtype_policies == ("mixed_bfloat16",)
    assert serving.half_precision_ops(module.serve.get_concrete_function()) == []
    assert serving.dtype_policies(model) == ["mixed_bfloat16"]  # the model is left alone


def test_half_precision_ops_are_found_in_a_mixed_trace():
    """The check `ServingModule` relies on finds bfloat16 in the mixed MLP's own trace."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _mlp()
    finally:
        keras.config.set_dtype_policy(previous)
    direct = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, 8, 8, 1), tf.float32))
    found = serving.half_precision_ops(direct)
    assert found and all("bfloat16" in f for f in found)


def test_float32_model_under_a_global_mixed_policy(mixed):
    path, _, _ = mixed
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = serving.load_aligned_model(path)
        copy = serving.float32_model(model)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"  # restored
    finally:
        keras.config.set_dtype_policy(previous)
    assert copy is not model and serving.dtype_policies(copy) == []
    for a, b in zip(model.weights, copy.weights):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert serving.float32_model(copy) is copy
    assert os.path.exists(path)
