"""TFLite export of the tiny MLP: the float32 model's report, a fully integer int8 model, errors.

(The float32 model's parity with Keras is tested with the other formats', in test_export.py.)

The int8 model is read back with the interpreter here, independently of the report: its
tensors' dtypes, its input and outputs' quantization, and its outputs on inputs quantized the
way a user would (with the scale and zero point the report records).
"""

import json
import os

import numpy as np
import pytest
from export_testing import CLASSES, SHAPE, TOL, export_error, keras_reference

from export import common, export_lib, tflite_lib


@pytest.fixture(scope="module")
def tflite_export(trained, tmp_path_factory):
    """`(folder, report)`: the tiny MLP as model.tflite and model_int8.tflite, no dataset."""
    _, path = trained
    out = str(tmp_path_factory.mktemp("tflite") / "out")
    report = export_lib.export_model(path, out, "tflite", dataset="none",
                                     tflite_quantize="int8", calibration_images=50)
    return out, report


@pytest.fixture(scope="module")
def uint8_tflite_export(trained, tmp_path_factory):
    _, path = trained
    out = str(tmp_path_factory.mktemp("tflite") / "uint8.tflite")
    report = export_lib.export_model(path, out, "tflite", mode="tflite", raw_uint8_input=True,
                                     dataset="none", tflite_quantize="int8",
                                     calibration_images=50)
    return out, report


def _int8_run(path, x01):
    """A user's int8 round trip: quantize [0, 1] images, run, dequantize the outputs."""
    runner = tflite_lib.interpreter(path).get_signature_runner("serving_default")
    inp = runner.get_input_details()["images"]
    scale, zero_point = inp["quantization"]
    q = np.clip(np.round(x01 / scale) + zero_point, -128, 127).astype(np.int8)
    outputs = runner(images=q)
    details = runner.get_output_details()
    return {k: (v.astype(np.float64) - details[k]["quantization"][1])
            * details[k]["quantization"][0] for k, v in outputs.items()}, outputs


def test_tflite_float_report(tflite_export):
    folder, report = tflite_export
    on_disk = json.load(open(os.path.join(folder, "export_report.json")))
    entry = on_disk["formats"]["tflite"]
    assert on_disk["passed"] and entry["within_tolerance"] and entry["max_abs_diff_all"] < TOL
    assert entry["bytes"] == os.path.getsize(os.path.join(folder, "model.tflite"))
    assert entry["input"] == {"name": "images", "dtype": "float32", "shape": [-1, *SHAPE]}
    assert entry["dynamic_batch"] and {c["batch_size"] for c in entry["checks"]} == {1, 7}
    assert on_disk["serving_dtype"] == "float32" and on_disk["model_dtype_policies"] == []
    assert on_disk["max_abs_diff"] == entry["max_abs_diff_all"]  # the int8 model is apart


@pytest.mark.parametrize("batch", [1, 7])
def test_int8_model_is_integer_and_close_to_keras(trained, tflite_export, batch):
    model, _ = trained
    folder, report = tflite_export
    path = os.path.join(folder, "model_int8.tflite")
    interp = tflite_lib.interpreter(path)
    dtypes = {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    assert dtypes == {"int8", "int32"}  # int8 weights and activations, int32 biases and shapes
    entry = report["formats"]["tflite_int8"]
    x = np.random.default_rng(20 + batch).random((batch,) + SHAPE, dtype=np.float32)
    dequantized, raw = _int8_run(path, x)
    assert raw["logits"].dtype == np.int8 and raw["logits"].shape == (batch, CLASSES)
    assert raw["probabilities"].dtype == np.int8
    # What the report records is what the model holds, so a user can feed it from the report.
    runner = interp.get_signature_runner("serving_default")
    scale, zero_point = runner.get_input_details()["images"]["quantization"]
    assert entry["input"] == {"name": "images", "dtype": "int8", "shape": [-1, *SHAPE],
                              "scale": pytest.approx(scale), "zero_point": zero_point}
    logit_step = entry["outputs"]["logits"]["scale"]
    assert runner.get_output_details()["logits"]["quantization"][0] == pytest.approx(logit_step)
    logits, probs = keras_reference(model, x)
    # A few quantization steps off, not more: the same function, in integers.
    assert np.abs(dequantized["logits"] - logits).max() < 10 * logit_step
    assert np.abs(dequantized["probabilities"] - probs).max() < 0.05


def test_int8_agreement_on_random_images(trained, tflite_export):
    model, _ = trained
    folder, report = tflite_export
    x = np.random.default_rng(5).random((500,) + SHAPE, dtype=np.float32)
    dequantized, _ = _int8_run(os.path.join(folder, "model_int8.tflite"), x)
    logits, _ = keras_reference(model, x)
    assert np.mean(dequantized["logits"].argmax(-1) == logits.argmax(-1)) > 0.9  # chance: 1/3

    entry = report["formats"]["tflite_int8"]
    ev, cal = entry["evaluation"], entry["calibration"]
    assert entry["integer_only"] and entry["float_tensors"] == [] and entry["failures"] == []
    assert set(entry["tensor_dtypes"]) == {"int8", "int32"}
    assert cal["images"] == 50 and cal["source"] == "random" and not cal["real"]
    # Without a dataset: 1,000 random images, an agreement reported but not held to a bar,
    # and no accuracy, with the reason.
    assert ev["images"] == 1000 and not ev["real"] and ev["min_agreement"] is None
    assert ev["agreeing"] == round(ev["top1_agreement"] * 1000) and ev["top1_agreement"] > 0.9
    assert "accuracy" not in ev and "no labelled test split" in ev["accuracy_note"]
    assert "no dataset requested" in ev["note"]
    assert {c["batch_size"] for c in entry["checks"]} == {1, 7}
    assert entry["dequantized_max_abs_diff"]["logits"] < 10 * entry["outputs"]["logits"]["scale"]
    assert entry["bytes"] == os.path.getsize(os.path.join(folder, "model_int8.tflite"))


def test_no_feedback_weight_in_either_tflite_model(trained, tflite_export):
    model, _ = trained
    folder, report = tflite_export
    feedback_ids = {id(w) for w in model.feedback_weights}
    forward = [(w.path, np.asarray(w)) for w in model.weights if id(w) not in feedback_ids]
    feedback = [(w.path, np.asarray(w)) for w in model.feedback_weights]

    # Float: every weight-sized constant is a forward weight (Dense kernels transposed).
    constants = tflite_lib.constant_tensors(os.path.join(folder, "model.tflite"))
    floats = [a for a, _ in constants.values() if a.dtype == np.float32 and a.size > 1]
    for array in floats:
        matches = [p for p, w in forward if array.shape in (w.shape, w.T.shape)
                   and (np.array_equal(array, w) or np.array_equal(array, w.T))]
        assert len(matches) == 1, array.shape
    assert len(floats) == len(forward)
    assert not any(np.array_equal(np.sort(a.ravel()), np.sort(w.ravel()))
                   for a in floats for _, w in feedback if a.size == w.size)
    assert report["formats"]["tflite"]["feedback_weights_found"] == []

    # int8: the matcher finds every forward weight (so it would find a feedback one) and no
    # feedback weight.
    constants = tflite_lib.constant_tensors(os.path.join(folder, "model_int8.tflite"))
    assert {p for _, p in tflite_lib.quantized_matches(forward, constants)} == \
        {p for p, _ in forward}
    assert tflite_lib.quantized_matches(feedback, constants) == []
    entry = report["formats"]["tflite_int8"]
    assert entry["feedback_weights_found"] == []
    # (The exporter's model is the reloaded .keras file: its paths lack the "mlp/block_i/".)
    assert len(entry["forward_weights_found"]) == len(forward)
    assert all(any(p.endswith(f) for p, _ in forward) for f in entry["forward_weights_found"])


def test_quantized_matches_tells_a_matrix_from_its_lookalike():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 30))
    shuffled = rng.permutation(w.ravel()).reshape(w.shape)  # the same values, sorted
    scale = np.abs(w).max(axis=0) / 127  # per output channel, stored transposed: (30, 40)
    q = np.round(w / scale).T.astype(np.int8)
    params = {"scales": scale.astype(np.float32), "zero_points": np.zeros(30, np.int64),
              "quantized_dimension": 0}
    constants = {"0:kernel": (q, params)}
    assert tflite_lib.quantized_matches([("w", w), ("shuffled", shuffled)], constants) == \
        [("0:kernel", "w")]
    # A weight whose values are all equal (a zero bias) is no evidence of anything.
    zeros = {"1:bias": (np.zeros(30, np.int32), {"scales": np.float32([0.1]),
                                                  "zero_points": np.int64([0]),
                                                  "quantized_dimension": 0})}
    assert tflite_lib.quantized_matches([("zero_bias", np.zeros(30))], zeros) == []


@pytest.mark.parametrize("batch", [1, 7])
def test_raw_uint8_input_int8_model(trained, uint8_tflite_export, batch):
    """export.tflite with raw_uint8_input: FILE.tflite takes uint8 pixels (its parity with Keras
    is tested in test_export.py), and FILE_int8.tflite too, through its own quantization."""
    model, _ = trained
    path, report = uint8_tflite_export
    assert sorted(os.listdir(os.path.dirname(path))) == [
        "export_report.json", "uint8.tflite", "uint8_int8.tflite"]
    assert report["formats"]["tflite"]["input"]["dtype"] == "uint8"
    int8_path = path.replace(".tflite", "_int8.tflite")
    entry = report["formats"]["tflite_int8"]
    assert entry["path"] == int8_path and entry["integer_only"]
    runner = tflite_lib.interpreter(int8_path).get_signature_runner("serving_default")
    detail = runner.get_input_details()["images"]
    assert np.dtype(detail["dtype"]) == np.uint8 and entry["input"]["dtype"] == "uint8"
    scale, zero_point = detail["quantization"]
    x = np.random.default_rng(30 + batch).integers(0, 256, (batch,) + SHAPE, dtype=np.uint8)
    q = np.clip(np.round(x / 255.0 / scale) + zero_point, 0, 255).astype(np.uint8)
    out = runner(images=q)
    assert out["logits"].dtype == np.int8 and out["logits"].shape == (batch, CLASSES)
    step, logit_zero = runner.get_output_details()["logits"]["quantization"]
    logits, _ = keras_reference(model, x.astype(np.float32) / 255.0)
    assert np.abs((out["logits"].astype(np.float64) - logit_zero) * step - logits).max() \
        < 10 * step


@pytest.mark.parametrize("quantize", ["int4", "INT8", "", None, 8])
def test_bad_tflite_quantize_is_refused(trained, tmp_path, quantize):
    _, path = trained
    err = export_error(export_lib.export_model, path, str(tmp_path / "o"), "tflite",
                 tflite_quantize=quantize)
    assert err.exit_code == common.EXIT_USAGE
    assert f"tflite_quantize={quantize!r}" in str(err) and "none, int8" in str(err)
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written


def test_tflite_argument_checks(trained, tmp_path):
    _, path = trained
    out = str(tmp_path / "o")
    no_tflite = export_error(export_lib.export_model, path, out, "onnx", tflite_quantize="int8")
    assert no_tflite.exit_code == common.EXIT_USAGE and "formats='onnx'" in str(no_tflite)
    for kwargs, quoted in (({"eval_images": 999}, "eval_images=999"),
                           ({"calibration_images": 0}, "calibration_images=0"),
                           ({"min_agreement": 1.5}, "min_agreement=1.5")):
        err = export_error(export_lib.export_model, path, out, "tflite", tflite_quantize="int8",
                     **kwargs)
        assert err.exit_code == common.EXIT_USAGE and quoted in str(err)
    assert not os.path.exists(out)
    wrong = export_error(export_lib.export_model, path, str(tmp_path / "m.onnx"), "tflite",
                   mode="tflite")
    assert wrong.exit_code == common.EXIT_USAGE and "ending in .tflite" in str(wrong)
