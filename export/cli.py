"""The flags and `main` the four export binaries share.

`python -m export` (a folder with the formats of `--formats`), `python -m export.savedmodel` (a
SavedModel folder), `python -m export.onnx` (one `.onnx` file) and `python -m export.tflite`
(one `.tflite` file, and `<name>_int8.tflite` beside it with `--tflite_quantize=int8`) differ
only in what `--out` names. `--help` of each lists these flags with their defaults.

Exit codes, as for every binary of the project (`trainers/cli.py`): 0 success; 2 bad input
(a flag, the model file, the output location), one line naming it; 5 verification failed;
6 conversion failed. The converters' own output (tf2onnx, the TFLite converter) is shown only
with `--verbosity=0` or higher.
"""

import sys

from trainers import cli as binaries

binaries.quiet_start()

from absl import flags  # noqa: E402

from export import common  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "The .keras file of an rlra_tf model.")
_OUT = flags.DEFINE_string(
    "out", None,
    "python -m export: a folder that receives saved_model/, model.onnx, model.tflite (and "
    "model_int8.tflite) and export_report.json; export.savedmodel: the SavedModel folder; "
    "export.onnx / export.tflite: the .onnx / .tflite file (its report goes beside it).",
)
_FORMATS = flags.DEFINE_list(
    "formats", list(common.DEFAULT_FORMATS),
    f"python -m export only: any of {', '.join(common.FORMATS)}.",
)
_OPSET = flags.DEFINE_integer(
    "opset", common.DEFAULT_OPSET,
    f"ONNX opset, {common.SUPPORTED_OPSETS[0]} to {common.SUPPORTED_OPSETS[-1]} "
    "(what tf2onnx 1.17 supports).",
)
_RAW_UINT8_INPUT = flags.DEFINE_bool(
    "raw_uint8_input", False,
    "Take uint8 images (0..255) and divide them by 255 inside the graph, so a deployment "
    "needs no preprocessing. Default: float32 images in [0, 1].",
)
_CLASS_NAMES = flags.DEFINE_list(
    "class_names", None,
    "Comma-separated class names recorded in the artefacts. Default: the names of --dataset "
    "(or of the one dataset whose shape matches), else 0..K-1.",
)
_DATASET = flags.DEFINE_string(
    "dataset", "auto",
    "Dataset of rlra_tf.data whose test images are used in the verification (and whose class "
    "names are recorded): a name, 'none', or 'auto': the dataset of the trainer's config.json "
    "beside the model, else the datasets whose image shape and class count match the model's "
    "(when available offline; their class names only if exactly one matches).",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data folder for --dataset.")
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", [str(b) for b in common.DEFAULT_BATCH_SIZES],
    "Batch sizes at which the artefacts are compared with Keras.",
)
_TOLERANCE = flags.DEFINE_float(
    "tolerance", common.DEFAULT_TOLERANCE,
    "Largest allowed max abs difference between an artefact's outputs and Keras'.",
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace existing export artefacts in the output location."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random verification inputs.")
_TFLITE_QUANTIZE = flags.DEFINE_string(
    "tflite_quantize", "none",
    "none: model.tflite only (float32); int8: also model_int8.tflite, fully integer (int8 "
    "weights, activations, input and outputs; uint8 input with --raw_uint8_input), "
    "calibrated on training images of the dataset.",
)
_TFLITE_CALIBRATION_IMAGES = flags.DEFINE_integer(
    "tflite_calibration_images", common.DEFAULT_CALIBRATION_IMAGES,
    "Training images in the int8 model's representative dataset.",
)
_TFLITE_EVAL_IMAGES = flags.DEFINE_integer(
    "tflite_eval_images", 0,
    f"Test images (at least {common.MIN_EVAL_IMAGES}) for the int8 model's top-1 "
    "agreement with Keras and its accuracy; 0: the whole test split.",
)
_TFLITE_MIN_AGREEMENT = flags.DEFINE_float(
    "tflite_min_agreement", common.DEFAULT_MIN_AGREEMENT,
    "The int8 model fails the verification when its top-1 agreement with Keras on real test "
    "images is lower (on random images, without a dataset, it is only reported).",
)

flags.mark_flags_as_required(["model", "out"])


def summary(report):
    """A few lines for the terminal: one row per artefact."""
    lines = [f"{'format':<12}{'bytes':>12}{'export s':>10}{'verify s':>10}{'max |diff|':>13}  "
             "path",
             f"{'.keras':<12}{report['model_bytes']:>12}{'':>10}{'':>10}{'':>13}  "
             f"{report['model']}"]
    for name, entry in report["formats"].items():
        if "max_abs_diff_all" in entry:
            measure = f"{entry['max_abs_diff_all']:>13.2e}"
        else:  # the int8 model: measured by agreement, not by differences
            measure = f"{entry['evaluation']['top1_agreement']:>8.2%} top1"
        lines.append(
            f"{name:<12}{entry['bytes']:>12}{entry['export_seconds']:>10.2f}"
            f"{entry['verify_seconds']:>10.2f}{measure}  {entry['path']}"
        )
    real = report["real_images"]
    lines.append(
        f"verified on random{' and ' + real['dataset'] + ' test' if 'dataset' in real else ''} "
        f"images at batch sizes {report['batch_sizes']}, tolerance {report['tolerance']:g}; "
        f"no feedback weights exported ({report['feedback_params']} feedback values left out)"
    )
    policies = report["model_dtype_policies"]
    lines.append(f"serving graph: {report['serving_dtype']}" + (
        f" (the model's layers carry {', '.join(policies)}: exported and verified as a float32 "
        "copy with the same weights)" if policies else ""))
    if "tflite_int8" in report["formats"]:
        lines.append(int8_summary(report["formats"]["tflite_int8"]))
    lines.append(f"report: {report['report']}")
    return "\n".join(lines)


def int8_summary(entry):
    """What a user of the int8 model needs: its input's quantization, and how good it is."""
    inp, ev, cal = entry["input"], entry["evaluation"], entry["calibration"]
    text = (f"tflite int8: input {inp['dtype']} q = round(x / {inp['scale']:.6g}) "
            f"{'-' if inp['zero_point'] < 0 else '+'} {abs(inp['zero_point'])} for x in [0, 1]; "
            "top-1 agreement with Keras "
            f"{ev['top1_agreement']:.2%} on {ev['images']} {ev['source']} images")
    if "accuracy" in ev:
        text += f"; accuracy {ev['accuracy']:.2%} (Keras float32 {ev['keras_accuracy']:.2%})"
    else:
        text += f"; accuracy {ev.get('accuracy_note', 'not measured')}"
    text += f"; calibrated on {cal['images']} {cal['source']} images"
    if not ev["real"]:
        text += f" ({ev['note']})"
    return text


def main(argv, mode):
    from export import export_lib

    del argv  # `binaries.run` refuses arguments that are not flags
    program = "export" if mode == "combined" else f"export.{mode}"
    formats = _FORMATS.value
    if mode != "combined":
        if flags.FLAGS["formats"].present and formats != [mode]:
            binaries.fail(program, f"--formats is for python -m export; export.{mode} writes "
                                   f"{mode} only, received: --formats={','.join(formats)}")
        formats = [mode]
    try:
        with binaries.quiet_output(flags.FLAGS["verbosity"].present,
                                   expected=common.ExportError):
            report = export_lib.export_model(
                _MODEL.value,
                _OUT.value,
                formats,
                mode=mode,
                opset=_OPSET.value,
                raw_uint8_input=_RAW_UINT8_INPUT.value,
                class_names=_CLASS_NAMES.value,
                dataset=_DATASET.value,
                data_dir=_DATA_DIR.value,
                batch_sizes=",".join(_BATCH_SIZES.value),
                tolerance=_TOLERANCE.value,
                overwrite=_OVERWRITE.value,
                seed=_SEED.value,
                tflite_quantize=_TFLITE_QUANTIZE.value,
                calibration_images=_TFLITE_CALIBRATION_IMAGES.value,
                eval_images=_TFLITE_EVAL_IMAGES.value,
                min_agreement=_TFLITE_MIN_AGREEMENT.value,
            )
    except common.ExportError as e:
        binaries.fail(program, str(e), e.exit_code)
    print(summary(report))
    sys.stdout.flush()


def run(mode):
    """Runs the binary of `mode` (`"combined"`, `"savedmodel"`, `"onnx"` or `"tflite"`)."""
    program = "export" if mode == "combined" else f"export.{mode}"
    binaries.run(lambda argv: main(argv, mode), program)
