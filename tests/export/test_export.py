"""Export to SavedModel, ONNX and TFLite: parity with Keras, no feedback weights, clear errors.

The int8 TFLite model has its own tests (test_export_tflite.py).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from export_testing import CLASSES, SHAPE, TOL, export_error, keras_reference
from onnx import numpy_helper

import rlra_tf
from export import common, datasets, export_lib, serving, tflite_lib, verification

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def float_export(trained, tmp_path_factory):
    _, path = trained
    out = str(tmp_path_factory.mktemp("export") / "float")
    report = export_lib.export_model(path, out, "savedmodel,onnx,tflite", dataset="none")
    return out, report


@pytest.fixture(scope="module")
def uint8_export(trained, tmp_path_factory):
    _, path = trained
    out = str(tmp_path_factory.mktemp("export") / "uint8")
    report = export_lib.export_model(
        path, out, ("savedmodel", "onnx", "tflite"), raw_uint8_input=True, opset=13,
        class_names=["cat", "dog", "owl"], dataset="none",
    )
    return out, report


def _savedmodel_outputs(folder, x):
    serve = tf.saved_model.load(os.path.join(folder, "saved_model")).signatures["serving_default"]
    out = serve(images=tf.constant(x))
    assert set(out) == {"logits", "probabilities"}
    return np.asarray(out["logits"]), np.asarray(out["probabilities"])


def _onnx_outputs(folder, x):
    sess = onnxruntime.InferenceSession(
        os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    return sess.run(["logits", "probabilities"], {"images": x})


def _forward_weights(model):
    feedback = {id(w) for w in model.feedback_weights}
    return [np.asarray(w) for w in model.weights if id(w) not in feedback]


def _tflite_outputs(folder, x):
    """The signature runner resizes the input to the batch, then allocates."""
    path = os.path.join(folder, "model.tflite")
    out = tflite_lib.interpreter(path).get_signature_runner("serving_default")(images=x)
    assert set(out) == {"logits", "probabilities"}
    return out["logits"], out["probabilities"]


@pytest.mark.parametrize("batch", [1, 7])
def test_savedmodel_onnx_and_tflite_match_keras(trained, float_export, batch):
    model, _ = trained
    folder, _ = float_export
    x = np.random.default_rng(batch).random((batch,) + SHAPE, dtype=np.float32)
    logits, probs = keras_reference(model, x)
    assert np.abs(logits).max() > 0.05  # a trained, non-trivial model
    for got_logits, got_probs in (_savedmodel_outputs(folder, x), _onnx_outputs(folder, x),
                                  _tflite_outputs(folder, x)):
        assert got_logits.shape == (batch, CLASSES) and got_logits.dtype == np.float32
        np.testing.assert_allclose(got_logits, logits, rtol=0, atol=TOL)
        np.testing.assert_allclose(got_probs, probs, rtol=0, atol=TOL)


def test_signatures_and_onnx_metadata(float_export):
    folder, report = float_export
    serve = tf.saved_model.load(os.path.join(folder, "saved_model")).signatures["serving_default"]
    spec = serve.structured_input_signature[1]["images"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, *SHAPE]
    proto = onnx.load(os.path.join(folder, "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(SHAPE)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["0", "1", "2"]
    assert meta["input_dtype"] == "float32" and "[0, 1]" in meta["input_convention"]
    # The report on disk says what was measured.
    on_disk = json.load(open(os.path.join(folder, "export_report.json")))
    assert on_disk["passed"] is True and on_disk["max_abs_diff"] < TOL
    assert on_disk["formats"]["onnx"]["opset"] == 17
    assert on_disk["formats"]["onnx"]["bytes"] == os.path.getsize(
        os.path.join(folder, "model.onnx"))
    assert on_disk["formats"]["savedmodel"]["bytes"] > 0
    assert on_disk["model_bytes"] == os.path.getsize(report["model"])
    assert {c["batch_size"] for c in on_disk["formats"]["savedmodel"]["checks"]} == {1, 7}
    assert set(on_disk["versions"]) >= {"tensorflow", "keras", "onnx", "tf2onnx", "onnxruntime"}


@pytest.mark.parametrize("batch", [1, 7])
def test_raw_uint8_input_matches_keras_on_normalised_input(trained, uint8_export, batch):
    model, _ = trained
    folder, _ = uint8_export
    x = np.random.default_rng(10 + batch).integers(0, 256, (batch,) + SHAPE, dtype=np.uint8)
    logits, probs = keras_reference(model, x.astype(np.float32) / 255.0)
    for got_logits, got_probs in (_savedmodel_outputs(folder, x), _onnx_outputs(folder, x),
                                  _tflite_outputs(folder, x)):
        np.testing.assert_allclose(got_logits, logits, rtol=0, atol=TOL)
        np.testing.assert_allclose(got_probs, probs, rtol=0, atol=TOL)
    proto = onnx.load(os.path.join(folder, "model.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["cat", "dog", "owl"]
    assert meta["input_dtype"] == "uint8" and "0..255" in meta["input_convention"]


def test_no_feedback_weight_in_either_artefact(trained, float_export):
    model, _ = trained
    folder, _ = float_export
    forward = _forward_weights(model)
    feedback = [np.asarray(w) for w in model.feedback_weights]
    assert len(forward) == 6 and len(feedback) == 5

    def same(a, b):  # equal values up to a transpose or reshape
        return a.size == b.size and np.array_equal(np.sort(a.ravel()), np.sort(b.ravel()))

    # SavedModel: every stored variable, by name and shape, is one forward weight.
    ckpt = tf.train.load_checkpoint(os.path.join(folder, "saved_model", "variables", "variables"))
    stored = {k: ckpt.get_tensor(k) for k in ckpt.get_variable_to_shape_map()
              if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    loaded = tf.saved_model.load(os.path.join(folder, "saved_model"))
    names = [v.name for v in loaded.forward_variables]
    assert not [n for n in list(stored) + names if "feedback" in n]
    assert sorted(a.shape for a in stored.values()) == sorted(w.shape for w in forward)
    for array in stored.values():
        assert sum(np.array_equal(array, w) for w in forward) == 1
        assert not any(same(array, f) for f in feedback)

    # ONNX: the initializers hold the forward weights and nothing of the feedback weights.
    proto = onnx.load(os.path.join(folder, "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert not [n for n in inits if "feedback" in n]
    floats = [a for a in inits.values() if a.dtype == np.float32]
    weights = [a for a in floats if any(same(a, w) for w in forward)]
    assert sorted(a.size for a in weights) == sorted(w.size for w in forward)
    others = [a for a in floats if not any(same(a, w) for w in forward)]
    assert all(a.size == 1 for a in others)  # the input mean and std constants
    assert not [a for a in floats if any(same(a, f) for f in feedback)]


def test_feedback_matches_finds_transposed_copies(trained):
    model, _ = trained
    f = np.asarray(model.feedback_weights[0])
    k = np.asarray(model.unit_layers[0].kernel)
    found = verification.feedback_matches(model, {"a": f.T.copy(), "b": k, "c": np.arange(3)})
    assert len(found) == 1 and found[0].startswith("a (=") and "feedback" in found[0]


def test_model_file_errors(tmp_path):
    missing = export_error(serving.load_aligned_model, str(tmp_path / "nope.keras"))
    assert missing.exit_code == common.EXIT_USAGE and "not found" in str(missing)

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"this is not a zip archive" * 10)
    corrupt = export_error(serving.load_aligned_model, str(garbage))
    assert corrupt.exit_code == common.EXIT_USAGE
    assert "not a valid .keras archive" in str(corrupt)

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain_path = str(tmp_path / "plain.keras")
    plain.save(plain_path)
    foreign = export_error(serving.load_aligned_model, plain_path)
    assert foreign.exit_code == common.EXIT_USAGE
    assert "not an rlra_tf AlignedModel" in str(foreign) and "Sequential" in str(foreign)


def test_truncated_model_file(trained, tmp_path):
    _, path = trained
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(path, "rb").read()[:2000])
    err = export_error(serving.load_aligned_model, str(truncated))
    assert err.exit_code == common.EXIT_USAGE and "corrupt or truncated" in str(err)


@pytest.mark.parametrize("opset", [12, 19, "17"])
def test_bad_opset(trained, tmp_path, opset):
    _, path = trained
    err = export_error(export_lib.export_model, path, str(tmp_path / "o"), "onnx", opset=opset)
    assert err.exit_code == common.EXIT_USAGE
    assert f"opset={opset!r}" in str(err) and "13 to 18" in str(err)
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written


def test_output_errors(trained, float_export, tmp_path):
    _, path = trained
    folder, _ = float_export
    busy = export_error(export_lib.export_model, path, folder, "onnx")
    assert busy.exit_code == common.EXIT_USAGE
    assert "is not empty" in str(busy) and "--overwrite" in str(busy)

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    blocked = export_error(export_lib.export_model, path, str(a_file / "out"), "onnx")
    assert blocked.exit_code == common.EXIT_USAGE and "not writable" in str(blocked)

    existing = tmp_path / "m.onnx"
    existing.write_text("old")
    taken = export_error(export_lib.export_model, path, str(existing), "onnx", mode="onnx")
    assert taken.exit_code == common.EXIT_USAGE and "already exists" in str(taken)


def test_overwrite_replaces_only_export_artefacts(trained, tmp_path):
    _, path = trained
    # A trainer's run folder: config.json names a dataset, here one that does not fit.
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(open(path, "rb").read())
    (run / "config.json").write_text(json.dumps({"dataset": "cifar10"}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_text("stale")
    (out / "notes.txt").write_text("keep me")
    report = export_lib.export_model(str(run / "model.keras"), str(out), "onnx", overwrite=True)
    assert report["passed"] and (out / "notes.txt").read_text() == "keep me"
    assert report["real_images"]["dataset_from"] == str(run / "config.json")
    assert "skipped" in report["real_images"] and report["class_names"] == ["0", "1", "2"]
    onnx.checker.check_model(str(out / "model.onnx"))
    assert sorted(os.listdir(out)) == ["export_report.json", "model.onnx", "notes.txt"]


def test_parity_failure_writes_report_and_fails(trained, tmp_path, monkeypatch):
    _, path = trained
    real = verification.keras_outputs

    def off_by_a_bit(model, images, raw):
        out = real(model, images, raw)
        return {**out, "logits": out["logits"] + 2e-3}

    monkeypatch.setattr(export_lib, "keras_outputs", off_by_a_bit)
    out = tmp_path / "out"
    err = export_error(export_lib.export_model, path, str(out), "onnx", dataset="none",
                       tolerance=1e-3)
    assert err.exit_code == common.EXIT_VERIFY and "exceeds the tolerance" in str(err)
    report = json.load(open(out / "export_report.json"))
    assert report["passed"] is False
    assert 1.9e-3 < report["formats"]["onnx"]["max_abs_diff"]["logits"] < 2.1e-3


def test_dataset_from_run_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "fashion_mnist", "lr": 1}))
    model = str(tmp_path / "model.keras")
    assert datasets.dataset_from_run_config(model, "auto") == (
        "fashion_mnist", str(tmp_path / "config.json"))
    assert datasets.dataset_from_run_config(model, "none") == ("none", None)
    assert datasets.dataset_from_run_config(str(tmp_path / "x" / "m.keras"), "auto") == (
        "auto", None)


def test_argument_checks():
    assert common.check_formats("onnx, savedmodel") == ("onnx", "savedmodel")
    for bad in ("", "coreml", "onnx,onnx"):
        assert export_error(common.check_formats, bad).exit_code == common.EXIT_USAGE
    assert common.check_batch_sizes("1,7") == (1, 7)
    assert export_error(common.check_batch_sizes, "0,2").exit_code == common.EXIT_USAGE
    assert export_error(common.check_tolerance, -1).exit_code == common.EXIT_USAGE


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_binaries_exit_codes(trained, tmp_path):
    """Bad input exits 2 with one line naming it (a value, a flag that does not parse);
    --help lists the exporter's flags with their defaults; a good export prints its summary
    and nothing on stderr."""
    _, path = trained
    bad = _run("export.onnx", f"--model={path}", f"--out={tmp_path / 'm.onnx'}", "--opset=19")
    assert bad.returncode == common.EXIT_USAGE, bad.stderr
    assert bad.stderr == ("export.onnx: error: Unsupported ONNX opset, received: opset=19. "
                          "tf2onnx 1.17.0 converts to opsets 13 to 18 only (default 17).\n")
    unparsed = _run("export", f"--model={path}", f"--out={tmp_path / 'x'}", "--tolerance=tiny")
    assert unparsed.returncode == 2 and unparsed.stderr.count("\n") == 1, unparsed.stderr
    assert unparsed.stderr.startswith("export: error: flag --tolerance=tiny:")
    # A missing model and an unusable output folder raise ExportError with exit code 2
    # (EXIT_USAGE), tested in-process above; the binary prints any ExportError as above.
    usage = _run("export", "--help")
    assert usage.returncode == 0
    for flag in ("--model", "--out", "--formats", "--opset", "--tolerance", "--dataset",
                 "--tflite_quantize", "--tflite_min_agreement"):
        assert f"  {flag}:" in usage.stdout, flag
    assert "(default: '17')" in usage.stdout and "(default: 'savedmodel,onnx')" in usage.stdout

    good = _run("export.savedmodel", f"--model={path}", f"--out={tmp_path / 'sm'}",
                "--dataset=none")
    assert good.returncode == 0, good.stderr
    assert good.stderr == ""  # no TensorFlow start-up lines, no converter output
    assert "savedmodel" in good.stdout and "max |diff|" in good.stdout
    assert os.path.exists(tmp_path / "sm" / "saved_model.pb")
    report = json.load(open(tmp_path / "sm" / "export_report.json"))
    assert report["passed"] and list(report["formats"]) == ["savedmodel"]


def test_binaries_with_tflite(trained, tmp_path):
    _, path = trained
    bad = _run("export.tflite", f"--model={path}", f"--out={tmp_path / 'm.tflite'}",
               "--tflite_quantize=int4")
    assert bad.returncode == common.EXIT_USAGE, bad.stderr
    assert "export.tflite: error:" in bad.stderr and "tflite_quantize='int4'" in bad.stderr
    assert "none, int8" in bad.stderr and not os.path.exists(tmp_path / "m.tflite")

    out = tmp_path / "all"
    good = _run("export", f"--model={path}", f"--out={out}", "--dataset=none",
                "--formats=savedmodel,onnx,tflite", "--tflite_quantize=int8")
    assert good.returncode == 0, good.stderr
    assert good.stderr == ""  # the converters' ~30 lines only with --verbosity
    assert sorted(os.listdir(out)) == ["export_report.json", "model.onnx", "model.tflite",
                                       "model_int8.tflite", "saved_model"]
    rows = {line.split()[0]: line for line in good.stdout.splitlines() if line.strip()}
    assert {"savedmodel", "onnx", "tflite", "tflite_int8"} <= set(rows)
    assert "top1" in rows["tflite_int8"] and "serving graph: float32" in good.stdout
    assert "tflite int8: input int8 q = round(x / " in good.stdout
    assert "1000 random images" in good.stdout and "no dataset requested" in good.stdout
    report = json.load(open(out / "export_report.json"))
    assert report["passed"] and report["tflite_quantize"] == "int8"
    assert list(report["formats"]) == ["savedmodel", "onnx", "tflite", "tflite_int8"]


def test_untrained_uncompiled_model_saves_and_loads_for_export(tmp_path):
    model = rlra_tf.models.mlp(SHAPE, hidden_units=(4,), num_classes=CLASSES)
    path = str(tmp_path / "fresh.keras")
    model.save(path)  # AlignedModel.get_compile_config failed on an uncompiled model
    loaded = serving.load_aligned_model(path)
    assert serving.image_shape(loaded) == SHAPE and not loaded.compiled
    x = np.random.default_rng(0).random((2,) + SHAPE, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=0, atol=1e-6)
