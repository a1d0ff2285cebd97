"""Export an rlra_tf model to SavedModel, ONNX and TFLite and verify the artefacts against Keras.

The serving graph is the model's forward pass in inference mode (BatchNorm on its moving
statistics), in float32, and nothing else: `ServingModule` traces `model(images,
training=False)` once and tracks exactly the variables that trace reads, so the error synapses
(feedback weights), the optimiser state and the metrics never reach an artefact. Its one
signature, `serving_default`, takes `images` (float32 in [0, 1], or uint8 in [0, 255] with
`raw_uint8_input`) of shape `(batch,) + image_shape` with a dynamic batch and returns `logits`
and `probabilities`. A model saved under a mixed-precision policy is exported (and verified)
as a float32 copy of itself (`serving.float32_model`); the report says so.

`export_model` is what the binaries (`python -m export`, `python -m export.savedmodel`,
`python -m export.onnx`, `python -m export.tflite`) call: it checks its arguments and the
output location, loads the `.keras` file, writes the artefacts, reloads them
(`tf.saved_model.load`, onnxruntime, the TFLite interpreter), runs the ONNX checker, compares
every float artefact with Keras on random and (when a dataset is available) real test images
at two batch sizes, measures an int8 TFLite model by its top-1 agreement with Keras and its
accuracy, writes `export_report.json` and raises `ExportError` (with an exit code) when
anything is wrong.

This module is the orchestration layer of `export/`; imports run one way, down this list:

    cli                                   the flags and main of the four binaries
    export_lib, output                    orchestration: export_model, the output location
    savedmodel_lib, onnx_lib, tflite_lib  the formats: write, reload and verify one artefact
    datasets, verification, serving,      the shared layer: the dataset used, the checks
    common                                against Keras, ServingModule, names, exit codes, errors

Callers import a name from the module that defines it (`export.common.ExportError`,
`export.serving.load_aligned_model`, ...).
"""

import datetime
import json
import os
import time

import numpy as np

from export import onnx_lib, savedmodel_lib, tflite_lib
from export.common import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_FORMATS,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    EXIT_USAGE,
    EXIT_VERIFY,
    INPUT_NAME,
    MIN_EVAL_IMAGES,
    OUTPUT_NAMES,
    ExportError,
    check_batch_sizes,
    check_formats,
    check_fraction,
    check_image_count,
    check_opset,
    check_tflite_quantize,
    check_tolerance,
    path_bytes,
    versions,
)
from export.datasets import (
    dataset_class_names,
    dataset_from_run_config,
    labelled_batches,
    labelled_images,
    real_test_images,
)
from export.output import int8_path, layout_for, prepare_output
from export.serving import (
    SERVING_DTYPE,
    ServingModule,
    dtype_policies,
    float32_model,
    image_shape,
    load_aligned_model,
)
from export.verification import keras_outputs, verification_inputs


def export_model(
    model_path,
    out,
    formats=DEFAULT_FORMATS,
    *,
    mode="combined",
    opset=DEFAULT_OPSET,
    raw_uint8_input=False,
    class_names=None,
    dataset="auto",
    data_dir=None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    tolerance=DEFAULT_TOLERANCE,
    overwrite=False,
    seed=0,
    tflite_quantize="none",
    calibration_images=DEFAULT_CALIBRATION_IMAGES,
    eval_images=0,
    min_agreement=DEFAULT_MIN_AGREEMENT,
):
    """Exports `model_path` (a `.keras` file) and verifies the artefacts. Returns the report.

    Args:
        model_path: the `.keras` file of an rlra_tf `AlignedModel`.
        out: see `layout_for` (a folder, the SavedModel folder, or the `.onnx` / `.tflite`
            file).
        formats: `"savedmodel"`, `"onnx"` and/or `"tflite"` (a list or a comma-separated
            string).
        mode: `"combined"`, `"savedmodel"`, `"onnx"` or `"tflite"`: the binary's output layout.
        opset: ONNX opset, 13 to 18.
        raw_uint8_input: the graph takes uint8 pixels and divides them by 255 itself.
        class_names: one name per class (default: a dataset's names when `dataset` names one
            or `"auto"` finds exactly one match, else "0".."K-1").
        dataset: a dataset of `rlra_tf.data` for real test images, `"none"`, or `"auto"`:
            the `dataset` of a trainer's `config.json` beside the model if there is one,
            else the datasets that match the model's image shape and class count.
        data_dir: tfds data folder for `dataset`.
        batch_sizes: the batch sizes the artefacts are compared with Keras at.
        tolerance: the largest allowed max abs difference of logits and probabilities.
        overwrite: replace existing artefacts.
        seed: seed of the random verification inputs.
        tflite_quantize: `"none"`, or `"int8"`: also write a fully integer TFLite model
            beside `model.tflite` (`model_int8.tflite`).
        calibration_images: training images of the int8 model's representative dataset.
        eval_images: at most this many test images (>= 1,000) for the int8 model's top-1
            agreement with Keras and its accuracy; 0: the whole test split.
        min_agreement: the int8 model's least top-1 agreement with Keras on real test images.

    Raises:
        ExportError: with `exit_code`; on a failed verification the report is written first.
    """
    started = time.perf_counter()
    formats = check_formats(formats)
    if "onnx" in formats:
        opset = check_opset(opset)
    tflite_quantize = check_tflite_quantize(tflite_quantize, formats)
    if tflite_quantize == "int8":
        calibration_images = check_image_count("calibration_images", calibration_images, 1)
        eval_images = check_image_count("eval_images", eval_images, MIN_EVAL_IMAGES,
                                        zero_means="the whole test split")
        min_agreement = check_fraction("min_agreement", min_agreement)
    batch_sizes = check_batch_sizes(batch_sizes)
    tolerance = check_tolerance(tolerance)
    layout = layout_for(out, formats, mode)
    prepare_output(layout, overwrite, mode)

    t0 = time.perf_counter()
    model = load_aligned_model(model_path)
    policies = dtype_policies(model)
    model = float32_model(model)  # the serving graph, and the Keras reference, are float32
    load_seconds = time.perf_counter() - t0
    shape = image_shape(model)
    dataset, config_path = dataset_from_run_config(model_path, dataset)
    try:
        images, real_note = real_test_images(model, dataset, max(batch_sizes), data_dir)
    except ExportError:
        if config_path is None:
            raise
        dataset = "auto"  # the run's dataset does not fit or is unavailable: look for others
        images, real_note = real_test_images(model, dataset, max(batch_sizes), data_dir)
    if config_path is not None:
        real_note["dataset_from"] = config_path
    if class_names is None:
        class_names = dataset_class_names(model, dataset, real_note)
    class_names = [str(n) for n in class_names]
    if len(class_names) != model.num_classes:
        raise ExportError(
            f"Expected {model.num_classes} class names (one per class), received "
            f"{len(class_names)}: class_names={class_names!r}", EXIT_USAGE)
    module = ServingModule(model, raw_uint8_input=raw_uint8_input, class_names=class_names)
    cases = verification_inputs(shape, raw_uint8_input, batch_sizes, images, seed)
    references = [keras_outputs(model, x, raw_uint8_input) for _, x in cases]
    n_fwd, n_fb = model.count_params_split()

    report = {
        "model": os.path.abspath(model_path),
        "model_bytes": path_bytes(model_path),
        "model_class": type(model).__name__,
        "image_shape": list(shape),
        "num_classes": int(model.num_classes),
        "class_names": class_names,
        "raw_uint8_input": bool(raw_uint8_input),
        "input_convention": module.input_convention,
        "inputs": {INPUT_NAME: "uint8" if raw_uint8_input else "float32"},
        "outputs": list(OUTPUT_NAMES),
        "serving_dtype": SERVING_DTYPE,
        "model_dtype_policies": policies,
        "serving_dtype_note": _serving_dtype_note(policies),
        "forward_params": int(n_fwd),
        "feedback_params": int(n_fb),
        "exported_variables": module.forward_paths,
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "real_images": real_note,
        "tflite_quantize": tflite_quantize if "tflite" in formats else None,
        "load_seconds": round(load_seconds, 4),
        "formats": {},
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    failures = []
    if "savedmodel" in formats:
        entry = savedmodel_lib.export_and_verify(
            module, model, layout.savedmodel, cases, references, tolerance)
        report["formats"]["savedmodel"] = entry
        failures += _failures("SavedModel", entry, tolerance)
    if "onnx" in formats:
        entry = onnx_lib.export_and_verify(
            module, model, layout.onnx, opset, cases, references, tolerance,
            source=os.path.basename(os.fspath(model_path)))
        report["formats"]["onnx"] = entry
        failures += _failures("ONNX", entry, tolerance)
    if "tflite" in formats:
        entry = tflite_lib.export_and_verify(
            module, model, layout.tflite, cases, references, tolerance)
        report["formats"]["tflite"] = entry
        failures += _failures("TFLite", entry, tolerance)
    if tflite_quantize == "int8":
        calibration, evaluation = _int8_images(
            shape, real_note, data_dir, calibration_images, eval_images, seed)
        entry = tflite_lib.export_and_verify_int8(
            module, model, int8_path(layout.tflite), calibration, evaluation, cases,
            references, min_agreement)
        report["formats"]["tflite_int8"] = entry
        failures += [f"TFLite int8 {f}" for f in entry["failures"]]
        if entry["feedback_weights_found"]:
            failures.append(f"TFLite int8 holds feedback weights: "
                            f"{entry['feedback_weights_found']}")
    report["max_abs_diff"] = max(e["max_abs_diff_all"] for e in report["formats"].values()
                                 if "max_abs_diff_all" in e)
    report["passed"] = not failures
    report["failures"] = failures
    report["total_seconds"] = round(time.perf_counter() - started, 4)
    report["report"] = os.path.abspath(layout.report)
    with open(layout.report, "w") as f:
        json.dump(report, f, indent=2, allow_nan=True)
        f.write("\n")
    if failures:
        raise ExportError("Verification failed: " + "; ".join(failures)
                          + f" (report: {layout.report})", EXIT_VERIFY)
    return report


def _serving_dtype_note(policies):
    if not policies:
        return "the model computes in float32; so do the exported graphs"
    return (f"the model's layers carry the dtype policies {policies}; the exported graphs are "
            "float32 all the same (a float32 copy of the model, same weights), and are "
            "verified against that float32 Keras model")


def _int8_images(shape, real_note, data_dir, calibration_images, eval_images, seed):
    """`(calibration, evaluation)` for `tflite_lib.export_and_verify_int8`.

    From the dataset the real test images came from: the first `calibration_images` images
    of its "train" split (tfds stores them shuffled), and batches of its "test" split (the
    first `eval_images`, or all of it) with labels, read as they are measured. Without one:
    seeded random images in [0, 1], 1,000 for the agreement and no accuracy, and the notes
    say why.
    """
    name = real_note.get("dataset")
    reason = real_note.get("skipped", "no dataset")
    if name is not None:
        try:
            cal, _ = labelled_images(name, "train", calibration_images, data_dir)
            test = labelled_batches(name, "test", eval_images or None, data_dir)
            return (cal, {"source": f"{name} train", "order": "the first images of the "
                          "split in tfds' stored order", "real": True}), \
                (test, {"source": f"{name} test", "real": True})
        except Exception as e:  # tfds raises many types: fall back to random, and say so
            reason = f"{name} train could not be read ({type(e).__name__}: {e})"
    rng = np.random.default_rng(seed + 1)
    random_note = {"source": "random", "real": False,
                   "note": f"uniform random images in [0, 1]: {reason}"}
    cal = rng.random((calibration_images,) + shape, dtype=np.float32)
    test = [(rng.random((max(eval_images, MIN_EVAL_IMAGES),) + shape, dtype=np.float32), None)]
    return (cal, random_note), (test, {**random_note, "accuracy_note": "not measured: no "
                                       "labelled test split"})


def _failures(label, entry, tolerance):
    out = []
    if not entry["within_tolerance"]:
        out.append(f"{label} max abs difference {entry['max_abs_diff_all']:.3g} exceeds the "
                   f"tolerance {tolerance:g}")
    if entry["feedback_weights_found"]:
        out.append(f"{label} holds feedback weights: {entry['feedback_weights_found']}")
    return out
