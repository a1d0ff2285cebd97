"""Speed: what does a rec-LRA step cost?

The wall and CPU time of a training step of every rule against backprop's and the forward
pass (ResNet-18), the CPU cost against the project's target with the weight mirror's share and
the peak memory, where the time goes (Keras' op-by-op BatchNorm against TensorFlow's fused
kernel), the longest chain of dependent operations in an update (the paper's "parallelisable"),
and what the alignment diagnostics cost a training run.
"""

from benchmarks import variants
from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.accuracy import PUBLISHED_SOURCE
from benchmarks.report.markdown import num, table
from benchmarks.report.results import not_run, subsection
from rlra_tf import rules

TITLE = "Speed: what does a rec-LRA step cost?"


def step_rows(rows):
    """The step-time table's rows (`summaries.step_rows` formatted)."""
    return [(r["model"], f"`{r['rule']}`", r["jit"], r["batch_size"], num(r["step_ms"], "{:.0f}"),
             num(r["cpu_ms"], "{:.0f}"), num(r["step_per_forward"]), num(r["ratio_to_bp"]),
             num(r["cpu_ratio_to_bp"]), num(r["peak_mb"], "{:.0f}")) for r in rows]


def _step_time(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_step_time", "Step time")
    if src is None:
        return lines
    settings = src.data["settings"]
    lines += ["",
              "Median wall time of one training step (`train_on_batch`, SGD with momentum, one "
              "fixed random batch) and of one forward pass (`forward`: `predict_on_batch`), "
              "with the median process CPU time (all threads; the steadier measure on this "
              "shared machine); ratios are against bp at the same jit setting. "
              f"{settings['repeats']} round-robin rounds of {settings['steps_per_round']} "
              "step(s) per configuration.", "",
              table(["model", "rule", "jit", "batch", "step ms", "CPU ms", "step / forward",
                     "step / bp step", "CPU / bp CPU", "peak RSS MiB"],
                    step_rows(s.step_rows(src.data)))]
    return lines + src.figure(out_dir) + [
        "", verdicts["speed.cheaper"].render("cheaper: rec_lra step <= bp step")]


def cost_rows(rows, bar):
    """The CPU-cost table's rows: the rules timed on the bar's model and jit setting."""
    by = {r["rule"]: r for r in rows if r["model"] == bar["model"] and r["jit"] == bar["jit"]}
    bp_peak = by["bp"]["peak_mb"] if "bp" in by else None
    out = []
    for n in variants.ordered(r for r in by if r != "forward"):
        r = by[n]
        out.append((f"`{n}`", num(r["cpu_ms"] / 1000), num(r["mean_cpu_ms"] / 1000),
                    num(r["cpu_ratio_to_bp"], "{:.3f}"), num(r["mean_cpu_ratio_to_bp"], "{:.3f}"),
                    num(r["step_ms"] / 1000), num(r["peak_mb"], "{:.0f}"),
                    num(r["peak_mb"] / bp_peak if bp_peak else None)))
    return out


def _step_cost(results, out_dir, verdicts):
    lines = []
    for key, name in (("speed.step_cost", "speed_step_time"),
                      ("speed.step_cost_b64", "speed_step_time_b64")):
        lines += _step_cost_part(results, verdicts, key, name)
    return lines


def _step_cost_part(results, verdicts, key, name):
    bar = claims.CLAIMS[key].bar
    src = results.get(name)
    lines = ["", f"### Against the project's target: CPU time per step on {bar['model']} "
             f"(jit {bar['jit']}, batch {bar['batch']})"]
    if src is None:
        return lines + ["", not_run(name)]
    rows = s.step_rows(src.data)
    settings = src.data["settings"]
    timed = settings["repeats"] * settings["steps_per_round"]
    lines += src.intro()
    lines += ["", f"Process CPU time of one training step (all threads; median and mean over "
              f"the {timed} timed steps of each configuration), its ratio to bp's, the median "
              "wall time, and the peak resident memory of the timed steps. rec_lra's default "
              "runs the mirror every 4 steps on tracked synapses; `rec_lra-mirror_every1` is "
              "the previous default (the mirror every step, untracked), "
              "`rec_lra-fixed_synapses` never runs it, `kp` is FA with tracked synapses. The "
              "verdict takes the ratio of the means; where one configuration's first round was "
              "slowed by the machine the medians say more, and both are shown.", "",
              table(["rule", "median CPU s", "mean CPU s", "CPU / bp (medians)",
                     "CPU / bp (means)", "median wall s", "step peak MiB", "peak / bp"],
                    cost_rows(rows, bar))]
    rec = next((r for r in rows if r["rule"] == "rec_lra" and r["model"] == bar["model"]
                and r["jit"] == bar["jit"]), None)
    if rec is not None and rec["mirror_share"] is not None:
        lines += ["", "The mirror's share of rec_lra's mean CPU time (what "
                  f"rec_lra-fixed_synapses saves): {100 * rec['mirror_share']:.1f}%."]
    every = rules.get("rec_lra").mirror_every
    if rec is not None and timed % every:
        lines += ["", f"*{timed} timed steps is not a multiple of {every}: rec_lra's mean holds "
                  "more or fewer mirror steps than its share.*"]
    return lines + ["", verdicts[key].render(f"step cost, batch {bar['batch']}")]


def batch_norm_rows(data):
    """Per rule timed both ways: the median step with Keras' BatchNorm and with the fused
    kernel, and their ratios (wall, CPU)."""
    rows = {r["rule"]: r for r in data["results"]}
    out = []
    for name, keras_bn in ((n, f"{n}-keras_bn") for n in variants.RULES):
        if name not in rows or keras_bn not in rows:
            continue
        fused, slow = rows[name], rows[keras_bn]
        out.append((f"`{name}`", num(1000 * slow["median_step_seconds"], "{:.0f}"),
                    num(1000 * fused["median_step_seconds"], "{:.0f}"),
                    num(fused["median_step_seconds"] / slow["median_step_seconds"]),
                    num(fused["median_cpu_seconds"] / slow["median_cpu_seconds"])))
    return out


def _batch_norm(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_batch_norm", "Where the time goes: the BatchNorm "
                            "kernel")
    if src is None:
        return lines
    settings = src.data["settings"]
    return lines + [
        "",
        "Keras 3's BatchNormalization computes a training step from separate ops on TensorFlow "
        "(moments, the normalisation, their gradients op by op); PyTorch runs one fused "
        "kernel. The conv units' BatchNorm is `FusedBatchNormalization` (TensorFlow's "
        "`FusedBatchNormV3` in training, same arithmetic, tested against NumPy). Our ResNet-20 "
        f"step (batch 128, 28x28x1, jit off, {settings['repeats']} round-robin rounds of "
        f"{settings['steps_per_round']} steps, one process per setting, load "
        f"{num(src.machine['load_average'][0], '{:.1f}')} before) with Keras' BatchNorm "
        "(`<rule>-keras_bn`) and with the fused one:", "",
        table(["rule", "Keras BN ms (median)", "fused BN ms (median)", "fused / Keras (wall)",
               "fused / Keras (CPU)"], batch_norm_rows(src.data))]


def chain_rows(rows):
    """Per model: its units and blocks and every rule's chain length ("—" where not traced)."""
    rules = variants.ordered(r["rule"] for r in rows)
    by = {(r["model"], r["rule"]): r for r in rows}
    out = []
    for m in dict.fromkeys(r["model"] for r in rows):
        first = next(r for r in rows if r["model"] == m)
        out.append([m, first["units"], first["blocks"]]
                   + [by[(m, r)]["chain_ops"] if (m, r) in by else "—" for r in rules])
    return rules, out


def _chain(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_chain_length",
                            "Longest chain of dependent operations in the update")
    if src is None:
        return lines
    rules, rows = chain_rows(src.data["results"])
    lines += ["", f"Definition: {src.data['definition']}.", "",
              table(["model", "units", "blocks"] + [f"`{r}`" for r in rules], rows)]
    return lines + src.figure(out_dir) + [
        "", verdicts["speed.chain_default"].render("parallelisable: chain length of the default "
                                                   "rec_lra"),
        "", verdicts["speed.chain_skip_synapses"].render(
            "parallelisable: chain length of rec_lra-skip_synapses"),
        "", "Published: the paper states the claim qualitatively (no step times or chain "
        f"lengths in {PUBLISHED_SOURCE})."]


def overhead_rows(rows):
    """Per rule: probe interval, steps, median fit times without and with the diagnostics,
    the end-to-end overhead, probe and step times and the steady-state overhead."""
    out = []
    for r in rows:
        plain = sorted(r["fit_seconds_plain"])
        diag = sorted(r["fit_seconds_with_diagnostics"])
        out.append((f"`{r['rule']}`", r["every_n_steps"], r["steps"], num(plain[len(plain) // 2]),
                    num(diag[len(diag) // 2]), num(100 * r["overhead_fit"], "{:.1f}%"),
                    num(1000 * r["probe_seconds"], "{:.1f}"),
                    num(1000 * r["step_seconds"], "{:.2f}"),
                    num(100 * r["overhead_steady_state"], "{:.1f}%")))
    return out


def _overhead(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_diagnostics", "What the alignment diagnostics cost")
    if src is None:
        return lines
    bar = claims.CLAIMS["speed.diagnostics"].bar
    return lines + [
        "", "Training the MLP with and without `AlignmentDiagnostics` at its default interval. "
        "End-to-end times on this shared machine are noisy (other jobs run alongside); the "
        "steady-state estimate is the median probe time over every_n_steps median training "
        "steps.", "",
        table(["rule", "every n steps", "steps per fit", "plain fit s (median)",
               "with diagnostics s (median)", "end-to-end overhead", "probe ms", "step ms",
               "steady-state overhead"], overhead_rows(src.data["results"])), "",
        verdicts["speed.diagnostics"].render(f"overhead < {100 * bar['max_overhead']:.0f}%")]


INTRO = ("The paper claims rec-LRA's updates are cheaper than backprop's and can be "
         "computed in parallel. On this CPU: the time of a step, what of it the weight "
         "mirror costs, and the longest chain of operations an update must wait for.")
PARTS = (_step_time, _step_cost, _batch_norm, _chain, _overhead)
