"""benchmarks/report.py on synthetic result JSON: it renders, and its verdicts are right."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, REPO)

from report_json import (  # noqa: E402
    ADAM_BUDGET,
    REV2_CONFIG,
    resnet_json,
    table_widths,
    write,
)

from benchmarks import report  # noqa: E402

RULES = ("bp", "fa", "dfa", "lra", "rec_lra")


def run_record(variant, seed, curve, seconds=10.0):
    """One run of benchmarks/accuracy.py's JSON: a test-accuracy curve, `seconds` per epoch."""
    return {
        "variant": variant, "label": variant, "seed": seed,
        "epochs": [{"epoch": i + 1, "test_accuracy": a, "test_loss": 1.0 - a,
                    "epoch_seconds": seconds} for i, a in enumerate(curve)],
        "final_test_accuracy": curve[-1], "final_test_loss": 1.0 - curve[-1],
        "mean_seconds_per_epoch": seconds, "wall_seconds": seconds * len(curve),
    }


def accuracy_json(per_variant, seconds=None):
    """`per_variant`: {variant: [curve of seed 0, curve of seed 1]}; summarised as the script
    does."""
    from benchmarks import curves

    runs = [run_record(v, s, c, (seconds or {}).get(v, 10.0))
            for v, per_seed in per_variant.items() for s, c in enumerate(per_seed)]
    return {"benchmark": "accuracy_mlp", "budget": "3 epochs", "thresholds": [0.85, 0.88],
            "date": "2030-01-02 03:04:05", "machine": {"platform": "test", "cpus": 2},
            "runs": runs, "summary": curves.summarize(runs), "complete": True}


GOOD = {  # rec_lra: mean 89.2, bp 89.8 (gap 0.6 <= 1.0), lra 88.0 >= 87.5
    "bp": [[0.80, 0.86, 0.896], [0.82, 0.87, 0.900]],
    "fa": [[0.70, 0.80, 0.850], [0.72, 0.81, 0.852]],
    "dfa": [[0.75, 0.83, 0.870], [0.76, 0.84, 0.872]],
    "lra": [[0.80, 0.85, 0.879], [0.81, 0.86, 0.881]],
    "rec_lra": [[0.851, 0.88, 0.890], [0.86, 0.885, 0.894]],
}
BAD = dict(GOOD, rec_lra=[[0.80, 0.84, 0.870], [0.81, 0.845, 0.874]])  # 87.2: 2.6 below bp


def test_summary_and_time_to_reach_match_a_hand_computation():
    from benchmarks import curves

    s = accuracy_json(GOOD, seconds={"rec_lra": 12.0})["summary"]
    assert s["rec_lra"]["final_test_accuracy_mean"] == pytest.approx(0.892)
    assert s["bp"]["final_test_accuracy_std"] == pytest.approx(0.004 / 2 ** 0.5)
    # rec_lra reaches 85% after epoch 1 in both seeds (12 s), 88% after epoch 2 (24 s);
    # bp reaches 85% after epoch 2 (20 s) and 88% after epoch 3 in both seeds (30 s).
    assert s["rec_lra"]["reach"]["0.85"]["epochs_mean"] == 1
    assert s["rec_lra"]["reach"]["0.88"]["seconds_mean"] == pytest.approx(24.0)
    assert s["bp"]["reach"]["0.88"]["epochs_mean"] == 3
    assert s["fa"]["reach"]["0.88"]["reached"] == 0
    assert curves.time_to_reach(run_record("x", 0, [0.1, 0.5, 0.9]), 0.5) == (2, 20.0)


def test_verdicts_hold_and_fail_with_the_numbers():
    good = accuracy_json(GOOD)["summary"]
    bad = accuracy_json(BAD)["summary"]
    v = report.generalisation_verdict(good, 1.0, "MLP")
    assert v.status == report.HOLDS and "0.60 points below" in v.text
    v = report.generalisation_verdict(bad, 1.0, "MLP")
    assert v.status == report.FAILS and "2.60 points below" in v.text
    assert "rec_lra loses to" in v.text and "lra (88.00%)" in v.text
    assert report.mlp_bar_verdict(good).status == report.HOLDS
    v = report.mlp_bar_verdict(bad)
    assert v.status == report.FAILS and "rec_lra 87.20% < 88.5%" in v.text
    epochs, seconds = report.convergence_verdicts(good, [0.85, 0.88])
    assert epochs.status == report.HOLDS and seconds.status == report.HOLDS
    assert "88%: rec_lra 2.0 epochs vs bp 3.0 epochs" in epochs.text
    epochs, _ = report.convergence_verdicts(bad, [0.85, 0.88])
    assert epochs.status == report.FAILS and "rec_lra reached it in 0/2 seeds" in epochs.text
    tie = accuracy_json(dict(GOOD, rec_lra=GOOD["bp"]))["summary"]
    epochs, _ = report.convergence_verdicts(tie, [0.85, 0.88])
    assert epochs.status == report.FAILS and "not sooner" in epochs.text

    resnet = {"bp": {"final_test_accuracy_mean": 0.92}, "fa": {"final_test_accuracy_mean": 0.80},
              "dfa": {"final_test_accuracy_mean": 0.87}, "rec_lra":
              {"final_test_accuracy_mean": 0.91}}
    v = report.resnet_bar_verdict(resnet)  # 1.0 below bp, 11 above fa but only 4 above dfa
    assert v.status == report.FAILS and "rec_lra - dfa = 4.00 points" in v.text

    # benchmarks/step_time.py's rows: seconds, jit_compile as a bool, a forward-only row.
    step = {"results": [
        {"model": "resnet18", "rule": r, "jit_compile": j, "median_step_seconds": sec,
         "median_cpu_seconds": 2 * sec, "batch_size": 128} for r, j, sec in
        (("forward", False, 0.01), ("bp", False, 0.030), ("bp", True, 0.040),
         ("rec_lra", False, 0.035), ("rec_lra", True, 0.027))]}
    rows = report.step_rows(step)
    rec_off = next(r for r in rows if r["rule"] == "rec_lra" and r["jit"] == "off")
    assert rec_off["step_per_forward"] == pytest.approx(3.5)
    assert rec_off["ratio_to_bp"] == pytest.approx(35 / 30)
    v = report.step_time_verdict(rows)  # each at its faster setting: 27 (on) vs 30 (off)
    assert v.status == report.HOLDS and "wall ratio 0.90" in v.text
    step["results"][4]["median_step_seconds"] = 0.036
    assert report.step_time_verdict(report.step_rows(step)).status == report.FAILS

    def chain(model, units, bp, rec):
        return [{"model": model, "family": "resnet", "units": units, "blocks": 1, "rule": r,
                 "chain_ops": c} for r, c in (("bp", bp), ("rec_lra", rec))]

    assert report.chain_verdict(chain("r8", 8, 99, 25) + chain("r20", 20, 261, 25)).status \
        == report.HOLDS
    assert report.chain_verdict(chain("r8", 8, 99, 25) + chain("r20", 20, 261, 60)).status \
        == report.FAILS  # rec_lra's chain grows with depth


def test_report_renders_prefers_full_results_and_marks_missing(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    write(str(results), "accuracy_mlp", accuracy_json(GOOD))
    (results / "accuracy_mlp.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write(str(results / "quick"), "accuracy_mlp", accuracy_json(BAD))  # older quick run
    write(str(results / "quick"), "alignment", {
        "date": "2030-01-01", "epochs": 1, "every_n_steps": 25, "rules": {
            "rec_lra": {"test_accuracy": 0.8, "final_angle": {"dense_0": 60.0, "head": 0.0},
                        "final_angle_hidden_mean": 60.0, "first_angle_hidden_mean": 90.0},
            "fa": {"test_accuracy": 0.8, "final_angle": {"dense_0": 70.0, "head": 0.0},
                   "final_angle_hidden_mean": 70.0}}})
    out = tmp_path / "BENCHMARKS.md"
    text = report.render(str(results), str(out))

    assert "| `rec_lra` | rec_lra | 89.20 ± 0.28 [89.00, 89.40] (2 seeds) |" in text
    assert "![accuracy_mlp.png](benchmarks/results/accuracy_mlp.png)" in text
    assert "`benchmarks/results/accuracy_mlp.json`; full suite; 2030-01-02 03:04:05" in text
    assert "| Issue 2: MLP bar | **holds** |" in text
    assert "| Generalises as well as backprop: MLP | **holds** |" in text
    # Only the quick suite ran the alignment benchmark: used, and labelled as such.
    assert "`benchmarks/results/quick/alignment.json`; quick suite" in text
    assert "| Alignment: rec_lra's updates are descent directions | **holds** |" in text
    # Never run: said so, and no verdict is invented.
    assert "*Not run yet* (`python -m benchmarks.step_time --models=resnet18 --jit=off " \
           "--rules=bp,fa,wm,rec_lra,rec_lra_every4,rec_lra_nomirror,rec_lra_m32 " \
           "--steps=4`)" in text
    assert "| Cheaper updates: step time rec_lra <= bp | **not measured** |" in text
    assert "### `cifar10_resnet18`" in text and str(report.PUBLISHED["fmnist_rec_lra"]) in text

    os.remove(results / "accuracy_mlp.json")  # now only the (failing) quick run is there
    text = report.render(str(results), str(out))
    assert "`benchmarks/results/quick/accuracy_mlp.json`; quick suite" in text
    assert "| Issue 2: MLP bar | **does not hold** |" in text


# ------------------------------------------------------------------ revision 2 and issue 12

SGD_BUDGET = dict(ADAM_BUDGET, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4)
SGD_CONFIG = dict(REV2_CONFIG, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4)


R20 = {  # rec_lra 84.80 vs bp 85.50 (0.70 below), fa 70.0, dfa 72.0, wm 84.0
    "bp": [0.855, 0.858, 0.852], "fa": [0.70, 0.70, 0.70], "dfa": [0.72, 0.72, 0.72],
    "wm": [0.84, 0.84, 0.84], "rec_lra": [0.850, 0.846, 0.848],
}


def rev2_resnet(data):
    summary = report.accuracy_summary(data)
    return report.rev2_resnet_verdict(
        summary, report.bar_conditions(data, ("bp", "rec_lra", "fa", "dfa"),
                                       report.REV2_RESNET_BAR))


def test_revision2_resnet_bar_holds_fails_and_needs_its_budget_and_seeds():
    v = rev2_resnet(resnet_json(R20))
    assert v.status == report.HOLDS, v.text
    assert "bp - rec_lra = 0.70 points (bar <= 1.0)" in v.text
    assert "rec_lra - dfa = 12.80 points (bar >= 10.0)" in v.text
    assert "wm 84.00% (rec_lra - wm = +0.80 points" in v.text
    v = rev2_resnet(resnet_json(dict(R20, rec_lra=[0.840, 0.842, 0.838])))  # 1.50 below bp
    assert v.status == report.FAILS and "bp - rec_lra = 1.50 points" in v.text
    v = rev2_resnet(resnet_json(dict(R20, dfa=[0.76] * 3)))  # only 8.8 above dfa
    assert v.status == report.FAILS and "rec_lra - dfa = 8.80 points" in v.text
    # Off the bar's conditions: not measured, with what was measured in the text.
    v = rev2_resnet(resnet_json(R20, budget=dict(ADAM_BUDGET, epochs=2)))
    assert v.status == report.UNKNOWN and "epochs 2 (the bar's: 3)" in v.text
    assert "bp - rec_lra = 0.70 points" in v.text
    v = rev2_resnet(resnet_json(R20, config=dict(REV2_CONFIG, model="resnet32")))
    assert v.status == report.UNKNOWN and "model resnet32 (the bar's: resnet20)" in v.text
    v = rev2_resnet(resnet_json({k: a[:1] for k, a in R20.items()}))
    assert v.status == report.UNKNOWN and "rec_lra has 1 seed of the 3" in v.text
    v = rev2_resnet(resnet_json(dict(R20, dfa=[0.72, 0.72])))  # a margin over fewer seeds
    assert v.status == report.UNKNOWN and "dfa has 2 seeds of the 3" in v.text
    old = {k: v for k, v in REV2_CONFIG.items() if k != "synapse_update"}
    v = rev2_resnet(resnet_json(R20, config=old))
    assert v.status == report.UNKNOWN and "predate revision 2" in v.text


def test_revision2_mlp_and_sgd_recipe_bars():
    good = accuracy_json(GOOD)["summary"]  # rec_lra 0.60 below bp: issue 2 holds, 0.3 does not
    v = report.rev2_mlp_verdict(good)
    assert v.status == report.FAILS and "(criterion: no more than 0.3 below)" in v.text
    close = accuracy_json(dict(GOOD, rec_lra=[[0.85, 0.88, 0.895], [0.86, 0.885, 0.897]]))
    v = report.rev2_mlp_verdict(close["summary"])  # 89.60 vs 89.80
    assert v.status == report.HOLDS and "0.20 points below" in v.text

    def sgd(finals, changes=None):
        data = resnet_json(finals, SGD_BUDGET, SGD_CONFIG, changes)
        problems = (report.bar_conditions(data, ("bp", "rec_lra"), report.REV2_SGD_BAR)
                    + report.hyper_parameter_differences(data))
        return report.sgd_recipe_verdict(report.accuracy_summary(data), problems)

    v = sgd({"bp": [0.86, 0.862], "rec_lra": [0.85, 0.848]})  # 1.20 below
    assert v.status == report.HOLDS and "1.20 points below" in v.text
    v = sgd({"bp": [0.86, 0.862], "rec_lra": [0.84, 0.842]})  # 2.00 below
    assert v.status == report.FAILS and "2.00 points below" in v.text
    v = sgd({"bp": [0.86, 0.862], "rec_lra": [0.85, 0.848]}, {"rec_lra": {"learning_rate": 0.1}})
    assert v.status == report.UNKNOWN and "seed 0: learning_rate 0.05 vs 0.1" in v.text
    data = resnet_json({"bp": [0.86, 0.862], "rec_lra": [0.85, 0.848]})  # the Adam budget
    assert "optimizer adam (the bar's: sgd)" in report.bar_conditions(
        data, ("bp", "rec_lra"), report.REV2_SGD_BAR)


# CPU seconds per step: rec_lra 1.030 x bp, rec_lra_every4 1.010 x, the mirror 5% of rec_lra's.
STEP_CPU = {"forward": 1.0, "bp": 4.0, "fa": 4.1, "wm": 4.3, "rec_lra": 4.12,
            "rec_lra_every4": 4.04, "rec_lra_nomirror": 3.914}


def step_json(cpu, mean=True, model="resnet18"):
    """step_time.py's JSON at jit off: `cpu` {rule: CPU seconds}; the mean is 1.1 x the median
    (left out with `mean=False`); rec_lra's mirror share against rec_lra_nomirror."""
    rows = []
    for rule, c in cpu.items():
        row = {"model": model, "rule": rule, "jit_compile": False, "batch_size": 128,
               "median_step_seconds": 2 * c, "median_cpu_seconds": c,
               "step_peak_rss_mb": 2000.0 + (100.0 if rule.startswith("rec_lra") else 0.0)}
        if mean:
            row["mean_cpu_seconds"] = 1.1 * c
        rows.append(row)
    for row in rows:
        if row["rule"] == "rec_lra" and "rec_lra_nomirror" in cpu:
            row["mirror_share_of_cpu"] = 1 - cpu["rec_lra_nomirror"] / cpu["rec_lra"]
    return {"date": "2030-02-03", "settings": {"repeats": 4, "steps_per_round": 1},
            "results": rows}


def test_revision2_step_cost_bar():
    cpu = STEP_CPU  # a local name: the cases below change one entry

    def verdict(data):
        rows = report.step_rows(data)
        return report.step_cost_verdict(rows, report.step_conditions(rows))

    v = verdict(step_json(cpu))
    assert v.status == report.HOLDS, v.text
    assert "rec_lra/bp CPU time per step 1.030 (ratio of the means; bar <= 1.05)" in v.text
    assert "rec_lra_every4 (mirror every 4 steps) 1.010" in v.text
    assert "the mirror's share of rec_lra's CPU time 5.0%" in v.text
    assert "rec_lra 2100 MiB vs bp 2000 MiB (1.05x)" in v.text
    v = verdict(step_json(dict(cpu, rec_lra=4.32)))
    assert v.status == report.FAILS and "per step 1.080" in v.text
    v = verdict(step_json(cpu, mean=False))  # no means: the medians decide
    assert v.status == report.HOLDS and "ratio of the medians" in v.text
    v = verdict(step_json({"bp": 4.0, "rec_lra": 3.5}, mean=False))  # before revision 2
    assert v.status == report.UNKNOWN and "predates revision 2" in v.text
    assert verdict(step_json(cpu, model="resnet50")).status == report.UNKNOWN


def test_issue12_mixed_precision_and_float16_headroom():
    f32 = resnet_json({"bp": [0.853, 0.86], "rec_lra": [0.850, 0.84]},
                      changes={"rec_lra": {"beta": 0.1}})
    bf16_config = dict(REV2_CONFIG, mixed_precision="bfloat16")

    def verdict(finals, float32=f32, config=bf16_config):
        mixed = resnet_json(finals, config=config, changes={"rec_lra": {"beta": 0.1}})
        return report.mixed_precision_verdict(report.precision_pairs(mixed, float32),
                                              "ResNet-20")

    v = verdict({"bp": [0.855], "rec_lra": [0.848]})  # +0.20 and -0.20 points
    assert v.status == report.HOLDS, v.text
    assert "rec_lra seed 0: 84.80% vs 85.00% in float32 (-0.20 points)" in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.842]})  # -0.80
    assert v.status == report.FAILS and "(-0.80 points)" in v.text
    v = verdict({"bp": [0.861], "rec_lra": [0.848]})  # +0.80: "within" is either side
    assert v.status == report.FAILS and "bp seed 0: 86.10% vs 85.30% in float32 (+0.80" in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, float32=resnet_json({"bp": [0.853]}))
    assert v.status == report.UNKNOWN and "rec_lra seed 0 has no float32 run" in v.text
    old = resnet_json({"bp": [0.853], "rec_lra": [0.850]}, changes={"rec_lra": {"beta": 0.1}},
                      config={k: x for k, x in REV2_CONFIG.items() if k != "synapse_update"})
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, float32=old)  # float32 before revision 2
    assert v.status == report.UNKNOWN and "synapse_update recorded by one run only" in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, config=dict(REV2_CONFIG,
                                                                  mixed_precision="float16"))
    assert v.status == report.UNKNOWN and "ran under float16 (the bar's: bfloat16)" in v.text

    units = {"conv_0": {"max_abs_error": 3.2, "max_abs_displacement": 12.0,
                        "max_abs_pre_activation": 40.0, "finite": True},
             "head": {"max_abs_error": 0.9, "max_abs_displacement": 250.0,
                      "max_abs_pre_activation": 8.0, "finite": True}}
    v = report.float16_headroom_verdict(units)
    assert v.status == report.HOLDS and "largest |F e| 250 (head)" in v.text
    hot = dict(units, conv_0=dict(units["conv_0"], max_abs_pre_activation=7e4))
    v = report.float16_headroom_verdict(hot)
    assert v.status == report.FAILS and "largest |h| 7e+04 (conv_0)" in v.text
    broken = dict(units, head=dict(units["head"], finite=False))
    assert report.float16_headroom_verdict(broken).status == report.FAILS
    assert report.float16_headroom_verdict({}).status == report.UNKNOWN


def chain_rows(per_rule):
    """chain_length.json rows: `per_rule` {rule: [chain ops of resnet8, resnet20]}."""
    return [{"model": m, "family": "resnet", "units": u, "blocks": 1, "rule": r, "chain_ops": c}
            for r, ops in per_rule.items() for (m, u), c in zip((("r8", 8), ("r20", 20)), ops)]


def test_chain_verdict_says_the_default_grows_and_reports_the_skip_variant():
    rows = chain_rows({"bp": [99, 261], "rec_lra": [139, 373], "rec_lra_skip": [40, 40]})
    v = report.chain_verdict(rows)
    assert v.status == report.FAILS
    assert "passes targets unit by unit (feedback=\"adjacent\"), so its chain grows" in v.text
    assert "rec_lra_skip (feedback=\"skip\": skip synapses to the block outputs) keeps it at " \
           "40 ops" in v.text
    v = report.chain_verdict(rows, "rec_lra_skip")
    assert v.status == report.HOLDS and "r20: rec_lra_skip 40 ops vs bp 261" in v.text
    rows = chain_rows({"bp": [99, 261], "rec_lra": [139, 373], "rec_lra_skip": [40, 90]})
    assert "does not stay constant either" in report.chain_verdict(rows).text
    assert report.chain_verdict(rows, "rec_lra_skip").status == report.FAILS
    assert report.chain_verdict(chain_rows({"bp": [99, 261]}), "rec_lra_skip").status \
        == report.UNKNOWN


def test_report_renders_the_revision2_and_mixed_precision_sections(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    write(str(results), "resnet_accuracy", resnet_json(R20))
    write(str(results), "resnet_ablation", dict(
        resnet_json({"rec_lra": [0.85], "rec_lra-no_mirror": [0.40], "rec_lra-first": [0.45]},
                    changes={"rec_lra-no_mirror": {"synapse_update": "lra"}}),
        budget=dict(ADAM_BUDGET, ablations={"rec_lra-no_mirror": {"synapse_update": "lra"}})))
    write(str(results), "resnet_sgd", resnet_json({"bp": [0.86, 0.862], "rec_lra": [0.84, 0.842]},
                                                  SGD_BUDGET, SGD_CONFIG))
    write(str(results), "step_time", step_json(STEP_CPU))
    write(str(results), "resnet_accuracy_bf16", resnet_json(
        {"bp": [0.856], "rec_lra": [0.848]}, config=dict(REV2_CONFIG, mixed_precision="bfloat16")))
    write(str(results), "mixed_precision", {
        "date": "2030-02-03", "settings": {"model": "resnet20", "batch_size": 128},
        "results": [{"policy": p, "rule": r, "median_step_seconds": s, "median_cpu_seconds": s}
                    for p, s in (("float32", 1.0), ("mixed_bfloat16", 1.5)) for r in ("bp",)],
        "float16_headroom": {"conv_0": {"max_abs_error": 3.0, "max_abs_displacement": 9.0,
                                        "max_abs_pre_activation": 30.0, "finite": True}},
        "float16_max": 65504.0})
    write(str(results), "chain_length", {"results": chain_rows(
        {"bp": [99, 261], "rec_lra": [139, 373], "rec_lra_skip": [40, 40]})})
    text = report.render(str(results), str(tmp_path / "BENCHMARKS.md"))

    assert "| Revision 2: ResNet-20, rec_lra within 1.0 of bp and 10 above fa/dfa | **holds** |" \
        in text
    assert "| Revision 2: ResNet-20 SGD recipe, rec_lra within 1.5 of bp | **does not hold** |" \
        in text
    assert "| Revision 2: resnet18 CPU time rec_lra/bp <= 1.05 | **holds** |" in text
    assert "| Revision 2: MLP, rec_lra within 0.3 of bp | **not measured** |" in text
    assert "| Issue 12: mixed_bfloat16 within 0.5 of float32, ResNet-20 | **holds** |" in text
    assert "| Issue 12: mixed_bfloat16 within 0.5 of float32, MLP | **not measured** |" in text
    assert "| Issue 12: float16 headroom | **holds** |" in text
    assert "| Parallelisable updates: chain length of the default rec_lra | **does not hold** |" \
        in text
    assert "| Parallelisable updates: chain length of rec_lra_skip | **holds** |" in text
    assert "| Issue 3 (superseded): ResNet-20 accuracy bar |" in text
    # The tables: every rule with its seeds and difference to bp; the ablation against the
    # default with the settings from the file; the step cost with means and memory.
    assert "| `wm` | 84.00 ± 0.00 [84.00, 84.00] (3 seeds) | 0, 1, 2 | -1.50 | 30.0 |" in text
    assert ("| `rec_lra-no_mirror` | the weight mirror: F follows dF = gamma dW, so it stays as "
            "random as it started | synapse_update=lra | 40.00 | -45.00 |") in text
    assert "bp's run of the same seed and budget (resnet_accuracy.json): 85.50%." in text
    assert "| `rec_lra` | 4.12 | 4.53 | 1.030 | 1.030 | 8.24 | 2100 | 1.05 |" in text
    assert "The mirror's share of rec_lra's mean CPU time (what rec_lra_nomirror saves): 5.0%." \
        in text
    assert "| ResNet-20 | `rec_lra` | 0 | 85.00 | 84.80 | -0.20 | policy only |" in text
    assert "| mixed_bfloat16 | `bp` | 1.50 | 1.50 | 1.50 | 1.50 |" in text
    assert "(`python -m benchmarks.accuracy --seeds=0 --variants=bp,rec_lra " \
           "--mixed_precision=bfloat16 --out=benchmarks/results/accuracy_mlp_bf16.json`)" in text
    assert "(ResNet-20, the revision-2 issue's bar; issue 3's was 2.0)" in text
    assert "| conv_0 | 3 | 9 | ? | 30 | True |" in text
    assert all(len(w) == 1 for w in table_widths(text)), table_widths(text)


def test_config_differences_forgive_only_fields_added_later_at_their_old_value():
    from benchmarks.report_rev2_verdicts import config_differences

    old = {"learning_rate": 1e-3}  # a run from before the fields existed
    keys = ("learning_rate", "mixed_precision", "mirror_normalise", "mirror_warm_start", "beta")
    assert config_differences(old, {"learning_rate": 1e-3, "mixed_precision": "off",
                                     "mirror_normalise": "positions",
                                     "mirror_warm_start": None}, keys) == []
    assert config_differences(old, {"learning_rate": 1e-3, "mixed_precision": "bfloat16",
                                     "mirror_normalise": "taps", "beta": 0.1}, keys) == [
        "mixed_precision recorded by one run only", "mirror_normalise recorded by one run only",
        "beta recorded by one run only"]
    assert config_differences({"mixed_precision": "off"}, {"mixed_precision": "float16"},
                              keys) == ["mixed_precision off vs float16"]


def test_report_renders_mirror_settings_beside_bp_of_the_same_seeds(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    write(str(results), "resnet_sgd", resnet_json({"bp": [0.87, 0.88], "rec_lra": [0.85, 0.86]},
                                                  SGD_BUDGET, SGD_CONFIG))
    # Seed 1 only: compared with bp's seed-1 run (88.0), not with bp's mean.
    m32 = {"mirror_batch": 32, "mirror_normalise": "taps", "mirror_warm_start": True}
    write(str(results), "resnet_sgd_mirror", resnet_json(
        {"rec_lra-m32": [0.875], "rec_lra-beta": [0.85]}, SGD_BUDGET, SGD_CONFIG,
        changes={"rec_lra-m32": m32, "rec_lra-beta": {"beta": 0.01, "mirror_batch": None}},
        seeds=[1]))
    # An Adam run has no bp of its hyper-parameters in resnet_sgd: no difference is invented.
    write(str(results), "resnet_mirror_options", resnet_json(
        {"rec_lra-m32": [0.85]}, changes={"rec_lra-m32": m32}))
    text = report.render(str(results), str(tmp_path / "BENCHMARKS.md"))

    assert ("| `rec_lra-m32` | mirror_batch=32, mirror_normalise=taps, mirror_warm_start=True "
            "| 1 | 87.50 | -0.50 |") in text
    assert "| `rec_lra-beta` | beta=0.01 | 1 | 85.00 | -3.00 |" in text
    assert ("| `rec_lra-m32` | mirror_batch=32, mirror_normalise=taps, mirror_warm_start=True "
            "| 0 | 85.00 | — |") in text
    assert all(len(w) == 1 for w in table_widths(text)), table_widths(text)


def test_report_renders_the_committed_results(tmp_path):
    """The results in the repository, whatever their schema (files from before revision 2
    among them), render without error and the revision-2 bars say what they lack."""
    results = os.path.join(REPO, "benchmarks", "results")
    assert os.path.isdir(results), "benchmarks/results/ is part of the repository"
    text = report.render(results, str(tmp_path / "BENCHMARKS.md"))
    assert "## Revision 2: rec-LRA on ResNets" in text and "## Mixed precision (issue 12)" in text
    assert "| Revision 2: MLP, rec_lra within 0.3 of bp |" in text
    assert all(len(w) == 1 for w in table_widths(text)), table_widths(text)
