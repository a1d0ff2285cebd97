"""Scaling: does it hold on deeper ResNets and on all the training data?

The depth study (ResNet-20, -32 and -56 at one budget: every rule's gap to backprop against
depth) and the `fmnist_resnet20` preset's recipe on the full training split (with its
per-epoch test curves and what a run takes).
"""

import os

from benchmarks import registry, variants
from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.accuracy import rule_table
from benchmarks.report.markdown import budget_text, image, mean_spread, num, pct, table
from benchmarks.report.results import not_run, subsection

TITLE = "Scaling: does it hold on deeper ResNets and on all the training data?"


def depth_rows(summaries):
    """Per depth and rule: final test accuracy, seeds, bp minus the rule, seconds per epoch."""
    gaps = s.depth_gaps(summaries)
    rows = []
    for model, summary in summaries.items():
        for rule in variants.ordered(summary):
            e = summary[rule]
            rows.append((s.depth_label(model), f"`{rule}`", mean_spread(e),
                         ", ".join(str(x) for x in e["seeds"]),
                         "—" if rule == "bp" else num(gaps[rule][model], "{:+.2f}"),
                         num(e["seconds_per_epoch_mean"], "{:.1f}")))
    return rows


def gap_rows(summaries):
    """Per rule but bp: its gap to bp at every depth."""
    gaps = s.depth_gaps(summaries)
    return [[f"`{rule}`"] + [num(gaps[rule].get(m), "{:+.2f}") for m in summaries]
            for rule in variants.ordered(gaps) if rule != "bp"]


def _depth(results, out_dir, verdicts):
    bar = claims.CLAIMS["scaling.depth"].bar
    lines = ["", "### Depth: " + ", ".join(s.depth_label(m) for m in bar["models"])]
    summaries, sources = claims.depth_summaries(results, bar)
    for model, name in bar["files"].items():
        lines += ["", sources[model].label() if model in sources else
                  f"{s.depth_label(model)}: {not_run(name)}"]
    verdict = verdicts["scaling.depth"].render(
        f"depth: gap at ResNet-56 <= {bar['max_gap_at_deepest']}, at most "
        f"{bar['max_gap_growth']} above ResNet-20's")
    if not summaries:
        return lines + ["", verdict]
    budgets = {budget_text(src.data["budget"], ("model",)) for src in sources.values()}
    lines += ["", "Budget" + (" (the same at every depth)" if len(budgets) == 1 else
                              " (differs between depths!)") + ": " + " | ".join(sorted(budgets))
              + ".", "",
              table(["depth", "rule", "test accuracy % (mean ± std [min, max])", "seeds",
                     "bp minus the rule (points)", "s / epoch"], depth_rows(summaries)), "",
              "Gap to bp (bp's mean minus the rule's, points; positive: below bp) by depth:", "",
              table(["rule"] + [s.depth_label(m) for m in summaries], gap_rows(summaries))]
    png = os.path.join(os.path.dirname(next(iter(sources.values())).path), "accuracy_depth.png")
    lines += ["", image(png, out_dir) or "*No plot of the gaps yet* (`python -m "
              "benchmarks.accuracy.depth_plot` draws it from these files)."]
    return lines + ["", verdict]


def epoch_rows(summary):
    """Per epoch: every rule's mean test accuracy over seeds [min, max]."""
    rules = list(summary)
    n = min(len(summary[r]["test_accuracy_per_epoch_mean"]) for r in rules)

    def cell(e, i):
        text = pct(e["test_accuracy_per_epoch_mean"][i])
        if len(e["seeds"]) > 1:
            text += (f" [{pct(e['test_accuracy_per_epoch_min'][i])}, "
                     f"{pct(e['test_accuracy_per_epoch_max'][i])}]")
        return text

    return [[str(i + 1)] + [cell(summary[r], i) for r in rules] for i in range(n)]


def _full(results, out_dir, verdicts):
    bar = claims.CLAIMS["scaling.full_data"].bar
    lines, src = subsection(results, "accuracy_resnet20_full",
                            "The preset's recipe on the full training split", budget=True)
    if src is None:
        return lines
    summary = s.accuracy_summary(src.data)
    runs = "; ".join(f"{r} {pct(e['final_test_accuracy_mean'])}% in "
                     f"{e['wall_seconds_including_tests_mean'] / 60:.0f} min per run"
                     for r, e in summary.items())
    lines += [
        "", rule_table(summary), "",
        "Test accuracy after every epoch (mean over seeds [min, max]):", "",
        table(["epoch"] + [f"`{r}` %" for r in summary], epoch_rows(summary))]
    lines += src.figure(out_dir)
    machine = src.machine
    command = registry.get("accuracy_resnet20_full").commands()[0]
    return lines + [
        "", f"What a run takes: `{command}` on {machine['platform']} ({machine['cpus']} CPUs), "
        f"{src.data['budget']['epochs']} epochs: {runs} (mean over seeds; a run's wall time "
        "includes its per-epoch test passes).", "",
        verdicts["scaling.full_data"].render(f"full data: rec_lra within {bar['max_gap']} of bp")]


INTRO = ("The accuracy claims above are measured at a small budget on ResNet-20. Here: the "
         "same budget on deeper networks of the family (two seeds of bp and rec_lra at every "
         "depth, wm and fa beside), and the `fmnist_resnet20` preset's recipe (SGD, "
         "momentum, cosine, weight decay, augmentation) on all 58,000 training images. A "
         "claim whose files were measured at another budget or on fewer seeds is \"not "
         "measured\".")
PARTS = (_depth, _full)
