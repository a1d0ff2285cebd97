"""The report's section on the scale issue: "Scale: depth, full data, alignment over training".

Renders, against the issue's bars (`benchmarks.report_scale_verdicts`): the depth study
(`resnet_accuracy`, `resnet32_accuracy`, `resnet56_accuracy`: every depth's rules, their gaps
to bp and the plot of the gaps against depth that `benchmarks/depth_plot.py` writes), the
`fmnist_resnet20` preset's recipe on the full training split (`resnet_full`, with its
per-epoch test curves), "converges sooner" on the ResNet runs (epochs and seconds to 80% and
85% test accuracy on ResNet-20 and on the full-data runs; a sub-section of its own, beside
claim 2's MLP table) and the alignment of ResNet-20 over training (`alignment_resnet20`).
`section_scale` returns the Markdown and the verdicts by key; `depth_summaries` gives the
depth study's summaries to the report and to the plot alike.
"""

import os

from benchmarks.report_accuracy import reach_table
from benchmarks.report_common import (
    budget_text,
    command_lines,
    mean_spread,
    not_run,
    num,
    ordered,
    pct,
    png_link,
    table,
)
from benchmarks.report_rev2 import rule_table
from benchmarks.report_rev2_verdicts import ADDED_LATER
from benchmarks.report_scale_verdicts import (
    ALIGNED_DEGREES,
    DEPTH_BAR,
    DEPTH_FILES,
    FULL_DATA_BAR,
    RESNET_THRESHOLDS,
    alignment_rows,
    depth_conditions,
    depth_gaps,
    depth_label,
    depth_verdict,
    full_data_conditions,
    full_data_verdict,
    mirror_verdict,
)
from benchmarks.report_verdicts import (
    UNKNOWN,
    Verdict,
    accuracy_summary,
    alignment_verdict,
    convergence_verdicts,
)

DEPTH_RULES = ("bp", "rec_lra", "wm", "fa")  # the depth study's rules (ResNet-20 has more)
DEPTH_PNG = "resnet_depth.png"  # written by benchmarks/depth_plot.py beside the results


def depth_summaries(results):
    """`({model: accuracy summary of DEPTH_RULES}, {model: Source})` of the depth files that are
    there, shallow first."""
    summaries, sources = {}, {}
    for name, model in DEPTH_FILES:
        source = results.get(name)
        if source is None:
            continue
        summary = accuracy_summary(source.data)
        summaries[model] = {r: summary[r] for r in DEPTH_RULES if r in summary}
        sources[model] = source
    return summaries, sources


def _depth_part(results, root, out_dir):
    bar = DEPTH_BAR
    lines = ["", "### Depth: ResNet-20, ResNet-32 and ResNet-56"]
    summaries, sources = depth_summaries(results)
    for name, model in DEPTH_FILES:
        lines += ["", sources[model].label(root) if model in sources else
                  f"{depth_label(model)}: {not_run(name)}"]
    if not summaries:
        return lines, Verdict(UNKNOWN, "no depth run yet.")
    budgets = {_shared_budget(s.data.get("budget")) for s in sources.values()}
    lines += ["", "Budget" + (" (the same at every depth)" if len(budgets) == 1 else
                              " (differs between depths!)") + ": " + " | ".join(sorted(budgets))
              + "."]
    gaps = depth_gaps(summaries)
    rows = []
    for model, summary in summaries.items():
        for rule in ordered(summary):
            s = summary[rule]
            gap = gaps.get(rule, {}).get(model)
            rows.append((depth_label(model), f"`{rule}`", mean_spread(s),
                         ", ".join(str(x) for x in s.get("seeds") or []),
                         "—" if rule == "bp" else num(gap, "{:+.2f}"),
                         num(s.get("seconds_per_epoch_mean"), "{:.1f}")))
    lines += ["", table(["depth", "rule", "test accuracy % (mean ± std [min, max])", "seeds",
                         "bp minus the rule (points)", "s / epoch"], rows)]
    models = list(summaries)
    lines += ["", "Gap to bp (bp's mean minus the rule's, points; positive: below bp) by depth:",
              "", table(["rule"] + [depth_label(m) for m in models],
                        [[f"`{rule}`"] + [num(gaps[rule].get(m), "{:+.2f}") for m in models]
                         for rule in ordered(gaps) if rule != "bp"])]
    image = _depth_png(results, root, out_dir)
    lines += ["", image or "*No plot of the gaps yet* (`python -m benchmarks.depth_plot` "
              "writes it from these files)."]
    v = depth_verdict(summaries, depth_conditions({m: s.data for m, s in sources.items()}))
    return lines + ["", v.render(f"depth: gap at ResNet-56 <= {bar['max_gap_at_deepest']}, at "
                                 f"most {bar['max_gap_growth']} above ResNet-20's")], v


def _shared_budget(budget):
    """A depth file's budget as text, without what differs by depth (the model, ablations);
    `mixed_precision` at "off" where a file predates the field."""
    if not isinstance(budget, dict):
        return budget_text(budget or "not recorded")
    budget = {"mixed_precision": ADDED_LATER["mixed_precision"], **budget}
    return budget_text({k: v for k, v in budget.items() if k not in ("model", "ablations")})


def _depth_png(results, root, out_dir):
    """The link to the depth plot beside the depth files (the full suite's or the quick's)."""
    for source in (results.get(name) for name, _ in DEPTH_FILES):
        if source is not None:
            path = os.path.join(os.path.dirname(source.path), DEPTH_PNG)
            if os.path.exists(path):
                return png_link(source, root, out_dir, path)
    return ""


def _full_part(results, root, out_dir):
    bar = FULL_DATA_BAR
    lines = ["", "### The preset's recipe on the full training split"]
    src = results.get("resnet_full")
    if src is None:
        return lines + ["", not_run("resnet_full")], Verdict(UNKNOWN, "resnet_full not run yet.")
    summary = accuracy_summary(src.data)
    lines += ["", src.label(root), "", f"Budget: {budget_text(src.data.get('budget') or '?')}.",
              "", rule_table(summary)]
    rules = ordered(summary)
    n = min((len(summary[r].get("test_accuracy_per_epoch_mean") or []) for r in rules),
            default=0)
    if n:
        rows = [[str(e + 1)] + [_epoch_cell(summary[r], e) for r in rules] for e in range(n)]
        lines += ["", "Test accuracy after every epoch (mean over seeds [min, max]):", "",
                  table(["epoch"] + [f"`{r}` %" for r in rules], rows)]
    image = png_link(src, root, out_dir)
    lines += ["", image] if image else []
    lines += ["", _preset_line(src, summary)]
    v = full_data_verdict(summary, full_data_conditions(src.data))
    return lines + ["", v.render(f"full data: rec_lra within {bar['rec_lra_gap_to_bp']} of bp")], v


def _epoch_cell(s, e):
    lo, hi = s.get("test_accuracy_per_epoch_min"), s.get("test_accuracy_per_epoch_max")
    text = pct(s["test_accuracy_per_epoch_mean"][e])
    if len(s.get("seeds") or []) > 1 and lo and hi:
        text += f" [{pct(lo[e])}, {pct(hi[e])}]"
    return text


def _preset_line(src, summary):
    """What the `fmnist_resnet20` preset's docstring quotes: command, machine, time, accuracy."""
    machine = src.data.get("machine") or {}
    budget = src.data.get("budget") if isinstance(src.data.get("budget"), dict) else {}
    runs = []
    for r in ordered(summary):
        wall = summary[r].get("wall_seconds_mean")
        runs.append(f"{r} {pct(summary[r].get('final_test_accuracy_mean'))}% in "
                    f"{num(None if wall is None else wall / 60, '{:.0f}')} min per run")
    runs = "; ".join(runs)
    return (f"For the preset's docstring: `{command_lines('resnet_full')[0]}` on "
            f"{machine.get('platform', 'an unrecorded machine')} ({machine.get('cpus', '?')} "
            f"CPUs), {budget.get('epochs', '?')} epochs: {runs} (mean over seeds; a run's wall "
            "time includes its per-epoch test passes).")


def _converge_part(results, root):
    lines = ["", "### Converges sooner on the ResNets",
             "", "Claim 2 on the ResNet runs, rec_lra against bp: epochs (the first epoch after "
             "which the 10,000-image test accuracy is at or above the threshold) and seconds "
             "(the trainer's epoch times summed up to that epoch, as in claim 2's MLP table) "
             "to " + " and ".join(f"{100 * t:.0f}%" for t in RESNET_THRESHOLDS)
             + ". Its verdicts stand beside claim 2's MLP ones. Seconds come from runs made one "
             "after another on a shared machine whose load varied (see the sources table)."]
    verdicts = {}
    for key, name, what in (("resnet20", "resnet_accuracy", "ResNet-20"),
                            ("full", "resnet_full", "ResNet-20, the preset's recipe")):
        src = results.get(name)
        budget = (src.data.get("budget") if src is not None else None) or {}
        if isinstance(budget, dict) and budget.get("train_examples"):
            what += (f", {budget['train_examples']:,} examples, {budget.get('epochs', '?')} "
                     f"epochs, {budget.get('optimizer', '?')}")
        lines += ["", f"**{what}**", ""]
        if src is None:
            v = Verdict(UNKNOWN, f"{name} not run yet.")
            verdicts[key] = (v, v)
            lines.append(not_run(name))
            continue
        summary = accuracy_summary(src.data, RESNET_THRESHOLDS)
        by_epochs, by_seconds = convergence_verdicts(summary, RESNET_THRESHOLDS)
        verdicts[key] = (by_epochs, by_seconds)
        lines += [src.label(root), "", reach_table(summary, RESNET_THRESHOLDS), "",
                  by_epochs.render(f"{what}: epochs, rec_lra vs bp"), "",
                  by_seconds.render(f"{what}: wall-clock, rec_lra vs bp")]
    return lines, verdicts


def _alignment_part(results, root, out_dir):
    lines = ["", "### Alignment over training (ResNet-20)"]
    src = results.get("alignment_resnet20")
    if src is None:
        v = Verdict(UNKNOWN, "alignment_resnet20 not run yet.")
        return lines + ["", not_run("alignment_resnet20")], v, v
    rules = src.data.get("rules") or {}
    rows = alignment_rows({r: rules[r] for r in ordered(rules)})

    def aligned(r):
        if r["aligned_at"] is not None:
            return f"step {r['aligned_at']}"
        if not r["aligned_recorded"]:
            return "not recorded"
        return "never within the budget" if r["mirror"] else "— (no mirror)"

    out = [(f"`{r['rule']}`", pct(r["test_accuracy"]), num(r["last_step"], "{}"),
            num(r["first_angle"], "{:.1f}"), num(r["last_angle"], "{:.1f}"), r["synapses"],
            num(r["first_fw"], "{:.1f}"), num(r["last_fw"], "{:.1f}"),
            num(r["worst_fw"], "{:.1f}"), aligned(r)) for r in rows]
    lines += ["", src.label(root), "",
              f"The `{src.data.get('preset', 'fmnist_resnet20')}` preset at the ResNet-20 "
              f"benchmark's budget ({_alignment_budget(src.data)}), "
              f"{src.data.get('epochs', '?')} epochs, seed {src.data.get('seed', '?')}, probed "
              f"every {src.data.get('every_n_steps', '?')} steps on 256 validation images: the "
              "mean over the hidden units of the angle between the rule's update and backprop's "
              "gradient (0 = backprop's direction, 90 = unrelated), and the angle between every "
              "error synapse F and its forward kernel W (projections' included), at the first "
              f"and the last probe; then the first step from which every synapse stays within "
              f"{ALIGNED_DEGREES:.0f}° of its kernel.", "",
              table(["rule", "test %", "steps", "update vs backprop at start °",
                     "update vs backprop at end °", "synapses", "F vs W at start (mean) °",
                     "F vs W at end (mean) °", "F vs W at end (largest) °",
                     f"every synapse within {ALIGNED_DEGREES:.0f}° from"], out)]
    image = png_link(src, root, out_dir)
    lines += ["", image] if image else []
    descent = alignment_verdict(rules)
    mirror = mirror_verdict(rows)
    return lines + ["", descent.render("ResNet-20: rec_lra's updates are descent directions"),
                    "", mirror.render(f"ResNet-20: the mirror brings every synapse within "
                                      f"{ALIGNED_DEGREES:.0f}°")], descent, mirror


def _alignment_budget(data):
    """alignment.py's changes to the preset as text, without the bookkeeping ones."""
    changes = data.get("budget_changes") or {}
    return budget_text({k: v for k, v in changes.items()
                        if k not in ("backup_every", "jit_compile")}) or "the preset's"


def section_scale(results, root, out_dir):
    """The section's Markdown and `{"depth", "full", "converge_resnet20" (epochs, seconds),
    "converge_full" (epochs, seconds), "descent", "mirror": Verdict}`."""
    db, fb = DEPTH_BAR, FULL_DATA_BAR
    lines = ["## Scale: depth, full data, alignment over training", "",
             "The bars of the scale issue: at the ResNet benchmark's budget (12,800 examples, "
             f"3 epochs, Adam), rec_lra's gap to bp at ResNet-56 within "
             f"{db['max_gap_at_deepest']} points and no more than {db['max_gap_growth']} point "
             f"larger than at ResNet-20 ({db['seeds']} seeds of bp and rec_lra at every depth; "
             "wm and fa beside); with the `fmnist_resnet20` preset's recipe (SGD, momentum, "
             "cosine, weight decay, augmentation) on the full 58,000-image training split for at "
             f"least {fb['min_epochs']} epochs, rec_lra within {fb['rec_lra_gap_to_bp']} points "
             f"of bp ({fb['seeds']} seeds). A bar whose files were measured at another budget, "
             "on fewer seeds or before revision 2 is \"not measured\". The issue also asks how "
             "the error synapses align over training on ResNet-20 and whether rec-LRA converges "
             "sooner on the ResNets: both are reported with their numbers below."]
    verdicts = {}
    part, verdicts["depth"] = _depth_part(results, root, out_dir)
    lines += part
    part, verdicts["full"] = _full_part(results, root, out_dir)
    lines += part
    part, converge = _converge_part(results, root)
    lines += part
    verdicts["converge_resnet20"], verdicts["converge_full"] = converge["resnet20"], \
        converge["full"]
    part, verdicts["descent"], verdicts["mirror"] = _alignment_part(results, root, out_dir)
    return "\n".join(lines + part), verdicts
