"""Precision: does rec-LRA train under mixed precision?

The accuracy of bp and rec_lra under `mixed_bfloat16` beside their float32 runs of the same
seed (ResNet-20 and the MLP), the step time per policy, and the float16 headroom of rec-LRA's
errors (what `mixed_float16` would overflow).
"""

from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.markdown import num, pct, table
from benchmarks.report.results import not_run, subsection

TITLE = "Precision: does rec-LRA train under mixed precision?"
# (claim, what it trains)
ACCURACY = (("precision.resnet20_bfloat16", "ResNet-20"), ("precision.mlp_bfloat16", "MLP"))


def pair_rows(pairs, what):
    """Per mixed-precision run: its float32 twin's accuracy, its own, the difference and the
    settings other than the policy in which the two differ."""
    rows = []
    for p in pairs:
        gap = (None if p["float32_accuracy"] is None
               else 100 * (p["accuracy"] - p["float32_accuracy"]))
        rows.append((what, f"`{p['rule']}`", p["seed"], pct(p["float32_accuracy"]),
                     pct(p["accuracy"]), num(gap, "{:+.2f}"),
                     "; ".join(p["differences"]) or "policy only"))
    return rows


def _accuracy(results, out_dir, verdicts):
    lines = ["", "### Accuracy under mixed_bfloat16"]
    rows, labels, missing = [], [], []
    for key, what in ACCURACY:
        bar = claims.CLAIMS[key].bar
        sources = [results.get(name) for name in bar["files"]]
        if None in sources:
            missing += [f"{what}: {not_run(n)}" for n, x in zip(bar["files"], sources) if x is None]
            continue
        labels += [x.label() for x in sources]
        rows += pair_rows(s.precision_pairs(sources[0].data, sources[1].data, bar["rules"]), what)
    for text in labels + missing:
        lines += ["", text]
    if rows:
        lines += ["", "Final test accuracy of each run trained under `mixed_bfloat16` (the "
                  "trainer's `--mixed_precision=bfloat16`) beside the float32 run of the same "
                  "rule and seed from the float32 benchmark; the last column lists any setting "
                  "other than the policy in which the two runs differ.", "",
                  table(["model", "rule", "seed", "float32 %", "mixed_bfloat16 %",
                         "difference (points)", "runs differ in"], rows)]
    for key, what in ACCURACY:
        lines += ["", verdicts[key].render(what)]
    return lines


def policy_rows(rows):
    """Per policy and rule: median wall and CPU seconds of a step and their ratio to the same
    rule in float32."""
    f32 = {r["rule"]: r for r in rows if r["policy"] == "float32"}
    return [(r["policy"], f"`{r['rule']}`", num(r["median_step_seconds"]),
             num(r["median_cpu_seconds"]),
             num(r["median_step_seconds"] / f32[r["rule"]]["median_step_seconds"]),
             num(r["median_cpu_seconds"] / f32[r["rule"]]["median_cpu_seconds"])) for r in rows]


def headroom_rows(headroom):
    return [(u, num(m["max_abs_error"], "{:.3g}"), num(m["max_abs_displacement"], "{:.3g}"),
             m["displacement_dtype"], num(m["max_abs_pre_activation"], "{:.3g}"), m["finite"])
            for u, m in headroom.items()]


def _speed(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_mixed_precision", "Step time per policy")
    if src is None:
        return lines
    settings = src.data["settings"]
    fmax = claims.CLAIMS["precision.float16_headroom"].bar["max"]
    return lines + [
        "",
        f"{settings['model']}, batch {settings['batch_size']}, {settings['optimizer']}, jit "
        "off: median wall and process CPU seconds of a training step, and their ratio to the "
        "same rule in float32. This CPU has no native bfloat16 or float16 kernels, so the mixed "
        "policies are not expected to be faster here: they are for TPUs and GPUs, and this "
        "measures what they cost here.", "",
        table(["policy", "rule", "median step s", "median CPU s", "wall / float32",
               "CPU / float32"], policy_rows(src.data["results"])),
        "", "### float16 headroom of rec-LRA's errors", "",
        "One batch after the timed steps of rec_lra under `mixed_float16`: per unit, the "
        "largest magnitude of its error unit `e` (float32), of the displacement its error "
        "synapse makes of it (computed in the compute dtype), and of its pre-activations `h`; "
        f"float16 overflows above {fmax:,.0f}.", "",
        table(["unit", r"max \|e\|", r"max \|F e\|", "F e dtype", r"max \|h\|", "finite"],
              headroom_rows(src.data["float16_headroom"])), "",
        verdicts["precision.float16_headroom"].render("float16 headroom")]


INTRO = ("Accelerators train in bfloat16 or float16; rec-LRA's targets are small "
         "displacements of the activity, which a 16-bit format could lose. Its errors, "
         "targets and updates stay float32 under a mixed policy (docs/ALGORITHM.md).")
PARTS = (_accuracy, _speed)
