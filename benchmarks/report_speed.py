"""The report's section on claim 3: cheaper, parallelisable updates.

Renders `step_time` (wall and CPU time of a training step and of a forward pass per model,
rule and jit setting, with their ratios to backprop) and `chain_length` (the longest chain of
dependent operations in each rule's update, for the default rec_lra and, where measured, for
`rec_lra_skip` with skip synapses), with their verdicts (`benchmarks.report_verdicts`).
"""

from benchmarks.report_common import PUBLISHED_SOURCE, not_run, num, ordered, png_link, table
from benchmarks.report_verdicts import (
    UNKNOWN,
    Verdict,
    chain_verdict,
    step_rows,
    step_time_verdict,
)


def section_cheaper(results, root, out_dir):
    """The section's Markdown and its verdicts: step time, the chain of the default rec_lra,
    the chain of rec_lra_skip."""
    lines = ["## Claim 3: cheaper, parallelisable updates", "", "### Step time"]
    verdicts = []
    st = results.get("step_time")
    if st is None:
        lines += ["", not_run("step_time")]
        verdicts.append(Verdict(UNKNOWN, "step_time not run yet."))
    else:
        rows = step_rows(st.data)
        out = [(r["model"], f"`{r['rule']}`", r["jit"], num(r.get("batch_size"), "{}"),
                num(r["step_ms"], "{:.0f}"), num(r["cpu_ms"], "{:.0f}"),
                num(r["step_per_forward"], "{:.2f}"), num(r["ratio_to_bp"], "{:.2f}"),
                num(r["cpu_ratio_to_bp"], "{:.2f}"), num(r["peak_mb"], "{:.0f}"))
               for r in rows]
        settings = st.data.get("settings") or {}
        lines += ["", st.label(root), "",
                  "Median wall time of one training step (`train_on_batch`, SGD with momentum, "
                  "one fixed random batch) and of one forward pass (`forward`: "
                  "`predict_on_batch`), with the median process CPU time (all threads; the "
                  "steadier measure on this shared machine); ratios are against bp at the same "
                  f"jit setting. {settings.get('repeats', '?')} round-robin rounds of "
                  f"{settings.get('steps_per_round', '?')} step(s) per configuration.", "",
                  table(["model", "rule", "jit", "batch", "step ms", "CPU ms",
                         "step / forward", "step / bp step", "CPU / bp CPU",
                         "peak RSS MiB"], out),
                  "", png_link(st, root, out_dir)]
        v = step_time_verdict(rows)
        verdicts.append(v)
        lines += ["", v.render("cheaper: rec_lra step <= bp step")]
    lines += ["", "### Longest chain of dependent operations in the update"]
    ch = results.get("chain_length")
    if ch is None:
        lines += ["", not_run("chain_length")]
        verdicts += [Verdict(UNKNOWN, "chain_length not run yet.")] * 2
    else:
        rows = ch.data.get("results") or []
        models = list(dict.fromkeys(r["model"] for r in rows))
        rules = ordered(x["rule"] for x in rows)
        by = {(r["model"], r["rule"]): r for r in rows}
        table_rows = []
        for m in models:
            first = next(r for r in rows if r["model"] == m)
            table_rows.append([m, first.get("units", "?"), first.get("blocks", "?")] + [
                by[(m, r)]["chain_ops"] if (m, r) in by else "—" for r in rules])
        lines += ["", ch.label(root), "",
                  f"Definition: {ch.data.get('definition', 'see benchmarks/chain_length.py')}.",
                  "", table(["model", "units", "blocks"] + [f"`{r}`" for r in rules],
                            table_rows), "", png_link(ch, root, out_dir)]
        v = chain_verdict(rows)
        verdicts.append(v)
        lines += ["", v.render("parallelisable: chain length of the default rec_lra")]
        v = chain_verdict(rows, "rec_lra_skip")  # "not measured" in files without its rows
        verdicts.append(v)
        if any(r["rule"] == "rec_lra_skip" for r in rows):
            lines += ["", v.render("parallelisable: chain length of rec_lra_skip")]
    lines += ["", "Published: the paper states the claim qualitatively (no step times or chain "
              f"lengths in {PUBLISHED_SOURCE})."]
    return "\n".join(lines), verdicts
