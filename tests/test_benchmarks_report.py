"""The report's claims on synthetic results: every verdict holds, fails or is not measured with
the numbers that decide it (`benchmarks.report.claims`, `benchmarks.report.verdicts`)."""

import pytest
from report_json import (
    ADAM_BUDGET,
    CONFIG,
    SGD_BUDGET,
    SGD_CONFIG,
    accuracy_json,
    chain_json,
    finals_json,
    results,
    step_json,
)

from benchmarks import registry
from benchmarks.report import claims
from benchmarks.report import summaries as s
from benchmarks.report.verdicts import FAILS, HOLDS, UNKNOWN

MLP = {  # rec_lra: mean 89.2, bp 89.8 (gap 0.6), lra 88.0, wm 89.5
    "bp": [[0.80, 0.86, 0.896], [0.82, 0.87, 0.900]],
    "fa": [[0.70, 0.80, 0.850], [0.72, 0.81, 0.852]],
    "lra": [[0.80, 0.85, 0.879], [0.81, 0.86, 0.881]],
    "wm": [[0.80, 0.85, 0.895], [0.81, 0.86, 0.895]],
    "rec_lra": [[0.851, 0.88, 0.890], [0.86, 0.885, 0.894]],
}
R20 = {  # rec_lra 85.10 vs bp 85.50 (0.40 below), fa 70.0, dfa 72.0, wm 84.0
    "bp": [0.855, 0.858, 0.852], "fa": [0.70, 0.70, 0.70], "dfa": [0.72, 0.72, 0.72],
    "wm": [0.84, 0.84, 0.84], "rec_lra": [0.853, 0.849, 0.851],
}


def judge(key, **files):
    return claims.judge(key, results(**files))


def expect(verdict, status, *texts):
    """`verdict` has `status` and says each of `texts`."""
    assert verdict.status == status, verdict.text
    for text in texts:
        assert text in verdict.text, (text, verdict.text)


def test_every_claim_is_fed_by_a_registered_benchmark_and_renders_its_bar():
    fed = {c for b in registry.BENCHMARKS for c in b.claims}
    assert set(claims.CLAIMS) <= fed, set(claims.CLAIMS) - fed
    assert fed <= set(claims.CLAIMS), fed - set(claims.CLAIMS)
    assert claims.text("accuracy.mlp") == "MLP: rec_lra within 0.3 points of bp"
    assert claims.text("convergence.resnet20_epochs").endswith("(to 80% and 85%)")


def test_a_claim_whose_file_is_missing_is_not_measured_and_says_how_to_run_it():
    v = claims.judge("scaling.depth", results(accuracy_resnet20=finals_json(R20)))
    assert v.status == UNKNOWN
    assert "accuracy_resnet32: *Not run yet* (`python -m benchmarks.accuracy.train " \
           "--model=resnet32 --seeds=0,1 --rules=bp,rec_lra --noresume" in v.text


def test_mlp_claims_hold_and_fail_with_their_numbers():
    v = judge("accuracy.mlp", accuracy_mlp=accuracy_json(MLP))
    assert v.status == FAILS and "0.60 points below backprop (criterion: no more than 0.3" \
        in v.text and "wm 89.50% (rec_lra - wm = -0.30 points" in v.text
    close = dict(MLP, rec_lra=[[0.85, 0.88, 0.895], [0.86, 0.885, 0.897]])  # 89.60 vs 89.80
    v = judge("accuracy.mlp", accuracy_mlp=accuracy_json(close))
    assert v.status == HOLDS and "0.20 points below" in v.text
    v = judge("accuracy.mlp_published", accuracy_mlp=accuracy_json(MLP))
    assert v.status == HOLDS and "rec_lra 89.20% >= 88.5%; lra 88.00% >= 87.5%" in v.text
    low = dict(MLP, lra=[[0.80, 0.85, 0.870], [0.81, 0.86, 0.872]])
    v = judge("accuracy.mlp_published", accuracy_mlp=accuracy_json(low))
    assert v.status == FAILS and "lra 87.10% < 87.5%" in v.text


def test_resnet20_claim_needs_its_margins_budget_model_and_seeds():
    expect(judge("accuracy.resnet20", accuracy_resnet20=finals_json(R20)), HOLDS,
           "0.40 points below backprop (criterion: no more than 0.5 below)",
           "rec_lra - dfa = 13.10 points (bar >= 10.0)", "wm 84.00% (rec_lra - wm = +1.10 points")
    v = judge("accuracy.resnet20", accuracy_resnet20=finals_json(
        dict(R20, rec_lra=[0.850, 0.846, 0.848])))
    assert v.status == FAILS and "0.70 points below" in v.text
    v = judge("accuracy.resnet20", accuracy_resnet20=finals_json(dict(R20, dfa=[0.76] * 3)))
    assert v.status == FAILS and "rec_lra - dfa = 9.10 points" in v.text
    off = {
        "epochs 2 (the bar's: 3)": finals_json(R20, budget=dict(ADAM_BUDGET, epochs=2)),
        "model resnet32 (the bar's: resnet20)": finals_json(R20, config=dict(
            CONFIG, model="resnet32")),
        "rec_lra has 1 seed of the 3": finals_json({k: a[:1] for k, a in R20.items()}),
        "dfa has 2 seeds of the 3": finals_json(dict(R20, dfa=[0.72, 0.72])),
    }
    for reason, data in off.items():
        v = judge("accuracy.resnet20", accuracy_resnet20=data)
        assert v.status == UNKNOWN and reason in v.text and "bp -" not in v.text[:20], v.text
        assert "What was measured" in v.text


def test_sgd_recipe_claim_needs_bp_and_rec_lra_trained_alike():
    def sgd(finals, changes=None):
        return judge("accuracy.resnet20_sgd", accuracy_resnet20_sgd=finals_json(
            finals, budget=SGD_BUDGET, config=SGD_CONFIG, changes=changes))

    v = sgd({"bp": [0.86, 0.862, 0.861], "rec_lra": [0.853, 0.851, 0.852]})
    assert v.status == HOLDS and "0.90 points below" in v.text
    v = sgd({"bp": [0.86, 0.862, 0.861], "rec_lra": [0.849, 0.847, 0.848]})
    assert v.status == FAILS and "1.30 points below" in v.text
    v = sgd({"bp": [0.86, 0.862, 0.861], "rec_lra": [0.853, 0.851, 0.852]},
            {"rec_lra": {"learning_rate": 0.1}})
    assert v.status == UNKNOWN and "seed 0: learning_rate 0.05 vs 0.1" in v.text
    # A rule parameter is not a hyper-parameter: rec_lra's beta differs from bp's None.
    v = sgd({"bp": [0.86, 0.862, 0.861], "rec_lra": [0.853, 0.851, 0.852]},
            {"rec_lra": {"beta": 0.1}})
    assert v.status == HOLDS


def test_convergence_claims_by_epochs_and_by_seconds():
    v = judge("convergence.mlp_epochs", accuracy_mlp=accuracy_json(MLP))
    assert v.status == HOLDS and "88%: rec_lra 2.0 epochs vs bp 3.0 epochs" in v.text
    slow = accuracy_json(MLP, seconds={"rec_lra": 20.0})
    v = judge("convergence.mlp_seconds", accuracy_mlp=slow)
    assert v.status == FAILS and "88%: rec_lra 40 s vs bp 30 s" in v.text
    tie = accuracy_json(dict(MLP, rec_lra=MLP["bp"]))
    v = judge("convergence.mlp_epochs", accuracy_mlp=tie)
    assert v.status == FAILS and "not sooner" in v.text
    never = accuracy_json(dict(MLP, rec_lra=[[0.80, 0.84, 0.87], [0.81, 0.845, 0.874]]))
    v = judge("convergence.mlp_epochs", accuracy_mlp=never)
    assert v.status == FAILS and "rec_lra reached it in 0/2 seeds" in v.text
    # The ResNet thresholds are 80% and 85%.
    reach = {"bp": [[0.78, 0.84, 0.86]], "rec_lra": [[0.81, 0.86, 0.87]]}
    v = judge("convergence.resnet20_epochs", accuracy_resnet20=accuracy_json(reach))
    assert v.status == HOLDS and "80%: rec_lra 1.0 epochs vs bp 2.0 epochs" in v.text


def test_first_epoch_claim_takes_each_models_first_epoch():
    r20 = {"bp": [[0.80, 0.85, 0.86]] * 2, "rec_lra": [[0.795, 0.85, 0.86]] * 2}
    r32 = {"bp": [[0.79, 0.85, 0.86]] * 2, "rec_lra": [[0.775, 0.85, 0.86]] * 2}
    v = judge("convergence.first_epoch", accuracy_resnet20=accuracy_json(r20),
              accuracy_resnet32=accuracy_json(r32, config=dict(CONFIG, model="resnet32")))
    assert v.status == FAILS, v.text
    assert "resnet20: rec_lra 79.50% (2 seeds) vs bp 80.00% (2 seeds) after epoch 1, 0.50 " \
           "points below" in v.text and "resnet32: rec_lra 77.50%" in v.text
    v = judge("convergence.first_epoch", accuracy_resnet20=accuracy_json(r20),
              accuracy_resnet32=accuracy_json(r20, config=dict(CONFIG, model="resnet32")))
    assert v.status == HOLDS, v.text
    v = judge("convergence.first_epoch", accuracy_resnet20=accuracy_json(r20))
    assert v.status == UNKNOWN and "accuracy_resnet32" in v.text


STEP_CPU = {"forward": 1.0, "bp": 4.0, "fa": 4.1, "wm": 4.3, "rec_lra": 4.08,
            "rec_lra-mirror_every1": 4.4, "rec_lra-fixed_synapses": 3.876}


def test_step_cost_and_cheaper_claims():
    expect(judge("speed.step_cost", speed_step_time=step_json(STEP_CPU, peak=2500.0)), HOLDS,
           "rec_lra/bp CPU time per step 1.020 (ratio of the means; bar <= 1.03; of the "
           "medians 1.020)",
           "the previous default (rec_lra-mirror_every1: the mirror every step, untracked) 1.100",
           "the mirror's share of rec_lra's CPU time 5.0%",
           "rec_lra 2600 MiB vs bp 2500 MiB (1.040x; bar <= 1.05)")
    v = judge("speed.step_cost", speed_step_time=step_json(dict(STEP_CPU, rec_lra=4.32)))
    assert v.status == FAILS and "per step 1.080" in v.text
    v = judge("speed.step_cost", speed_step_time=step_json(STEP_CPU, peak=1000.0))
    assert v.status == FAILS and "(1.100x; bar <= 1.05)" in v.text  # memory alone
    v = judge("speed.step_cost_b64", speed_step_time_b64=step_json(STEP_CPU, peak=2500.0))
    assert v.status == HOLDS and "bar <= 1.05" in v.text
    v = judge("speed.step_cost", speed_step_time=step_json(STEP_CPU, model="resnet50"))
    assert v.status == UNKNOWN
    v = judge("speed.cheaper", speed_step_time=step_json(STEP_CPU))
    assert v.status == FAILS and "resnet18: rec_lra 8160 ms (jit off) vs bp 8000 ms" in v.text
    v = judge("speed.cheaper", speed_step_time=step_json(dict(STEP_CPU, rec_lra=3.9)))
    assert v.status == HOLDS and "wall ratio 0.97" in v.text


def test_cheaper_takes_each_rule_at_its_faster_jit_setting():
    data = step_json({"bp": 0.015, "rec_lra": 0.0175})
    data["results"] += [dict(r, jit_compile=True, median_step_seconds=m, median_cpu_seconds=m)
                        for r, m in zip(data["results"], (0.040, 0.027))]
    v = judge("speed.cheaper", speed_step_time=data)  # 27 ms (on) vs 30 ms (off)
    assert v.status == HOLDS and "rec_lra 27.0 ms (jit on) vs bp 30.0 ms (jit off)" in v.text


def test_chain_claims_say_the_default_grows_and_the_skip_variant_stays_flat():
    data = chain_json({"bp": [99, 261], "rec_lra": [139, 373], "rec_lra-skip_synapses": [40, 40]})
    v = judge("speed.chain_default", speed_chain_length=data)
    assert v.status == FAILS
    assert "passes targets unit by unit (feedback=\"adjacent\"), so its chain grows" in v.text
    assert "rec_lra-skip_synapses (feedback=\"skip\": skip synapses to the block outputs) " \
           "keeps it at 40 ops" in v.text
    v = judge("speed.chain_skip_synapses", speed_chain_length=data)
    assert v.status == HOLDS and "r20: rec_lra-skip_synapses 40 ops vs bp 261" in v.text
    grows = chain_json({"bp": [99, 261], "rec_lra": [139, 373],
                        "rec_lra-skip_synapses": [40, 90]})
    assert "does not stay constant either" in judge("speed.chain_default",
                                                    speed_chain_length=grows).text
    assert judge("speed.chain_skip_synapses", speed_chain_length=grows).status == FAILS
    assert judge("speed.chain_skip_synapses", speed_chain_length=chain_json(
        {"bp": [99, 261]})).status == UNKNOWN


def overhead_json(steady):
    rows = [{"rule": rule, "every_n_steps": 100, "steps": 600, "fit_seconds_plain": [1.0],
             "fit_seconds_with_diagnostics": [1.1], "overhead_fit": 0.1, "probe_seconds": 0.01,
             "step_seconds": 0.001, "overhead_steady_state": x} for rule, x in steady.items()]
    return {"date": "2030-01-01", "machine": {}, "versions": {}, "results": rows}


def test_diagnostics_overhead_claim():
    v = judge("speed.diagnostics", speed_diagnostics=overhead_json({"rec_lra": 0.013, "bp": 0.03}))
    assert v.status == HOLDS and "rec_lra: 1.3% steady-state" in v.text and "bar < 10%" in v.text
    v = judge("speed.diagnostics", speed_diagnostics=overhead_json({"rec_lra": 0.12}))
    assert v.status == FAILS


DEPTH = {  # bp - rec_lra: 0.70 at ResNet-20, 1.00 at 32, 1.40 at 56
    "resnet20": {"bp": [0.855, 0.857], "rec_lra": [0.848, 0.850], "wm": [0.845], "fa": [0.60]},
    "resnet32": {"bp": [0.860, 0.862], "rec_lra": [0.851, 0.851], "wm": [0.849], "fa": [0.55]},
    "resnet56": {"bp": [0.865, 0.867], "rec_lra": [0.852, 0.852], "wm": [0.850], "fa": [0.50]},
}


def depth_files(finals=DEPTH, models=None):
    return {f"accuracy_{m}": finals_json(f, config=dict(CONFIG, model=(models or {}).get(m, m)))
            for m, f in finals.items()}


def test_depth_claim_holds_fails_and_needs_its_seeds_and_models():
    expect(judge("scaling.depth", **depth_files()), HOLDS,
           "ResNet-20 +0.70 points (2 seeds), ResNet-32 +1.00 points",
           "at ResNet-56 +1.40 points (<= 1.5)", "ResNet-56 minus ResNet-20 +0.70 points (<= 1.0)",
           "fa ResNet-20 +25.60, ResNet-32 +31.10, ResNet-56 +36.60")
    deep = dict(DEPTH, resnet56=dict(DEPTH["resnet56"], rec_lra=[0.847, 0.849]))
    v = judge("scaling.depth", **depth_files(deep))
    assert v.status == FAILS and "at ResNet-56 +1.80 points (> 1.5)" in v.text
    grows = dict(DEPTH, resnet20=dict(DEPTH["resnet20"], rec_lra=[0.860, 0.858]))
    v = judge("scaling.depth", **depth_files(grows))
    assert v.status == FAILS and "ResNet-56 minus ResNet-20 +1.70 points (> 1.0)" in v.text
    one = dict(DEPTH, resnet56=dict(DEPTH["resnet56"], rec_lra=[0.852]))
    v = judge("scaling.depth", **depth_files(one))
    assert v.status == UNKNOWN and "ResNet-56: rec_lra has 1 seed of the 2" in v.text
    v = judge("scaling.depth", **depth_files(models={"resnet56": "resnet32"}))
    assert v.status == UNKNOWN and "ResNet-56: model resnet32 (the bar's: resnet56)" in v.text


FULL_BUDGET = {"train_examples": 58000, "epochs": 5, "optimizer": "sgd", "learning_rate": 0.05,
               "momentum": 0.9, "weight_decay": 5e-4, "augment": True, "batch_size": 128}
FULL_CONFIG = dict(SGD_CONFIG, epochs=5, train_limit=None, warmup_epochs=1.0,
                   schedule="cosine", augment=True)
PRESET = "rec_lra-mirror_taps_warm_m32"


def full(finals, budget=FULL_BUDGET):
    return judge("scaling.full_data", accuracy_resnet20_full=finals_json(
        finals, budget=budget, config=FULL_CONFIG))


def test_full_data_claim_is_judged_on_rec_lra_as_the_preset_sets_it():
    v = full({"bp": [0.925, 0.927], "rec_lra": [0.917, 0.919], PRESET: [0.922, 0.924]})
    assert v.status == HOLDS, v.text
    assert f"rec_lra as the preset sets it (`{PRESET}`)" in v.text
    assert "0.30 points below backprop (criterion: no more than 0.5 below)" in v.text
    assert "default rec_lra" in v.text and "0.80 points below backprop (outside the bar)" \
        in v.text
    v = full({"bp": [0.925, 0.927], PRESET: [0.917, 0.919]})
    assert v.status == FAILS and "0.80 points below" in v.text
    v = full({"bp": [0.925, 0.927], PRESET: [0.922]})
    assert v.status == UNKNOWN and f"{PRESET} has 1 seed of the 2" in v.text
    v = full({"bp": [0.925, 0.927], PRESET: [0.922, 0.924]},
             budget=dict(FULL_BUDGET, epochs=3, train_examples=12800))
    assert v.status == UNKNOWN and "train examples 12800 (the bar's: 58000)" in v.text
    assert "epochs 3 (the bar's: at least 5)" in v.text


def test_bfloat16_claims_compare_each_run_with_float32_of_its_seed():
    f32 = finals_json({"bp": [0.853, 0.86], "rec_lra": [0.850, 0.84]})
    bf16 = dict(CONFIG, mixed_precision="bfloat16")

    def verdict(finals, float32=f32, config=bf16):
        return judge("precision.resnet20_bfloat16", accuracy_resnet20=float32,
                     accuracy_resnet20_bfloat16=finals_json(finals, config=config))

    v = verdict({"bp": [0.855], "rec_lra": [0.848]})
    assert v.status == HOLDS, v.text
    assert "rec_lra seed 0: 84.80% vs 85.00% in float32 (-0.20 points)" in v.text
    assert verdict({"bp": [0.855], "rec_lra": [0.842]}).status == FAILS  # -0.80
    v = verdict({"bp": [0.861], "rec_lra": [0.848]})  # +0.80: "within" is either side
    assert v.status == FAILS and "bp seed 0: 86.10% vs 85.30% in float32 (+0.80" in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, float32=finals_json({"bp": [0.853]}))
    assert v.status == UNKNOWN and "rec_lra seed 0 has no float32 run" in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, config=dict(bf16, learning_rate=0.1))
    assert v.status == UNKNOWN and "differs from its float32 run in learning_rate 0.1 vs" \
        in v.text
    v = verdict({"bp": [0.855], "rec_lra": [0.848]}, config=dict(CONFIG, mixed_precision="float16"))
    assert v.status == UNKNOWN and "ran under float16 (the bar's: bfloat16)" in v.text


def test_float16_headroom_claim():
    units = {"conv_0": {"max_abs_error": 3.2, "max_abs_displacement": 12.0,
                        "max_abs_pre_activation": 40.0, "finite": True},
             "head": {"max_abs_error": 0.9, "max_abs_displacement": 250.0,
                      "max_abs_pre_activation": 8.0, "finite": True}}

    def verdict(headroom):
        return judge("precision.float16_headroom",
                     speed_mixed_precision={"float16_headroom": headroom})

    v = verdict(units)
    assert v.status == HOLDS and "largest |F e| 250 (head)" in v.text
    v = verdict(dict(units, conv_0=dict(units["conv_0"], max_abs_pre_activation=7e4)))
    assert v.status == FAILS and "largest |h| 7e+04 (conv_0)" in v.text
    assert verdict(dict(units, head=dict(units["head"], finite=False))).status == FAILS


def alignment_rules(rec_aligned_at=30):
    """alignment.angles' rules: rec_lra's synapses align by step 30 (or as given), wm's never,
    fa's stay at about 90 degrees (no mirror)."""
    def rule(synapses, aligned_at, first, last):
        return {"test_accuracy": 0.8, "steps": [0, 10, 20, 30], "synapse_angle": synapses,
                "final_angle": {"stem": last, "head": 0.0}, "first_angle_hidden_mean": first,
                "final_angle_hidden_mean": last,
                "steps_until_all_synapses_within_20deg": aligned_at}

    return {"rec_lra": rule({"stem": [80.0, 30.0, 15.0, 10.0],
                             "stage1_block1/conv_0": [85.0, 40.0, 18.0, 12.0],
                             "stage2_block1/conv_0/shortcut": [88.0, 50.0, 25.0, 19.0]},
                            rec_aligned_at, 85.0, 40.0),
            "wm": rule({"stem": [80.0, 40.0, 30.0, 25.0]}, None, 86.0, 45.0),
            "fa": rule({"stem": [90.0, 90.0, 90.0, 90.0]}, None, 88.0, 95.0)}


def test_alignment_claims_descent_and_mirror():
    data = {"rules": alignment_rules()}
    v = judge("alignment.resnet20_descent", alignment_resnet20=data)
    assert v.status == HOLDS and "stem 40.0° (mean 40.0°; other rules' means: wm 45.0°, fa " \
        "95.0°)" in v.text
    v = judge("alignment.resnet20_mirror", alignment_resnet20=data)
    assert v.status == HOLDS, v.text
    assert "every synapse within 20° of its forward kernel from step 30 of 30 on" in v.text
    assert "largest 19.0°, stage2_block1/conv_0/shortcut" in v.text and "wm never" in v.text
    v = judge("alignment.resnet20_mirror", alignment_resnet20={"rules": alignment_rules(None)})
    assert v.status == FAILS and "never every synapse within 20° within the budget" in v.text
    wrong = {"rules": dict(alignment_rules(), rec_lra=dict(
        alignment_rules()["rec_lra"], final_angle={"stem": 95.0, "head": 0.0}))}
    assert judge("alignment.mlp_descent", alignment_mlp=wrong).status == FAILS


def test_alignment_rows_reduce_the_series_to_first_and_last_probe():
    rec = next(r for r in s.alignment_rows(alignment_rules()) if r["rule"] == "rec_lra")
    assert rec["first_fw"] == pytest.approx((80 + 85 + 88) / 3)
    assert rec["last_fw"] == pytest.approx((10 + 12 + 19) / 3)
    assert (rec["worst_synapse"], rec["worst_fw"]) == ("stage2_block1/conv_0/shortcut", 19.0)
    assert (rec["synapses"], rec["last_step"], rec["aligned_at"]) == (3, 30, 30)


def test_export_parity_claim():
    def rows(diff):
        return {"rows": [{"model": "m", "savedmodel": {"max_abs_diff_probabilities": 1e-7},
                          "onnx": {"max_abs_diff_probabilities": diff}}]}

    v = judge("export.parity", export_artefacts=rows(2.4e-7))
    assert v.status == HOLDS and "2.4e-07 (parity bar 1e-4)" in v.text
    assert judge("export.parity", export_artefacts=rows(3e-4)).status == FAILS


def _keras_resnet50_json(cpu_keras, folded=23_528_522):
    """Step times of keras_resnet50 and the resnet50 preset: `cpu_keras` {rule: CPU seconds}
    against the preset's bp 2.0 s and rec_lra 2.2 s (ratio 1.1)."""
    data = step_json({"bp": 2.0, "rec_lra": 2.2}, model="resnet50")
    keras_rows = step_json(cpu_keras, model="keras_resnet50")["results"]
    for r in data["results"]:
        r.update(forward_params=23_528_522, forward_params_folded=None)
    for r in keras_rows:
        r.update(forward_params=23_581_642, forward_params_folded=folded)
    data["results"] += keras_rows
    return data


def test_keras_resnet50_claim():
    expect(judge("models.keras_resnet50",
                 speed_keras_resnet50=_keras_resnet50_json({"bp": 3.0, "rec_lra": 3.3})),
           HOLDS, "converted 23,581,642", "(23,528,522 with the conv biases", "preset 23,528,522",
           "converted 1.100, preset 1.100", "+0.0%")
    expect(judge("models.keras_resnet50",
                 speed_keras_resnet50=_keras_resnet50_json({"bp": 3.0, "rec_lra": 3.6})),
           FAILS, "converted 1.200, preset 1.100", "+9.1%")
    expect(judge("models.keras_resnet50",
                 speed_keras_resnet50=_keras_resnet50_json({"bp": 3.0, "rec_lra": 3.3},
                                                           folded=23_000_000)),
           FAILS, "(different)")
    expect(judge("models.keras_resnet50",
                 speed_keras_resnet50=_keras_resnet50_json({"bp": 3.0})), UNKNOWN)


def test_keras_model_claims():
    finals = {"bp": [0.90, 0.91, 0.92], "rec_lra": [0.895, 0.905, 0.91], "wm": [0.9] * 3,
              "fa": [0.8] * 3}
    expect(judge("models.keras_cnn", accuracy_keras_cnn=finals_json(finals)), HOLDS,
           "Keras CNN", "0.67 points below", "wm 90.00%", "fa 80.00%")
    finals["rec_lra"] = [0.85, 0.86, 0.87]
    expect(judge("models.keras_vgg", accuracy_keras_vgg=finals_json(finals)), FAILS,
           "Keras VGG-style network", "5.00 points below")
    expect(judge("models.keras_vgg", accuracy_keras_vgg=finals_json(
        {"bp": [0.9], "rec_lra": [0.9]})), UNKNOWN, "1 seed of the 3")
