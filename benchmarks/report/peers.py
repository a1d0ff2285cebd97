"""Peers: how does rlra_tf compare with BioTorch?

BioTorch (PyTorch; FA, DFA, uSF, brSF, frSF) is the backprop-free library a user would
otherwise pick. Both libraries train their own ResNet-20 on the same batches: the final
accuracy of every rule with its gap to its own library's backprop (the fair comparison across
frameworks: the networks, their initialisation and numerics differ, the gap measures what the
rule costs), and the step time of every rule of both, with the ratios ours / theirs.
"""

from benchmarks.report import summaries as s
from benchmarks.report.markdown import mean_spread, num, table
from benchmarks.report.results import subsection

TITLE = "Peers: how does rlra_tf compare with BioTorch?"
LIBRARY_LABELS = {"rlra_tf": "rlra_tf", "biotorch": "BioTorch"}
# Table order: both libraries' rules, shared ones first.
RULES = ("bp", "fa", "dfa", "usf", "frsf", "brsf", "wm", "rec_lra")


def accuracy_rows(summary):
    """Per rule: each library's final accuracy, gap to its bp (points) and seconds per epoch
    ("—" where a library has no such rule)."""
    rows = []
    for rule in (r for r in RULES if any(r in summary.get(lib, {}) for lib in LIBRARY_LABELS)):
        row = [f"`{rule}`"]
        for lib in LIBRARY_LABELS:
            e = summary.get(lib, {}).get(rule)
            if e is None:
                row += ["—", "—", "—"]
                continue
            row += [mean_spread(e), "—" if rule == "bp" else f"{-100 * e['gap_to_bp']:+.2f}",
                    num(e["seconds_per_epoch_mean"], "{:.1f}")]
        rows.append(row)
    return rows


def timing_rows(step_time):
    """Every worker's times, in threads, library and rule order."""
    return [(r["threads"], LIBRARY_LABELS[r["library"]], f"`{r['rule']}`",
             num(1000 * r["median_step_seconds"], "{:.0f}"),
             num(1000 * r["min_step_seconds"], "{:.0f}"),
             num(1000 * r["median_cpu_seconds"], "{:.0f}"), len(r["step_seconds"]),
             num(r["first_step_seconds"], "{:.1f}"))
            for r in sorted(step_time["rows"], key=lambda r: (
                r["threads"], r["library"] != "rlra_tf", RULES.index(r["rule"])))]


def ratio_rows(step_time):
    """Per pair of `summaries.PEER_PAIRS` and thread count: both times and the ratios."""
    return [(r["threads"], f"`{r['rlra_tf']}` / `{r['biotorch']}`",
             num(1000 * r["rlra_tf_seconds"], "{:.0f}"),
             num(1000 * r["biotorch_seconds"], "{:.0f}"),
             num(r["ratio"]), num(r["cpu_ratio"])) for r in s.step_ratios(step_time["rows"])]


def accuracy_text(data):
    return table(["rule"] + [f"{label} {what}" for label in LIBRARY_LABELS.values()
                             for what in ("test %", "gap to its bp (points)", "s / epoch")],
                 accuracy_rows(s.peer_summaries(data["runs"])))


def timing_text(data):
    return "\n\n".join([
        table(["threads", "library", "rule", "step ms (median)", "min ms", "CPU ms (median)",
               "steps timed", "first step s"], timing_rows(data["step_time"])),
        table(["threads", "rlra_tf / BioTorch", "rlra_tf ms", "BioTorch ms", "ratio (wall)",
               "ratio (CPU)"], ratio_rows(data["step_time"]))])


def _load_line(step_time, cpus):
    during = sorted(x for r in step_time["rows"] for x in r["load_average_during"])
    return (f"Load average (1 min) before the timing {step_time['load_average_before'][0]:.1f}, "
            f"during it median {during[len(during) // 2]:.1f} (range {during[0]:.1f}-"
            f"{during[-1]:.1f}), after it {step_time['load_average_after'][0]:.1f}, on {cpus} "
            "cores shared with other jobs; a load near or above the core count slows both "
            "libraries, torch's OpenMP threads more (re-run on a quiet machine before quoting "
            "the times).")


def _peers(results, out_dir, verdicts):
    lines, src = subsection(results, "peers_biotorch", "How they are compared")
    if src is None:
        return lines + ["", "(`make bench-peers` installs the `peers` extra and runs it.)"]
    data = src.data
    settings, budget = data["settings"], data["budget"]
    bt_params = next(r["forward_params"] for r in data["runs"] if r["library"] == "biotorch")
    lines += ["",
              "Both libraries train their own ResNet-20 on the same Fashion-MNIST batches, in "
              "the same order, with the ResNet-20 benchmark's budget: "
              f"{budget['train_examples']} training images, {budget['epochs']} epochs, batch "
              f"{budget['batch_size']}, {budget['optimizer']} lr {budget['learning_rate']}, "
              f"{budget['schedule']}, {budget['test']}.", ""]
    for key in ("input", "data", "networks", "init", "optimizer", "biotorch_rules"):
        lines.append(f"- {key.replace('_', ' ').capitalize()}: {settings[key]}.")
    lines += [f"- rlra_tf's runs: {data['rlra_tf_runs']}.",
              f"- Threads: {settings['threads']} for both libraries in the accuracy runs.",
              f"- Forward parameters: rlra_tf {data['forward_params']['rlra_tf']:,}, BioTorch "
              f"{bt_params:,}.",
              "", "### Accuracy of both libraries", "",
              "Final test accuracy (mean ± std [min, max] over seeds) and each rule's gap to its "
              "own library's backprop, in points (negative: behind backprop). The gap is the "
              "comparison across frameworks; the absolute accuracies also carry the differences "
              "between the two networks. BioTorch's usf and frsf use the signs of the forward "
              "weights in every step (sign transport); fa, dfa, wm and rec_lra transport no "
              "weights. s / epoch: rlra_tf's trainer epoch (training steps and its 2,000-image "
              "validation pass), BioTorch's training steps alone.", "",
              accuracy_text(data), "", verdicts["peers.accuracy_gap"].render("accuracy gap"),
              "", "### Step time of both libraries", ""]
    st = data.get("step_time")  # None after `--parts=accuracy` alone
    if st is None:
        return lines + ["*Not timed yet* (`python -m benchmarks.peers.biotorch "
                        "--parts=timing`)."]
    t = st["settings"]
    lines += [f"Measured {st['date']}. {t['rounds']} round-robin rounds of "
              f"{t['steps_per_round']} steps per worker after {t['warmup_steps']} warm-up steps; "
              f"one process per library and rule; {t['batch']}. rlra_tf: {t['rlra_tf_step']}; "
              f"BioTorch: {t['biotorch_step']}. Threads: {t['thread_pinning']}.", "",
              _load_line(st, src.machine["cpus"]), "", timing_text(data), "",
              verdicts["peers.bp_fa_steps"].render("bp and fa steps"), "",
              verdicts["peers.rec_lra_step"].render("rec_lra step vs BioTorch's fa step")]
    return lines + src.figure(out_dir)


INTRO = ("BioTorch (PyTorch; FA, DFA, uSF, brSF, frSF) is the backprop-free library a user "
         "would otherwise pick. Both libraries train their own ResNet-20 on the same batches; "
         "the gap of each rule to its own library's backprop is the comparison across "
         "frameworks (the networks, their initialisation and numerics differ; the gap measures "
         "what the rule costs).")
PARTS = (_peers,)
