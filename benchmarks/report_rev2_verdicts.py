"""The verdicts of the revision-2 issue and of issue 12 (mixed precision), and their summaries.

The bars themselves stand with the other issues' in `benchmarks.report_verdicts`
(`REV2_RESNET_BAR`, `REV2_MLP_BAR`, `REV2_SGD_BAR`, `STEP_COST_BAR`, `MIXED_PRECISION_BAR`,
`FLOAT16_MAX`). The verdict functions here are pure, summaries in and `Verdict` out:

    rev2_resnet_verdict      ResNet-20, Adam, 3 seeds: rec_lra within 1.0 of bp, 10 above fa/dfa
    rev2_mlp_verdict         MLP: rec_lra within 0.3 of bp
    sgd_recipe_verdict       the preset's SGD recipe: rec_lra within 1.5 of bp, same settings
    step_cost_verdict        ResNet-18, jit off: rec_lra/bp CPU time <= 1.05
    mixed_precision_verdict  issue 12: each rule under mixed_bfloat16 within 0.5 of float32
    float16_headroom_verdict issue 12: errors, displacements, pre-activations below 65,504

The summaries they take, made here from a benchmark's JSON: `bar_conditions` (what keeps a
result file from measuring a bar as the issue states it: its budget, model or seeds, runs made
before revision 2), `hyper_parameter_differences` (were two rules trained alike?) and
`precision_pairs` (each mixed-precision run beside the float32 run of the same rule and seed);
`step_cost_verdict` takes `report_verdicts.step_rows` and `step_conditions` (a step_time file
from before revision 2). A bar measured off its stated conditions is "not measured", with what
was measured in its text (`qualified`, which the scale issue's verdicts use too).
"""

import math

from benchmarks.report_common import pct
from benchmarks.report_verdicts import (
    FAILS,
    FLOAT16_MAX,
    HOLDS,
    MIXED_PRECISION_BAR,
    REV2_MLP_BAR,
    REV2_RESNET_BAR,
    REV2_SGD_BAR,
    STEP_COST_BAR,
    UNKNOWN,
    Verdict,
    final_accuracy,
    generalisation_verdict,
    resnet_bar_verdict,
)
from trainers.presets import FIELDS, RULE_PARAMS

# The trainer `Config` fields two runs must share to be "trained with the same
# hyper-parameters": all but the rule, its parameters (`RULE_PARAMS`), the seed and
# bookkeeping (paths, strategy, jit, backups, diagnostics, evaluation). One rule under two
# policies must share its parameters too.
_NOT_HYPER_PARAMETERS = (
    "rule", "seed", "deterministic", "strategy", "tpu_address", "jit_compile",
    "diagnostics_every", "data_dir", "manual_dir", "eval_limit", "backup_every",
    "steps_per_execution",
)
HYPER_PARAMETERS = tuple(f for f in FIELDS if f not in RULE_PARAMS + _NOT_HYPER_PARAMETERS)
# `synapse_update` (and the mirror's options) came with revision 2: a config without it is older.
REVISION2_FIELD = "synapse_update"


def run_name(run):
    """A run record's rule or variant name (`variant` in accuracy.py's JSON, `rule` in
    resnet_accuracy.py's)."""
    return run.get("variant") or run.get("rule")


def _runs(data):
    return [r for r in (data or {}).get("runs") or [] if isinstance(r, dict) and run_name(r)]


def _same(got, want):
    if isinstance(got, (int, float)) and isinstance(want, (int, float)) \
            and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def bar_conditions(data, names, bar):
    """What keeps `data` (an accuracy benchmark's JSON) from measuring `bar` as the issue states
    it: a list of reasons, empty when nothing does.

    Checked: every entry of `bar["budget"]` against the file's `budget` (a dict), every entry
    of `bar["config"]` against each run's trainer config, at least `bar["seeds"]` seeds for each
    of `names` that the file has, and that the runs were made with revision 2's rules (their
    configs record `synapse_update`, which came with it).
    """
    problems = []
    budget = (data or {}).get("budget")
    budget = budget if isinstance(budget, dict) else {}
    for key, want in (bar.get("budget") or {}).items():
        got = budget.get(key)
        if not _same(got, want):
            problems.append(f"{key.replace('_', ' ')} {got if got is not None else 'not recorded'}"
                            f" (the bar's: {want})")
    runs = _runs(data)
    for name in names:
        seeds = sorted({r.get("seed") for r in runs if run_name(r) == name})
        if seeds and bar.get("seeds") and len(seeds) < bar["seeds"]:
            problems.append(f"{name} has {len(seeds)} seed{'s' if len(seeds) != 1 else ''} of "
                            f"the {bar['seeds']} the bar asks for")
    configs = [r["config"] for r in runs if isinstance(r.get("config"), dict)]
    for key, want in (bar.get("config") or {}).items():
        got = sorted({str(c.get(key)) for c in configs if not _same(c.get(key), want)})
        if got:
            problems.append(f"{key} {', '.join(got)} (the bar's: {want})")
    if configs and not any(REVISION2_FIELD in c for c in configs):
        problems.append(f"the runs predate revision 2 (no {REVISION2_FIELD} in their configs)")
    return problems


def step_conditions(rows):
    """What keeps `step_rows` from measuring the revision-2 step cost: a file from
    step_time.py before revision 2 (no mean CPU times, no wm or rec_lra_nomirror rows; its
    rec_lra is the rule before revision 2). A list of reasons, empty when nothing does."""
    if not rows or any(r.get("mean_cpu_ms") is not None for r in rows) \
            or any(r["rule"] in ("wm", "rec_lra_nomirror") for r in rows):
        return []
    return ["the file predates revision 2's step_time.py (no mean CPU times, no wm or "
            "rec_lra_nomirror rows), so its rec_lra is the rule before revision 2"]


# Config fields added after runs of record were made, with the value a run that predates the
# field had: recorded by one run only at this value (or None: not the rule's option), they
# are no difference.
ADDED_LATER = {"mixed_precision": "off", "mirror_normalise": "positions",
               "mirror_warm_start": False}


def config_differences(a, b, keys):
    """`["key: A vs B", ...]` for the `keys` in which configs `a` and `b` differ; a key that
    only one of them records counts as a difference, unless it is one of `ADDED_LATER` at the
    value runs had before it existed."""
    out = []
    for k in keys:
        if k in a and k in b:
            if not _same(a[k], b[k]):
                out.append(f"{k} {a[k]} vs {b[k]}")
        elif k in a or k in b:
            value = a[k] if k in a else b[k]
            if not (k in ADDED_LATER and value in (ADDED_LATER[k], None)):
                out.append(f"{k} recorded by one run only")
    return out


def hyper_parameter_differences(data, first="bp", second="rec_lra"):
    """Where `first`'s and `second`'s runs in `data` were not trained alike: for each seed both
    have, the `HYPER_PARAMETERS` their configs differ in (`["seed 0: learning_rate 0.05 vs
    0.1"]`); empty when they agree or the runs record no configs."""
    by = {(run_name(r), r.get("seed")): r.get("config") for r in _runs(data)}
    out = []
    for (name, seed), config in by.items():
        other = by.get((second, seed))
        if name == first and isinstance(config, dict) and isinstance(other, dict):
            out += [f"seed {seed}: {d}"
                    for d in config_differences(config, other, HYPER_PARAMETERS)]
    return out


def precision_pairs(mixed, float32, rules=MIXED_PRECISION_BAR["rules"]):
    """Each run of `rules` in `mixed` (an accuracy JSON trained under a mixed-precision policy)
    beside the float32 run of the same rule and seed in `float32` (the same benchmark's JSON).

    A list of `{"rule", "seed", "policy" (the mixed run's `mixed_precision`), "accuracy",
    "float32_accuracy" (None without such a run), "differences"}`: `differences` lists the
    settings, other than the policy, in which the two runs' configs differ (rule parameters
    included, so a float32 run from before revision 2 does not pass for the same rule).
    """
    reference = {}
    for r in _runs(float32):
        config = r.get("config") if isinstance(r.get("config"), dict) else {}
        if config.get("mixed_precision", "off") == "off":
            reference[(run_name(r), r.get("seed"))] = r
    keys = tuple(k for k in HYPER_PARAMETERS if k != "mixed_precision") + RULE_PARAMS
    pairs = []
    for r in _runs(mixed):
        name = run_name(r)
        if name not in rules:
            continue
        config = r.get("config") if isinstance(r.get("config"), dict) else {}
        ref = reference.get((name, r.get("seed")))
        ref_config = (ref or {}).get("config") if isinstance((ref or {}).get("config"),
                                                              dict) else {}
        pairs.append({
            "rule": name, "seed": r.get("seed"),
            "policy": config.get("mixed_precision", "not recorded"),
            "accuracy": r.get("final_test_accuracy"),
            "float32_accuracy": ref.get("final_test_accuracy") if ref else None,
            "differences": config_differences(config, ref_config, keys) if ref else [],
        })
    return pairs


def qualified(verdict, problems):
    """`verdict`, or "not measured" with `verdict`'s text when `problems` keep the result from
    measuring the bar as stated."""
    if not problems or verdict.status == UNKNOWN:
        return verdict
    return Verdict(UNKNOWN, "Not measured as the bar states it: " + "; ".join(problems)
                   + f". What was measured ({verdict.status} on these numbers): "
                   + verdict.text)


def _beside(summary, name, rec="rec_lra"):
    """`"; wm 85.10% (rec_lra - wm = +0.30 points, reported beside the bar)"` or
    `"; wm not measured"`."""
    acc, ref = final_accuracy(summary, name), final_accuracy(summary, rec)
    if acc is None or ref is None:
        return f"; {name} not measured"
    return (f"; {name} {pct(acc)}% ({rec} - {name} = {100 * (ref - acc):+.2f} points, reported "
            "beside the bar)")


def rev2_resnet_verdict(summary, problems=(), bar=REV2_RESNET_BAR):
    """Revision 2, ResNet-20 at the Adam budget over 3 seeds: rec_lra's mean within 1.0 point
    of bp's and at least 10 points above fa's and dfa's; wm reported beside. `problems`:
    `bar_conditions` of the file."""
    v = resnet_bar_verdict(summary, bar)
    if v.status == UNKNOWN:
        return v
    text = v.text.rstrip(".") + _beside(summary, "wm") + " (means over seeds)."
    return qualified(Verdict(v.status, text), problems)


def rev2_mlp_verdict(summary, problems=(), bar=REV2_MLP_BAR):
    """Revision 2, MLP: rec_lra's mean within 0.3 points of bp's (or above it); wm reported
    beside."""
    v = generalisation_verdict(summary, bar["rec_lra_gap_to_bp"], "MLP")
    if v.status == UNKNOWN:
        return v
    return qualified(Verdict(v.status, v.text.rstrip(".") + _beside(summary, "wm") + "."),
                      problems)


def sgd_recipe_verdict(summary, problems=(), bar=REV2_SGD_BAR):
    """Revision 2, the fmnist_resnet20 preset's recipe (SGD 0.05, weight decay 5e-4) at the
    reduced budget: rec_lra's mean within 1.5 points of bp's, both trained with the same
    hyper-parameters (`problems`: `bar_conditions` and `hyper_parameter_differences`)."""
    v = generalisation_verdict(summary, bar["rec_lra_gap_to_bp"], "ResNet-20, SGD recipe")
    return qualified(v, problems)


def step_cost_verdict(rows, problems=(), bar=STEP_COST_BAR):
    """Revision 2, step cost: on ResNet-18 at jit off, rec_lra's CPU time per step over bp's at
    most 1.05 (the ratio of the means over the timed steps where the file has them, else of the
    medians). Reported beside: rec_lra_every4's ratio, the mirror's share of rec_lra's CPU time
    and the peak memory of the timed steps, rec_lra against bp. `rows`: `step_rows`;
    `problems`: `step_conditions`."""
    sub = {r["rule"]: r for r in rows if r["model"] == bar["model"] and r["jit"] == bar["jit"]}
    rec, bp = sub.get("rec_lra"), sub.get("bp")
    where = f"{bar['model']}, jit {bar['jit']}"
    if not rec or not bp:
        return Verdict(UNKNOWN, f"step_time.json has no rec_lra and bp rows for {where}.")
    key = "mean_cpu_ratio_to_bp" if rec.get("mean_cpu_ratio_to_bp") is not None \
        else "cpu_ratio_to_bp"
    which = "means" if key == "mean_cpu_ratio_to_bp" else "medians"
    ratio = rec.get(key)
    if ratio is None:
        return Verdict(UNKNOWN, f"no CPU times of rec_lra and bp for {where}.")
    ok = ratio <= bar["max_cpu_ratio"]
    parts = [f"{where}: rec_lra/bp CPU time per step {ratio:.3f} (ratio of the {which}; bar "
             f"<= {bar['max_cpu_ratio']:.2f})"]
    every4 = sub.get("rec_lra_every4")
    if every4 and every4.get(key) is not None:
        parts.append(f"rec_lra_every4 (mirror every 4 steps) {every4[key]:.3f}")
    else:
        parts.append("rec_lra_every4 not measured")
    share = rec.get("mirror_share")
    parts.append(f"the mirror's share of rec_lra's CPU time {100 * share:.1f}%" if share
                 is not None else "the mirror's share not measured (no rec_lra_nomirror row)")
    if rec.get("step_peak_mb") and bp.get("step_peak_mb"):
        parts.append(f"peak memory of the timed steps rec_lra {rec['step_peak_mb']:.0f} MiB vs "
                     f"bp {bp['step_peak_mb']:.0f} MiB "
                     f"({rec['step_peak_mb'] / bp['step_peak_mb']:.2f}x)")
    else:
        parts.append("peak memory of the timed steps not recorded")
    return qualified(Verdict(HOLDS if ok else FAILS, "; ".join(parts) + "."), problems)


def mixed_precision_verdict(pairs, what, bar=MIXED_PRECISION_BAR, policy="bfloat16"):
    """Issue 12: under the `policy` (the trainer's `--mixed_precision`), each of `bar["rules"]`
    within `bar["max_gap_to_float32"]` points of the same rule's float32 run of the same seed
    (either side: "within"). `pairs`: `precision_pairs`. Not measured when a rule has no run,
    a run has no float32 counterpart, or the two differ in more than the policy."""
    problems, parts, statuses = [], [], []
    for rule in bar["rules"]:
        mine = [p for p in pairs if p["rule"] == rule]
        if not mine:
            problems.append(f"no {rule} run under mixed precision")
        for p in mine:
            label = f"{rule} seed {p['seed']}"
            if p["policy"] != policy:
                problems.append(f"{label} ran under {p['policy']} (the bar's: {policy})")
            if p["float32_accuracy"] is None or p["accuracy"] is None:
                problems.append(f"{label} has no float32 run of the same seed")
                continue
            if p["differences"]:
                problems.append(f"{label} differs from its float32 run in "
                                + ", ".join(p["differences"]))
            gap = 100 * (p["accuracy"] - p["float32_accuracy"])
            statuses.append(abs(gap) <= bar["max_gap_to_float32"])
            parts.append(f"{label}: {pct(p['accuracy'])}% vs {pct(p['float32_accuracy'])}% in "
                         f"float32 ({gap:+.2f} points)")
    text = f"{what}: " + ("; ".join(parts) if parts else "nothing to compare") + (
        f" (bar: within {bar['max_gap_to_float32']} points).")
    if not statuses:
        return Verdict(UNKNOWN, text + (" " + "; ".join(problems) + "." if problems else ""))
    return qualified(Verdict(HOLDS if all(statuses) else FAILS, text), problems)


def float16_headroom_verdict(headroom, fmax=FLOAT16_MAX):
    """Issue 12: under mixed_float16 every unit's error `e`, the displacement its synapse makes
    of it and its pre-activations `h` are finite and below float16's largest value (65,504).
    `headroom`: mixed_precision.json's `float16_headroom` (`{unit: {"max_abs_error",
    "max_abs_displacement", "max_abs_pre_activation", "finite"}}`)."""
    units = {u: m for u, m in (headroom or {}).items() if isinstance(m, dict)}
    if not units:
        return Verdict(UNKNOWN, "mixed_precision.json has no float16 headroom.")
    parts, ok = [], True
    for key, label in (("max_abs_error", "|e|"), ("max_abs_displacement", "|F e|"),
                       ("max_abs_pre_activation", "|h|")):
        values = {u: m.get(key) for u, m in units.items() if m.get(key) is not None}
        if not values:
            parts.append(f"largest {label} not recorded")
            ok = False
            continue
        unit, top = max(values.items(), key=lambda kv: kv[1]
                        if math.isfinite(kv[1]) else math.inf)
        ok = ok and math.isfinite(top) and top < fmax
        parts.append(f"largest {label} {top:.3g} ({unit})")
    bad = [u for u, m in units.items() if m.get("finite") is False]
    if bad:
        ok = False
        parts.append("non-finite values in " + ", ".join(bad))
    return Verdict(HOLDS if ok else FAILS, "; ".join(parts) + f", against float16's largest "
                   f"finite value {fmax:,.0f} ({len(units)} unit{'s' if len(units) != 1 else ''})"
                   ".")
