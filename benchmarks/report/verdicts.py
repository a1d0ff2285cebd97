"""The verdict functions: summaries and a bar in, `Verdict` out (pure; nothing read here).

Each says `HOLDS`, `FAILS` or `UNKNOWN` ("not measured") with the numbers that decide it.
`benchmarks.report.claims` declares which claim each judges, with which bar, on which files.
A result measured off a bar's stated conditions (budget, seeds, model) is "not measured",
with what was measured in its text (`qualified`).
"""

import dataclasses
import math

from benchmarks.report.markdown import mean_spread, num, pct, seconds
from benchmarks.report.summaries import depth_gaps, depth_label, final_accuracy

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not measured"


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str  # HOLDS, FAILS or UNKNOWN
    text: str

    def render(self, what=""):
        head = f"**Verdict{(' (' + what + ')') if what else ''}: {self.status}**"
        return f"{head}. {self.text}"


def qualified(verdict, problems):
    """`verdict`, or "not measured" with `verdict`'s text when `problems` keep the result from
    measuring the bar as stated."""
    if not problems or verdict.status == UNKNOWN:
        return verdict
    return Verdict(UNKNOWN, "Not measured as the bar states it: " + "; ".join(problems)
                   + f". What was measured ({verdict.status} on these numbers): "
                   + verdict.text)


def _check(ok, text):
    return ok, text


def _status(checks):
    return HOLDS if all(ok for ok, _ in checks) else FAILS


# --------------------------------------------------------------------------------- accuracy


def gap_verdict(summary, max_gap, what, rec="rec_lra"):
    """`rec`'s mean final test accuracy within `max_gap` points of bp's (or above it)."""
    acc, bp = final_accuracy(summary, rec), final_accuracy(summary, "bp")
    if acc is None or bp is None:
        return Verdict(UNKNOWN, f"{what}: {rec} and bp results are both needed.")
    gap = 100 * (acc - bp)
    text = (f"{what}: rec_lra {mean_spread(summary[rec], '%')} vs bp "
            f"{mean_spread(summary['bp'], '%')}: {abs(gap):.2f} points "
            f"{'above' if gap > 0 else 'below'} backprop (criterion: no more than "
            f"{max_gap:.1f} below)")
    return Verdict(HOLDS if gap >= -max_gap else FAILS, text)


def beside(summary, name, rec="rec_lra"):
    """`"; wm 85.10% (rec_lra - wm = +0.30 points, reported beside the bar)"`."""
    acc, ref = final_accuracy(summary, name), final_accuracy(summary, rec)
    if acc is None or ref is None:
        return f"; {name} not measured"
    return (f"; {name} {pct(acc)}% ({rec} - {name} = {100 * (ref - acc):+.2f} points, reported "
            "beside the bar)")


def mlp_verdict(summary, bar, problems=()):
    """The MLP: rec_lra within `bar["max_gap"]` points of bp; wm beside."""
    v = gap_verdict(summary, bar["max_gap"], "MLP")
    if v.status == UNKNOWN:
        return v
    return qualified(Verdict(v.status, v.text + beside(summary, "wm") + "."), problems)


def published_verdict(summary, bar):
    """The MLP against the paper: rec_lra at least `bar["rec_lra_min"]`% and lra at least
    `bar["lra_min"]`% (means over seeds)."""
    rec, lra = final_accuracy(summary, "rec_lra"), final_accuracy(summary, "lra")
    if rec is None or lra is None:
        return Verdict(UNKNOWN, "rec_lra and lra results are both needed.")
    checks = [
        _check(100 * rec >= bar["rec_lra_min"], f"rec_lra {pct(rec)}% "
               f"{'>=' if 100 * rec >= bar['rec_lra_min'] else '<'} {bar['rec_lra_min']}%"),
        _check(100 * lra >= bar["lra_min"], f"lra {pct(lra)}% "
               f"{'>=' if 100 * lra >= bar['lra_min'] else '<'} {bar['lra_min']}%"),
    ]
    return Verdict(_status(checks), "; ".join(t for _, t in checks) + " (means over seeds; "
                   f"published: {bar['published']}% for rec-LRA).")


def resnet_verdict(summary, bar, problems=()):
    """ResNet-20: rec_lra within `bar["max_gap"]` points of bp and at least
    `bar["margin_over_fa_dfa"]` above fa and dfa; wm beside."""
    v = gap_verdict(summary, bar["max_gap"], "ResNet-20")
    if v.status == UNKNOWN:
        return v
    rec = final_accuracy(summary, "rec_lra")
    checks = [_check(v.status == HOLDS, v.text)]
    for name in ("fa", "dfa"):
        acc = final_accuracy(summary, name)
        if acc is None:
            checks.append(_check(False, f"{name} not measured"))
            continue
        margin = 100 * (rec - acc)
        checks.append(_check(margin >= bar["margin_over_fa_dfa"],
                             f"rec_lra - {name} = {margin:.2f} points (bar >= "
                             f"{bar['margin_over_fa_dfa']})"))
    text = "; ".join(t for _, t in checks) + beside(summary, "wm") + " (means over seeds)."
    return qualified(Verdict(_status(checks), text), problems)


def recipe_verdict(summary, bar, what, problems=()):
    """rec_lra (or `bar["rule"]`: rec_lra as a preset sets it) within `bar["max_gap"]` points
    of bp; for `bar["rule"]`, the library default's result is quoted beside it."""
    rec = bar.get("rule", "rec_lra")
    if rec != "rec_lra":
        what += f", rec_lra as the preset sets it (`{rec}`)"
    v = _dot(gap_verdict(summary, bar["max_gap"], what, rec))
    text = v.text
    if rec != "rec_lra" and v.status != UNKNOWN and "rec_lra" in summary:
        gap = 100 * (final_accuracy(summary, "rec_lra") - final_accuracy(summary, "bp"))
        text += (f" The library's default rec_lra (4x fewer noise images per mirror estimate): "
                 f"{mean_spread(summary['rec_lra'], '%')}, {abs(gap):.2f} points "
                 f"{'above' if gap > 0 else 'below'} backprop "
                 f"({'within' if gap >= -bar['max_gap'] else 'outside'} the bar).")
    return qualified(Verdict(v.status, text), problems)


def _dot(verdict):
    return verdict if verdict.status == UNKNOWN else Verdict(verdict.status, verdict.text + ".")


def depth_verdict(summaries, bar, problems=()):
    """bp - rec_lra (means over seeds, points) at the deepest of `bar["models"]` at most
    `bar["max_gap_at_deepest"]`, and no more than `bar["max_gap_growth"]` above the gap at the
    shallowest. `summaries`: `{model: accuracy summary}`. The other rules' gaps beside."""
    gaps = depth_gaps(summaries)
    rec = gaps.get("rec_lra", {})
    first, last = bar["models"][0], bar["models"][-1]
    missing = [depth_label(m) for m in (first, last) if m not in rec]
    if missing:
        return Verdict(UNKNOWN, "bp and rec_lra results are needed at "
                       + " and ".join(missing) + ".")

    def seeds(model):
        n = len(summaries[model]["rec_lra"]["seeds"])
        return f"{n} seed{'s' if n != 1 else ''}"

    parts = ["bp - rec_lra: " + ", ".join(f"{depth_label(m)} {rec[m]:+.2f} points ({seeds(m)})"
                                          for m in bar["models"] if m in rec)]
    gap, growth = rec[last], rec[last] - rec[first]
    ok_gap, ok_growth = gap <= bar["max_gap_at_deepest"], growth <= bar["max_gap_growth"]
    parts.append(f"at {depth_label(last)} {gap:+.2f} points ({'<=' if ok_gap else '>'} "
                 f"{bar['max_gap_at_deepest']})")
    parts.append(f"{depth_label(last)} minus {depth_label(first)} {growth:+.2f} points "
                 f"({'<=' if ok_growth else '>'} {bar['max_gap_growth']})")
    others = [f"{rule} " + ", ".join(f"{depth_label(m)} {g[m]:+.2f}" for m in bar["models"]
                                     if m in g)
              for rule, g in gaps.items() if rule not in ("bp", "rec_lra")]
    text = "; ".join(parts) + " (positive: below bp)"
    if others:
        text += "; bp minus the other rules, reported beside: " + "; ".join(others)
    return qualified(Verdict(HOLDS if ok_gap and ok_growth else FAILS, text + "."), problems)


def precision_verdict(pairs, bar, what):
    """Under the policy `bar["policy"]`, each of `bar["rules"]` within `bar["max_gap"]` points
    of the same rule's float32 run of the same seed (either side). `pairs`:
    `summaries.precision_pairs`. Not measured when a rule has no run, a run has no float32
    counterpart, or the two differ in more than the policy."""
    problems, parts, statuses = [], [], []
    for rule in bar["rules"]:
        mine = [p for p in pairs if p["rule"] == rule]
        if not mine:
            problems.append(f"no {rule} run under mixed precision")
        for p in mine:
            label = f"{rule} seed {p['seed']}"
            if p["policy"] != bar["policy"]:
                problems.append(f"{label} ran under {p['policy']} (the bar's: {bar['policy']})")
            if p["float32_accuracy"] is None:
                problems.append(f"{label} has no float32 run of the same seed")
                continue
            if p["differences"]:
                problems.append(f"{label} differs from its float32 run in "
                                + ", ".join(p["differences"]))
            gap = 100 * (p["accuracy"] - p["float32_accuracy"])
            statuses.append(abs(gap) <= bar["max_gap"])
            parts.append(f"{label}: {pct(p['accuracy'])}% vs {pct(p['float32_accuracy'])}% in "
                         f"float32 ({gap:+.2f} points)")
    text = f"{what}: " + ("; ".join(parts) if parts else "nothing to compare") + (
        f" (bar: within {bar['max_gap']} points).")
    if not statuses:
        return Verdict(UNKNOWN, text + (" " + "; ".join(problems) + "." if problems else ""))
    return qualified(Verdict(HOLDS if all(statuses) else FAILS, text), problems)


# ---------------------------------------------------------------------------------- convergence


def convergence_verdicts(summary, thresholds):
    """rec-LRA converges sooner than backprop: `(by epochs, by wall-clock)` verdicts.

    Holds when, at every threshold, rec_lra reaches it (in every seed) no later than bp (mean
    over seeds) and sooner at one threshold at least; does not hold when it is later at any
    threshold, never gets there while bp does, or ties everywhere (as fast is not sooner);
    not measured when neither gets there at any threshold.
    """
    if "rec_lra" not in summary or "bp" not in summary:
        v = Verdict(UNKNOWN, "per-epoch curves of rec_lra and bp are both needed")
        return v, v
    rec, bp = summary["rec_lra"]["reach"], summary["bp"]["reach"]
    out = []
    for key, unit, fmt in (("epochs_mean", "epochs", "{:.1f}"), ("seconds_mean", "s", "{:.0f}")):
        parts, statuses, sooner = [], [], []
        for t in thresholds:
            r, b = rec[f"{t:.2f}"], bp[f"{t:.2f}"]
            r_all = r["reached"] == r["runs"] and r["reached"] > 0
            label = f"{100 * t:.0f}%"
            if not r_all and not b["reached"]:
                parts.append(f"{label}: neither rec_lra nor bp reached it")
            elif not r_all:
                statuses.append(False)
                parts.append(f"{label}: rec_lra reached it in {r['reached']}/{r['runs']} seeds, "
                             f"bp in {fmt.format(b[key])} {unit}")
            elif not b["reached"]:
                statuses.append(True)
                sooner.append(True)
                parts.append(f"{label}: rec_lra in {fmt.format(r[key])} {unit}, bp never")
            else:
                statuses.append(r[key] <= b[key])
                sooner.append(r[key] < b[key])
                parts.append(f"{label}: rec_lra {fmt.format(r[key])} {unit} vs bp "
                             f"{fmt.format(b[key])} {unit}")
        text = "; ".join(parts)
        if not statuses:
            out.append(Verdict(UNKNOWN, text + "."))
            continue
        if all(statuses) and not any(sooner):
            text += " (as fast as bp, not sooner)"
        out.append(Verdict(HOLDS if all(statuses) and any(sooner) else FAILS, text + "."))
    return tuple(out)


# --------------------------------------------------------------------------------------- speed


def cheaper_verdict(best_wall, best_cpu, models):
    """rec_lra's step time <= bp's on each of `models`, each rule at its faster jit setting.
    `best_wall`, `best_cpu`: `summaries.best_step_times` by wall and by CPU time."""
    parts, statuses, noisy = [], [], []
    for m in models:
        if (m, "rec_lra") not in best_wall or (m, "bp") not in best_wall:
            continue
        (rs, rj), (bs, bj) = best_wall[(m, "rec_lra")], best_wall[(m, "bp")]
        statuses.append(rs <= bs)
        cpu = best_cpu[(m, "rec_lra")][0] / best_cpu[(m, "bp")][0]
        parts.append(f"{m}: rec_lra {seconds(rs)} (jit {rj}) vs bp {seconds(bs)} (jit {bj}), "
                     f"wall ratio {rs / bs:.2f} (CPU-time ratio {cpu:.2f})")
        if abs(cpu - rs / bs) > 0.2:
            noisy.append(m)
    if not statuses:
        return Verdict(UNKNOWN, "no model has both rec_lra and bp rows.")
    text = "; ".join(parts) + "."
    if noisy:
        text += (f" For {', '.join(noisy)} the wall and CPU-time ratios differ by more than "
                 "0.2: other jobs on the shared machine distorted the wall times, and the "
                 "CPU-time ratio is the steadier figure of the work a step does.")
    return Verdict(HOLDS if all(statuses) else FAILS, text)


def step_cost_verdict(rows, bar):
    """On `bar["model"]` at jit `bar["jit"]`, rec_lra's CPU time per step over bp's at most
    `bar["max_cpu_ratio"]` (the ratio of the means over the timed steps). Beside: the
    mirror-every-4 variant's ratio, the mirror's share and the peak memory. `rows`:
    `summaries.step_rows`."""
    sub = {r["rule"]: r for r in rows if r["model"] == bar["model"] and r["jit"] == bar["jit"]}
    where = f"{bar['model']}, jit {bar['jit']}"
    if "rec_lra" not in sub or "bp" not in sub:
        return Verdict(UNKNOWN, f"no rec_lra and bp rows for {where}.")
    rec, bp = sub["rec_lra"], sub["bp"]
    ratio = rec["mean_cpu_ratio_to_bp"]
    parts = [f"{where}: rec_lra/bp CPU time per step {ratio:.3f} (ratio of the means; bar "
             f"<= {bar['max_cpu_ratio']:.2f}; of the medians {rec['cpu_ratio_to_bp']:.3f})"]
    previous = sub.get("rec_lra-mirror_every1")
    parts.append("the previous default (rec_lra-mirror_every1: the mirror every step, "
                 "untracked) "
                 + (f"{previous['mean_cpu_ratio_to_bp']:.3f}" if previous else "not measured"))
    parts.append(f"the mirror's share of rec_lra's CPU time {100 * rec['mirror_share']:.1f}%"
                 if rec["mirror_share"] is not None else
                 "the mirror's share not measured (no rec_lra-fixed_synapses row)")
    ok = ratio <= bar["max_cpu_ratio"]
    if rec["peak_mb"] and bp["peak_mb"]:  # None where Linux could not reset the peak
        memory = rec["peak_mb"] / bp["peak_mb"]
        parts.append(f"peak memory of the timed steps rec_lra {rec['peak_mb']:.0f} MiB vs bp "
                     f"{bp['peak_mb']:.0f} MiB ({memory:.3f}x; bar <= "
                     f"{bar.get('max_memory_ratio', float('inf')):.2f})")
        ok = ok and memory <= bar.get("max_memory_ratio", float("inf"))
    return Verdict(HOLDS if ok else FAILS, "; ".join(parts) + ".")


def chain_verdict(rows, rule, chains, mlp_losses, skip=None):
    """Parallelisable updates: on every ResNet `rule`'s chain is shorter than bp's, bp's grows
    with depth and `rule`'s does not. `chains`: `summaries.chains(rows, rule)`; `mlp_losses`:
    the MLPs on which `rule`'s chain is longer than bp's; `skip`: the skip-synapse variant's
    chains, reported beside the default's."""
    if not chains:
        return Verdict(UNKNOWN, f"no ResNet with both {rule} and bp.")
    shorter, bp_grows, flat = _chain_shape(chains)
    text = "; ".join(f"{m}: {rule} {r} ops vs bp {b}" for m, r, b in chains)
    if len(chains) > 1:
        text += (f". From {chains[0][0]} to {chains[-1][0]} bp's chain goes {chains[0][2]} -> "
                 f"{chains[-1][2]} ops, {rule}'s {chains[0][1]} -> {chains[-1][1]}")
    if not flat and rule == "rec_lra":
        text += (": rec_lra's default passes targets unit by unit (feedback=\"adjacent\"), so "
                 "its chain grows with depth, as backprop's does")
    if skip and _chain_shape(skip)[2]:
        text += (f". rec_lra-skip_synapses (feedback=\"skip\": skip synapses to the block "
                 f"outputs) keeps it at {skip[-1][1]} ops at every depth measured")
    elif skip:
        text += (f". rec_lra-skip_synapses' chain goes {skip[0][1]} -> {skip[-1][1]} ops: it "
                 "does not stay constant either")
    if mlp_losses:
        text += (f". On the MLPs {', '.join(mlp_losses)} {rule}'s chain is longer than bp's (its "
                 "target computation costs more ops than a short backward pass)")
    return Verdict(HOLDS if shorter and bp_grows and flat else FAILS, text + ".")


def _chain_shape(chains):
    """`(shorter than bp everywhere, bp's grows with depth, the rule's does not)`."""
    shorter = all(r < b for _, r, b in chains)
    bp_grows = len(chains) < 2 or chains[-1][2] > chains[0][2]
    flat = len(chains) < 2 or chains[-1][1] <= chains[0][1]
    return shorter, bp_grows, flat


def overhead_verdict(rows, bar):
    """The alignment diagnostics cost under `bar["max_overhead"]` of training time (the
    steady-state estimate, per rule)."""
    if not rows:
        return Verdict(UNKNOWN, "no rows.")
    statuses = [r["overhead_steady_state"] < bar["max_overhead"] for r in rows]
    parts = [f"{r['rule']}: {100 * r['overhead_steady_state']:.1f}% steady-state (end-to-end "
             f"median {100 * r['overhead_fit']:.1f}%)" for r in rows]
    return Verdict(HOLDS if all(statuses) else FAILS,
                   "; ".join(parts) + f"; bar < {100 * bar['max_overhead']:.0f}%.")


# ----------------------------------------------------------------------------------- alignment


def descent_verdict(rules):
    """rec_lra's update is a descent direction (under 90 degrees from backprop's gradient) in
    every hidden unit at the end of training; the other rules' means beside."""
    if "rec_lra" not in rules:
        return Verdict(UNKNOWN, "no rec_lra run.")
    rec = rules["rec_lra"]
    finals = {u: a for u, a in rec["final_angle"].items() if u != "head" and a is not None}
    ok = bool(finals) and all(a < 90 for a in finals.values())
    text = "rec_lra's final angle per hidden unit: " + ", ".join(
        f"{u} {a:.1f}°" for u, a in finals.items())
    others = [n for n in ("wm", "lra", "fa", "dfa") if n in rules]
    mean = rec["final_angle_hidden_mean"]
    text += f" (mean {mean:.1f}°" + ("; other rules' means: " + ", ".join(
        f"{n} {rules[n]['final_angle_hidden_mean']:.1f}°" for n in others) if others else "") + ")"
    closer = [n for n in others if rules[n]["final_angle_hidden_mean"] < mean]
    if closer:
        text += f"; {', '.join(closer)} align{'s' if len(closer) == 1 else ''} more closely"
    return Verdict(HOLDS if ok else FAILS, text + ".")


def mirror_verdict(rows, limit, rule="rec_lra"):
    """Within the run, the mirror brings every error synapse of `rule` within `limit` degrees
    of its forward kernel and keeps it there; when, and the other mirror rules beside. `rows`:
    `summaries.alignment_rows`."""
    row = next((r for r in rows if r["rule"] == rule), None)
    if row is None:
        return Verdict(UNKNOWN, f"no {rule} run in the alignment file.")
    where = (f"{row['synapses']} synapses, projections' included; at the last probe, step "
             f"{row['last_step']}, the mean is {row['last_fw']:.1f}° and the largest "
             f"{row['worst_fw']:.1f}°, {row['worst_synapse']}")
    others = [f"{r['rule']} from step {r['aligned_at']}" if r["aligned_at"] is not None
              else f"{r['rule']} never" for r in rows if r["mirror"] and r["rule"] != rule]
    besides = f"; beside: {', '.join(others)}" if others else ""
    if row["aligned_at"] is None:
        return Verdict(FAILS, f"{rule}: never every synapse within {limit:.0f}° within the "
                       f"budget of {row['last_step']} steps ({where}){besides}.")
    return Verdict(HOLDS, f"{rule}: every synapse within {limit:.0f}° of its forward kernel "
                   f"from step {row['aligned_at']} of {row['last_step']} on ({where}){besides}.")


# ----------------------------------------------------------------------------------- precision


def headroom_verdict(headroom, fmax):
    """Under mixed_float16 every unit's error `e`, the displacement its synapse makes of it
    and its pre-activations `h` are finite and below float16's largest value `fmax`."""
    if not headroom:
        return Verdict(UNKNOWN, "no float16 headroom recorded.")
    parts, ok = [], True
    for key, label in (("max_abs_error", "|e|"), ("max_abs_displacement", "|F e|"),
                       ("max_abs_pre_activation", "|h|")):
        values = {u: m[key] for u, m in headroom.items()}
        unit, top = max(values.items(), key=lambda kv: kv[1] if math.isfinite(kv[1])
                        else math.inf)
        ok = ok and math.isfinite(top) and top < fmax
        parts.append(f"largest {label} {top:.3g} ({unit})")
    bad = [u for u, m in headroom.items() if not m["finite"]]
    if bad:
        ok = False
        parts.append("non-finite values in " + ", ".join(bad))
    n = len(headroom)
    return Verdict(HOLDS if ok else FAILS, "; ".join(parts) + f", against float16's largest "
                   f"finite value {fmax:,.0f} ({n} unit{'s' if n != 1 else ''}).")


# ---------------------------------------------------------------------------------- peers, export


def peer_gap_verdict(summary):
    """rec_lra's gap to rlra_tf's bp < the gap of BioTorch's best local rule (its best mean
    final accuracy among everything but bp) to BioTorch's bp. `summary`:
    `summaries.peer_summaries`."""
    ours, theirs = summary.get("rlra_tf", {}), summary.get("biotorch", {})
    local = {r: e["final_test_accuracy_mean"] for r, e in theirs.items() if r != "bp"}
    if "bp" not in ours or "rec_lra" not in ours or "bp" not in theirs or not local:
        return Verdict(UNKNOWN, "rlra_tf's bp and rec_lra, and BioTorch's bp and at least one "
                                "of its local rules, are all needed.")
    best = max(local, key=local.get)
    ours_gap = 100 * ours["rec_lra"]["gap_to_bp"]
    theirs_gap = 100 * theirs[best]["gap_to_bp"]
    return Verdict(HOLDS if ours_gap < theirs_gap else FAILS, (
        f"rec_lra {mean_spread(ours['rec_lra'], '%')} is {_behind(ours_gap)} rlra_tf's bp "
        f"({mean_spread(ours['bp'], '%')}); BioTorch's best local rule, {best} "
        f"({mean_spread(theirs[best], '%')}), is {_behind(theirs_gap)} BioTorch's bp "
        f"({mean_spread(theirs['bp'], '%')}) (criterion: rec_lra's gap smaller)."))


def _behind(points):
    return f"{points:.2f} points behind" if points >= 0 else f"{-points:.2f} points ahead of"


def peer_step_verdict(ratios, pairs, max_ratio):
    """Our step no slower than BioTorch's (median wall time, ratio <= `max_ratio`) for each
    `(ours, theirs)` of `pairs`, at every thread count timed. `ratios`:
    `summaries.step_ratios`."""
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
            ok = ok and r["ratio"] <= max_ratio
            parts.append(
                f"{t} thread(s): rlra_tf {ours} {1000 * r['rlra_tf_seconds']:.0f} ms vs BioTorch "
                f"{theirs} {1000 * r['biotorch_seconds']:.0f} ms, ratio {r['ratio']:.2f} "
                f"(CPU-time ratio {num(r['cpu_ratio'])})")
            if (r["cpu_ratio"] <= max_ratio) != (r["ratio"] <= max_ratio):
                cpu_disagrees.append(f"{ours} vs {theirs} at {t} thread(s)")
    text = "; ".join(parts) + (f" (median wall time per step; bar: ratio <= {max_ratio:.1f} at "
                               "every thread count timed)")
    if cpu_disagrees:
        text += (". The CPU-time ratio is on the other side of the bar for "
                 + ", ".join(cpu_disagrees))
    return Verdict(HOLDS if ok else FAILS, text + ".")


def parity_verdict(worst, max_diff):
    """Every float artefact's probabilities within `max_diff` of Keras'. `worst`: the largest
    difference found (None: no artefact)."""
    if worst is None:
        return Verdict(UNKNOWN, "no exported artefact.")
    bar = f"{max_diff:.0e}".replace("e-0", "e-")  # 1e-4
    return Verdict(HOLDS if worst < max_diff else FAILS,
                   f"largest difference of probabilities from Keras {worst:.1e} (parity bar "
                   f"{bar}).")


# --------------------------------------------------------------------------------- models


def keras_resnet50_verdict(rows, bar):
    """The converted keras.applications.ResNet50 against the resnet50 preset (`rows` of
    `summaries.step_rows` with the workers' parameter counts): the same forward parameters once
    Keras' conv biases in front of BatchNorm are folded away, and a rec_lra / bp ratio within
    `bar["max_ratio_difference"]` (relative) of the preset's."""
    def row(model, rule):
        return next((r for r in rows if r["model"] == model and r["rule"] == rule
                     and r["jit"] == bar["jit"]), None)
    found = {(m, r): row(m, r) for m in ("resnet50", "keras_resnet50") for r in ("bp", "rec_lra")}
    if any(x is None for x in found.values()):
        return Verdict(UNKNOWN, "bp and rec_lra of both models are needed.")
    preset, keras_bp = found[("resnet50", "bp")], found[("keras_resnet50", "bp")]
    same = keras_bp["forward_params_folded"] == preset["forward_params"]
    ours = found[("keras_resnet50", "rec_lra")]["cpu_ratio_to_bp"]
    theirs = found[("resnet50", "rec_lra")]["cpu_ratio_to_bp"]
    close = abs(ours / theirs - 1.0) <= bar["max_ratio_difference"]
    text = (f"forward parameters: converted {keras_bp['forward_params']:,} "
            f"({keras_bp['forward_params_folded']:,} with the conv biases in front of BatchNorm "
            f"folded), preset {preset['forward_params']:,} ({'equal' if same else 'different'}); "
            f"rec_lra / bp CPU time per step: converted {ours:.3f}, preset {theirs:.3f} "
            f"({100 * (ours / theirs - 1):+.1f}%; criterion: within "
            f"{100 * bar['max_ratio_difference']:.0f}%)")
    return Verdict(_status([(same, ""), (close, "")]), text)
