"""Convergence: does rec-LRA converge sooner?

Epochs and seconds to test-accuracy thresholds on the MLP, on ResNet-20 at the reduced budget
and with the preset's recipe on the full training split, rec_lra against bp.
"""

from benchmarks import variants
from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.accuracy import PUBLISHED_SOURCE
from benchmarks.report.markdown import table
from benchmarks.report.results import not_run

TITLE = "Convergence: does rec-LRA converge sooner?"
# (result file, what it trains, the claims on it)
PARTS_OF = (
    ("accuracy_mlp", "MLP on Fashion-MNIST, the accuracy budget above",
     "convergence.mlp_epochs", "convergence.mlp_seconds"),
    ("accuracy_resnet20", "ResNet-20, {train_examples:,} examples, {epochs} epochs, "
     "{optimizer}", "convergence.resnet20_epochs", "convergence.resnet20_seconds"),
    ("accuracy_resnet20_full", "ResNet-20, the preset's recipe, {train_examples:,} examples, "
     "{epochs} epochs, {optimizer}", "convergence.full_data_epochs",
     "convergence.full_data_seconds"),
)


def reach_rows(summary, thresholds):
    """Per rule: epochs and seconds to each test-accuracy threshold (means over the seeds that
    reached it, how many did when not all, "never" when none did)."""
    rows = []
    for n in variants.ordered(summary):
        row = [f"`{n}`"]
        for t in thresholds:
            r = summary[n]["reach"][f"{t:.2f}"]
            if not r["reached"]:
                row += ["never", "never"]
                continue
            note = "" if r["reached"] == r["runs"] else f" ({r['reached']}/{r['runs']} seeds)"
            row += [f"{r['epochs_mean']:.1f}{note}", f"{r['seconds_mean']:.0f}{note}"]
        rows.append(row)
    return rows


def reach_table(summary, thresholds):
    header = ["rule"]
    for t in thresholds:
        header += [f"epochs to {100 * t:.0f}%", f"seconds to {100 * t:.0f}%"]
    return table(header, reach_rows(summary, thresholds))


def _parts(results, out_dir, verdicts):
    lines = []
    for name, what, by_epochs, by_seconds in PARTS_OF:
        src = results.get(name)
        if src is None:
            lines += ["", f"### {what.split(',')[0]}", "", not_run(name)]
            continue
        what = what.format(**src.data["budget"])
        thresholds = claims.CLAIMS[by_epochs].bar["thresholds"]
        summary = s.accuracy_summary(src.data, thresholds)
        lines += ["", f"### {what}"] + src.intro() + ["", reach_table(summary, thresholds), "",
                  verdicts[by_epochs].render(f"{what}: epochs, rec_lra vs bp"), "",
                  verdicts[by_seconds].render(f"{what}: wall-clock, rec_lra vs bp")]
    return lines + ["", "### The first epoch", "", "Test accuracy after one epoch of the "
                    "accuracy budget (ResNet-20: the runs above; ResNet-32: the depth study's), "
                    "means over seeds.", "",
                    verdicts["convergence.first_epoch"].render("no early lag")]


INTRO = ("The paper claims rec-LRA converges sooner than backprop; it gives no numbers for "
         f"these thresholds ({PUBLISHED_SOURCE}). Epochs: the first epoch after which the "
         "10,000-image test accuracy is at or above the threshold (counted only at epoch "
         "ends); seconds: the trainer's epoch times summed up to that epoch (training steps "
         "and the validation pass, not the per-epoch test pass). Means over the seeds that "
         "reached it; \"never\" when no seed did within the budget. The runs were made one "
         "after another on a shared 2-core machine whose load from other jobs varied (see "
         "Sources), so seconds differing by about 10% are within noise.")
PARTS = (_parts,)
