"""benchmarks/report.py on synthetic result JSON: it renders, and its verdicts are right."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, REPO)

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


def write(folder, name, obj):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump(obj, f)


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
    assert "*Not run yet* (`python -m benchmarks.step_time`)" in text
    assert "| Cheaper updates: step time rec_lra <= bp | **not measured** |" in text
    assert "### `cifar10_resnet18`" in text and str(report.PUBLISHED["fmnist_rec_lra"]) in text

    os.remove(results / "accuracy_mlp.json")  # now only the (failing) quick run is there
    text = report.render(str(results), str(out))
    assert "`benchmarks/results/quick/accuracy_mlp.json`; quick suite" in text
    assert "| Issue 2: MLP bar | **does not hold** |" in text
