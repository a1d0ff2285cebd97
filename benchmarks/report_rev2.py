"""The report's section on revision 2 of rec-LRA: "Revision 2: rec-LRA on ResNets".

Renders, against the bars of the revision-2 issue (`benchmarks.report_verdicts.REV2_*`,
`STEP_COST_BAR`): ResNet-20 at the Adam budget over 3 seeds with every rule
(`resnet_accuracy`), the ablation of the default (`resnet_ablation`: each revision-2 change
removed in turn, and the first reconstruction), the fmnist_resnet20 preset's SGD recipe
(`resnet_sgd`), the step cost on ResNet-18 with and without the mirror (`step_time`) and the
MLP (`accuracy_mlp`). `section_rev2` returns the Markdown and the verdicts
(`benchmarks.report_rev2_verdicts`) by bar.
"""

from benchmarks.report_common import (
    budget_text,
    mean_spread,
    not_run,
    num,
    ordered,
    pct,
    png_link,
    table,
)
from benchmarks.report_rev2_verdicts import (
    HYPER_PARAMETERS,
    bar_conditions,
    config_differences,
    hyper_parameter_differences,
    rev2_mlp_verdict,
    rev2_resnet_verdict,
    run_name,
    sgd_recipe_verdict,
    step_conditions,
    step_cost_verdict,
)
from benchmarks.report_verdicts import (
    REV2_MLP_BAR,
    REV2_RESNET_BAR,
    REV2_SGD_BAR,
    STEP_COST_BAR,
    UNKNOWN,
    Verdict,
    accuracy_summary,
    final_accuracy,
    step_rows,
)

# What each variant of benchmarks/resnet_accuracy.py's ablation takes away from the default
# (its VARIANTS say the settings; the file's budget records them).
ABLATION = {
    "rec_lra": "nothing: the revision-2 default",
    "rec_lra-no_mirror": "the weight mirror: F follows dF = gamma dW, so it stays as random as "
                         "it started",
    "rec_lra-no_through": "errors through the unit's BatchNorm",
    "rec_lra-raw_errors": "beta-scaled error units (e = z - t)",
    "rec_lra-skip_synapses": "the adjacent path to block outputs: targets from the output "
                             "error through fixed skip synapses (feedback=\"skip\")",
    "rec_lra-first": "all of revision 2: the first reconstruction (skip synapses, raw errors, "
                     "nothing through BatchNorm, dF = gamma dW)",
}
# The step-cost table's rows, in this order.
STEP_COST_RULES = ("bp", "fa", "wm", "rec_lra", "rec_lra_every4", "rec_lra_nomirror")


def rule_table(summary, reference="bp"):
    """Every rule of an accuracy summary: mean ± std [min, max], the seeds, the difference of
    means to `reference` and seconds per epoch."""
    ref = final_accuracy(summary, reference)
    rows = []
    for n in ordered(summary):
        s = summary[n]
        acc = s.get("final_test_accuracy_mean")
        rows.append((f"`{n}`", mean_spread(s), ", ".join(str(x) for x in s.get("seeds") or []),
                     "—" if n == reference or ref is None or acc is None
                     else f"{100 * (acc - ref):+.2f}",
                     num(s.get("seconds_per_epoch_mean"), "{:.1f}")))
    return table(["rule", "test accuracy % (mean ± std [min, max])", "seeds",
                  f"vs {reference} (points)", "s / epoch"], rows)


def _accuracy_part(source, root, out_dir, name, heading, verdict_fn, bar, extra_problems=None,
                   png=True):
    """A heading, the source, budget and rule table of an accuracy benchmark (and its PNG), and
    its bar's verdict (`verdict_fn(summary, problems)`)."""
    lines = ["", f"### {heading}"]
    if source is None:
        return lines + ["", not_run(name)], Verdict(UNKNOWN, f"{name} not run yet.")
    summary = accuracy_summary(source.data)
    problems = bar_conditions(source.data, ("bp", "rec_lra", "fa", "dfa"), bar)
    problems += (extra_problems or (lambda data: []))(source.data)
    lines += ["", source.label(root), ""]
    if source.data.get("budget"):
        lines += [f"Budget: {budget_text(source.data['budget'])}.", ""]
    image = png_link(source, root, out_dir) if png else ""
    lines += [rule_table(summary)] + (["", image] if image else [])
    v = verdict_fn(summary, problems)
    return lines + ["", v.render("revision-2 bar")], v


def _ablation_part(results, root):
    lines = ["", "### Ablation: the default with each revision-2 change removed"]
    ab = results.get("resnet_ablation")
    if ab is None:
        return lines + ["", not_run("resnet_ablation")]
    summary = accuracy_summary(ab.data)
    configs = {run_name(r): r.get("config") for r in ab.data.get("runs") or []
               if isinstance(r.get("config"), dict)}
    default_config = {**_rec_lra_defaults(), **(configs.get("rec_lra") or {})}
    settings = (ab.data.get("budget") or {}).get("ablations") or {}  # files without configs
    default = final_accuracy(summary, "rec_lra")
    rows = []
    for n in ordered(summary):
        acc = final_accuracy(summary, n)
        rows.append((f"`{n}`", ABLATION.get(n, "see benchmarks/resnet_accuracy.py"),
                     settings_changed(configs.get(n), default_config) if n in configs
                     else ", ".join(f"{k}={v}" for k, v in (settings.get(n) or {}).items())
                     or "—",
                     pct(acc), "—" if n == "rec_lra" or default is None or acc is None
                     else f"{100 * (acc - default):+.2f}"))
    lines += ["", ab.label(root), "",
              f"Budget: {budget_text(ab.data.get('budget', '?'))}.", "",
              table(["variant", "what is removed", "settings changed", "test accuracy %",
                     "vs the default (points)"], rows)]
    notes = []
    seeds = sorted({s for x in summary.values() for s in x.get("seeds") or []})
    if seeds:
        notes.append(f"Seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}.")
    spread = ((results.get("resnet_accuracy") and accuracy_summary(
        results["resnet_accuracy"].data).get("rec_lra")) or {}).get("final_test_accuracy_std")
    if spread is not None:
        notes.append(f"For scale: rec_lra's standard deviation over seeds in the ResNet-20 table "
                     f"above is {100 * spread:.2f} points.")
    bp = _reference_run(results.get("resnet_accuracy"), ab, "bp")
    if bp is not None:
        notes.append(f"bp's run of the same seed and budget (resnet_accuracy.json): "
                     f"{pct(bp['final_test_accuracy'])}%.")
    return lines + (["", " ".join(notes)] if notes else [])


# Mirror settings tried beyond the default: file -> (its heading, the file with its bp runs).
MIRROR_SETTINGS = {
    "resnet_sgd_mirror": ("the preset's SGD recipe", "resnet_sgd"),
    "resnet_mirror_options": ("Adam", "resnet_accuracy"),
}


def _rec_lra_defaults():
    """RecLRA's default parameters (for runs recorded before a parameter existed)."""
    from rlra_tf.rules import RecLRA

    return RecLRA().get_config()


def settings_changed(config, default):
    """`"k=v, ..."` of a variant's rule settings that differ from `default` (a rec_lra run's
    config over `RecLRA`'s defaults), "—" for none; a None value means not given."""
    changed = {k: v for k, v in (config or {}).items()
               if k not in HYPER_PARAMETERS + ("rule", "seed") and k in default
               and default[k] != v and v is not None}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "—"


def _mirror_settings_part(results, root):
    """Other mirror settings (`resnet_accuracy.py`'s mirror variants) beside bp of the same
    seeds and hyper-parameters: what was tried where a revision-2 bar is tight."""
    lines = ["", "### Mirror settings tried beyond the default"]
    for name, (recipe, ref_name) in MIRROR_SETTINGS.items():
        src = results.get(name)
        if src is None:
            continue
        ref_runs = [r for r in ((results.get(ref_name) and results[ref_name].data.get("runs"))
                                or []) if isinstance(r.get("config"), dict)]
        default = {**_rec_lra_defaults(),
                   **next((r["config"] for r in ref_runs if run_name(r) == "rec_lra"), {})}
        rows = []
        for variant in ordered(run_name(r) for r in src.data.get("runs") or []):
            runs = [r for r in src.data["runs"] if run_name(r) == variant]
            config = runs[0].get("config") or {}
            bp = {r["seed"]: r["final_test_accuracy"] for r in ref_runs if run_name(r) == "bp"
                  and not config_differences(r["config"], config,
                                             HYPER_PARAMETERS)}
            acc = sum(r["final_test_accuracy"] for r in runs) / len(runs)
            both = [r for r in runs if r["seed"] in bp]
            gap = (None if not both else sum(r["final_test_accuracy"] - bp[r["seed"]]
                                             for r in both) / len(both))
            rows.append((f"`{variant}`", settings_changed(config, default),
                         ", ".join(str(s) for s in sorted(r["seed"] for r in runs)),
                         pct(acc), "—" if gap is None else f"{100 * gap:+.2f}"))
        lines += ["", f"With {recipe}. {src.label(root)}", "",
                  table(["variant", "settings changed from the default rec_lra",
                         "seeds", "test accuracy % (mean)",
                         f"vs bp of the same seeds in {ref_name}.json (points)"], rows)]
    if len(lines) == 2:
        return []
    from trainers.presets import SGD_MIRROR

    preset = ", ".join(f"{k}={v}" for k, v in sorted(SGD_MIRROR.items()))
    return lines + ["", "These are options (`RecLRA(mirror_normalise=..., mirror_warm_start=..., "
                    "mirror_batch=..., beta=...)`), not the library's default: the bars above "
                    f"are judged at the default. The `fmnist_resnet20` preset (SGD) sets {preset} "
                    "(`trainers.presets.SGD_MIRROR`); the full-data bar under \"Scale\" is "
                    "judged on that setting."]


def _reference_run(source, ablation, name):
    """`name`'s run in `source` with the seed of the ablation's default and trained with the
    same hyper-parameters, or None."""
    if source is None:
        return None
    default = next((r for r in ablation.data.get("runs") or [] if run_name(r) == "rec_lra"),
                   None)
    if default is None or not isinstance(default.get("config"), dict):
        return None
    for r in source.data.get("runs") or []:
        if run_name(r) == name and r.get("seed") == default.get("seed") \
                and isinstance(r.get("config"), dict) \
                and not config_differences(r["config"], default["config"], HYPER_PARAMETERS):
            return r
    return None


def _step_cost_part(results, root, out_dir):
    bar = STEP_COST_BAR
    lines = ["", f"### Step cost on {bar['model']} (jit {bar['jit']})"]
    st = results.get("step_time")
    if st is None:
        return lines + ["", not_run("step_time")], Verdict(UNKNOWN, "step_time not run yet.")
    rows = step_rows(st.data)
    by = {r["rule"]: r for r in rows if r["model"] == bar["model"] and r["jit"] == bar["jit"]}
    bp_peak = (by.get("bp") or {}).get("step_peak_mb")

    def secs(ms):
        return num(None if ms is None else ms / 1000, "{:.2f}")

    out = []
    for n in (n for n in STEP_COST_RULES if n in by):
        r = by[n]
        out.append((f"`{n}`", secs(r["cpu_ms"]), secs(r["mean_cpu_ms"]),
                    num(r["cpu_ratio_to_bp"], "{:.3f}"), num(r["mean_cpu_ratio_to_bp"], "{:.3f}"),
                    secs(r["step_ms"]), num(r["step_peak_mb"], "{:.0f}"),
                    num(r["step_peak_mb"] / bp_peak if r["step_peak_mb"] and bp_peak else None,
                        "{:.2f}")))
    settings = st.data.get("settings") or {}
    timed = (settings.get("repeats") or 0) * (settings.get("steps_per_round") or 0)
    lines += ["", st.label(root), "",
              f"Process CPU time of one training step (all threads; median and mean over the "
              f"{timed or '?'} timed steps of each configuration), its ratio to bp's, the median "
              "wall time, and the peak resident memory of the timed steps "
              "(`step_peak_rss_mb`). `rec_lra_every4` runs the mirror every 4 steps, "
              "`rec_lra_nomirror` never (fixed synapses).", "",
              table(["rule", "median CPU s", "mean CPU s", "CPU / bp (medians)",
                     "CPU / bp (means)", "median wall s", "step peak MiB", "peak / bp"], out)]
    share = (by.get("rec_lra") or {}).get("mirror_share")
    if share is not None:
        lines += ["", f"The mirror's share of rec_lra's mean CPU time (what rec_lra_nomirror "
                  f"saves): {100 * share:.1f}%."]
    if "rec_lra_every4" in by and timed and timed % 4:
        lines += ["", f"*{timed} timed steps is not a multiple of 4: rec_lra_every4's mean "
                  "holds more or fewer mirror steps than its share.*"]
    v = step_cost_verdict(rows, step_conditions(rows))
    image = png_link(st, root, out_dir)
    return lines + (["", image] if image else []) + ["", v.render("step cost")], v


def section_rev2(results, root, out_dir):
    """The section's Markdown and `{"resnet", "sgd", "step", "mlp": Verdict}`."""
    rb, sb = REV2_RESNET_BAR, REV2_SGD_BAR
    lines = ["## Revision 2: rec-LRA on ResNets", "",
             "Revision 2 of `rec_lra` (docs/ALGORITHM.md): targets passed unit by unit "
             "(`feedback=\"adjacent\"`), beta-scaled error units, errors carried through the "
             "unit's own BatchNorm, and error synapses aligned by a local weight mirror; `wm` "
             "is feedback alignment with the same mirror. The bars of the revision-2 issue: on "
             f"ResNet-20 (Adam budget, {rb['seeds']} seeds) rec_lra within "
             f"{rb['rec_lra_gap_to_bp']} point of bp and at least {rb['margin_over_fa_dfa']:.0f} "
             "points above fa and dfa, wm reported beside; with the fmnist_resnet20 preset's "
             f"SGD recipe, rec_lra within {sb['rec_lra_gap_to_bp']} points of bp under the same "
             "hyper-parameters; rec_lra's CPU time per step at most "
             f"{STEP_COST_BAR['max_cpu_ratio']:.2f} times bp's on {STEP_COST_BAR['model']}; on "
             f"the MLP, rec_lra within {REV2_MLP_BAR['rec_lra_gap_to_bp']} points of bp. A bar "
             "whose file was measured at another budget, on fewer seeds or before revision 2 is "
             "\"not measured\"."]
    verdicts = {}
    part, verdicts["resnet"] = _accuracy_part(
        results.get("resnet_accuracy"), root, out_dir, "resnet_accuracy",
        "ResNet-20 on Fashion-MNIST (Adam)", rev2_resnet_verdict, rb, png=False)
    lines += part + _ablation_part(results, root)
    part, verdicts["sgd"] = _accuracy_part(
        results.get("resnet_sgd"), root, out_dir, "resnet_sgd",
        "ResNet-20 with the preset's SGD recipe", sgd_recipe_verdict, sb,
        extra_problems=hyper_parameter_differences)
    lines += part + _mirror_settings_part(results, root)
    part, verdicts["step"] = _step_cost_part(results, root, out_dir)
    lines += part + ["", "### MLP on Fashion-MNIST"]
    mlp = results.get("accuracy_mlp")
    if mlp is None:
        lines += ["", not_run("accuracy_mlp")]
        verdicts["mlp"] = Verdict(UNKNOWN, "accuracy_mlp not run yet.")
    else:
        verdicts["mlp"] = rev2_mlp_verdict(accuracy_summary(mlp.data),
                                           bar_conditions(mlp.data, (), REV2_MLP_BAR))
        lines += ["", mlp.label(root), "", "The table is claim 1's (above).", "",
                  verdicts["mlp"].render("MLP")]
    return "\n".join(lines), verdicts
