"""The report's export section: `export_bench`'s SavedModel and ONNX rows and their parity.

One row per model and format (export and verification time, size against the `.keras` file,
largest difference of logits from Keras, feedback weights found in the artefact); the verdict
holds when every artefact's probabilities are within 1e-4 of Keras'.
"""

from benchmarks.report_common import not_run, num, png_link, table
from benchmarks.report_verdicts import FAILS, HOLDS, UNKNOWN, Verdict


def section_export(results, root, out_dir):
    lines = ["## Export (SavedModel and ONNX)", ""]
    ex = results.get("export_bench")
    if ex is None:
        return "\n".join(lines + [not_run("export_bench")]), Verdict(UNKNOWN, "not run yet")
    rows, worst = [], 0.0
    for r in ex.data.get("rows", []):
        for fmt in ("savedmodel", "onnx"):
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
                     "feedback weights in artefact"], rows), "", png_link(ex, root, out_dir)]
    ok = bool(rows) and worst < 1e-4
    v = Verdict(HOLDS if ok else FAILS,
                f"largest difference of probabilities from Keras {worst:.1e} (parity bar 1e-4)")
    lines += ["", v.render("parity")]
    return "\n".join(lines), v
