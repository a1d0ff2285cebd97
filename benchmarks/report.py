"""Writes `BENCHMARKS.md` from the benchmark JSON files: every measured number comes from a run.

Reads `benchmarks/results/<name>.json` (the full suite) and, for a benchmark the full suite has
not produced, `benchmarks/results/quick/<name>.json` (the quick suite); every table says which
suite, date and machine it came from. Missing results are rendered as "not run yet". The only
numbers typed here are the *published* ones (ALGORITHM.md section 6) and the bars of the
issues, both quoted as such.

    python -m benchmarks.report                      # rewrites BENCHMARKS.md
    python -m benchmarks.report --out=/tmp/B.md --results=benchmarks/results

The verdict functions (`*_verdict`) are pure: summaries in, `Verdict` out.
"""

import dataclasses
import json
import math
import os
import platform
import time

RESULTS_DIR = os.path.join("benchmarks", "results")
QUICK = "quick"
BENCHMARKS = (
    "accuracy_mlp", "mlp_sweep", "mlp_sweep_session1", "resnet_accuracy", "step_time",
    "chain_length", "alignment", "export_bench", "diagnostics_overhead",
)
SCRIPTS = {
    "accuracy_mlp": "benchmarks/accuracy.py",
    "mlp_sweep": "benchmarks/accuracy.py --sweep",
    "mlp_sweep_session1": "the session-1 sweep script (of record, not in the repository)",
    "resnet_accuracy": "benchmarks/resnet_accuracy.py",
    "step_time": "benchmarks/step_time.py",
    "chain_length": "benchmarks/chain_length.py",
    "alignment": "benchmarks/alignment.py",
    "export_bench": "benchmarks/export_bench.py",
    "diagnostics_overhead": "benchmarks/diagnostics_overhead.py",
}

# Published figures, quoted from ALGORITHM.md section 6 (percent test accuracy).
PUBLISHED = {
    "fmnist_rec_lra": 88.13,  # rec-LRA, Fashion-MNIST, as quoted by later papers
    "mnist_rec_lra": 98.18,
    "cifar10_rec_lra": 93.58,  # one paper quotes 93.88
    "fmnist_bp_resnet": 93.8,  # backprop ResNet-18, Fashion-MNIST (about)
    "cifar10_bp_resnet18": 94.0,  # backprop ResNet-18, CIFAR-10 with augmentation (about)
    # BioTorch, CIFAR-10 ResNet-20, SGD: top-1 error -> accuracy
    "cifar10_resnet20_error": {"bp": 8.63, "fa": 32.16, "dfa": 45.94},
}
PUBLISHED_SOURCE = "ALGORITHM.md section 6"

# The bars of the issues (percentage points).
MLP_BAR = {"rec_lra_min": 88.5, "rec_lra_gap_to_bp": 1.0, "lra_min": 87.5}
RESNET_BAR = {"rec_lra_gap_to_bp": 2.0, "margin_over_fa_dfa": 5.0}
OVERHEAD_BAR = 0.10
GENERALISE_TOLERANCE = {
    "mlp": MLP_BAR["rec_lra_gap_to_bp"], "resnet": RESNET_BAR["rec_lra_gap_to_bp"],
}
RULE_ORDER = ("bp", "fa", "dfa", "lra", "rec_lra")
CLOUD_PRESETS = ("fmnist_resnet20", "cifar10_resnet20", "cifar10_resnet18", "imagenet_resnet18",
                 "imagenet_resnet50")

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not measured"


@dataclasses.dataclass
class Verdict:
    status: str  # HOLDS, FAILS or UNKNOWN
    text: str

    def render(self, what=""):
        head = f"**Verdict{(' (' + what + ')') if what else ''}: {self.status}**"
        return f"{head}. {self.text}"


@dataclasses.dataclass
class Source:
    name: str
    data: dict
    path: str
    suite: str  # "full" or "quick"

    def label(self, root):
        d = self.data
        machine = d.get("machine") or {}
        versions = d.get("versions") or {}
        suite = self.suite + (" suite" if self.suite in ("full", "quick") else "")
        parts = [f"`{os.path.relpath(self.path, root)}`", suite,
                 d.get("date") or "date not recorded"]
        if machine:
            parts.append(f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs")
        if versions:
            parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
        return "Source: " + "; ".join(parts) + "."


def load_results(results_dir):
    """`{name: Source or None}`: the full suite's JSON if present, else the quick suite's."""
    out = {}
    for name in BENCHMARKS:
        out[name] = None
        for suite, folder in (("full", results_dir), ("quick", os.path.join(results_dir, QUICK))):
            path = os.path.join(folder, name + ".json")
            if os.path.exists(path):
                try:
                    with open(path) as f:
                        data = json.load(f)
                    out[name] = Source(name, data, os.path.abspath(path),
                                       str(data.get("suite") or suite))
                except (OSError, json.JSONDecodeError) as err:
                    print(f"Skipping unreadable {path}: {err}")
                    continue
                break
    return out


# --------------------------------------------------------------------------- formatting


def pct(x, digits=2):
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def mean_spread(s, unit=""):
    """`89.12 ± 0.15 [88.95, 89.30] (3 seeds)` from a summary entry (std over seeds, min-max);
    `unit` goes after the mean."""
    m = s.get("final_test_accuracy_mean")
    if m is None:
        return "n/a"
    n = len(s.get("seeds") or [])
    std = s.get("final_test_accuracy_std")
    text = pct(m) + unit + (f" ± {100 * std:.2f}" if std is not None else "")
    if n > 1:
        text += (f" [{pct(s.get('final_test_accuracy_min'))}, "
                 f"{pct(s.get('final_test_accuracy_max'))}]")
    return text + f" ({n} seed{'s' if n != 1 else ''})"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x, fmt="{:.2f}"):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


# --------------------------------------------------------------------------- accuracy summaries


def accuracy_summary(data):
    """`{variant: summary}` (`benchmarks.curves.summarize`'s format) from an accuracy JSON.

    Recomputed from the per-run records (`runs`: `variant` or `rule`, `seed`,
    `final_test_accuracy`, per-epoch `epochs`) when the file has them, so every accuracy
    benchmark is summarised alike; otherwise the file's own `summary` (a dict of that format,
    as in a sweep of record).
    """
    from benchmarks import curves

    if not data:
        return {}
    runs = [r for r in data.get("runs") or []
            if isinstance(r, dict) and (r.get("variant") or r.get("rule"))
            and r.get("final_test_accuracy") is not None and isinstance(r.get("epochs"), list)
            and r["epochs"]]
    if runs:
        thresholds = data.get("thresholds") or curves.THRESHOLDS
        return curves.summarize(runs, thresholds)
    if isinstance(data.get("summary"), dict):
        return data["summary"]
    return {}


def _final(summary, name):
    s = summary.get(name)
    return None if s is None else s.get("final_test_accuracy_mean")


# --------------------------------------------------------------------------- verdicts


def generalisation_verdict(summary, tolerance, what):
    """rec-LRA generalises as well as backprop: mean final test accuracy within `tolerance`
    points of bp's (or above it)."""
    rec, bp = _final(summary, "rec_lra"), _final(summary, "bp")
    if rec is None or bp is None:
        return Verdict(UNKNOWN, f"{what}: rec_lra and bp results are both needed.")
    gap = 100 * (rec - bp)
    status = HOLDS if gap >= -tolerance else FAILS
    where = "above" if gap > 0 else "below"
    text = (f"{what}: rec_lra {mean_spread(summary['rec_lra'], '%')} vs bp "
            f"{mean_spread(summary['bp'], '%')}: {abs(gap):.2f} points {where} backprop "
            f"(criterion: no more than {tolerance:.1f} below)")
    others = [n for n in ("lra", "fa", "dfa") if n in summary]
    beaten = [n for n in others if _final(summary, n) > rec]
    if beaten:
        text += "; rec_lra loses to " + ", ".join(
            f"{n} ({pct(_final(summary, n))}%)" for n in beaten)
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
    rec, bp, lra = (_final(summary, n) for n in ("rec_lra", "bp", "lra"))
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
    """Issue 3: ResNet-20 rec_lra within 2.0 points of bp and at least 5 above fa and dfa."""
    rec, bp, fa, dfa = (_final(summary, n) for n in ("rec_lra", "bp", "fa", "dfa"))
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
    (median process CPU), forward_ms (the forward row of the same model and jit),
    step_per_forward, ratio_to_bp and cpu_ratio_to_bp (bp at the same jit), peak_mb."""
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
            "peak_mb": r.get("step_peak_rss_mb") or r.get("peak_rss_mb"),
        })
    index = {(r["model"], r["jit"], r["rule"]): r for r in rows}
    for r in rows:
        fwd = index.get((r["model"], r["jit"], "forward"))
        bp = index.get((r["model"], r["jit"], "bp"))
        r["forward_ms"] = fwd["step_ms"] if fwd else None
        r["step_per_forward"] = _div(r["step_ms"], r["forward_ms"])
        r["ratio_to_bp"] = _div(r["step_ms"], bp["step_ms"]) if bp else None
        r["cpu_ratio_to_bp"] = _div(r["cpu_ms"], bp["cpu_ms"]) if bp else None
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


def chain_verdict(rows):
    """Parallelisable updates: on every ResNet rec_lra's chain is shorter than bp's, bp's grows
    with depth and rec_lra's does not."""
    res = [r for r in rows if r.get("family") == "resnet"]
    if not res:
        return Verdict(UNKNOWN, "no ResNet rows in chain_length.json.")
    by = {(r["model"], r["rule"]): r for r in res}
    models = sorted({r["model"] for r in res}, key=lambda m: by.get((m, "bp"), {}).get("units", 0))
    pairs = [(m, by[(m, "rec_lra")]["chain_ops"], by[(m, "bp")]["chain_ops"]) for m in models
             if (m, "rec_lra") in by and (m, "bp") in by]
    if not pairs:
        return Verdict(UNKNOWN, "no model with both rec_lra and bp in chain_length.json.")
    shorter = all(r < b for _, r, b in pairs)
    bp_grows = len(pairs) < 2 or pairs[-1][2] > pairs[0][2]
    rec_flat = len(pairs) < 2 or pairs[-1][1] <= pairs[0][1]
    text = "; ".join(f"{m}: rec_lra {r} ops vs bp {b}" for m, r, b in pairs)
    if len(pairs) > 1:
        text += (f". From {pairs[0][0]} to {pairs[-1][0]} bp's chain goes {pairs[0][2]} -> "
                 f"{pairs[-1][2]} ops, rec_lra's {pairs[0][1]} -> {pairs[-1][1]}")
    mlp = [r for r in rows if r.get("family") == "mlp"]
    losses = sorted({r["model"] for r in mlp if r["rule"] == "rec_lra" and any(
        b["model"] == r["model"] and b["rule"] == "bp" and b["chain_ops"] < r["chain_ops"]
        for b in mlp)})
    if losses:
        text += (f". On the shallow MLPs {', '.join(losses)} rec_lra's chain is longer than "
                 "bp's (its target computation costs more ops than a short backward pass)")
    return Verdict(HOLDS if shorter and bp_grows and rec_flat else FAILS, text + ".")


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
    for name in ("lra", "fa", "dfa"):
        if name in rules and rules[name].get("final_angle_hidden_mean") is not None:
            others.append(f"{name} {rules[name]['final_angle_hidden_mean']:.1f}°")
    if rec.get("final_angle_hidden_mean") is not None:
        text += f" (mean {rec['final_angle_hidden_mean']:.1f}°"
        text += ("; other rules' means: " + ", ".join(others) + ")") if others else ")"
        closer = [n for n in ("lra", "fa", "dfa") if n in rules and (
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


# --------------------------------------------------------------------------- sections


def _png(source, root, out_dir, name=None):
    """A Markdown image link to the PNG beside `source`'s JSON (relative to BENCHMARKS.md)."""
    path = os.path.splitext(source.path)[0] + ".png" if name is None else name
    if not os.path.exists(path):
        return ""
    return f"![{os.path.basename(path)}]({os.path.relpath(path, out_dir)})"


def _not_run(name):
    return f"*Not run yet* (`python -m {SCRIPTS[name].replace('/', '.').replace('.py', '')}`)."


def section_header(results, root, results_dir=RESULTS_DIR):
    from benchmarks.environment import environment

    env = environment()
    m, v = env["machine"], env["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.report` from the JSON files in "
        "`benchmarks/results/` (the full suite, `make bench-full`) or, where the full suite "
        "has not produced a file, `benchmarks/results/quick/` (`make bench`). Do not edit by "
        "hand: every measured number below comes from those files. Published numbers are "
        f"quoted from {PUBLISHED_SOURCE} (published without error bars).",
        "",
        f"Report generated {env['date']} on {m['platform']} ({m['processor']}, {m['cpus']} "
        f"CPUs, no GPU); TensorFlow {v['tensorflow']}, Keras {v['keras']}, Python "
        f"{v['python']}.",
        "",
        "| benchmark | script | suite | date | machine |",
        "|---|---|---|---|---|",
    ]
    for suite, folder in (("full", results_dir), ("quick", os.path.join(results_dir, QUICK))):
        log = _read(os.path.join(folder, "suite_run.json"))
        if log:
            states = {}
            for b in log.get("benchmarks", []):
                states.setdefault(b["status"].split(" ")[0], []).append(b["name"])
            lines.insert(-2, f"The {suite} suite (`python -m benchmarks.run --suite={suite}`) "
                         f"last ran {log.get('date', '?')} and took "
                         f"{log.get('total_seconds', 0) / 60:.1f} minutes ("
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in states.items())
                         + ").\n")
    for name in BENCHMARKS:
        s = results.get(name)
        if s is None:
            lines.append(f"| {name} | `{SCRIPTS[name]}` | not run yet | | |")
            continue
        mach = s.data.get("machine") or {}
        where = f"{mach.get('cpus', '?')} CPUs, load {_load(mach)}" if mach else "n/a"
        lines.append(
            f"| {name} | `{SCRIPTS[name]}` | {s.suite} | {s.data.get('date', 'not recorded')} | "
            f"{where} |")
    return "\n".join(lines)


def _budget(budget):
    if isinstance(budget, dict):
        return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in budget.items()
                         if v is not None and not isinstance(v, (dict, list)))
    return str(budget)


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _load(machine):
    la = machine.get("load_average")
    return "n/a" if not la else f"{la[0]:.1f}"


def section_summary(verdicts):
    rows = [(claim, f"**{v.status}**") for claim, v in verdicts]
    return "## Verdicts at a glance\n\n" + table(["claim / bar", "verdict"], rows)


def accuracy_table(summary, published=None):
    rows = []
    names = [n for n in RULE_ORDER if n in summary] + [n for n in summary if n not in RULE_ORDER]
    for n in names:
        s = summary[n]
        pub = (published or {}).get(n, "—")
        rows.append((f"`{n}`", s.get("label", n), mean_spread(s),
                     _num(s.get("seconds_per_epoch_mean"), "{:.1f}"), pub))
    return table(["rule", "variant", "final test accuracy % (mean ± std [min, max])",
                  "s / epoch", "published"], rows)


def section_generalise(results, root, out_dir):
    lines = ["## Claim 1: rec-LRA generalises as well as backprop", ""]
    verdicts = []
    mlp = results.get("accuracy_mlp")
    lines.append("### MLP 784-256-256-256-10 (tanh) on Fashion-MNIST")
    if mlp is None:
        lines += ["", _not_run("accuracy_mlp")]
        verdicts.append(Verdict(UNKNOWN, "MLP accuracy not run yet."))
    else:
        summary = accuracy_summary(mlp.data)
        lines += ["", mlp.label(root), "",
                  f"Budget: {_budget(mlp.data.get('budget', '?'))}; test accuracy on the "
                  "10,000 test images after the last epoch.", "",
                  accuracy_table(summary, {
                      "rec_lra": f"{PUBLISHED['fmnist_rec_lra']} (rec-LRA, Fashion-MNIST)"}),
                  "", _png(mlp, root, out_dir)]
        if not mlp.data.get("complete", True):
            lines += ["", "*The run was still in progress or interrupted: partial seeds.*"]
        v = generalisation_verdict(summary, GENERALISE_TOLERANCE["mlp"], "MLP")
        verdicts.append(v)
        lines += ["", v.render("MLP")]
        rec = _final(summary, "rec_lra")
        if rec is not None:
            diff = 100 * rec - PUBLISHED["fmnist_rec_lra"]
            lines += ["", f"Against the published figure: rec_lra here {pct(rec)}% vs "
                      f"{PUBLISHED['fmnist_rec_lra']}% published ({diff:+.2f} points)."]
    lines += ["", "### ResNet-20 on Fashion-MNIST"]
    rn = results.get("resnet_accuracy")
    if rn is None:
        lines += ["", _not_run("resnet_accuracy")]
        verdicts.append(Verdict(UNKNOWN, "ResNet-20 accuracy not run yet."))
    else:
        summary = accuracy_summary(rn.data)
        err = PUBLISHED["cifar10_resnet20_error"]
        pub = {k: f"{100 - e:.2f} (CIFAR-10, BioTorch)" for k, e in err.items()}
        lines += ["", rn.label(root), ""]
        if rn.data.get("budget"):
            lines += [f"Budget: {_budget(rn.data['budget'])}.", ""]
        lines += [accuracy_table(summary, pub), "", _png(rn, root, out_dir),
                  "", f"Published for comparison (other data set): backprop ResNets reach about "
                  f"{PUBLISHED['fmnist_bp_resnet']}% on Fashion-MNIST; the published column is "
                  "ResNet-20 on CIFAR-10 (100 - top-1 error)."]
        v = generalisation_verdict(summary, GENERALISE_TOLERANCE["resnet"], "ResNet-20")
        verdicts.append(v)
        lines += ["", v.render("ResNet-20")]
    lines += ["", "Criterion: rec_lra's mean final test accuracy is no more than "
              f"{GENERALISE_TOLERANCE['mlp']:.1f} point (MLP) / "
              f"{GENERALISE_TOLERANCE['resnet']:.1f} points (ResNet-20) below backprop's, the "
              "bars of issues 2 and 3."]
    return "\n".join(lines), verdicts


def section_converge(results, root):
    lines = ["## Claim 2: rec-LRA converges sooner", ""]
    mlp = results.get("accuracy_mlp")
    if mlp is None:
        v = Verdict(UNKNOWN, "MLP accuracy not run yet.")
        return "\n".join(lines + [_not_run("accuracy_mlp")]), [v, v]
    summary = accuracy_summary(mlp.data)
    thresholds = mlp.data.get("thresholds", [0.85, 0.88])
    header = ["rule"]
    for t in thresholds:
        header += [f"epochs to {100 * t:.0f}%", f"seconds to {100 * t:.0f}%"]
    rows = []
    for n in [n for n in RULE_ORDER if n in summary] + [n for n in summary
                                                        if n not in RULE_ORDER]:
        row = [f"`{n}`"]
        for t in thresholds:
            r = (summary[n].get("reach") or {}).get(f"{t:.2f}")
            if not r or not r["reached"]:
                row += ["never", "never"]
                continue
            note = "" if r["reached"] == r["runs"] else f" ({r['reached']}/{r['runs']} seeds)"
            row += [f"{r['epochs_mean']:.1f}{note}", f"{r['seconds_mean']:.0f}{note}"]
        rows.append(row)
    lines += [mlp.label(root), "",
              "MLP on Fashion-MNIST, the budget of claim 1. Epochs: the first epoch after which "
              "the 10,000-image test accuracy is at or above the threshold; seconds: the "
              "trainer's epoch times summed up to that epoch (training steps and the "
              "validation pass, not the per-epoch test pass). Means over the seeds that "
              "reached it; \"never\" when no seed did within the budget. The runs were made "
              "one after another on a shared 2-core machine whose load from other jobs varied, "
              "so seconds differing by about 10% are within noise; epochs are counted only at "
              "epoch ends.", "",
              table(header, rows), "",
              "Published: the paper states the claim without numbers for these thresholds "
              f"({PUBLISHED_SOURCE})."]
    by_epochs, by_seconds = convergence_verdicts(summary, thresholds)
    lines += ["", by_epochs.render("epochs, rec_lra vs bp"), "",
              by_seconds.render("wall-clock, rec_lra vs bp")]
    return "\n".join(lines), [by_epochs, by_seconds]


def section_cheaper(results, root, out_dir):
    lines = ["## Claim 3: cheaper, parallelisable updates", "", "### Step time"]
    verdicts = []
    st = results.get("step_time")
    if st is None:
        lines += ["", _not_run("step_time")]
        verdicts.append(Verdict(UNKNOWN, "step_time not run yet."))
    else:
        rows = step_rows(st.data)
        out = [(r["model"], f"`{r['rule']}`", r["jit"], _num(r.get("batch_size"), "{}"),
                _num(r["step_ms"], "{:.0f}"), _num(r["cpu_ms"], "{:.0f}"),
                _num(r["step_per_forward"], "{:.2f}"), _num(r["ratio_to_bp"], "{:.2f}"),
                _num(r["cpu_ratio_to_bp"], "{:.2f}"), _num(r["peak_mb"], "{:.0f}"))
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
                  "", _png(st, root, out_dir)]
        v = step_time_verdict(rows)
        verdicts.append(v)
        lines += ["", v.render("cheaper: rec_lra step <= bp step")]
    lines += ["", "### Longest chain of dependent operations in the update"]
    ch = results.get("chain_length")
    if ch is None:
        lines += ["", _not_run("chain_length")]
        verdicts.append(Verdict(UNKNOWN, "chain_length not run yet."))
    else:
        rows = ch.data.get("results") or []
        models = list(dict.fromkeys(r["model"] for r in rows))
        rules = [r for r in RULE_ORDER if any(x["rule"] == r for x in rows)]
        by = {(r["model"], r["rule"]): r for r in rows}
        table_rows = []
        for m in models:
            first = next(r for r in rows if r["model"] == m)
            table_rows.append([m, first.get("units", "?"), first.get("blocks", "?")] + [
                by[(m, r)]["chain_ops"] if (m, r) in by else "—" for r in rules])
        lines += ["", ch.label(root), "",
                  f"Definition: {ch.data.get('definition', 'see benchmarks/chain_length.py')}.",
                  "", table(["model", "units", "blocks"] + [f"`{r}`" for r in rules],
                            table_rows), "", _png(ch, root, out_dir)]
        v = chain_verdict(rows)
        verdicts.append(v)
        lines += ["", v.render("parallelisable: chain length")]
    lines += ["", "Published: the paper states the claim qualitatively (no step times or chain "
              f"lengths in {PUBLISHED_SOURCE})."]
    return "\n".join(lines), verdicts


def section_alignment(results, root, out_dir):
    lines = ["## Claim 4: alignment with backprop", ""]
    al = results.get("alignment")
    if al is None:
        v = Verdict(UNKNOWN, "alignment not run yet.")
        return "\n".join(lines + [_not_run("alignment")]), [v]
    rules = al.data.get("rules") or {}
    units = list(dict.fromkeys(u for r in rules.values() for u in r.get("final_angle", {})))
    rows = []
    for name in [n for n in ("rec_lra", "lra", "fa", "dfa", "bp") if n in rules]:
        r = rules[name]
        rows.append([f"`{name}`", pct(r.get("test_accuracy"))] + [
            _num(r["final_angle"].get(u), "{:.1f}") for u in units] + [
            _num(r.get("first_angle_hidden_mean"), "{:.1f}"),
            _num(r.get("final_angle_hidden_mean"), "{:.1f}"),
            _num(r.get("final_feedback_angle_hidden_mean"), "{:.1f}")])
    lines += [al.label(root), "",
              f"The `fmnist_mlp` preset trained {al.data.get('epochs')} epoch(s) per rule "
              + (f"on the first {al.data['train_limit']} training images "
                 if al.data.get("train_limit") else "")
              + f"with a probe of 256 validation images every {al.data.get('every_n_steps')} "
              "steps: the angle (degrees) between the rule's kernel update and backprop's "
              "gradient on the same batch (0 = backprop's direction, 90 = unrelated), and the "
              "angle between each feedback kernel F and its forward kernel W.", "",
              table(["rule", "test %"] + [f"{u} final °" for u in units]
                    + ["hidden mean at start °", "hidden mean at end °", "F vs W at end °"],
                    rows), "", _png(al, root, out_dir)]
    v = alignment_verdict(rules)
    lines += ["", v.render("rec_lra's updates are descent directions"), "",
              "Published: no angles are published for rec-LRA; the claim checked is that its "
              "updates stay within 90° of backprop's gradient."]
    return "\n".join(lines), [v]


def section_mlp_bar(results, root):
    lines = ["## Issue 2: the MLP accuracy bar", "",
             f"Bar: rec_lra at least {MLP_BAR['rec_lra_min']}% test accuracy and within "
             f"{MLP_BAR['rec_lra_gap_to_bp']} point of bp under the same budget; lra at least "
             f"{MLP_BAR['lra_min']}% (the paper reports {PUBLISHED['fmnist_rec_lra']}% for "
             "rec-LRA on Fashion-MNIST)."]
    mlp = results.get("accuracy_mlp")
    if mlp is None:
        v = Verdict(UNKNOWN, "not run yet")
        lines += ["", _not_run("accuracy_mlp")]
    else:
        summary = accuracy_summary(mlp.data)
        rows = []
        for n in [n for n in RULE_ORDER if n in summary] + [n for n in summary
                                                            if n not in RULE_ORDER]:
            s = summary[n]
            rows.append((f"`{n}`", mean_spread(s), _num(s.get("seconds_per_epoch_mean"),
                                                        "{:.1f}"),
                         _num(s.get("wall_seconds_mean"), "{:.0f}")))
        v = mlp_bar_verdict(summary)
        lines += ["", mlp.label(root), "", f"Budget: {_budget(mlp.data.get('budget', '?'))}.", "",
                  table(["rule", "test accuracy %", "s / epoch", "wall-clock s per run"], rows),
                  "", v.render("issue 2 bar")]
    lines += ["", "### Settings tried", ""]
    sw, old = results.get("mlp_sweep"), results.get("mlp_sweep_session1")
    if sw is None and old is None:
        lines.append(_not_run("mlp_sweep"))
    else:
        summary = accuracy_summary(sw.data) if sw else {}
        before = accuracy_summary(old.data) if old else {}
        for src in (sw, old):
            if src is not None:
                lines += [src.label(root), ""]
        if sw is not None:
            lines += ["Measured by `python -m benchmarks.accuracy --sweep` through the trainer "
                      f"({_budget(sw.data.get('budget', '?'))}, seed 0, one run per setting; "
                      "runs are not bit-reproducible, so a setting also in the table above can "
                      "differ from its seed-0 run there by a few tenths).", ""]
        if old is not None and old.data.get("notes"):
            lines += [old.data["notes"], ""]
        names = list(summary) + [n for n in before if n not in summary]
        rows = []
        for n in names:
            s, b = summary.get(n, {}), before.get(n, {})
            reach = (s.get("reach") or {}).get("0.88") or {}
            rows.append((s.get("label") or b.get("label", n),
                         pct(s.get("final_test_accuracy_mean")),
                         _num(s.get("seconds_per_epoch_mean"), "{:.1f}"),
                         _num(reach.get("epochs_mean"), "{:.0f}") if reach.get("reached")
                         else ("never" if reach else "n/a"),
                         pct(b.get("final_test_accuracy_mean"))))
        lines.append(table(["setting (10 epochs, batch 50, Adam 1e-3 unless stated)",
                            "test accuracy % (this sweep)", "s / epoch", "epochs to 88%",
                            "session-1 sweep %"], rows))
        if sw is not None and summary:
            best = max(summary.items(), key=lambda kv: kv[1]["final_test_accuracy_mean"]
                       if "rec_lra" in kv[0] else -1)
            lines += ["", f"Best rec-LRA setting in this sweep: {best[1].get('label', best[0])} "
                      f"({pct(best[1]['final_test_accuracy_mean'])}%)."]
    return "\n".join(lines), v


def section_resnet_bar(results, root):
    lines = ["## Issue 3: the ResNet bars", "",
             f"Bars: on Fashion-MNIST ResNet-20, rec_lra within "
             f"{RESNET_BAR['rec_lra_gap_to_bp']} points of bp and at least "
             f"{RESNET_BAR['margin_over_fa_dfa']} points above fa and dfa; the ResNet-18 "
             "training step of rec_lra no slower than bp's, each at its faster jit setting."]
    rn = results.get("resnet_accuracy")
    if rn is None:
        v1 = Verdict(UNKNOWN, "resnet_accuracy not run yet")
    else:
        v1 = resnet_bar_verdict(accuracy_summary(rn.data))
    st = results.get("step_time")
    if st is None:
        v2 = Verdict(UNKNOWN, "step_time not run yet")
    else:
        rows = step_rows(st.data)
        models = [m for m in dict.fromkeys(r["model"] for r in rows) if "18" in str(m)]
        v2 = step_time_verdict(rows, models or None)
    lines += ["", v1.render("ResNet-20 accuracy"), "", v2.render("ResNet-18 step time")]
    return "\n".join(lines), (v1, v2)


def section_export(results, root, out_dir):
    lines = ["## Export (SavedModel and ONNX)", ""]
    ex = results.get("export_bench")
    if ex is None:
        return "\n".join(lines + [_not_run("export_bench")]), Verdict(UNKNOWN, "not run yet")
    rows, worst = [], 0.0
    for r in ex.data.get("rows", []):
        for fmt in ("savedmodel", "onnx"):
            f = r.get(fmt)
            if not f:
                continue
            worst = max(worst, f.get("max_abs_diff_probabilities") or 0.0)
            rows.append((r["model"], fmt, _num(f.get("export_seconds")),
                         _num(f.get("verify_seconds")), f"{f['bytes'] / 1e6:.1f}",
                         f"{r['keras_bytes'] / 1e6:.1f}", _num(f.get("bytes_vs_keras"), "{:.3f}"),
                         _num(f.get("bytes_vs_keras_without_optimizer"), "{:.3f}"),
                         _num(f.get("max_abs_diff_logits"), "{:.1e}"),
                         f.get("feedback_weights_found", "?")))
    lines += [ex.label(root), "",
              table(["model", "format", "export s", "verify s", "MB", ".keras MB",
                     "size / .keras", "size / .keras without optimiser", "max |Δ logits|",
                     "feedback weights in artefact"], rows), "", _png(ex, root, out_dir)]
    ok = bool(rows) and worst < 1e-4
    v = Verdict(HOLDS if ok else FAILS,
                f"largest difference of probabilities from Keras {worst:.1e} (parity bar 1e-4)")
    lines += ["", v.render("parity")]
    return "\n".join(lines), v


def section_overhead(results, root):
    lines = ["## Diagnostics overhead", ""]
    d = results.get("diagnostics_overhead")
    if d is None:
        return "\n".join(lines + [_not_run("diagnostics_overhead")]), Verdict(UNKNOWN, "")
    rows = []
    for r in d.data.get("results", []):
        plain = sorted(r.get("fit_seconds_plain") or [])
        diag = sorted(r.get("fit_seconds_with_diagnostics") or [])
        rows.append((f"`{r['rule']}`", r.get("every_n_steps"), r.get("steps"),
                     _num(plain[len(plain) // 2] if plain else None),
                     _num(diag[len(diag) // 2] if diag else None),
                     _num(100 * r["overhead_fit"] if r.get("overhead_fit") is not None
                          else None, "{:.1f}%"),
                     _num(1000 * r["probe_seconds"] if r.get("probe_seconds") else None,
                          "{:.1f}"),
                     _num(1000 * r["step_seconds"] if r.get("step_seconds") else None,
                          "{:.2f}"),
                     _num(100 * r["overhead_steady_state"]
                          if r.get("overhead_steady_state") is not None else None, "{:.1f}%")))
    v = overhead_verdict(d.data.get("results", []))
    lines += [d.label(root), "",
              "Training the MLP with and without `AlignmentDiagnostics` at its default interval. "
              "End-to-end times on this shared machine are noisy (other jobs run alongside); "
              "the steady-state estimate is the median probe time over every_n_steps median "
              "training steps.", "",
              table(["rule", "every n steps", "steps per fit", "plain fit s (median)",
                     "with diagnostics s (median)", "end-to-end overhead", "probe ms",
                     "step ms", "steady-state overhead"], rows), "",
              v.render(f"overhead < {100 * OVERHEAD_BAR:.0f}%")]
    return "\n".join(lines), v


def section_cloud():
    from rlra_tf import data
    from trainers import presets

    lines = ["## CIFAR-10 and ImageNet: running the presets on a GPU/TPU machine", "",
             "These cannot run on this 2-core CPU machine. Data preparation first:", "",
             "- `cifar10` (and `cifar100`): tfds downloads and prepares it on first use; on a "
             "machine without network, prepare it once elsewhere (`tfds build cifar10 "
             "--data_dir=DIR`) and copy `DIR/cifar10/` to the training machine's `--data_dir`.",
             f"- `imagenet2012`: tfds cannot download it. Put {' and '.join(data.IMAGENET_FILES)} "
             "(from image-net.org) in a folder and pass it as `--manual_dir`; tfds prepares "
             "them into `--data_dir` on the first run (hours, about 300 GB).",
             "", "Each preset's own description (`trainers.presets.describe(name)`):"]
    for name in CLOUD_PRESETS:
        if name not in presets.PRESETS:
            continue
        doc = presets.describe(name).strip("\n")
        body = "\n".join("> " + line.strip() if line.strip() else ">" for line in
                         doc.splitlines())
        lines += ["", f"### `{name}`", "", body]
    lines += ["", "Published results to compare with: rec-LRA on CIFAR-10 "
              f"{PUBLISHED['cifar10_rec_lra']}% (one paper quotes 93.88%); backprop ResNet-18 "
              f"on CIFAR-10 with augmentation about {PUBLISHED['cifar10_bp_resnet18']:.0f}%; "
              "ResNet-20 on CIFAR-10 (BioTorch, top-1 error): " + ", ".join(
                  f"{k.upper()} {v}%" for k, v in PUBLISHED["cifar10_resnet20_error"].items())
              + f" ({PUBLISHED_SOURCE})."]
    return "\n".join(lines)


def render(results_dir=RESULTS_DIR, out="BENCHMARKS.md"):
    """The Markdown text of BENCHMARKS.md for the JSON files under `results_dir`."""
    results = load_results(results_dir)
    out_dir = os.path.dirname(os.path.abspath(out))
    root = out_dir
    gen, v_gen = section_generalise(results, root, out_dir)
    conv, v_conv = section_converge(results, root)
    cheap, v_cheap = section_cheaper(results, root, out_dir)
    align, v_align = section_alignment(results, root, out_dir)
    bar2, v_bar2 = section_mlp_bar(results, root)
    bar3, v_bar3 = section_resnet_bar(results, root)
    export, v_export = section_export(results, root, out_dir)
    overhead, v_overhead = section_overhead(results, root)
    claims = [("Generalises as well as backprop: MLP", v_gen[0]),
              ("Generalises as well as backprop: ResNet-20", v_gen[1]),
              ("Converges sooner (epochs)", v_conv[0]),
              ("Converges sooner (wall-clock)", v_conv[1])]
    claims += [("Cheaper updates: step time rec_lra <= bp", v_cheap[0]),
               ("Parallelisable updates: chain length", v_cheap[1])]
    claims += [("Alignment: rec_lra's updates are descent directions", v_align[0]),
               ("Issue 2: MLP bar", v_bar2), ("Issue 3: ResNet-20 accuracy bar", v_bar3[0]),
               ("Issue 3: ResNet-18 step-time bar", v_bar3[1]),
               ("Export parity", v_export), ("Diagnostics overhead < 10%", v_overhead)]
    parts = [section_header(results, root, results_dir), section_summary(claims), gen, conv,
             cheap, align, bar2, bar3, export, overhead, section_cloud()]
    return "\n\n".join(parts).rstrip() + "\n"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=RESULTS_DIR, help="Folder of the JSON results.")
    parser.add_argument("--out", default="BENCHMARKS.md", help="The Markdown file to write.")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.results):
        parser.error(f"--results={args.results!r} is not a folder")
    text = render(args.results, args.out)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"Wrote {args.out} ({len(text.splitlines())} lines) at "
          f"{time.strftime('%H:%M:%S')} on {platform.node() or 'this machine'}")


if __name__ == "__main__":
    main()
