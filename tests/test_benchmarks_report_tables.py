"""The report's table data on synthetic results, the result files it reads, and one golden
snapshot: BENCHMARKS.md is what the committed results render to."""

import os

import pytest
from report_json import (
    ADAM_BUDGET,
    CONFIG,
    REPO,
    SGD_BUDGET,
    SGD_CONFIG,
    accuracy_json,
    chain_json,
    finals_json,
    step_json,
    table_widths,
    write,
)

from benchmarks import curves, report
from benchmarks.report import claims, frame
from benchmarks.report import summaries as s
from benchmarks.report.results import Results


def test_summary_matches_a_hand_computation():
    data = accuracy_json({"bp": [[0.80, 0.86, 0.896], [0.82, 0.87, 0.900]],
                          "rec_lra": [[0.851, 0.88, 0.890], [0.86, 0.885, 0.894]]},
                         seconds={"rec_lra": 12.0})
    summary = s.accuracy_summary(data)
    assert summary["rec_lra"]["final_test_accuracy_mean"] == pytest.approx(0.892)
    assert summary["bp"]["final_test_accuracy_std"] == pytest.approx(0.004 / 2 ** 0.5)
    # rec_lra reaches 85% after epoch 1 in both seeds (12 s), 88% after epoch 2 (24 s);
    # bp reaches 85% after epoch 2 (20 s) and 88% after epoch 3 (30 s).
    assert summary["rec_lra"]["reach"]["0.85"]["epochs_mean"] == 1
    assert summary["rec_lra"]["reach"]["0.88"]["seconds_mean"] == pytest.approx(24.0)
    assert summary["bp"]["reach"]["0.88"]["epochs_mean"] == 3
    assert curves.time_to_reach(data["runs"][0], 0.86) == (2, 20.0)


def test_accuracy_rows():
    summary = s.accuracy_summary(finals_json({"rec_lra": [0.85, 0.86], "bp": [0.87, 0.88],
                                              "rec_lra-first": [0.80]}))
    rows = report.accuracy.rule_rows(summary, {"bp": "91.37"})
    assert [r[0] for r in rows] == ["`bp`", "`rec_lra`", "`rec_lra-first`"]  # variants' order
    assert rows[1] == ["`rec_lra`", "rec-LRA as the library sets it by default",
                       "85.50 ± 0.71 [85.00, 86.00] (2 seeds)", "0, 1", "-2.00", "10.0", "20",
                       "—"]
    assert rows[0][4] == "—" and rows[0][-1] == "91.37"


def test_ablation_rows_name_the_settings_that_differ_from_the_default():
    data = finals_json({"rec_lra": [0.85], "rec_lra-no_mirror": [0.75], "rec_lra-first": [0.45]},
                       changes={"rec_lra-no_mirror": {"synapse_update": "lra"},
                                "rec_lra-first": {"feedback": "skip", "synapse_update": "lra"}})
    assert report.accuracy.ablation_rows(data, "rec_lra") == [
        ("`rec_lra`", "nothing: the default", "—", "85.00", "—"),
        ("`rec_lra-no_mirror`", "the weight mirror: F follows dF = gamma dW, so it stays as "
         "random as it started", "synapse_update=lra", "75.00", "-10.00"),
        ("`rec_lra-first`", "all of it: the first reconstruction (skip synapses, raw errors, "
         "nothing through BatchNorm, dF = gamma dW)", "feedback=skip, synapse_update=lra",
         "45.00", "-40.00")]


def test_mirror_rows_compare_with_bp_of_the_same_seed_and_hyper_parameters():
    reference = finals_json({"bp": [0.87, 0.88], "rec_lra": [0.85, 0.86]}, budget=SGD_BUDGET,
                            config=SGD_CONFIG)
    m32 = {"mirror_batch": 32, "mirror_normalise": "taps", "mirror_warm_start": True}
    tried = finals_json({"rec_lra-m32": [0.875], "rec_lra-beta": [0.85]}, budget=SGD_BUDGET,
                        config=SGD_CONFIG, seeds=[1],
                        changes={"rec_lra-m32": m32, "rec_lra-beta": {"beta": 0.01}})
    assert report.accuracy.mirror_rows(tried, reference) == [
        ("`rec_lra-m32`", "mirror_batch=32, mirror_normalise=taps, mirror_warm_start=True",
         "1", "87.50", "-0.50"),  # against bp's seed-1 run (88.0), not bp's mean
        ("`rec_lra-beta`", "beta=0.01", "1", "85.00", "-3.00")]
    adam = finals_json({"rec_lra-m32": [0.85]}, changes={"rec_lra-m32": m32})
    assert report.accuracy.mirror_rows(adam, reference)[0][-1] == "—"  # no bp trained alike


def test_sweep_rows_and_reach_rows():
    data = accuracy_json({"bp": [[0.86, 0.89]], "rec_lra": [[0.85, 0.87]]})
    for run in data["runs"]:
        run.update(setting="cos_" + run["rule"], label="cosine: " + run["rule"])
    assert report.accuracy.sweep_rows(s.accuracy_summary(data, key="setting")) == [
        ("cosine: bp", "89.00", "10.0", "2"), ("cosine: rec_lra", "87.00", "10.0", "never")]
    summary = s.accuracy_summary(accuracy_json({"bp": [[0.86, 0.89], [0.84, 0.88]]}),
                                 (0.85, 0.885))
    assert report.convergence.reach_rows(summary, (0.85, 0.885)) == [
        ["`bp`", "1.5", "15", "2.0 (1/2 seeds)", "20 (1/2 seeds)"]]


STEP_CPU = {"forward": 1.0, "bp": 4.0, "rec_lra": 4.12, "rec_lra-fixed_synapses": 3.914}


def test_step_rows_ratios_and_the_mirrors_share():
    rows = {r["rule"]: r for r in s.step_rows(step_json(STEP_CPU))}
    assert rows["rec_lra"]["step_per_forward"] == pytest.approx(4.12)
    assert rows["rec_lra"]["cpu_ratio_to_bp"] == pytest.approx(1.03)
    assert rows["rec_lra"]["mirror_share"] == pytest.approx(0.05)
    assert rows["bp"]["mirror_share"] is None
    table = report.speed.cost_rows(list(rows.values()), claims.CLAIMS["speed.step_cost"].bar)
    assert table[1] == ("`rec_lra`", "4.12", "4.53", "1.030", "1.030", "8.24", "2100", "1.05")
    assert [r[0] for r in table] == ["`bp`", "`rec_lra`", "`rec_lra-fixed_synapses`"]


def test_batch_norm_chain_and_overhead_rows():
    def row(rule, wall, cpu):
        return {"rule": rule, "median_step_seconds": wall, "median_cpu_seconds": cpu}

    bn = {"results": [row("bp", 0.150, 0.290), row("bp-keras_bn", 0.200, 0.400),
                      row("rec_lra", 0.180, 0.350), row("rec_lra-keras_bn", 0.240, 0.500),
                      row("fa", 0.2, 0.4)]}
    assert report.speed.batch_norm_rows(bn) == [("`bp`", "200", "150", "0.75", "0.72"),
                                                ("`rec_lra`", "240", "180", "0.75", "0.70")]
    chain = chain_json({"rec_lra": [139, 373], "bp": [99, 261]})["results"]
    rules, rows = report.speed.chain_rows(chain)
    assert rules == ["bp", "rec_lra"] and rows[1] == ["r20", 20, 1, 261, 373]


def test_depth_and_epoch_rows():
    summaries = {m: s.accuracy_summary(finals_json(f)) for m, f in (
        ("resnet20", {"bp": [0.855, 0.857], "rec_lra": [0.848, 0.850]}),
        ("resnet56", {"bp": [0.865, 0.867], "rec_lra": [0.852, 0.852], "fa": [0.5]}))}
    rows = report.scaling.depth_rows(summaries)
    assert rows[3] == ("ResNet-56", "`fa`", "50.00 (1 seed)", "0", "+36.60", "10.0")
    assert report.scaling.gap_rows(summaries) == [["`fa`", "n/a", "+36.60"],
                                           ["`rec_lra`", "+0.70", "+1.40"]]
    assert s.depth_gaps(summaries)["bp"] == {"resnet20": 0.0, "resnet56": 0.0}
    epochs = report.scaling.epoch_rows(s.accuracy_summary(finals_json({"bp": [0.92, 0.94]})))
    assert epochs == [["1", "88.00 [87.00, 89.00]"], ["2", "93.00 [92.00, 94.00]"]]


def test_precision_rows():
    f32 = finals_json({"bp": [0.853], "rec_lra": [0.850]})
    mixed = finals_json({"bp": [0.855], "rec_lra": [0.848]},
                        config=dict(CONFIG, mixed_precision="bfloat16", beta=0.2))
    rows = report.precision.pair_rows(s.precision_pairs(mixed, f32, ("bp", "rec_lra")), "ResNet-20")
    assert rows[0] == ("ResNet-20", "`bp`", 0, "85.30", "85.50", "+0.20", "beta 0.2 vs None")
    policies = [{"policy": p, "rule": "bp", "median_step_seconds": w, "median_cpu_seconds": c}
                for p, w, c in (("float32", 0.4, 0.38), ("mixed_bfloat16", 0.3, 0.304))]
    assert report.precision.policy_rows(policies)[1] == ("mixed_bfloat16", "`bp`", "0.30", "0.30",
                                                  "0.75", "0.80")


def peers_json():
    def run(library, rule, seed, acc):
        return {"library": library, "rule": rule, "seed": seed, "final_test_accuracy": acc,
                "epochs": [{"epoch": 1, "test_accuracy": acc, "epoch_seconds": 30.0}],
                "mean_seconds_per_epoch": 30.0, "wall_seconds": 100.0,
                "wall_seconds_including_per_epoch_tests": 110.0}

    runs = [run(lib, rule, seed, acc) for lib, table in (
        ("rlra_tf", {"bp": (0.860, 0.858), "rec_lra": (0.855, 0.853)}),
        ("biotorch", {"bp": (0.874, 0.870), "fa": (0.506, 0.52), "usf": (0.847, 0.843)}))
        for rule, accs in table.items() for seed, acc in enumerate(accs)]
    timing = [{"library": lib, "rule": rule, "threads": t, "median_step_seconds": w,
               "min_step_seconds": 0.9 * w, "median_cpu_seconds": 2 * w, "step_seconds": [w] * 4,
               "load_average_during": [1.5, 2.5], "first_step_seconds": 9.0}
              for (lib, rule, t), w in {("rlra_tf", "bp", 2): 0.27, ("biotorch", "bp", 2): 0.28,
                                        ("rlra_tf", "rec_lra", 2): 0.32,
                                        ("biotorch", "fa", 2): 0.33}.items()]
    return {"runs": runs, "step_time": {"rows": timing}}


def test_peers_rows_and_verdicts():
    data = peers_json()
    summaries = s.peer_summaries(data["runs"])
    usf = next(r for r in report.peers.accuracy_rows(summaries) if r[0] == "`usf`")
    assert usf[:4] == ["`usf`", "—", "—", "—"] and usf[4].startswith("84.50") and usf[5] == "-2.70"
    assert report.peers.ratio_rows(data["step_time"]) == [(2, "`bp` / `bp`", "270", "280", "0.96",
                                                    "0.96"), (2, "`rec_lra` / `fa`", "320",
                                                              "330", "0.97", "0.97")]
    results = Results.from_data({"peers_biotorch": data})
    gap = claims.judge("peers.accuracy_gap", results)
    assert gap.status == "holds" and "usf" in gap.text and "2.70 points behind" in gap.text
    assert claims.judge("peers.rec_lra_step", results).status == "holds"
    # fa vs fa was not timed: the bar on bp and fa is not measured.
    v = claims.judge("peers.bp_fa_steps", results)
    assert v.status == "not measured" and "fa vs fa at 2 thread(s)" in v.text


def test_export_rows():
    entry = {"export_seconds": 0.14, "verify_seconds": 0.08, "bytes": 1.4e6,
             "bytes_vs_keras": 0.169, "bytes_vs_keras_without_optimizer": 0.504,
             "max_abs_diff_logits": 8.3e-7, "feedback_weights_found": 0}
    rows = [{"model": "mlp", "keras_bytes": 8.2e6, "onnx": entry}]
    assert report.export.float_rows(rows) == [("mlp", "onnx", "0.14", "0.08", "1.4", "8.2", "0.169",
                                        "0.504", "8.3e-07", 0)]
    assert report.export.int8_rows(rows) == []


def test_results_prefer_the_full_suite_and_say_what_is_not_run(tmp_path):
    folder = tmp_path / "benchmarks" / "results"
    write(folder, "accuracy_mlp", accuracy_json({"bp": [[0.9]]}, date="2030-01-01 00:00:00"))
    write(folder / "quick", "accuracy_mlp", accuracy_json({"bp": [[0.8]]}))
    write(folder / "quick", "alignment_mlp", {"date": "2030-01-02"})
    write(folder / "archive", "accuracy_resnet20", {"date": "2030-01-03"})  # not read
    results = Results(str(folder))
    assert results.get("accuracy_mlp").suite == "full"
    assert results.get("accuracy_mlp").label().startswith(
        "Source: `benchmarks/results/accuracy_mlp.json`; full suite; 2030-01-01 00:00:00")
    assert results.get("alignment_mlp").shown_path == "benchmarks/results/quick/alignment_mlp.json"
    assert results.get("accuracy_resnet20") is None
    with pytest.raises(ValueError, match="received: 'resnet_accuracy'"):
        results.get("resnet_accuracy")
    os.remove(folder / "accuracy_mlp.json")
    assert Results(str(folder)).get("accuracy_mlp").suite == "quick"


def test_the_report_is_what_the_committed_results_render_to(tmp_path):
    """The one golden snapshot: BENCHMARKS.md equals the report rendered now from
    benchmarks/results/ (regenerate with `python -m benchmarks.run --report_only`)."""
    path = os.path.join(REPO, "BENCHMARKS.md")
    text = report.render(os.path.join(REPO, "benchmarks", "results"), path)
    with open(path) as f:
        assert f.read() == text, "BENCHMARKS.md is out of date: python -m benchmarks.run " \
                                 "--report_only"
    assert all(len(w) == 1 for w in table_widths(text)), table_widths(text)
    # Every section's verdicts reach the glance table: one row per claim.
    glance = text.split("## Verdicts at a glance")[1].split("\n## ")[0]
    assert glance.count("**") == 2 * len(claims.CLAIMS)


def test_sections_without_results_judge_nothing(tmp_path):
    """With no result file every claim is not measured (nothing is invented) and the report
    still renders well-formed tables."""
    (tmp_path / "results").mkdir()
    results = Results(str(tmp_path / "results"))
    for section in report.SECTIONS:
        part = report.render_section(section, results, str(tmp_path))
        assert set(part.verdicts) == set(claims.of(section.__name__.rsplit(".", 1)[1]))
        assert {v.status for v in part.verdicts.values()} == {"not measured"}
    text = report.render(str(tmp_path / "results"), str(tmp_path / "B.md"))
    assert all(len(w) == 1 for w in table_widths(text))
    assert all(section.TITLE in text for section in report.SECTIONS)


def test_sources_say_which_suite_and_load_and_an_unfinished_suite_run(tmp_path):
    folder = tmp_path / "benchmarks" / "results"
    write(folder / "quick", "accuracy_resnet20", finals_json(
        {"bp": [0.86], "rec_lra": [0.85]}, budget=dict(ADAM_BUDGET, epochs=2)))
    log = {"suite": "quick", "date": "2030-03-05 00:00:00", "complete": False,
           "total_seconds": 600.0, "machine": {"platform": "test", "cpus": 2},
           "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 2.0, 2.0], "benchmarks": [
               {"name": "accuracy_resnet20", "status": "ok", "started": "2030-01-02 00:00:00",
                "finished": "2030-01-03 00:00:00", "load_before": [5.0, 4.0, 3.0],
                "load_after": [6.0, 5.0, 4.0]}]}
    write(folder / "quick", "suite_run", log)
    rows = {r[0]: r for r in frame.source_rows(Results(str(folder)))}
    assert rows["accuracy_resnet20"][2:] == (
        "quick", "2030-01-02 03:04:05", "test-machine, 2 CPUs",
        "3.0, 2.0, 1.0; suite run: 5.0, 4.0, 3.0 before, 6.0, 5.0, 4.0 after")
    assert rows["accuracy_resnet20"][1].endswith(
        "--out=benchmarks/results/quick/accuracy_resnet20.json`")
    assert rows["accuracy_mlp"][2] == "not run yet"
    assert "had run 10.0 minutes when last recorded: still running, or interrupted (ok: " \
           "accuracy_resnet20)" in frame.suite_line("quick", log)
