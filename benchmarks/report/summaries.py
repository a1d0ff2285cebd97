"""What the report computes from the runs in a result file, before any bar is applied.

The benchmark scripts write runs and measurements; every number derived from them (means over
seeds, ratios to backprop, gaps, the mirror's share, which runs were trained alike) is
computed here, once, and the sections and the verdicts take it from here.
"""

import math

from benchmarks import curves, variants

# Trainer config fields that do not change what a run learns: two runs that differ only in
# these (and in the rule and its parameters) were "trained with the same hyper-parameters".
BOOKKEEPING = (
    "rule", "seed", "deterministic", "strategy", "tpu_address", "jit_compile",
    "diagnostics_every", "data_dir", "manual_dir", "eval_limit", "backup_every",
    "steps_per_execution",
)


# ------------------------------------------------------------------------------ accuracy runs


def accuracy_summary(data, thresholds=curves.THRESHOLDS, key="rule"):
    """`{rule: summary}` (`benchmarks.curves.summarize`) of an accuracy file's runs."""
    return curves.summarize(data["runs"], thresholds, key)


def final_accuracy(summary, name):
    """The mean final test accuracy of `name` in `summary` (None if absent)."""
    return summary[name]["final_test_accuracy_mean"] if name in summary else None


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def hyper_parameters(config):
    """The fields of a trainer config that set the training run (not the rule, not the
    bookkeeping)."""
    rule_params = variants.rule_params()
    return tuple(k for k in config if k not in rule_params and k not in BOOKKEEPING)


def config_differences(a, b, keys):
    """`["key A vs B", ...]` for the `keys` in which configs `a` and `b` differ; a key that one
    of them does not record is a difference too."""
    out = []
    for k in keys:
        if k in a and k in b:
            if not same(a[k], b[k]):
                out.append(f"{k} {a[k]} vs {b[k]}")
        elif k in a or k in b:
            out.append(f"{k} recorded by one run only")
    return out


def hyper_parameter_differences(data, first="bp", second="rec_lra"):
    """Where `first`'s and `second`'s runs in `data` were not trained alike: for each seed both
    have, the hyper-parameters their configs differ in (`["seed 0: learning_rate 0.05 vs
    0.1"]`); empty when they agree."""
    by = {(r["rule"], r["seed"]): r["config"] for r in data["runs"]}
    out = []
    for (name, seed), config in by.items():
        other = by.get((second, seed))
        if name == first and other is not None:
            keys = tuple(dict.fromkeys(hyper_parameters(config) + hyper_parameters(other)))
            out += [f"seed {seed}: {d}" for d in config_differences(config, other, keys)]
    return out


def bar_conditions(data, names, bar):
    """What keeps `data` (an accuracy file) from measuring `bar` as it is stated: a list of
    reasons, empty when nothing does.

    Checked: every entry of `bar["budget"]` against the file's budget, every entry of
    `bar["config"]` against each run's trainer config, and at least `bar["seeds"]` seeds for
    each of `names` that the file has.
    """
    problems = []
    for key, want in (bar.get("budget") or {}).items():
        got = data["budget"].get(key)
        if not same(got, want):
            problems.append(f"{key.replace('_', ' ')} {got} (the bar's: {want})")
    for name in names:
        seeds = sorted({r["seed"] for r in data["runs"] if r["rule"] == name})
        if seeds and bar.get("seeds") and len(seeds) < bar["seeds"]:
            problems.append(f"{name} has {len(seeds)} seed{'s' if len(seeds) != 1 else ''} of "
                            f"the {bar['seeds']} the bar asks for")
    for key, want in (bar.get("config") or {}).items():
        got = sorted({str(r["config"][key]) for r in data["runs"]
                      if not same(r["config"][key], want)})
        if got:
            problems.append(f"{key} {', '.join(got)} (the bar's: {want})")
    return problems


def rule_settings(config, reference):
    """`"k=v, ..."`: the rule parameters of `config` that differ from `reference` (a rec_lra
    run's config), "—" for none."""
    params = variants.rule_params()
    changed = [f"{k}={config[k]}" for k in config
               if k in params and not same(config[k], reference.get(k))]
    return ", ".join(changed) or "—"


def matching_run(runs, name, seed, config):
    """`name`'s run of `seed` among `runs` trained with the hyper-parameters of `config`."""
    for r in runs:
        if r["rule"] == name and r["seed"] == seed and not config_differences(
                r["config"], config, hyper_parameters(config)):
            return r
    return None


def precision_pairs(mixed, float32, rules):
    """Each run of `rules` in `mixed` (an accuracy file trained under a mixed-precision policy)
    beside the float32 run of the same rule and seed in `float32`.

    A list of `{"rule", "seed", "policy", "accuracy", "float32_accuracy" (None without such a
    run), "differences"}`: `differences` lists the settings, other than the policy, in which
    the two runs' configs differ (rule parameters included).
    """
    reference = {(r["rule"], r["seed"]): r for r in float32["runs"]
                 if r["config"]["mixed_precision"] == "off"}
    pairs = []
    for r in mixed["runs"]:
        if r["rule"] not in rules:
            continue
        ref = reference.get((r["rule"], r["seed"]))
        keys = tuple(k for k in r["config"] if k not in BOOKKEEPING and k != "mixed_precision")
        pairs.append({
            "rule": r["rule"], "seed": r["seed"], "policy": r["config"]["mixed_precision"],
            "accuracy": r["final_test_accuracy"],
            "float32_accuracy": ref["final_test_accuracy"] if ref else None,
            "differences": config_differences(r["config"], ref["config"], keys) if ref else [],
        })
    return pairs


def depth_of(model):
    """`56` from `"resnet56"`."""
    return int(model.removeprefix("resnet"))


def depth_label(model):
    """`"ResNet-56"` from `"resnet56"`."""
    return model.replace("resnet", "ResNet-")


def depth_gaps(summaries):
    """`{rule: {model: bp's mean final test accuracy minus the rule's, in points}}` (bp's own
    entry is 0) from `{model: accuracy summary}`; a depth without bp gives no gaps."""
    gaps = {}
    for model, summary in summaries.items():
        if "bp" not in summary:
            continue
        bp = summary["bp"]["final_test_accuracy_mean"]
        for rule, s in summary.items():
            # Rounded so that a gap exactly at a bar is not pushed over it by float error.
            gaps.setdefault(rule, {})[model] = round(100 * (bp - s["final_test_accuracy_mean"]), 9)
    return gaps


# --------------------------------------------------------------------------------- step times


def step_rows(data):
    """One row per timed configuration of a step-time file: model, rule (`forward` is the
    forward pass alone), jit ("on"/"off"), batch_size, step_ms (median wall), cpu_ms and
    mean_cpu_ms (median and mean process CPU), peak_mb (the timed steps' peak resident memory),
    forward_ms (the forward row of the same model and jit), step_per_forward, ratio_to_bp,
    cpu_ratio_to_bp and mean_cpu_ratio_to_bp (bp at the same jit), and for rec_lra
    mirror_share: the share of its mean CPU time that `rec_lra-fixed_synapses` (no mirror)
    saves."""
    rows = [{"model": r["model"], "rule": r["rule"], "jit": "on" if r["jit_compile"] else "off",
             "batch_size": r["batch_size"], "step_ms": 1000 * r["median_step_seconds"],
             "cpu_ms": 1000 * r["median_cpu_seconds"], "mean_cpu_ms": 1000 * r["mean_cpu_seconds"],
             "peak_mb": r["step_peak_rss_mb"]} for r in data["results"]]
    index = {(r["model"], r["jit"], r["rule"]): r for r in rows}
    for r in rows:
        fwd = index.get((r["model"], r["jit"], "forward"))
        bp = index.get((r["model"], r["jit"], "bp"))
        fixed = index.get((r["model"], r["jit"], "rec_lra-fixed_synapses"))
        r["forward_ms"] = fwd["step_ms"] if fwd else None
        r["step_per_forward"] = r["step_ms"] / fwd["step_ms"] if fwd else None
        for key, ratio in (("step_ms", "ratio_to_bp"), ("cpu_ms", "cpu_ratio_to_bp"),
                           ("mean_cpu_ms", "mean_cpu_ratio_to_bp")):
            r[ratio] = r[key] / bp[key] if bp else None
        r["mirror_share"] = (1.0 - fixed["mean_cpu_ms"] / r["mean_cpu_ms"]
                             if r["rule"] == "rec_lra" and fixed else None)
    return rows


def best_step_times(rows, key="step_ms"):
    """`{(model, rule): (time, jit)}` at each rule's faster jit setting (by `key`)."""
    best = {}
    for r in rows:
        k = (r["model"], r["rule"])
        if k not in best or r[key] < best[k][0]:
            best[k] = (r[key], r["jit"])
    return best


def chains(rows, rule):
    """`[(model, rule's chain ops, bp's chain ops)]` of the ResNets with both, shallow first."""
    by = {(r["model"], r["rule"]): r for r in rows if r["family"] == "resnet"}
    models = sorted({m for m, _ in by}, key=lambda m: by.get((m, "bp"), {}).get("units", 0))
    return [(m, by[(m, rule)]["chain_ops"], by[(m, "bp")]["chain_ops"]) for m in models
            if (m, rule) in by and (m, "bp") in by]


# ------------------------------------------------------------------------------------ alignment

ALIGNED_KEY = "steps_until_all_synapses_within_20deg"  # alignment.angles', per rule
MIRROR_RULES = ("rec_lra", "wm")  # the rules whose synapses follow the weight mirror


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _at(series, index):
    """`{name: value at probe index}` of `{name: [value per probe]}` (None values dropped)."""
    return {name: values[index] for name, values in series.items()
            if values and values[index] is not None}


def alignment_rows(rules):
    """Per rule of an alignment file (`rules`): `{"rule", "test_accuracy", "last_step",
    "first_angle", "last_angle"` (mean over the hidden units of the angle between the rule's
    update and backprop's gradient, first and last probe), `"synapses"`, `"first_fw"`,
    `"last_fw"` (mean angle between each error synapse and its forward kernel, projections'
    included, first and last probe), `"worst_fw"`, `"worst_synapse"` (the largest at the last
    probe), `"aligned_at"` (the first step from which every synapse stays within 20 degrees,
    or None), `"mirror"` (whether the rule's synapses follow the mirror)}`."""
    rows = []
    for rule, r in rules.items():
        synapses = {k: v for k, v in r["synapse_angle"].items()
                    if any(x is not None for x in v)}
        last = _at(synapses, -1)
        worst = max(last.items(), key=lambda kv: kv[1]) if last else (None, None)
        rows.append({
            "rule": rule, "test_accuracy": r["test_accuracy"], "last_step": r["steps"][-1],
            "first_angle": r["first_angle_hidden_mean"],
            "last_angle": r["final_angle_hidden_mean"],
            "synapses": len(synapses), "first_fw": _mean(_at(synapses, 0).values()),
            "last_fw": _mean(last.values()), "worst_synapse": worst[0], "worst_fw": worst[1],
            "aligned_at": r[ALIGNED_KEY], "mirror": rule in MIRROR_RULES,
        })
    return rows


# ---------------------------------------------------------------------------------------- peers

LIBRARIES = ("rlra_tf", "biotorch")
# Step-time ratios reported (ours, theirs): the same rule, and our local rules against
# BioTorch's fa and its sign-symmetric usf.
PEER_PAIRS = (("bp", "bp"), ("fa", "fa"), ("dfa", "dfa"), ("rec_lra", "fa"), ("rec_lra", "usf"),
              ("wm", "fa"), ("wm", "usf"))


def peer_summaries(runs):
    """`{library: {rule: curves.summarize entry + "gap_to_bp"}}` (`gap_to_bp`: the library's bp
    mean minus the rule's, a fraction; positive = behind backprop)."""
    out = {}
    for library in LIBRARIES:
        lib_runs = [r for r in runs if r["library"] == library]
        if not lib_runs:
            continue
        s = curves.summarize(lib_runs)
        bp = s["bp"]["final_test_accuracy_mean"] if "bp" in s else None
        for entry in s.values():
            entry["gap_to_bp"] = None if bp is None else bp - entry["final_test_accuracy_mean"]
        out[library] = s
    return out


def step_ratios(rows):
    """Ours / theirs (median wall and CPU seconds per step) for every pair of `PEER_PAIRS`, at
    every thread count where both were timed."""
    by = {(r["library"], r["rule"], r["threads"]): r for r in rows}
    out = []
    for threads in sorted({r["threads"] for r in rows}):
        for ours, theirs in PEER_PAIRS:
            a, b = by.get(("rlra_tf", ours, threads)), by.get(("biotorch", theirs, threads))
            if a and b:
                out.append({
                    "threads": threads, "rlra_tf": ours, "biotorch": theirs,
                    "rlra_tf_seconds": a["median_step_seconds"],
                    "biotorch_seconds": b["median_step_seconds"],
                    "ratio": a["median_step_seconds"] / b["median_step_seconds"],
                    "cpu_ratio": a["median_cpu_seconds"] / b["median_cpu_seconds"],
                })
    return out
