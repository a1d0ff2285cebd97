"""The report's section "Against BioTorch": `benchmarks/peers.py`'s accuracy and step times.

Renders the final test accuracy of every rule in both libraries with each rule's gap to its
own library's backprop (the fair comparison across frameworks: the two ResNet-20s, their
initialisation and their numerics differ, the gap measures what the rule costs), the step
times of both libraries with the ratios ours / theirs, and the bars of the issue:

- accuracy: rec_lra's gap to rlra_tf's bp is smaller than the gap of BioTorch's best local
  rule (its best mean final accuracy among everything but bp) to BioTorch's bp;
- step time: rlra_tf's bp and fa steps are no slower than BioTorch's bp and fa steps
  (median wall time, ratio <= 1.0), and rec_lra's step no slower than BioTorch's fa step;
  both at every thread count timed (a loaded machine slows torch's OpenMP threads more than
  TF's pool at 2 threads, so one thread count alone can flatter either side).

Beneath the step times, "Where the time goes" renders `benchmarks/step_time.py`'s
`step_time_bn.json`: our ResNet-20 step with the conv units' BatchNorm on Keras' op-by-op
path against TensorFlow's fused kernel (what the library changed to close the step gap).

The verdict functions are pure (summaries or ratio rows in, `Verdict` out). `section_peers`
takes the report's `results` (`results["peers"]`, a `report_common.Source`, or None).
"""

from benchmarks.report_common import mean_spread, num, pct, png_link, table
from benchmarks.report_verdicts import FAILS, HOLDS, UNKNOWN, Verdict

NAME = "peers"
SCRIPT = "benchmarks/peers.py"
RATIO_BAR = 1.0  # ours / theirs, median wall seconds per step
LIBRARY_LABELS = {"rlra_tf": "rlra_tf", "biotorch": "BioTorch"}
# Table order: both libraries' rules, shared ones first.
RULES = ("bp", "fa", "dfa", "usf", "frsf", "brsf", "wm", "rec_lra")
CLAIMS = (
    "Against BioTorch: rec_lra's gap to bp < BioTorch's best local rule's gap",
    "Against BioTorch: bp and fa steps no slower than BioTorch's",
    "Against BioTorch: rec_lra step no slower than BioTorch's fa step",
)


def _final(summary, library, rule):
    entry = (summary.get(library) or {}).get(rule)
    return None if entry is None else entry.get("final_test_accuracy_mean")


def accuracy_gap_verdict(summary):
    """rec_lra's gap to rlra_tf's bp < the gap of BioTorch's best non-bp rule to its bp.

    `summary`: `{"rlra_tf": {rule: entry}, "biotorch": {rule: entry}}`, entries with
    `final_test_accuracy_mean` (a fraction) as `benchmarks.curves.summarize` gives them.
    """
    ours_bp, rec = _final(summary, "rlra_tf", "bp"), _final(summary, "rlra_tf", "rec_lra")
    theirs_bp = _final(summary, "biotorch", "bp")
    local = {r: e["final_test_accuracy_mean"] for r, e in (summary.get("biotorch") or {}).items()
             if r != "bp" and e.get("final_test_accuracy_mean") is not None}
    if None in (ours_bp, rec, theirs_bp) or not local:
        return Verdict(UNKNOWN, "rlra_tf's bp and rec_lra, and BioTorch's bp and at least one "
                                "of its local rules, are all needed.")
    best = max(local, key=local.get)
    ours_gap, theirs_gap = 100 * (ours_bp - rec), 100 * (theirs_bp - local[best])
    status = HOLDS if ours_gap < theirs_gap else FAILS
    return Verdict(status, (
        f"rec_lra {mean_spread(summary['rlra_tf']['rec_lra'], '%')} is {_behind(ours_gap)} "
        f"rlra_tf's bp ({mean_spread(summary['rlra_tf']['bp'], '%')}); BioTorch's best local "
        f"rule, {best} ({mean_spread(summary['biotorch'][best], '%')}), is "
        f"{_behind(theirs_gap)} BioTorch's bp ({mean_spread(summary['biotorch']['bp'], '%')}) "
        "(criterion: rec_lra's gap smaller)."))


def _behind(points):
    return (f"{points:.2f} points behind" if points >= 0
            else f"{-points:.2f} points ahead of")


def _ratio_verdict(ratios, pairs, bar):
    threads = sorted({r["threads"] for r in ratios})
    by = {(r["threads"], r["rlra_tf"], r["biotorch"]): r for r in ratios}
    missing = [f"{a} vs {b}" + (f" at {t} thread(s)" if threads else "")
               for t in threads or [None] for a, b in pairs if (t, a, b) not in by]
    if missing:
        return Verdict(UNKNOWN, "step times needed for " + ", ".join(missing) + ".")
    parts, ok, cpu_disagrees = [], True, []
    for t in threads:
        for ours, theirs in pairs:
            r = by[(t, ours, theirs)]
            ok = ok and r["ratio"] <= bar
            parts.append(
                f"{t} thread(s): rlra_tf {ours} {1000 * r['rlra_tf_seconds']:.0f} ms vs BioTorch "
                f"{theirs} {1000 * r['biotorch_seconds']:.0f} ms, ratio {r['ratio']:.2f} "
                f"(CPU-time ratio {num(r.get('cpu_ratio'))})")
            if r.get("cpu_ratio") is not None and (r["cpu_ratio"] <= bar) != (r["ratio"] <= bar):
                cpu_disagrees.append(f"{ours} vs {theirs} at {t} thread(s)")
    text = "; ".join(parts) + f" (median wall time per step; bar: ratio <= {bar:.1f} at every "
    text += "thread count timed)"
    if cpu_disagrees:
        text += (". The CPU-time ratio is on the other side of the bar for "
                 + ", ".join(cpu_disagrees))
    return Verdict(HOLDS if ok else FAILS, text + ".")


def step_time_verdict(ratios, bar=RATIO_BAR):
    """rlra_tf's bp and fa steps no slower than BioTorch's bp and fa steps (ratio <= `bar`).

    `ratios`: rows of `benchmarks.peers.step_ratios` (`threads`, `rlra_tf`, `biotorch`,
    `rlra_tf_seconds`, `biotorch_seconds`, `ratio`, `cpu_ratio`); it must hold at every thread
    count timed.
    """
    return _ratio_verdict(ratios, (("bp", "bp"), ("fa", "fa")), bar)


def rec_lra_step_verdict(ratios, bar=RATIO_BAR):
    """rec_lra's step no slower than BioTorch's fa step (ratio <= `bar`)."""
    return _ratio_verdict(ratios, (("rec_lra", "fa"),), bar)


def verdicts(data):
    """`[(claim, Verdict)]` of a peers JSON (a dict)."""
    summary = (data or {}).get("summary") or {}
    ratios = ((data or {}).get("step_time") or {}).get("ratios") or []
    return list(zip(CLAIMS, (accuracy_gap_verdict(summary), step_time_verdict(ratios),
                             rec_lra_step_verdict(ratios))))


def accuracy_text(data):
    """The accuracy table: per rule, both libraries' final accuracy and gap to their bp."""
    summary = data.get("summary") or {}
    rules = [r for r in RULES if any(r in (summary.get(lib) or {}) for lib in LIBRARY_LABELS)]
    rows = []
    for rule in rules:
        row = [f"`{rule}`"]
        for lib in LIBRARY_LABELS:
            e = (summary.get(lib) or {}).get(rule)
            if e is None:
                row += ["—", "—", "—"]
                continue
            gap = e.get("gap_to_bp")
            row += [mean_spread(e), "—" if rule == "bp" or gap is None else f"{-100 * gap:+.2f}",
                    num(e.get("seconds_per_epoch_mean"), "{:.1f}")]
        rows.append(row)
    header = ["rule"]
    for label in LIBRARY_LABELS.values():
        header += [f"{label} test %", f"{label} gap to its bp (points)", f"{label} s / epoch"]
    return table(header, rows)


def timing_text(data):
    """The step-time tables: every worker's times, then the ratios ours / theirs."""
    st = data.get("step_time") or {}
    rows = [(r["threads"], LIBRARY_LABELS.get(r["library"], r["library"]), f"`{r['rule']}`",
             num(1000 * r["median_step_seconds"], "{:.0f}"),
             num(1000 * r["min_step_seconds"], "{:.0f}"),
             num(1000 * r["median_cpu_seconds"], "{:.0f}"), len(r.get("step_seconds") or []),
             num(r.get("first_step_seconds"), "{:.1f}"))
            for r in sorted(st.get("rows") or [], key=lambda r: (
                r["threads"], r["library"] != "rlra_tf",
                RULES.index(r["rule"]) if r["rule"] in RULES else len(RULES)))]
    ratio_rows = [(r["threads"], f"`{r['rlra_tf']}` / `{r['biotorch']}`",
                   num(1000 * r["rlra_tf_seconds"], "{:.0f}"),
                   num(1000 * r["biotorch_seconds"], "{:.0f}"), num(r["ratio"]),
                   num(r.get("cpu_ratio"))) for r in st.get("ratios") or []]
    return "\n\n".join([
        table(["threads", "library", "rule", "step ms (median)", "min ms", "CPU ms (median)",
               "steps timed", "first step s"], rows),
        table(["threads", "rlra_tf / BioTorch", "rlra_tf ms", "BioTorch ms",
               "ratio (wall)", "ratio (CPU)"], ratio_rows),
    ])


BN_NAME = "step_time_bn"


def batch_norm_text(results, root):
    """The subsection on the BatchNorm kernel: step times with Keras' BatchNorm and the fused
    one, from `step_time_bn.json` (None if it was not run)."""
    src = (results or {}).get(BN_NAME)
    if src is None:
        return None
    rows = {r["rule"]: r for r in src.data.get("results") or []}
    out = []
    for rule in ("bp", "fa", "rec_lra"):
        fused, keras_bn = rows.get(rule), rows.get(f"{rule}_keras_bn")
        if fused is None or keras_bn is None:
            continue
        out.append((f"`{rule}`", num(1000 * keras_bn["median_step_seconds"], "{:.0f}"),
                    num(1000 * fused["median_step_seconds"], "{:.0f}"),
                    num(fused["median_step_seconds"] / keras_bn["median_step_seconds"]),
                    num(fused["median_cpu_seconds"] / keras_bn["median_cpu_seconds"])))
    machine = src.data.get("machine") or {}
    settings = src.data.get("settings") or {}
    load = machine.get("load_average") or [None]
    return "\n".join([
        src.label(root), "",
        "Keras 3's BatchNormalization computes a training step from separate ops on "
        "TensorFlow (moments, the normalisation, their gradients op by op); PyTorch runs one "
        "fused kernel. The conv units' BatchNorm is now `FusedBatchNormalization` "
        "(TensorFlow's `FusedBatchNormV3` in training, same arithmetic, tested against "
        "NumPy). Our ResNet-20 step (batch 128, 28x28x1, jit off, "
        f"{settings.get('repeats', '?')} round-robin rounds of "
        f"{settings.get('steps_per_round', '?')} steps, one process per setting, load "
        f"{num(load[0], '{:.1f}')} before) with Keras' BatchNorm and with the fused one:", "",
        table(["rule", "Keras BN ms (median)", "fused BN ms (median)", "fused / Keras (wall)",
               "fused / Keras (CPU)"], out)] + _fused_accuracy_lines(results, root))


FUSED_CHECK = "resnet_accuracy_fused"
FUSED_NOISE_POINTS = 0.5


def _fused_accuracy_lines(results, root):
    """The seed-0 ResNet-20 runs trained again after the change to the fused kernel, beside
    the same seed's runs in resnet_accuracy.json (empty if the check was not run)."""
    after, before = (results or {}).get(FUSED_CHECK), (results or {}).get("resnet_accuracy")
    if after is None or before is None:
        return []

    def final(src, rule, seed):
        return next((r["final_test_accuracy"] for r in src.data.get("runs") or []
                     if r.get("rule") == rule and r.get("seed") == seed), None)

    rows, diffs = [], []
    for r in after.data.get("runs") or []:
        old, new = final(before, r["rule"], r["seed"]), r["final_test_accuracy"]
        diffs += [] if old is None else [100 * (new - old)]
        rows.append((f"`{r['rule']}`", r["seed"], pct(old) if old is not None else "—",
                     pct(new), "—" if old is None else f"{100 * (new - old):+.2f}"))
    lead = ("Accuracy is unaffected (every difference within "
            f"{FUSED_NOISE_POINTS} points, about twice rec_lra's spread over seeds)"
            if diffs and all(abs(d) <= FUSED_NOISE_POINTS for d in diffs)
            else f"Accuracy moved by more than {FUSED_NOISE_POINTS} points somewhere")
    return ["", f"{lead}: the ResNet-20 benchmark's runs of one seed trained "
            f"again with the fused kernel ({after.label(root)}), beside the same seed in "
            f"`resnet_accuracy.json` ({before.data.get('date', 'date not recorded')}; the "
            "change landed on 2026-11-30, commit b07c9a9; tf.data's order is not "
            "bit-identical between runs, so seeds differ by run-to-run noise too):", "",
            table(["rule", "seed", "resnet_accuracy.json %", "with the fused kernel %",
                   "difference (points)"], rows)]


def _load_line(st, cpus):
    def first(la):
        return "n/a" if not la else f"{la[0]:.1f}"

    during = sorted(x for r in st.get("rows") or [] for x in r.get("load_average_during") or [])
    median = during[len(during) // 2] if during else None
    return (f"Load average (1 min) before the timing {first(st.get('load_average_before'))}, "
            f"during it median {num(median, '{:.1f}')} (range "
            f"{num(during[0] if during else None, '{:.1f}')}-"
            f"{num(during[-1] if during else None, '{:.1f}')}), after it "
            f"{first(st.get('load_average_after'))}, on {cpus} cores shared with other jobs; a "
            "load near or above the core count slows both libraries, torch's OpenMP threads "
            "more (re-run on a quiet machine before quoting the times).")


def section_peers(results, root, out_dir):
    """`(markdown, [(claim, Verdict)])` of the section "Against BioTorch"."""
    lines = ["## Against BioTorch", ""]
    src = (results or {}).get(NAME)
    if src is None:
        lines.append("*Not run yet* (`make bench-peers`, or `python -m benchmarks.peers` with "
                     "the `peers` extra installed).")
        return "\n".join(lines), verdicts(None)
    data = src.data
    settings = data.get("settings") or {}
    budget = data.get("budget") or {}
    params = data.get("forward_params") or {}
    bt_params = next((r.get("forward_params") for r in data.get("runs") or []
                      if r.get("library") == "biotorch" and r.get("forward_params")), None)
    lines += [src.label(root), "",
              "BioTorch (PyTorch; FA, DFA, uSF, brSF, frSF) is the backprop-free library a user "
              "would otherwise pick. Both libraries train their own ResNet-20 on the same "
              "Fashion-MNIST batches, in the same order, with the ResNet-20 benchmark's budget: "
              f"{budget.get('train_examples', '?')} training images, {budget.get('epochs', '?')} "
              f"epochs, batch {budget.get('batch_size', '?')}, {budget.get('optimizer', '?')} "
              f"lr {budget.get('learning_rate', '?')}, {budget.get('schedule', '?')}, "
              f"{budget.get('test', 'the test split after every epoch')}.", ""]
    for key in ("input", "data", "networks", "init", "optimizer", "biotorch_rules"):
        if settings.get(key):
            lines.append(f"- {key.replace('_', ' ').capitalize()}: {settings[key]}.")
    if data.get("rlra_tf_runs"):
        lines.append(f"- rlra_tf's runs: {data['rlra_tf_runs']}.")
    lines.append(f"- Threads: {settings.get('threads', '?')} for both libraries in the "
                 "accuracy runs.")
    if params or bt_params:
        lines.append(f"- Forward parameters: rlra_tf {num(params.get('rlra_tf'), '{:,}')}, "
                     f"BioTorch {num(bt_params, '{:,}')}.")
    lines += ["", "### Accuracy", "",
              "Final test accuracy (mean ± std [min, max] over seeds) and each rule's gap to "
              "its own library's backprop, in points (negative: behind backprop). The gap is "
              "the comparison across frameworks; the absolute accuracies also carry the "
              "differences between the two networks. BioTorch's usf and frsf use the signs of "
              "the forward weights in every step (sign transport); fa, dfa, wm and rec_lra "
              "transport no weights. s / epoch: rlra_tf's trainer epoch (training steps and "
              "its 2,000-image validation pass), BioTorch's training steps alone.", "",
              accuracy_text(data)]
    v_all = verdicts(data)
    lines += ["", v_all[0][1].render("accuracy gap")]
    st = data.get("step_time")
    lines += ["", "### Step time", ""]
    if not st:
        lines.append("*Not timed yet* (`python -m benchmarks.peers --parts=timing`).")
    else:
        s = st.get("settings") or {}
        lines += [f"Measured {st.get('date', '?')}. {s.get('rounds', '?')} round-robin rounds "
                  f"of {s.get('steps_per_round', '?')} steps per worker after "
                  f"{s.get('warmup_steps', '?')} warm-up steps; one process per library and "
                  f"rule; {s.get('batch', 'one batch')}. rlra_tf: {s.get('rlra_tf_step', '?')}; "
                  f"BioTorch: {s.get('biotorch_step', '?')}. Threads: "
                  f"{s.get('thread_pinning', '?')}.", "",
                  _load_line(st, (data.get("machine") or {}).get("cpus", "?")), "",
                  timing_text(data)]
        lines += ["", v_all[1][1].render("bp and fa steps"),
                  "", v_all[2][1].render("rec_lra step vs BioTorch's fa step")]
    bn = batch_norm_text(results, root)
    if bn:
        lines += ["", "### Where the time goes: the BatchNorm kernel", "", bn]
    link = png_link(src, root, out_dir)
    if link:
        lines += ["", link]
    return "\n".join(lines), v_all
