"""The report's section on mixed precision (issue 12).

Renders the accuracy of bp and rec_lra under `mixed_bfloat16` beside their float32 runs of
the same seed (`resnet_accuracy_bf16` against `resnet_accuracy`, `accuracy_mlp_bf16` against
`accuracy_mlp`), the step time per policy and the float16 headroom of rec-LRA's errors
(`mixed_precision`), with the bars of issue 12 (`benchmarks.report_verdicts.
MIXED_PRECISION_BAR`, `FLOAT16_MAX`). `section_mixed_precision` returns the Markdown and the
verdicts (`benchmarks.report_rev2_verdicts`) by bar.
"""

from benchmarks.report_common import not_run, num, pct, table
from benchmarks.report_rev2_verdicts import (
    float16_headroom_verdict,
    mixed_precision_verdict,
    precision_pairs,
)
from benchmarks.report_verdicts import (
    FLOAT16_MAX,
    MIXED_PRECISION_BAR,
    UNKNOWN,
    Verdict,
)

# (mixed-precision result, its float32 counterpart, what they train)
ACCURACY_PAIRS = (
    ("resnet_accuracy_bf16", "resnet_accuracy", "ResNet-20"),
    ("accuracy_mlp_bf16", "accuracy_mlp", "MLP"),
)


def _accuracy_part(results, root):
    lines = ["", "### Accuracy under mixed_bfloat16"]
    rows, verdicts, labels = [], {}, []
    for name, reference, what in ACCURACY_PAIRS:
        mixed, f32 = results.get(name), results.get(reference)
        if mixed is None or f32 is None:
            missing = [n for n, s in ((name, mixed), (reference, f32)) if s is None]
            lines += ["", f"{what}: " + " ".join(not_run(n) for n in missing)]
            verdicts[what] = Verdict(UNKNOWN, f"{what}: {', '.join(missing)} not run yet.")
            continue
        labels += [mixed.label(root), f32.label(root)]
        pairs = precision_pairs(mixed.data, f32.data)
        for p in pairs:
            gap = (None if p["accuracy"] is None or p["float32_accuracy"] is None
                   else 100 * (p["accuracy"] - p["float32_accuracy"]))
            rows.append((what, f"`{p['rule']}`", p["seed"], pct(p["float32_accuracy"]),
                         pct(p["accuracy"]), num(gap, "{:+.2f}"),
                         "; ".join(p["differences"]) or "policy only"))
        verdicts[what] = mixed_precision_verdict(pairs, what)
    if rows:
        lines += [""] + [x for label in labels for x in (label, "")] + [
            "Final test accuracy of each run trained under `mixed_bfloat16` (the trainer's "
            "`--mixed_precision=bfloat16`) beside the float32 run of the same rule and seed "
            "from the float32 benchmark; the last column lists any setting other than the "
            "policy in which the two runs differ.", "",
            table(["model", "rule", "seed", "float32 %", "mixed_bfloat16 %",
                   "difference (points)", "runs differ in"], rows)]
    for what, v in verdicts.items():
        lines += ["", v.render(what)]
    return lines, verdicts


def _speed_part(source, root):
    lines = ["", "### Step time per policy"]
    if source is None:
        return lines + ["", not_run("mixed_precision")]
    rows = [r for r in source.data.get("results") or [] if isinstance(r, dict)]
    f32 = {r.get("rule"): r for r in rows if r.get("policy") == "float32"}
    out = []
    for r in rows:
        ref = f32.get(r.get("rule")) or {}
        wall, cpu = r.get("median_step_seconds"), r.get("median_cpu_seconds")
        out.append((r.get("policy", "?"), f"`{r.get('rule', '?')}`", num(wall), num(cpu),
                    num(wall / ref["median_step_seconds"] if wall and ref.get(
                        "median_step_seconds") else None),
                    num(cpu / ref["median_cpu_seconds"] if cpu and ref.get(
                        "median_cpu_seconds") else None)))
    settings = source.data.get("settings") or {}
    return lines + [
        "", source.label(root), "",
        f"{settings.get('model', 'ResNet-20')}, batch {settings.get('batch_size', '?')}, "
        f"{settings.get('optimizer', '?')}, jit off: median wall and process CPU seconds of a "
        "training step, and their ratio to the same rule in float32. This CPU has no native "
        "bfloat16 or float16 kernels, so the mixed policies are not expected to be faster "
        "here: they are for TPUs and GPUs, and this measures what they cost here.", "",
        table(["policy", "rule", "median step s", "median CPU s", "wall / float32",
               "CPU / float32"], out)]


def _headroom_part(source):
    lines = ["", "### float16 headroom of rec-LRA's errors"]
    if source is None:
        return lines + ["", not_run("mixed_precision")], Verdict(
            UNKNOWN, "mixed_precision not run yet.")
    headroom = source.data.get("float16_headroom") or {}
    fmax = source.data.get("float16_max") or FLOAT16_MAX
    rows = [(u, num(m.get("max_abs_error"), "{:.3g}"),
             num(m.get("max_abs_displacement"), "{:.3g}"), m.get("displacement_dtype", "?"),
             num(m.get("max_abs_pre_activation"), "{:.3g}"), m.get("finite", "?"))
            for u, m in headroom.items() if isinstance(m, dict)]
    v = float16_headroom_verdict(headroom, fmax)
    return lines + [
        "", "One batch after the timed steps of rec_lra under `mixed_float16`: per unit, the "
        "largest magnitude of its error unit `e` (float32), of the displacement its error "
        "synapse makes of it (computed in the compute dtype), and of its pre-activations `h`; "
        f"float16 overflows above {fmax:,.0f}.", "",
        table(["unit", r"max \|e\|", r"max \|F e\|", "F e dtype", r"max \|h\|", "finite"],
              rows), "",
        v.render("float16 headroom")], v


def section_mixed_precision(results, root):
    """The section's Markdown and `{"ResNet-20", "MLP", "float16": Verdict}`."""
    bar = MIXED_PRECISION_BAR
    lines = ["## Mixed precision (issue 12)", "",
             "Bars of issue 12: under `mixed_bfloat16`, " + " and ".join(bar["rules"])
             + f" each within {bar['max_gap_to_float32']} points of the same rule in float32 "
             "(same seed and settings; either side), on ResNet-20 and on the MLP; the step time "
             "per policy reported; under `mixed_float16`, rec-LRA's errors, displacements and "
             f"pre-activations finite and below float16's largest value ({FLOAT16_MAX:,.0f})."]
    part, verdicts = _accuracy_part(results, root)
    lines += part + _speed_part(results.get("mixed_precision"), root)
    part, verdicts["float16"] = _headroom_part(results.get("mixed_precision"))
    return "\n".join(lines + part), verdicts
