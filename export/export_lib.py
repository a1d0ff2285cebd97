"""Export an rlra_tf model to SavedModel and ONNX and verify the artefacts against Keras.

The serving graph is the model's forward pass in inference mode (BatchNorm on its moving
statistics) and nothing else: `ServingModule` traces `model(images, training=False)` once and
tracks exactly the variables that trace reads, so the error synapses (feedback weights), the
optimiser state and the metrics never reach an artefact. Its one signature, `serving_default`,
takes `images` (float32 in [0, 1], or uint8 in [0, 255] with `raw_uint8_input`) of shape
`(batch,) + image_shape` with a dynamic batch and returns `logits` and `probabilities`.

`export_model` is what the binaries (`python -m export`, `python -m export.savedmodel`,
`python -m export.onnx`) call: it checks its arguments and the output location, loads the
`.keras` file, writes the artefacts, reloads them (`tf.saved_model.load`, onnxruntime), runs the
ONNX checker, compares every artefact with Keras on random and (when a dataset is available)
real test images at two batch sizes, writes `export_report.json` and raises `ExportError` (with
an exit code) when anything is wrong.

This module is the orchestration layer of `export/`; imports run one way, down this list:

    cli                                   the flags and main of the three binaries
    export_lib, output                    orchestration: export_model, the output location
    savedmodel_lib, onnx_lib              the formats: write, reload and verify one artefact
    datasets, verification, serving,      the shared layer: the dataset used, the checks
    common                                against Keras, ServingModule, names, exit codes, errors

The names of the layers below are re-exported here, so `export_lib.ExportError`,
`export_lib.EXIT_*`, `export_lib.load_aligned_model`, ... keep working.
"""

import datetime
import json
import os
import time

from export import onnx_lib, savedmodel_lib
from export.common import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    EXIT_CONVERSION,
    EXIT_MODEL,
    EXIT_OUTPUT,
    EXIT_USAGE,
    EXIT_VERIFY,
    FORMATS,
    INPUT_NAME,
    ONNX_NAME,
    OUTPUT_NAMES,
    REPORT_NAME,
    SAVEDMODEL_ENTRIES,
    SAVEDMODEL_NAME,
    SUPPORTED_OPSETS,
    ExportError,
    check_batch_sizes,
    check_formats,
    check_opset,
    check_tolerance,
    path_bytes,
    timed,
    versions,
)
from export.datasets import dataset_class_names, dataset_from_run_config, real_test_images
from export.output import OutputLayout, layout_for, prepare_output
from export.serving import (
    ServingModule,
    default_class_names,
    image_shape,
    input_convention,
    load_aligned_model,
)
from export.verification import (
    compare,
    feedback_matches,
    keras_outputs,
    run_forward,
    verification_inputs,
    verify,
)

__all__ = [
    # common
    "DEFAULT_BATCH_SIZES", "DEFAULT_OPSET", "DEFAULT_TOLERANCE", "EXIT_CONVERSION", "EXIT_MODEL",
    "EXIT_OUTPUT", "EXIT_USAGE", "EXIT_VERIFY", "FORMATS", "INPUT_NAME", "ONNX_NAME",
    "OUTPUT_NAMES", "REPORT_NAME", "SAVEDMODEL_ENTRIES", "SAVEDMODEL_NAME", "SUPPORTED_OPSETS",
    "ExportError", "check_batch_sizes", "check_formats", "check_opset", "check_tolerance",
    "path_bytes", "timed", "versions",
    # datasets, output, serving, verification
    "dataset_class_names", "dataset_from_run_config", "real_test_images",
    "OutputLayout", "layout_for", "prepare_output",
    "ServingModule", "default_class_names", "image_shape", "input_convention",
    "load_aligned_model",
    "compare", "feedback_matches", "keras_outputs", "run_forward", "verification_inputs",
    "verify",
    # this module
    "export_model",
]


def export_model(
    model_path,
    out,
    formats=FORMATS,
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
):
    """Exports `model_path` (a `.keras` file) and verifies the artefacts. Returns the report.

    Args:
        model_path: the `.keras` file of an rlra_tf `AlignedModel`.
        out: see `layout_for` (a folder, the SavedModel folder, or the `.onnx` file).
        formats: `"savedmodel"` and/or `"onnx"` (a list or a comma-separated string).
        mode: `"combined"`, `"savedmodel"` or `"onnx"`: the binary's output layout.
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

    Raises:
        ExportError: with `exit_code`; on a failed verification the report is written first.
    """
    started = time.perf_counter()
    formats = check_formats(formats)
    if "onnx" in formats:
        opset = check_opset(opset)
    batch_sizes = check_batch_sizes(batch_sizes)
    tolerance = check_tolerance(tolerance)
    layout = layout_for(out, formats, mode)
    prepare_output(layout, overwrite, mode)

    t0 = time.perf_counter()
    model = load_aligned_model(model_path)
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
        "forward_params": int(n_fwd),
        "feedback_params": int(n_fb),
        "exported_variables": module.forward_paths,
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "real_images": real_note,
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
    report["max_abs_diff"] = max(e["max_abs_diff_all"] for e in report["formats"].values())
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


def _failures(label, entry, tolerance):
    out = []
    if not entry["within_tolerance"]:
        out.append(f"{label} max abs difference {entry['max_abs_diff_all']:.3g} exceeds the "
                   f"tolerance {tolerance:g}")
    if entry["feedback_weights_found"]:
        out.append(f"{label} holds feedback weights: {entry['feedback_weights_found']}")
    return out

