"""The verdict logic of the report: the bars, the summaries the verdicts take, the verdicts.

The verdict functions (`*_verdict`) are pure: summaries in, `Verdict` out (`HOLDS`, `FAILS`
or `UNKNOWN`, with the text that says why). The summaries are made here too:
`accuracy_summary` from an accuracy benchmark's JSON, `step_rows` from `step_time.py`'s. The
bars of the issues up to issue 12 are here (percentage points unless stated), quoted as such;
the verdicts of claims 1-4 and of issues 2 and 3 too, those of the revision-2 issue and of
issue 12 in `benchmarks.report_rev2_verdicts`. The scale issue's bars and verdicts (depth, full
data, alignment over training) are in `benchmarks.report_scale_verdicts`.
"""

import dataclasses

from benchmarks.report_common import mean_spread, pct

# The bars of the issues (percentage points unless stated).
MLP_BAR = {"rec_lra_min": 88.5, "rec_lra_gap_to_bp": 1.0, "lra_min": 87.5}  # issue 2
# Issue 3's, superseded by the revision-2 issue's (REV2_RESNET_BAR, STEP_COST_BAR).
RESNET_BAR = {"rec_lra_gap_to_bp": 2.0, "margin_over_fa_dfa": 5.0}
OVERHEAD_BAR = 0.10
# The revision-2 issue's. ResNet-20 (resnet_accuracy.json) at its Adam budget over 3 seeds:
REV2_RESNET_BAR = {
    "rec_lra_gap_to_bp": 1.0, "margin_over_fa_dfa": 10.0, "seeds": 3,
    "budget": {"train_examples": 12800, "epochs": 3, "optimizer": "adam"},
    "config": {"model": "resnet20"},  # resnet_accuracy.py --model runs other depths too
}
REV2_MLP_BAR = {"rec_lra_gap_to_bp": 0.3}  # accuracy_mlp.json
# The fmnist_resnet20 preset's recipe at the reduced budget (resnet_sgd.json), seeds 0 and 1.
REV2_SGD_BAR = {
    "rec_lra_gap_to_bp": 1.5, "seeds": 2,
    "budget": {"train_examples": 12800, "epochs": 3, "optimizer": "sgd", "learning_rate": 0.05,
               "weight_decay": 5e-4},
    "config": {"model": "resnet20"},
}
# rec_lra's step over bp's in CPU time, ResNet-18 (CIFAR stem, batch 128), jit off.
STEP_COST_BAR = {"model": "resnet18", "jit": "off", "max_cpu_ratio": 1.05}
# Issue 12: each rule under mixed_bfloat16 within this many points of itself in float32.
MIXED_PRECISION_BAR = {"rules": ("bp", "rec_lra"), "max_gap_to_float32": 0.5}
FLOAT16_MAX = 65504.0  # the largest finite float16
# Claim 1's criterion: issue 2's MLP bar and the revision-2 ResNet-20 bar.
GENERALISE_TOLERANCE = {
    "mlp": MLP_BAR["rec_lra_gap_to_bp"], "resnet": REV2_RESNET_BAR["rec_lra_gap_to_bp"],
}

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not measured"


@dataclasses.dataclass
class Verdict:
    status: str  # HOLDS, FAILS or UNKNOWN
    text: str

    def render(self, what=""):
        head = f"**Verdict{(' (' + what + ')') if what else ''}: {self.status}**"
        return f"{head}. {self.text}"


def accuracy_summary(data, thresholds=None):
    """`{variant: summary}` (`benchmarks.curves.summarize`'s format) from an accuracy JSON.

    Recomputed from the per-run records (`runs`: `variant` or `rule`, `seed`,
    `final_test_accuracy`, per-epoch `epochs`) when the file has them, so every accuracy
    benchmark is summarised alike; otherwise the file's own `summary` (a dict of that format,
    as in a sweep of record). `thresholds` (test accuracies, fractions) are those of the
    `reach` entries: by default the file's `thresholds`, else `curves.THRESHOLDS`.
    """
    from benchmarks import curves

    if not data:
        return {}
    runs = [r for r in data.get("runs") or []
            if isinstance(r, dict) and (r.get("variant") or r.get("rule"))
            and r.get("final_test_accuracy") is not None and isinstance(r.get("epochs"), list)
            and r["epochs"]]
    if runs:
        thresholds = thresholds or data.get("thresholds") or curves.THRESHOLDS
        return curves.summarize(runs, thresholds)
    if isinstance(data.get("summary"), dict):
        return data["summary"]
    return {}


def final_accuracy(summary, name):
    """The mean final test accuracy of `name` in `summary` (None if absent)."""
    s = summary.get(name)
    return None if s is None else s.get("final_test_accuracy_mean")


def generalisation_verdict(summary, tolerance, what):
    """rec-LRA generalises as well as backprop: mean final test accuracy within `tolerance`
    points of bp's (or above it)."""
    rec, bp = final_accuracy(summary, "rec_lra"), final_accuracy(summary, "bp")
    if rec is None or bp is None:
        return Verdict(UNKNOWN, f"{what}: rec_lra and bp results are both needed.")
    gap = 100 * (rec - bp)
    status = HOLDS if gap >= -tolerance else FAILS
    where = "above" if gap > 0 else "below"
    text = (f"{what}: rec_lra {mean_spread(summary['rec_lra'], '%')} vs bp "
            f"{mean_spread(summary['bp'], '%')}: {abs(gap):.2f} points {where} backprop "
            f"(criterion: no more than {tolerance:.1f} below)")
    others = [n for n in ("lra", "wm", "fa", "dfa") if n in summary]
    beaten = [n for n in others if final_accuracy(summary, n) > rec]
    if beaten:
        text += "; rec_lra loses to " + ", ".join(
            f"{n} ({pct(final_accuracy(summary, n))}%)" for n in beaten)
    return Verdict(status, text + ".")


def convergence_verdicts(summary, thresholds):
    """rec-LRA converges sooner than backprop: `(by epochs, by wall-clock)` verdicts.

    Holds when, at every threshold, rec_lra reaches it (in every seed) no later than bp (mean
    over seeds) and sooner at one threshold at least; does not hold when it is later at any
    threshold, never gets there while bp does, or ties everywhere (as fast is not sooner);
    not measured when neither gets there at any threshold.
    """
    rec, bp = summary.get("rec_lra"), summary.get("bp")
    if not rec or not bp or not rec.get("reach") or not bp.get("reach"):
        v = Verdict(UNKNOWN, "per-epoch curves of rec_lra and bp are both needed")
        return v, v
    out = []
    for key, unit, fmt in (("epochs_mean", "epochs", "{:.1f}"), ("seconds_mean", "s", "{:.0f}")):
        parts, statuses, sooner = [], [], []
        for t in thresholds:
            k = f"{t:.2f}"
            r, b = rec["reach"].get(k), bp["reach"].get(k)
            if r is None or b is None:
                continue
            r_all = r["reached"] == r["runs"] and r["reached"] > 0
            b_any = b["reached"] > 0
            label = f"{100 * t:.0f}%"
            if not r_all and not b_any:
                parts.append(f"{label}: neither rec_lra nor bp reached it")
                continue
            if not r_all:
                statuses.append(False)
                parts.append(f"{label}: rec_lra reached it in {r['reached']}/{r['runs']} seeds, "
                             f"bp in {fmt.format(b[key])} {unit}")
                continue
            if not b_any:
                statuses.append(True)
                sooner.append(True)
                parts.append(f"{label}: rec_lra in {fmt.format(r[key])} {unit}, bp never")
                continue
            statuses.append(r[key] <= b[key])
            sooner.append(r[key] < b[key])
            parts.append(f"{label}: rec_lra {fmt.format(r[key])} {unit} vs bp "
                         f"{fmt.format(b[key])} {unit}")
        if not statuses:
            out.append(Verdict(UNKNOWN, "; ".join(parts) + "." if parts else "no thresholds"))
        else:
            text = "; ".join(parts)
            if all(statuses) and not any(sooner):
                text += " (as fast as bp, not sooner)"
            out.append(Verdict(HOLDS if all(statuses) and any(sooner) else FAILS, text + "."))
    return tuple(out)


def mlp_bar_verdict(summary, bar=MLP_BAR):
    """Issue 2: rec_lra >= 88.5% and within 1.0 point of bp; lra >= 87.5%."""
    rec, bp, lra = (final_accuracy(summary, n) for n in ("rec_lra", "bp", "lra"))
    if None in (rec, bp, lra):
        return Verdict(UNKNOWN, "rec_lra, bp and lra results are all needed.")
    checks = [
        (100 * rec >= bar["rec_lra_min"],
         f"rec_lra {pct(rec)}% {'>=' if 100 * rec >= bar['rec_lra_min'] else '<'} "
         f"{bar['rec_lra_min']}%"),
        (100 * (bp - rec) <= bar["rec_lra_gap_to_bp"],
         f"bp - rec_lra = {100 * (bp - rec):.2f} points "
         f"({'<=' if 100 * (bp - rec) <= bar['rec_lra_gap_to_bp'] else '>'} "
         f"{bar['rec_lra_gap_to_bp']})"),
        (100 * lra >= bar["lra_min"],
         f"lra {pct(lra)}% {'>=' if 100 * lra >= bar['lra_min'] else '<'} {bar['lra_min']}%"),
    ]
    status = HOLDS if all(ok for ok, _ in checks) else FAILS
    return Verdict(status, "; ".join(text for _, text in checks) + " (means over seeds).")


def resnet_bar_verdict(summary, bar=RESNET_BAR):
    """ResNet-20: rec_lra within `bar["rec_lra_gap_to_bp"]` points of bp and at least
    `bar["margin_over_fa_dfa"]` above fa and dfa (issue 3: 2.0 and 5; revision 2: 1.0 and 10)."""
    rec, bp, fa, dfa = (final_accuracy(summary, n) for n in ("rec_lra", "bp", "fa", "dfa"))
    if rec is None or bp is None:
        return Verdict(UNKNOWN, "rec_lra and bp ResNet-20 results are needed.")
    checks = [(100 * (bp - rec) <= bar["rec_lra_gap_to_bp"],
               f"bp - rec_lra = {100 * (bp - rec):.2f} points (bar <= "
               f"{bar['rec_lra_gap_to_bp']})")]
    for name, acc in (("fa", fa), ("dfa", dfa)):
        if acc is None:
            checks.append((False, f"{name} not measured"))
        else:
            margin = 100 * (rec - acc)
            checks.append((margin >= bar["margin_over_fa_dfa"],
                           f"rec_lra - {name} = {margin:.2f} points (bar >= "
                           f"{bar['margin_over_fa_dfa']})"))
    status = HOLDS if all(ok for ok, _ in checks) else FAILS
    return Verdict(status, "; ".join(t for _, t in checks) + ".")


def step_rows(data):
    """Normalised rows of `benchmarks/step_time.py`'s JSON (`results`): model, rule (including
    the forward-only `forward`), jit ("on"/"off"), batch_size, step_ms (median wall), cpu_ms
    (median process CPU), mean_cpu_ms (None in files from before revision 2), forward_ms (the
    forward row of the same model and jit), step_per_forward, ratio_to_bp, cpu_ratio_to_bp and
    mean_cpu_ratio_to_bp (bp at the same jit), peak_mb (the timed steps' peak where recorded,
    else the worker's), step_peak_mb (the timed steps' only), mirror_share (rec_lra rows:
    `mirror_share_of_cpu`, the share of its mean CPU time that `rec_lra_nomirror` saves)."""
    if not data:
        return []
    raw = data.get("results") or data.get("rows") or []
    rows = []
    for r in raw:
        if not isinstance(r, dict) or "rule" not in r:
            continue
        jit = r.get("jit_compile", r.get("jit"))
        rows.append({
            "model": r.get("model", "?"), "rule": r["rule"],
            "jit": "on" if jit in (True, "on", "true", 1) else
                   ("off" if jit in (False, "off", "false", 0) else str(jit)),
            "batch_size": r.get("batch_size"),
            "step_ms": _ms(r, ("step_ms",), ("median_step_seconds", "step_seconds")),
            "cpu_ms": _ms(r, ("cpu_ms",), ("median_cpu_seconds",)),
            "mean_cpu_ms": _ms(r, (), ("mean_cpu_seconds",)),
            "peak_mb": r.get("step_peak_rss_mb") or r.get("peak_rss_mb"),
            "step_peak_mb": r.get("step_peak_rss_mb"),
            "mirror_share": r.get("mirror_share_of_cpu"),
        })
    index = {(r["model"], r["jit"], r["rule"]): r for r in rows}
    for r in rows:
        fwd = index.get((r["model"], r["jit"], "forward"))
        bp = index.get((r["model"], r["jit"], "bp"))
        r["forward_ms"] = fwd["step_ms"] if fwd else None
        r["step_per_forward"] = _div(r["step_ms"], r["forward_ms"])
        r["ratio_to_bp"] = _div(r["step_ms"], bp["step_ms"]) if bp else None
        r["cpu_ratio_to_bp"] = _div(r["cpu_ms"], bp["cpu_ms"]) if bp else None
        r["mean_cpu_ratio_to_bp"] = _div(r["mean_cpu_ms"], bp["mean_cpu_ms"]) if bp else None
    return rows


def _div(a, b):
    return a / b if a is not None and b else None


def _ms(r, ms_keys, s_keys):
    for k in ms_keys:
        if isinstance(r.get(k), (int, float)):
            return float(r[k])
    for k in s_keys:
        if isinstance(r.get(k), (int, float)):
            return 1000.0 * float(r[k])
    return None


def best_step_times(rows, key="step_ms"):
    """`{(model, rule): (time, jit)}` at each rule's faster jit setting (by `key`)."""
    best = {}
    for r in rows:
        if r.get(key) is None:
            continue
        k = (r["model"], r["rule"])
        if k not in best or r[key] < best[k][0]:
            best[k] = (r[key], r["jit"])
    return best


def step_time_verdict(rows, models=None):
    """Cheaper updates: rec_lra's step time <= bp's (each at its faster jit setting)."""
    best = best_step_times(rows)
    cpu = best_step_times(rows, "cpu_ms")
    models = models or sorted({m for m, _ in best})
    parts, statuses, noisy = [], [], []
    for m in models:
        if (m, "rec_lra") not in best or (m, "bp") not in best:
            continue
        (rs, rj), (bs, bj) = best[(m, "rec_lra")], best[(m, "bp")]
        statuses.append(rs <= bs)
        part = (f"{m}: rec_lra {_ms_text(rs)} (jit {rj}) vs bp {_ms_text(bs)} (jit {bj}), "
                f"wall ratio {rs / bs:.2f}")
        if (m, "rec_lra") in cpu and (m, "bp") in cpu:
            cpu_ratio = cpu[(m, "rec_lra")][0] / cpu[(m, "bp")][0]
            part += f" (CPU-time ratio {cpu_ratio:.2f})"
            if abs(cpu_ratio - rs / bs) > 0.2:
                noisy.append(m)
        parts.append(part)
    if not statuses:
        return Verdict(UNKNOWN, "step_time.json has no rec_lra and bp rows for one model.")
    text = "; ".join(parts) + "."
    if noisy:
        text += (f" For {', '.join(noisy)} the wall and CPU-time ratios differ by more than "
                 "0.2: other jobs on the shared machine distorted the wall times, and the "
                 "CPU-time ratio is the steadier figure of the work a step does.")
    return Verdict(HOLDS if all(statuses) else FAILS, text)


def _ms_text(ms):
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def chain_verdict(rows, rule="rec_lra"):
    """Parallelisable updates: on every ResNet `rule`'s chain is shorter than bp's, bp's grows
    with depth and `rule`'s does not.

    For the default `rec_lra` (`feedback="adjacent"`: targets pass unit by unit) a growing chain
    is said as such, and a `rec_lra_skip` row (`feedback="skip"`) is reported beside it as the
    variant that keeps the chain constant, if it does.
    """
    res = [r for r in rows if r.get("family") == "resnet"]
    if not res:
        return Verdict(UNKNOWN, "no ResNet rows in chain_length.json.")
    chains = _chains(res, rule)
    if not chains:
        return Verdict(UNKNOWN, f"no model with both {rule} and bp in chain_length.json.")
    shorter, bp_grows, flat = _chain_shape(chains)
    text = "; ".join(f"{m}: {rule} {r} ops vs bp {b}" for m, r, b in chains)
    if len(chains) > 1:
        text += (f". From {chains[0][0]} to {chains[-1][0]} bp's chain goes {chains[0][2]} -> "
                 f"{chains[-1][2]} ops, {rule}'s {chains[0][1]} -> {chains[-1][1]}")
    if not flat and rule == "rec_lra":
        text += (": rec_lra's default passes targets unit by unit (feedback=\"adjacent\"), so "
                 "its chain grows with depth, as backprop's does")
    if rule == "rec_lra" and any(r["rule"] == "rec_lra_skip" for r in res):
        skip = _chains(res, "rec_lra_skip")
        if skip and _chain_shape(skip)[2]:
            text += (f". rec_lra_skip (feedback=\"skip\": skip synapses to the block outputs) "
                     f"keeps it at {skip[-1][1]} ops at every depth measured")
        elif skip:
            text += (f". rec_lra_skip's chain goes {skip[0][1]} -> {skip[-1][1]} ops: it does "
                     "not stay constant either")
    mlp = [r for r in rows if r.get("family") == "mlp"]
    losses = sorted({r["model"] for r in mlp if r["rule"] == rule and any(
        b["model"] == r["model"] and b["rule"] == "bp" and b["chain_ops"] < r["chain_ops"]
        for b in mlp)})
    if losses:
        text += (f". On the MLPs {', '.join(losses)} {rule}'s chain is longer than bp's (its "
                 "target computation costs more ops than a short backward pass)")
    return Verdict(HOLDS if shorter and bp_grows and flat else FAILS, text + ".")


def _chains(rows, rule):
    """`[(model, rule's chain_ops, bp's chain_ops)]` of the models with both, shallow first."""
    by = {(r["model"], r["rule"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: by.get((m, "bp"), {}).get("units", 0))
    return [(m, by[(m, rule)]["chain_ops"], by[(m, "bp")]["chain_ops"]) for m in models
            if (m, rule) in by and (m, "bp") in by]


def _chain_shape(chains):
    """`(shorter than bp everywhere, bp's grows with depth, the rule's does not)`."""
    shorter = all(r < b for _, r, b in chains)
    bp_grows = len(chains) < 2 or chains[-1][2] > chains[0][2]
    flat = len(chains) < 2 or chains[-1][1] <= chains[0][1]
    return shorter, bp_grows, flat


def alignment_verdict(rules):
    """Alignment: rec_lra's update is a descent direction (under 90 degrees from backprop's
    gradient) in every hidden unit at the end of training."""
    rec = rules.get("rec_lra")
    if not rec:
        return Verdict(UNKNOWN, "alignment.json has no rec_lra run.")
    finals = {u: a for u, a in rec["final_angle"].items() if u != "head" and a is not None}
    ok = bool(finals) and all(a < 90 for a in finals.values())
    text = "rec_lra's final angle per hidden unit: " + ", ".join(
        f"{u} {a:.1f}°" for u, a in finals.items())
    others = []
    for name in ("wm", "lra", "fa", "dfa"):
        if name in rules and rules[name].get("final_angle_hidden_mean") is not None:
            others.append(f"{name} {rules[name]['final_angle_hidden_mean']:.1f}°")
    if rec.get("final_angle_hidden_mean") is not None:
        text += f" (mean {rec['final_angle_hidden_mean']:.1f}°"
        text += ("; other rules' means: " + ", ".join(others) + ")") if others else ")"
        closer = [n for n in ("wm", "lra", "fa", "dfa") if n in rules and (
            rules[n].get("final_angle_hidden_mean") or 1e9) < rec["final_angle_hidden_mean"]]
        if closer:
            text += f"; {', '.join(closer)} align{'s' if len(closer) == 1 else ''} more closely"
    return Verdict(HOLDS if ok else FAILS, text + ".")


def overhead_verdict(rows, bar=OVERHEAD_BAR):
    """Diagnostics overhead under 10% of training time (steady-state estimate per rule)."""
    if not rows:
        return Verdict(UNKNOWN, "diagnostics_overhead.json has no rows.")
    parts, statuses = [], []
    for r in rows:
        steady = r.get("overhead_steady_state")
        if steady is None:
            continue
        statuses.append(steady < bar)
        parts.append(f"{r['rule']}: {100 * steady:.1f}% steady-state "
                     f"(end-to-end median {100 * r.get('overhead_fit', float('nan')):.1f}%)")
    if not statuses:
        return Verdict(UNKNOWN, "no steady-state estimate in diagnostics_overhead.json.")
    return Verdict(HOLDS if all(statuses) else FAILS,
                   "; ".join(parts) + f"; bar < {100 * bar:.0f}%.")
