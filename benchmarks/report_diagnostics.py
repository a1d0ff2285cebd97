"""The report's sections measured with `rlra_tf.diagnostics`: alignment and its overhead.

Renders `alignment` (claim 4: the angle between each rule's update and backprop's gradient per
hidden unit, and between feedback and forward kernels) and `diagnostics_overhead` (what the
probes cost a training run), with their verdicts (`benchmarks.report_verdicts`).
"""

from benchmarks.report_common import not_run, num, pct, png_link, table
from benchmarks.report_verdicts import (
    OVERHEAD_BAR,
    UNKNOWN,
    Verdict,
    alignment_verdict,
    overhead_verdict,
)


def section_alignment(results, root, out_dir):
    lines = ["## Claim 4: alignment with backprop", ""]
    al = results.get("alignment")
    if al is None:
        v = Verdict(UNKNOWN, "alignment not run yet.")
        return "\n".join(lines + [not_run("alignment")]), [v]
    rules = al.data.get("rules") or {}
    units = list(dict.fromkeys(u for r in rules.values() for u in r.get("final_angle", {})))
    rows = []
    for name in [n for n in ("rec_lra", "wm", "lra", "fa", "dfa", "bp") if n in rules]:
        r = rules[name]
        rows.append([f"`{name}`", pct(r.get("test_accuracy"))] + [
            num(r["final_angle"].get(u), "{:.1f}") for u in units] + [
            num(r.get("first_angle_hidden_mean"), "{:.1f}"),
            num(r.get("final_angle_hidden_mean"), "{:.1f}"),
            num(r.get("final_feedback_angle_hidden_mean"), "{:.1f}")])
    lines += [al.label(root), "",
              f"The `fmnist_mlp` preset trained {al.data.get('epochs')} epoch(s) per rule "
              + (f"on the first {al.data['train_limit']} training images "
                 if al.data.get("train_limit") else "")
              + f"with a probe of 256 validation images every {al.data.get('every_n_steps')} "
              "steps: the angle (degrees) between the rule's kernel update and backprop's "
              "gradient on the same batch (0 = backprop's direction, 90 = unrelated), and the "
              "angle between each feedback kernel F and its forward kernel W.", "",
              table(["rule", "test %"] + [f"{u} final °" for u in units]
                    + ["hidden mean at start °", "hidden mean at end °", "F vs W at end °"],
                    rows), "", png_link(al, root, out_dir)]
    v = alignment_verdict(rules)
    lines += ["", v.render("rec_lra's updates are descent directions"), "",
              "Published: no angles are published for rec-LRA; the claim checked is that its "
              "updates stay within 90° of backprop's gradient."]
    return "\n".join(lines), [v]


def section_overhead(results, root):
    lines = ["## Diagnostics overhead", ""]
    d = results.get("diagnostics_overhead")
    if d is None:
        return "\n".join(lines + [not_run("diagnostics_overhead")]), Verdict(UNKNOWN, "")
    rows = []
    for r in d.data.get("results", []):
        plain = sorted(r.get("fit_seconds_plain") or [])
        diag = sorted(r.get("fit_seconds_with_diagnostics") or [])
        rows.append((f"`{r['rule']}`", r.get("every_n_steps"), r.get("steps"),
                     num(plain[len(plain) // 2] if plain else None),
                     num(diag[len(diag) // 2] if diag else None),
                     num(100 * r["overhead_fit"] if r.get("overhead_fit") is not None
                         else None, "{:.1f}%"),
                     num(1000 * r["probe_seconds"] if r.get("probe_seconds") else None,
                         "{:.1f}"),
                     num(1000 * r["step_seconds"] if r.get("step_seconds") else None,
                         "{:.2f}"),
                     num(100 * r["overhead_steady_state"]
                         if r.get("overhead_steady_state") is not None else None, "{:.1f}%")))
    v = overhead_verdict(d.data.get("results", []))
    lines += [d.label(root), "",
              "Training the MLP with and without `AlignmentDiagnostics` at its default interval. "
              "End-to-end times on this shared machine are noisy (other jobs run alongside); "
              "the steady-state estimate is the median probe time over every_n_steps median "
              "training steps.", "",
              table(["rule", "every n steps", "steps per fit", "plain fit s (median)",
                     "with diagnostics s (median)", "end-to-end overhead", "probe ms",
                     "step ms", "steady-state overhead"], rows), "",
              v.render(f"overhead < {100 * OVERHEAD_BAR:.0f}%")]
    return "\n".join(lines), v
