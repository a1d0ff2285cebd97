"""Alignment: do rec-LRA's updates follow backprop's gradient?

The angle between each rule's update and backprop's gradient, per unit, at the end of
training on the MLP, and over training on ResNet-20 with the angle between every error
synapse and its forward kernel (how soon the weight mirror aligns them).
"""

from benchmarks import variants
from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.markdown import budget_text, num, pct, table
from benchmarks.report.results import subsection

TITLE = "Alignment: do rec-LRA's updates follow backprop's gradient?"


def mlp_rows(rules):
    """Per rule: test accuracy, each unit's final angle, the hidden units' mean angle at the
    first and last probe, and the mean angle between F and W at the end."""
    units = list(dict.fromkeys(u for r in rules.values() for u in r["final_angle"]))
    rows = []
    for name in variants.ordered(rules):
        r = rules[name]
        rows.append([f"`{name}`", pct(r["test_accuracy"])]
                    + [num(r["final_angle"][u], "{:.1f}") for u in units]
                    + [num(r["first_angle_hidden_mean"], "{:.1f}"),
                       num(r["final_angle_hidden_mean"], "{:.1f}"),
                       num(r["final_feedback_angle_hidden_mean"], "{:.1f}")])
    return units, rows


def _mlp(results, out_dir, verdicts):
    lines, src = subsection(results, "alignment_mlp", "MLP: the angles at the end of training")
    if src is None:
        return lines
    data = src.data
    units, rows = mlp_rows(data["rules"])
    lines += [
        "", f"The `fmnist_mlp` preset trained {data['epochs']} epoch(s) per rule "
        + (f"on the first {data['train_limit']} training images " if data["train_limit"] else "")
        + f"with a probe of 256 validation images every {data['every_n_steps']} steps: the "
        "angle (degrees) between the rule's kernel update and backprop's gradient on the same "
        "batch (0 = backprop's direction, 90 = unrelated), and the angle between each feedback "
        "kernel F and its forward kernel W.", "",
        table(["rule", "test %"] + [f"{u} final °" for u in units]
              + ["hidden mean at start °", "hidden mean at end °", "F vs W at end °"], rows)]
    return lines + src.figure(out_dir) + ["", verdicts["alignment.mlp_descent"].render(
        "rec_lra's updates are descent directions"), "",
        "Published: no angles are published for rec-LRA; the claim checked is that its updates "
        "stay within 90° of backprop's gradient."]


def resnet_rows(rows):
    """The ResNet-20 table's rows (`summaries.alignment_rows` formatted)."""
    def aligned(r):
        if r["aligned_at"] is not None:
            return f"step {r['aligned_at']}"
        return "never within the budget" if r["mirror"] else "— (no mirror)"

    return [(f"`{r['rule']}`", pct(r["test_accuracy"]), r["last_step"],
             num(r["first_angle"], "{:.1f}"), num(r["last_angle"], "{:.1f}"), r["synapses"],
             num(r["first_fw"], "{:.1f}"), num(r["last_fw"], "{:.1f}"),
             num(r["worst_fw"], "{:.1f}"), aligned(r)) for r in rows]


def _resnet(results, out_dir, verdicts):
    lines, src = subsection(results, "alignment_resnet20", "ResNet-20: the angles over training")
    if src is None:
        return lines
    data = src.data
    limit = claims.CLAIMS["alignment.resnet20_mirror"].bar["max_degrees"]
    changes = budget_text(data["budget_changes"], ("backup_every", "jit_compile"))
    rules = {r: data["rules"][r] for r in variants.ordered(data["rules"])}
    lines += ["",
              f"The `{data['preset']}` preset at the ResNet-20 benchmark's budget ({changes}), "
              f"{data['epochs']} epochs, seed {data['seed']}, probed every "
              f"{data['every_n_steps']} steps on 256 validation images: the mean over the hidden "
              "units of the angle between the rule's update and backprop's gradient (0 = "
              "backprop's direction, 90 = unrelated), and the angle between every error synapse "
              "F and its forward kernel W (projections' included), at the first and the last "
              f"probe; then the first step from which every synapse stays within {limit:.0f}° "
              "of its kernel.", "",
              table(["rule", "test %", "steps", "update vs backprop at start °",
                     "update vs backprop at end °", "synapses", "F vs W at start (mean) °",
                     "F vs W at end (mean) °", "F vs W at end (largest) °",
                     f"every synapse within {limit:.0f}° from"],
                    resnet_rows(s.alignment_rows(rules)))]
    return lines + src.figure(out_dir) + [
        "", verdicts["alignment.resnet20_descent"].render(
            "ResNet-20: rec_lra's updates are descent directions"),
        "", verdicts["alignment.resnet20_mirror"].render(
            f"ResNet-20: the mirror brings every synapse within {limit:.0f}°")]


INTRO = ("The paper argues that rec-LRA's local targets move each layer in a direction "
         "close to backprop's. Measured with `rlra_tf.diagnostics.AlignmentDiagnostics` "
         "while the trainer trains.")
PARTS = (_mlp, _resnet)
