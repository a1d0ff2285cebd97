"""Every claim the report judges, keyed by claim: its question, its words, its bar, its judge.

The bars are here and nowhere else (percentage points unless stated). A claim is judged on
the result files whose benchmark lists it in `benchmarks.registry` (`claims=`): when one of
them is missing the claim is "not measured" and says which command writes it. A section of
the report (`benchmarks.report.<question>`) renders its claims' verdicts beside its tables
and returns them (`Part`); "Verdicts at a glance" lists them all in this table's order.

To add a claim: an entry here (a judge that reads summaries and calls a pure function of
`benchmarks.report.verdicts`), its key in the `claims` of the benchmarks that feed it, and its
verdict rendered by its section.
"""

import dataclasses
from typing import Callable

from benchmarks import registry
from benchmarks.report import summaries as s
from benchmarks.report import verdicts as v
from benchmarks.report.results import not_run


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim: its section (`question`), its words in the glance table (`text`, which may
    quote the bar: `{max_gap}`), its `bar` and `judge(results, bar) -> Verdict`."""

    question: str
    text: str
    bar: dict
    judge: Callable


@dataclasses.dataclass
class Part:
    """What a section returns: its Markdown and the verdicts of its claims by key."""

    markdown: str
    verdicts: dict


def _summary(results, name, thresholds=s.curves.THRESHOLDS):
    return s.accuracy_summary(results.get(name).data, thresholds)


def _mlp(results, bar):
    data = results.get("accuracy_mlp").data
    return v.mlp_verdict(s.accuracy_summary(data), bar)


def _published(results, bar):
    return v.published_verdict(_summary(results, "accuracy_mlp"), bar)


def _resnet20(results, bar):
    data = results.get("accuracy_resnet20").data
    problems = s.bar_conditions(data, ("bp", "rec_lra", "fa", "dfa"), bar)
    return v.resnet_verdict(s.accuracy_summary(data), bar, problems)


def _sgd(results, bar):
    data = results.get("accuracy_resnet20_sgd").data
    problems = (s.bar_conditions(data, ("bp", "rec_lra"), bar)
                + s.hyper_parameter_differences(data))
    return v.recipe_verdict(s.accuracy_summary(data), bar, "ResNet-20, SGD recipe", problems)


def _converge(name, which):
    def judge(results, bar):
        summary = _summary(results, name, bar["thresholds"])
        return v.convergence_verdicts(summary, bar["thresholds"])[which]
    return judge


def _cheaper(results, bar):
    rows = s.step_rows(results.get("speed_step_time").data)
    models = list(dict.fromkeys(r["model"] for r in rows))
    return v.cheaper_verdict(s.best_step_times(rows), s.best_step_times(rows, "cpu_ms"), models)


def _step_cost(name):
    def judge(results, bar):
        return v.step_cost_verdict(s.step_rows(results.get(name).data), bar)
    return judge


def _first_epoch(results, bar):
    """rec_lra's mean test accuracy after the first epoch within `max_gap` of bp's, on each
    model of `bar["files"]`."""
    parts, ok, problems = [], True, []
    for model, name in bar["files"].items():
        data = results.get(name).data
        problems += s.bar_conditions(data, ("bp", "rec_lra"), bar)
        first = {}
        for rule in ("bp", "rec_lra"):
            accs = [r["epochs"][0]["test_accuracy"] for r in data["runs"] if r["rule"] == rule]
            first[rule] = (sum(accs) / len(accs), len(accs)) if accs else (None, 0)
        (rec, n_rec), (bp, n_bp) = first["rec_lra"], first["bp"]
        if rec is None or bp is None:
            return v.Verdict(v.UNKNOWN, f"{model}: rec_lra and bp runs are both needed.")
        gap = 100 * (rec - bp)
        ok = ok and gap >= -bar["max_gap"]
        parts.append(f"{model}: rec_lra {100 * rec:.2f}% ({n_rec} seeds) vs bp {100 * bp:.2f}% "
                     f"({n_bp} seeds) after epoch 1, {abs(gap):.2f} points "
                     f"{'above' if gap > 0 else 'below'}")
    verdict = v.Verdict(v.HOLDS if ok else v.FAILS,
                        "; ".join(parts) + f" (criterion: no more than {bar['max_gap']:.1f} "
                        "below on each).")
    return v.qualified(verdict, problems)


def _chain(results, bar):
    rows = results.get("speed_chain_length").data["results"]
    rule = bar["rule"]
    mlp = [r for r in rows if r["family"] == "mlp"]
    losses = sorted({r["model"] for r in mlp if r["rule"] == rule and any(
        b["model"] == r["model"] and b["rule"] == "bp" and b["chain_ops"] < r["chain_ops"]
        for b in mlp)})
    skip = s.chains(rows, "rec_lra-skip_synapses") if rule == "rec_lra" else None
    return v.chain_verdict(rows, rule, s.chains(rows, rule), losses, skip)


def _diagnostics(results, bar):
    return v.overhead_verdict(results.get("speed_diagnostics").data["results"], bar)


def _descent(name):
    def judge(results, bar):
        return v.descent_verdict(results.get(name).data["rules"])
    return judge


def _mirror(results, bar):
    rows = s.alignment_rows(results.get("alignment_resnet20").data["rules"])
    return v.mirror_verdict(rows, bar["max_degrees"])


def depth_summaries(results, bar):
    """`({model: accuracy summary}, {model: Source})` of the depth files that are there,
    shallow first, each summary holding the rules trained at every one of those depths."""
    sources = {m: results.get(name) for m, name in bar["files"].items()
               if results.get(name) is not None}
    full = {m: s.accuracy_summary(source.data) for m, source in sources.items()}
    common = set.intersection(*(set(x) for x in full.values())) if full else set()
    return {m: {r: x[r] for r in x if r in common} for m, x in full.items()}, sources


def _depth(results, bar):
    summaries, sources = depth_summaries(results, bar)
    problems = []
    for model, source in sources.items():
        file_bar = {"budget": bar["budget"], "seeds": bar["seeds"], "config": {"model": model}}
        found = (s.bar_conditions(source.data, ("bp", "rec_lra"), file_bar)
                 + s.hyper_parameter_differences(source.data))
        problems += [f"{s.depth_label(model)}: {p}" for p in found]
    return v.depth_verdict(summaries, bar, problems)


def _full_data(results, bar):
    data = results.get("accuracy_resnet20_full").data
    rule = bar["rule"]
    problems = s.bar_conditions(data, ("bp", rule), bar)
    if data["budget"]["epochs"] < bar["min_epochs"]:
        problems.append(f"epochs {data['budget']['epochs']} (the bar's: at least "
                        f"{bar['min_epochs']})")
    problems += s.hyper_parameter_differences(data, "bp", rule)
    what = "ResNet-20, full training split, the preset's recipe"
    return v.recipe_verdict(s.accuracy_summary(data), bar, what, problems)


def _precision(what):
    def judge(results, bar):
        mixed, float32 = (results.get(name).data for name in bar["files"])
        return v.precision_verdict(s.precision_pairs(mixed, float32, bar["rules"]), bar, what)
    return judge


def _headroom(results, bar):
    return v.headroom_verdict(results.get("speed_mixed_precision").data["float16_headroom"],
                              bar["max"])


def _peer_gap(results, bar):
    return v.peer_gap_verdict(s.peer_summaries(results.get("peers_biotorch").data["runs"]))


def _peer_steps(results, bar):
    step_time = results.get("peers_biotorch").data.get("step_time")  # None: not timed yet
    rows = step_time["rows"] if step_time else []
    return v.peer_step_verdict(s.step_ratios(rows), bar["pairs"], bar["max_ratio"])


def _parity(results, bar):
    rows = results.get("export_artefacts").data["rows"]
    diffs = [r[f]["max_abs_diff_probabilities"] for r in rows for f in bar["formats"] if f in r]
    return v.parity_verdict(max(diffs) if diffs else None, bar["max_diff"])


def _keras_model(name, what):
    def judge(results, bar):
        data = results.get(name).data
        problems = s.bar_conditions(data, ("bp", "rec_lra"), bar)
        summary = s.accuracy_summary(data)
        verdict = v.gap_verdict(summary, bar["max_gap"], what)
        verdict = v.Verdict(verdict.status, verdict.text + v.beside(summary, "wm")
                            + v.beside(summary, "fa"))
        return v.qualified(verdict, problems)
    return judge


def _keras_resnet50(results, bar):
    rows = s.step_rows(results.get("speed_keras_resnet50").data)
    params = {(r["model"], r["rule"]): r for r in results.get("speed_keras_resnet50").data[
        "results"]}
    for r in rows:
        source = params[(r["model"], r["rule"])]
        r["forward_params"] = source["forward_params"]
        r["forward_params_folded"] = source.get("forward_params_folded")
    return v.keras_resnet50_verdict(rows, bar)


RESNET_BUDGET = {"train_examples": 12800, "epochs": 3, "optimizer": "adam"}
ACCURACY_THRESHOLDS = {"mlp": (0.85, 0.88), "resnet": (0.80, 0.85)}

CLAIMS = {
    # Accuracy: does rec-LRA generalise as well as backprop?
    "accuracy.mlp": Claim("accuracy", "MLP: rec_lra within {max_gap} points of bp",
                          {"max_gap": 0.3}, _mlp),
    "accuracy.mlp_published": Claim(
        "accuracy", "MLP: rec_lra at least {rec_lra_min}% and lra at least {lra_min}% (the "
        "paper: {published}% for rec-LRA)",
        {"rec_lra_min": 88.5, "lra_min": 87.5, "published": 88.13}, _published),
    "accuracy.resnet20": Claim(
        "accuracy", "ResNet-20 (Adam, {seeds} seeds): rec_lra within {max_gap} point of bp and "
        "{margin_over_fa_dfa:.0f} points above fa and dfa",
        {"max_gap": 0.5, "margin_over_fa_dfa": 10.0, "seeds": 3, "budget": RESNET_BUDGET,
         "config": {"model": "resnet20"}}, _resnet20),
    "accuracy.resnet20_sgd": Claim(
        "accuracy", "ResNet-20 with the preset's SGD recipe: rec_lra within {max_gap} points "
        "of bp",
        {"max_gap": 1.0, "seeds": 3, "config": {"model": "resnet20"},
         "budget": dict(RESNET_BUDGET, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4)},
        _sgd),
    # Convergence: does rec-LRA converge sooner? (by epochs and by wall-clock, per file)
    **{f"convergence.{key}_{unit}": Claim(
        "convergence", f"{what}: rec_lra sooner than bp in {words} (to {{reach}})",
        {"thresholds": ACCURACY_THRESHOLDS[family]}, _converge(name, i))
       for key, what, name, family in (
           ("mlp", "MLP", "accuracy_mlp", "mlp"),
           ("resnet20", "ResNet-20", "accuracy_resnet20", "resnet"),
           ("full_data", "ResNet-20, full training split", "accuracy_resnet20_full", "resnet"))
       for i, (unit, words) in enumerate((("epochs", "epochs"), ("seconds", "wall-clock")))},
    "convergence.first_epoch": Claim(
        "convergence", "No early lag: after the first epoch rec_lra within {max_gap} point of "
        "bp on ResNet-20 and ResNet-32",
        {"max_gap": 1.0, "seeds": 2, "budget": RESNET_BUDGET,
         "files": {"resnet20": "accuracy_resnet20", "resnet32": "accuracy_resnet32"}},
        _first_epoch),
    # Speed: what does a rec-LRA step cost?
    "speed.cheaper": Claim("speed", "Cheaper updates: a rec_lra step no slower than a bp step",
                           {}, _cheaper),
    "speed.step_cost": Claim(
        "speed", "{model} (jit {jit}, batch {batch}): rec_lra's CPU time per step at most "
        "{max_cpu_ratio:.2f} x bp's, its peak memory at most {max_memory_ratio:.2f} x bp's",
        {"model": "resnet18", "jit": "off", "batch": 128, "max_cpu_ratio": 1.03,
         "max_memory_ratio": 1.05}, _step_cost("speed_step_time")),
    "speed.step_cost_b64": Claim(
        "speed", "{model} (jit {jit}, batch {batch}): rec_lra's CPU time per step at most "
        "{max_cpu_ratio:.2f} x bp's, its peak memory at most {max_memory_ratio:.2f} x bp's",
        {"model": "resnet18", "jit": "off", "batch": 64, "max_cpu_ratio": 1.05,
         "max_memory_ratio": 1.05}, _step_cost("speed_step_time_b64")),
    "speed.chain_default": Claim(
        "speed", "Parallelisable updates: the chain of the default {rule} shorter than bp's, "
        "not growing with depth", {"rule": "rec_lra"}, _chain),
    "speed.chain_skip_synapses": Claim(
        "speed", "Parallelisable updates: the chain of {rule} shorter than bp's, not growing "
        "with depth", {"rule": "rec_lra-skip_synapses"}, _chain),
    "speed.diagnostics": Claim(
        "speed", "The alignment diagnostics cost under {max_overhead:.0%} of training time",
        {"max_overhead": 0.10}, _diagnostics),
    # Alignment: do rec-LRA's updates follow backprop's gradient?
    "alignment.mlp_descent": Claim("alignment", "MLP: rec_lra's updates are descent directions",
                                   {}, _descent("alignment_mlp")),
    "alignment.resnet20_descent": Claim(
        "alignment", "ResNet-20, over training: rec_lra's updates are descent directions", {},
        _descent("alignment_resnet20")),
    "alignment.resnet20_mirror": Claim(
        "alignment", "ResNet-20: the mirror brings every rec_lra synapse within "
        "{max_degrees:.0f}° of its kernel", {"max_degrees": 20.0}, _mirror),
    # Scaling: does it hold on deeper ResNets and on all the training data?
    "scaling.depth": Claim(
        "scaling", "ResNet-56: rec_lra within {max_gap_at_deepest} points of bp, its gap at "
        "most {max_gap_growth} above ResNet-20's",
        {"files": {"resnet20": "accuracy_resnet20", "resnet32": "accuracy_resnet32",
                   "resnet56": "accuracy_resnet56"},
         "models": ("resnet20", "resnet32", "resnet56"),
         "max_gap_at_deepest": 1.5, "max_gap_growth": 1.0, "seeds": 2,
         "budget": RESNET_BUDGET}, _depth),
    "scaling.full_data": Claim(
        "scaling", "Full training split, the preset's recipe: rec_lra within {max_gap} points "
        "of bp",
        {"max_gap": 0.5, "seeds": 2, "min_epochs": 5, "rule": "rec_lra-mirror_taps_warm_m32",
         "budget": {"train_examples": 58000, "optimizer": "sgd", "learning_rate": 0.05,
                    "momentum": 0.9, "weight_decay": 5e-4, "augment": True, "batch_size": 128},
         "config": {"model": "resnet20", "warmup_epochs": 1.0, "schedule": "cosine"}},
        _full_data),
    # Your own model: does a converted Keras model train as well?
    "models.keras_cnn": Claim(
        "models", "A converted Keras CNN (with BatchNorm): rec_lra within {max_gap} point of "
        "bp", {"max_gap": 1.0, "seeds": 3}, _keras_model("accuracy_keras_cnn", "Keras CNN")),
    "models.keras_vgg": Claim(
        "models", "A converted Keras VGG-style network (no BatchNorm): rec_lra within "
        "{max_gap} point of bp", {"max_gap": 1.0, "seeds": 3},
        _keras_model("accuracy_keras_vgg", "Keras VGG-style network")),
    "models.keras_resnet50": Claim(
        "models", "keras.applications.ResNet50 converted: the preset's forward parameters, and "
        "a rec_lra / bp step ratio within {max_ratio_difference:.0%} of the preset's",
        {"max_ratio_difference": 0.05, "jit": "off"}, _keras_resnet50),
    # Precision: does it train under mixed precision?
    "precision.resnet20_bfloat16": Claim(
        "precision", "ResNet-20 under mixed_{policy}: bp and rec_lra within {max_gap} points "
        "of float32",
        {"rules": ("bp", "rec_lra"), "max_gap": 0.5, "policy": "bfloat16",
         "files": ("accuracy_resnet20_bfloat16", "accuracy_resnet20")},
        _precision("ResNet-20")),
    "precision.mlp_bfloat16": Claim(
        "precision", "MLP under mixed_{policy}: bp and rec_lra within {max_gap} points of "
        "float32",
        {"rules": ("bp", "rec_lra"), "max_gap": 0.5, "policy": "bfloat16",
         "files": ("accuracy_mlp_bfloat16", "accuracy_mlp")}, _precision("MLP")),
    "precision.float16_headroom": Claim(
        "precision", "Under mixed_float16, rec-LRA's errors, displacements and pre-activations "
        "stay below {max:,.0f}", {"max": 65504.0}, _headroom),
    # Peers: how does it compare with BioTorch?
    "peers.accuracy_gap": Claim(
        "peers", "rec_lra's gap to bp smaller than BioTorch's best local rule's gap", {},
        _peer_gap),
    "peers.bp_fa_steps": Claim(
        "peers", "Our bp and fa steps no slower than BioTorch's",
        {"pairs": (("bp", "bp"), ("fa", "fa")), "max_ratio": 1.0}, _peer_steps),
    "peers.rec_lra_step": Claim(
        "peers", "Our rec_lra step no slower than BioTorch's fa step",
        {"pairs": (("rec_lra", "fa"),), "max_ratio": 1.0}, _peer_steps),
    # Export: do exported models match Keras?
    "export.parity": Claim(
        "export", "SavedModel, ONNX and TFLite (float32) give Keras' probabilities to 1e-4",
        {"formats": ("savedmodel", "onnx", "tflite"), "max_diff": 1e-4}, _parity),
}


def text(key):
    """The words of claim `key`, its bar filled in."""
    claim = CLAIMS[key]
    reach = " and ".join(f"{100 * t:.0f}%" for t in claim.bar.get("thresholds", ()))
    return claim.text.format(reach=reach, **claim.bar)


def judge(key, results):
    """The `Verdict` on claim `key` from `results` (`benchmarks.report.results.Results`):
    "not measured" with the commands to run when a file that feeds it is missing."""
    claim = CLAIMS[key]
    missing = [b.name for b in registry.feeding(key) if results.get(b.name) is None]
    if missing:
        return v.Verdict(v.UNKNOWN, " ".join(f"{name}: {not_run(name)}" for name in missing))
    return claim.judge(results, claim.bar)


def of(question):
    """The keys of `question`'s claims, in table order."""
    return [k for k, c in CLAIMS.items() if c.question == question]
