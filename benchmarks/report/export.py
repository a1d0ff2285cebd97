"""Export: do the exported models match Keras, and what do they weigh?

One row per model and format (export and verification time, size against the `.keras` file,
largest difference of logits from Keras, feedback weights found in the artefact), and a table
of the fully integer TFLite models (top-1 agreement with Keras, accuracy).
"""

from benchmarks.report.markdown import num, pct, table
from benchmarks.report.results import subsection

TITLE = "Export: do the exported models match Keras?"
FORMATS = ("savedmodel", "onnx", "tflite")


def float_rows(rows):
    """Per model and float format: times, sizes, the largest logit difference, feedback
    weights found in the artefact."""
    out = []
    for r in rows:
        for fmt in (f for f in FORMATS if f in r):
            f = r[fmt]
            out.append((r["model"], fmt, num(f["export_seconds"]), num(f["verify_seconds"]),
                        f"{f['bytes'] / 1e6:.1f}", f"{r['keras_bytes'] / 1e6:.1f}",
                        num(f["bytes_vs_keras"], "{:.3f}"),
                        num(f["bytes_vs_keras_without_optimizer"], "{:.3f}"),
                        num(f["max_abs_diff_logits"], "{:.1e}"), f["feedback_weights_found"]))
    return out


def int8_rows(rows):
    """Per model with an int8 TFLite export: size, times, calibration, agreement, accuracy."""
    out = []
    for r in rows:
        f = r.get("tflite_int8")
        if f is None:
            continue
        out.append((r["model"], f"{f['bytes'] / 1e6:.2f}", num(f["bytes_vs_keras"], "{:.3f}"),
                    num(f["export_seconds"]), num(f["verify_seconds"]), f["calibration"],
                    pct(f["top1_agreement"]), f"{f['agreement_images']} {f['agreement_on']}",
                    pct(f["accuracy"]), pct(f["keras_accuracy"]), f["feedback_weights_found"]))
    return out


def _formats(results, out_dir, verdicts):
    lines, src = subsection(results, "export_artefacts", "Every format against Keras")
    if src is None:
        return lines
    rows = src.data["rows"]
    lines += ["", table(["model", "format", "export s", "verify s", "MB", ".keras MB",
                         "size / .keras", "size / .keras without optimiser",
                         r"max \|Δ logits\|", "feedback weights in artefact"], float_rows(rows))]
    int8 = int8_rows(rows)
    if int8:
        lines += ["", "Fully integer TFLite models (`--tflite_quantize=int8`: int8 weights, "
                  "activations, input and outputs; calibrated on the images named):", "",
                  table(["model", "MB", "size / .keras", "export s", "verify s", "calibration",
                         "top-1 agreement with Keras", "checked on", "int8 accuracy %",
                         "Keras accuracy %", "feedback weights in artefact"], int8)]
    return lines + src.figure(out_dir) + ["", verdicts["export.parity"].render("parity")]


INTRO = ("A model trained by any rule exports like any Keras model, without its error "
         "synapses: SavedModel, ONNX and TFLite (float32, and fully integer int8), each checked "
         "against Keras on the same images by `export.export_lib.export_model`.")
PARTS = (_formats,)
