"""The report's export section: `export_bench`'s SavedModel, ONNX and TFLite rows.

One row per model and format (export and verification time, size against the `.keras` file,
largest difference of logits from Keras, feedback weights found in the artefact); the parity
verdict holds when every float32 artefact's probabilities are within 1e-4 of Keras'. The
int8 TFLite models get a table of their own: top-1 agreement with Keras and accuracy on the
images they were checked on.
"""

from benchmarks.report_common import not_run, num, png_link, table
from benchmarks.report_verdicts import FAILS, HOLDS, UNKNOWN, Verdict


def section_export(results, root, out_dir):
    lines = ["## Export (SavedModel, ONNX, TFLite)", ""]
    ex = results.get("export_bench")
    if ex is None:
        return "\n".join(lines + [not_run("export_bench")]), Verdict(UNKNOWN, "not run yet")
    rows, worst = [], 0.0
    for r in ex.data.get("rows", []):
        for fmt in ("savedmodel", "onnx", "tflite"):
            f = r.get(fmt)
            if not f:
                continue
            worst = max(worst, f.get("max_abs_diff_probabilities") or 0.0)
            rows.append((r["model"], fmt, num(f.get("export_seconds")),
                         num(f.get("verify_seconds")), f"{f['bytes'] / 1e6:.1f}",
                         f"{r['keras_bytes'] / 1e6:.1f}", num(f.get("bytes_vs_keras"), "{:.3f}"),
                         num(f.get("bytes_vs_keras_without_optimizer"), "{:.3f}"),
                         num(f.get("max_abs_diff_logits"), "{:.1e}"),
                         f.get("feedback_weights_found", "?")))
    lines += [ex.label(root), "",
              table(["model", "format", "export s", "verify s", "MB", ".keras MB",
                     "size / .keras", "size / .keras without optimiser", r"max \|Δ logits\|",
                     "feedback weights in artefact"], rows), ""]
    int8 = int8_rows(ex.data)
    if int8:
        lines += ["Fully integer TFLite models (`--tflite_quantize=int8`: int8 weights, "
                  "activations, input and outputs; calibrated on the images named):", "",
                  table(["model", "MB", "size / .keras", "export s", "verify s", "calibration",
                         "top-1 agreement with Keras", "checked on", "int8 accuracy %",
                         "Keras accuracy %", "feedback weights in artefact"], int8), ""]
    lines += [png_link(ex, root, out_dir)]
    ok = bool(rows) and worst < 1e-4
    v = Verdict(HOLDS if ok else FAILS,
                f"largest difference of probabilities from Keras {worst:.1e} (parity bar 1e-4)")
    lines += ["", v.render("parity")]
    return "\n".join(lines), v


def int8_rows(data):
    """One table row per model with an int8 TFLite export (agreement, accuracy, size)."""
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}"

    rows = []
    for r in data.get("rows", []):
        f = r.get("tflite_int8")
        if not f:
            continue
        rows.append((r["model"], f"{f['bytes'] / 1e6:.2f}", num(f.get("bytes_vs_keras"), "{:.3f}"),
                     num(f.get("export_seconds")), num(f.get("verify_seconds")),
                     f.get("calibration", "?"), pct(f.get("top1_agreement")),
                     f"{f.get('agreement_images', '?')} {f.get('agreement_on', '')}".strip(),
                     pct(f.get("accuracy")), pct(f.get("keras_accuracy")),
                     f.get("feedback_weights_found", "?")))
    return rows
