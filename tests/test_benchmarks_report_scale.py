"""The scale issue's part of the report on synthetic JSON (depth, full data, alignment over
training, converging sooner on the ResNets), and the suites of benchmarks/run.py."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, REPO)

from report_json import REV2_CONFIG, resnet_json, table_widths, write  # noqa: E402

from benchmarks import report, run  # noqa: E402
from benchmarks.report_common import SCRIPTS, invocations  # noqa: E402

DEPTH_MODELS = ("resnet20", "resnet32", "resnet56")
DEPTH_NAMES = ("resnet_accuracy", "resnet32_accuracy", "resnet56_accuracy")
# Final test accuracies per seed. bp - rec_lra: 0.70 at ResNet-20, 1.00 at 32, 1.40 at 56.
DEPTH = {
    "resnet20": {"bp": [0.855, 0.857], "rec_lra": [0.848, 0.850], "wm": [0.845], "fa": [0.60]},
    "resnet32": {"bp": [0.860, 0.862], "rec_lra": [0.851, 0.851], "wm": [0.849], "fa": [0.55]},
    "resnet56": {"bp": [0.865, 0.867], "rec_lra": [0.852, 0.852], "wm": [0.850], "fa": [0.50]},
}


def depth_files(finals=DEPTH, models=None):
    """`{model: resnet_accuracy.py JSON}`: each file's runs train `models[model]` (default: the
    model itself) at the ResNet benchmark's budget."""
    return {m: resnet_json(f, config=dict(REV2_CONFIG, model=(models or {}).get(m, m)))
            for m, f in finals.items()}


def depth(files):
    summaries = {m: report.accuracy_summary(d) for m, d in files.items()}
    return report.depth_verdict(summaries, report.depth_conditions(files))


def test_depth_bar_holds_fails_and_needs_its_seeds_and_models():
    v = depth(depth_files())
    assert v.status == report.HOLDS, v.text
    assert "ResNet-20 +0.70 points (2 seeds), ResNet-32 +1.00 points" in v.text
    assert "at ResNet-56 +1.40 points (<= 1.5)" in v.text
    assert "ResNet-56 minus ResNet-20 +0.70 points (<= 1.0)" in v.text
    assert "fa ResNet-20 +25.60, ResNet-32 +31.10, ResNet-56 +36.60" in v.text
    # 1.80 at ResNet-56: over both bars.
    deep = dict(DEPTH, resnet56=dict(DEPTH["resnet56"], rec_lra=[0.847, 0.849]))
    v = depth(depth_files(deep))
    assert v.status == report.FAILS and "at ResNet-56 +1.80 points (> 1.5)" in v.text
    # rec_lra above bp at ResNet-20, 1.40 below at ResNet-56: the gap grows by 1.70.
    grows = dict(DEPTH, resnet20=dict(DEPTH["resnet20"], rec_lra=[0.860, 0.858]))
    v = depth(depth_files(grows))
    assert v.status == report.FAILS, v.text
    assert "(<= 1.5)" in v.text and "ResNet-56 minus ResNet-20 +1.70 points (> 1.0)" in v.text
    # Off the bar's conditions: not measured, with what was measured.
    one_seed = dict(DEPTH, resnet56=dict(DEPTH["resnet56"], rec_lra=[0.852]))
    v = depth(depth_files(one_seed))
    assert v.status == report.UNKNOWN and "ResNet-56: rec_lra has 1 seed of the 2" in v.text
    v = depth(depth_files(models={"resnet56": "resnet32"}))
    assert v.status == report.UNKNOWN
    assert "ResNet-56: model resnet32 (the bar's: resnet56)" in v.text
    v = depth(depth_files({m: DEPTH[m] for m in ("resnet20", "resnet32")}))
    assert v.status == report.UNKNOWN and "needed at ResNet-56" in v.text
    assert report.depth_gaps({"resnet20": report.accuracy_summary(
        depth_files()["resnet20"])})["bp"] == {"resnet20": 0.0}


FULL_BUDGET = {"train_examples": 58000, "epochs": 5, "optimizer": "sgd", "learning_rate": 0.05,
               "momentum": 0.9, "weight_decay": 5e-4, "augment": True, "batch_size": 128,
               "mixed_precision": "off"}
FULL_CONFIG = dict(REV2_CONFIG, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4,
                   epochs=5, train_limit=None, warmup_epochs=1.0, schedule="cosine",
                   augment=True)
FULL = {  # per-epoch test accuracy per seed; finals: bp 92.60, rec_lra 92.30 (0.30 below)
    "bp": [[0.82, 0.87, 0.89, 0.91, 0.925], [0.83, 0.875, 0.895, 0.912, 0.927]],
    "rec_lra": [[0.80, 0.86, 0.885, 0.905, 0.922], [0.81, 0.865, 0.89, 0.908, 0.924]],
}


def curve_json(curves, budget, config, seconds=None):
    """resnet_accuracy.py's JSON from per-epoch curves: `curves` {rule: [curve per seed]},
    `seconds` {rule: epoch seconds} (40 by default)."""
    runs = []
    for rule, per_seed in curves.items():
        sec = (seconds or {}).get(rule, 40.0)
        for seed, curve in enumerate(per_seed):
            runs.append({"rule": rule, "seed": seed, "config": dict(config, rule=rule, seed=seed),
                         "final_test_accuracy": curve[-1], "mean_seconds_per_epoch": sec,
                         "wall_seconds": sec * len(curve) + 60.0,
                         "epochs": [{"epoch": i + 1, "test_accuracy": a, "epoch_seconds": sec}
                                    for i, a in enumerate(curve)]})
    return {"benchmark": "resnet_accuracy", "date": "2030-03-04 05:06:07",
            "machine": {"platform": "test-machine", "cpus": 2, "load_average": [3.0, 2.0, 1.0]},
            "budget": dict(budget), "runs": runs}


def full(curves, budget=FULL_BUDGET, config=FULL_CONFIG):
    data = curve_json(curves, budget, config)
    return report.full_data_verdict(report.accuracy_summary(data),
                                    report.full_data_conditions(data))


def test_full_data_bar_holds_fails_and_needs_the_full_split_and_five_epochs():
    v = full(FULL)
    assert v.status == report.HOLDS, v.text
    assert "0.30 points below backprop (criterion: no more than 0.5 below)" in v.text
    low = dict(FULL, rec_lra=[c[:-1] + [0.915] for c in FULL["rec_lra"]])
    v = full(low)  # 91.50 vs 92.60
    assert v.status == report.FAILS and "1.10 points below backprop" in v.text
    v = full({r: [c[:3] for c in cs] for r, cs in FULL.items()},
             budget=dict(FULL_BUDGET, epochs=3, train_examples=12800))
    assert v.status == report.UNKNOWN, v.text
    assert "train examples 12800 (the bar's: 58000)" in v.text
    assert "epochs 3 (the bar's: at least 5)" in v.text
    v = full(FULL, budget=dict(FULL_BUDGET, augment=False))
    assert v.status == report.UNKNOWN and "augment False (the bar's: True)" in v.text
    v = full(FULL, budget=dict(FULL_BUDGET, epochs=8))  # more epochs than the bar's minimum
    assert v.status == report.HOLDS


def test_full_data_bar_is_judged_on_rec_lra_as_the_preset_sets_it():
    preset = report.FULL_DATA_BAR["preset_rule"]
    low = [c[:-1] + [0.918] for c in FULL["rec_lra"]]  # the default: 0.80 below bp
    v = full(dict(FULL, rec_lra=low, **{preset: FULL["rec_lra"]}))
    assert v.status == report.HOLDS, v.text
    assert f"rec_lra as the preset sets it (`{preset}`)" in v.text
    assert "0.30 points below backprop (criterion: no more than 0.5 below)" in v.text
    assert "default rec_lra" in v.text and "0.80 points below backprop (outside the bar)" \
        in v.text
    v = full(dict(FULL, **{preset: low}))  # the preset's setting is the one judged
    assert v.status == report.FAILS and "0.80 points below" in v.text
    v = full({"bp": FULL["bp"], preset: [FULL["rec_lra"][0]]})  # one seed of the two
    assert v.status == report.UNKNOWN and f"{preset} has 1 seed of the 2" in v.text


def test_the_preset_trains_rec_lra_with_the_setting_the_full_data_bar_judges():
    import json
    import subprocess

    from trainers import presets

    config = presets.get("fmnist_resnet20")
    assert config.rule == "rec_lra"
    assert {k: getattr(config, k) for k in presets.SGD_MIRROR} == presets.SGD_MIRROR
    preset = report.FULL_DATA_BAR["preset_rule"]
    assert f"--rules=bp,rec_lra,{preset}" in invocations("resnet_full")[0]
    # resnet_accuracy.py (its own process: it defines absl flags): the variant trains the
    # preset's setting, its plain rec_lra the library's default mirror.
    code = ("import json, sys; from absl import flags; flags.FLAGS(['x']); "
            "from benchmarks import resnet_accuracy as ra; "
            "print(json.dumps([ra.run_config(n, 0).rule_params() "
            f"for n in ('rec_lra', {preset!r})]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    plain, variant = json.loads(out.strip().splitlines()[-1])
    assert {k: variant.get(k) for k in presets.SGD_MIRROR} == presets.SGD_MIRROR
    assert not set(presets.SGD_MIRROR) & set(plain)


# rec_lra reaches 80% after epoch 1 and 85% after epoch 2; bp after epochs 2 and 3.
REACH = {"bp": [[0.78, 0.84, 0.86], [0.79, 0.845, 0.862]],
         "rec_lra": [[0.81, 0.86, 0.87], [0.805, 0.855, 0.868]]}


def test_converges_sooner_on_the_resnets_by_epochs_and_by_seconds():
    data = curve_json(REACH, {}, REV2_CONFIG)
    summary = report.accuracy_summary(data, report.RESNET_THRESHOLDS)
    epochs, seconds = report.convergence_verdicts(summary, report.RESNET_THRESHOLDS)
    assert epochs.status == report.HOLDS and seconds.status == report.HOLDS
    assert "80%: rec_lra 1.0 epochs vs bp 2.0 epochs; 85%: rec_lra 2.0 epochs vs bp 3.0" \
        in epochs.text
    # Sooner in epochs, but each of rec_lra's epochs takes twice as long: later in seconds.
    data = curve_json(REACH, {}, REV2_CONFIG, seconds={"rec_lra": 80.0})
    summary = report.accuracy_summary(data, report.RESNET_THRESHOLDS)
    epochs, seconds = report.convergence_verdicts(summary, report.RESNET_THRESHOLDS)
    assert epochs.status == report.HOLDS and seconds.status == report.FAILS
    assert "85%: rec_lra 160 s vs bp 120 s" in seconds.text


def alignment_json(rec_aligned_at=30, recorded=True):
    """alignment.py --model=resnet20's JSON: rec_lra's synapses align by step 30 (or as given),
    wm's never do, fa's stay at about 90 degrees (no mirror)."""
    steps = [0, 10, 20, 30]

    def rule(synapses, aligned_at, first, last):
        r = {"test_accuracy": 0.8, "steps": steps, "synapse_angle": synapses,
             "angle": {"stem": [first, 60.0, 50.0, last], "head": [0.0] * 4},
             "feedback_angle": {u: v for u, v in synapses.items() if "/" not in u},
             "final_angle": {"stem": last, "head": 0.0},
             "first_angle_hidden_mean": first, "final_angle_hidden_mean": last,
             "seconds": 100.0}
        if recorded:
            r["steps_until_all_synapses_within_20deg"] = aligned_at
        return r

    return {"benchmark": "alignment", "preset": "fmnist_resnet20", "date": "2030-03-04",
            "epochs": 3, "every_n_steps": 10, "seed": 0,
            "budget_changes": {"train_limit": 12800, "batch_size": 128, "optimizer": "adam"},
            "rules": {
                "rec_lra": rule({"stem": [80.0, 30.0, 15.0, 10.0],
                                 "stage1_block1/conv_0": [85.0, 40.0, 18.0, 12.0],
                                 "stage2_block1/conv_0/shortcut": [88.0, 50.0, 25.0, 19.0]},
                                rec_aligned_at, 85.0, 40.0),
                "wm": rule({"stem": [80.0, 40.0, 30.0, 25.0]}, None, 86.0, 45.0),
                "fa": rule({"stem": [90.0, 90.0, 90.0, 90.0]}, None, 88.0, 80.0)}}


def test_alignment_over_training_rows_and_the_mirror_verdict():
    rows = report.alignment_rows(alignment_json()["rules"])
    rec = next(r for r in rows if r["rule"] == "rec_lra")
    assert rec["first_fw"] == pytest.approx((80 + 85 + 88) / 3)
    assert rec["last_fw"] == pytest.approx((10 + 12 + 19) / 3)
    assert (rec["worst_synapse"], rec["worst_fw"]) == ("stage2_block1/conv_0/shortcut", 19.0)
    assert (rec["synapses"], rec["last_step"], rec["aligned_at"]) == (3, 30, 30)
    v = report.mirror_verdict(rows)
    assert v.status == report.HOLDS, v.text
    assert "every synapse within 20° of its forward kernel from step 30 of 30 on" in v.text
    assert "largest 19.0°, stage2_block1/conv_0/shortcut" in v.text and "wm never" in v.text
    v = report.mirror_verdict(report.alignment_rows(alignment_json(None)["rules"]))
    assert v.status == report.FAILS
    assert "never every synapse within 20° within the budget of 30 steps" in v.text
    v = report.mirror_verdict(report.alignment_rows(alignment_json(recorded=False)["rules"]))
    assert v.status == report.UNKNOWN and "predates" in v.text
    assert report.mirror_verdict([]).status == report.UNKNOWN


def test_report_renders_the_scale_section_and_every_verdict_at_a_glance(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    for name, (model, data) in zip(DEPTH_NAMES, depth_files().items()):
        write(str(results), name, data)
    (results / "resnet_depth.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write(str(results), "resnet_full", curve_json(FULL, FULL_BUDGET, FULL_CONFIG))
    (results / "resnet_full.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write(str(results), "alignment_resnet20", alignment_json())
    write(str(results), "suite_run", {
        "suite": "full", "date": "2030-03-04 00:00:00", "total_seconds": 3600.0,
        "machine": {"platform": "test-machine", "cpus": 2}, "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 2.0, 2.0], "benchmarks": [
            {"name": "resnet_full", "status": "ok", "started": "2030-03-04 01:00:00",
             "finished": "2030-03-04 06:00:00", "load_before": [5.0, 4.0, 3.0],
             "load_after": [6.0, 5.0, 4.0], "seconds": 18000.0}]})
    text = report.render(str(results), str(tmp_path / "BENCHMARKS.md"))
    (tmp_path / "BENCHMARKS.md").write_text(text)  # to look at after a failure

    glance = {
        "Scale: ResNet-56, rec_lra within 1.5 of bp and its gap at most 1.0 above "
        "ResNet-20's": "holds",
        "Scale: full data, the preset's recipe, rec_lra within 0.5 of bp": "holds",
        "Converges sooner on ResNet-20 (epochs to 80% and 85%)": "does not hold",
        # The same epochs as bp (1 and 2): as fast is not sooner.
        "Converges sooner on full-data ResNet-20 (epochs to 80% and 85%)": "does not hold",
        "Converges sooner on full-data ResNet-20 (wall-clock to 80% and 85%)": "does not hold",
        "Alignment over training, ResNet-20: rec_lra's updates are descent directions": "holds",
        "Alignment over training, ResNet-20: the mirror brings every rec_lra synapse within "
        "20°": "holds",
    }
    for claim, status in glance.items():
        assert f"| {claim} | **{status}** |" in text, claim
    assert "## Scale: depth, full data, alignment over training" in text
    assert "| ResNet-56 | `rec_lra` | 85.20 ± 0.00 [85.20, 85.20] (2 seeds) | 0, 1 | +1.40 |" \
        in text
    assert "| `wm` | +1.10 | +1.20 | +1.60 |" in text
    assert "![resnet_depth.png](benchmarks/results/resnet_depth.png)" in text
    assert "| 5 | 92.60 [92.50, 92.70] | 92.30 [92.20, 92.40] |" in text
    assert "![resnet_full.png](benchmarks/results/resnet_full.png)" in text
    assert "For the preset's docstring: `python -m benchmarks.resnet_accuracy --train_limit=0" \
        in text
    assert "on test-machine (2 CPUs), 5 epochs: bp 92.60% in 4 min per run" in text
    assert "| `wm` | 80.00 | 30 | 86.0 | 45.0 | 1 | 80.0 | 25.0 | 25.0 | " \
           "never within the budget |" in text
    assert "| `fa` | 80.00 | 30 | 88.0 | 80.0 | 1 | 90.0 | 90.0 | 90.0 | — (no mirror) |" in text
    # Sources: the load the file records and the load around its benchmark in the suite run.
    assert "| resnet_full | `benchmarks/resnet_accuracy.py --train_limit=0" in text
    assert "| full | 2030-03-04 05:06:07 | test-machine, 2 CPUs | 3.0, 2.0, 1.0; suite run: " \
           "5.0, 4.0, 3.0 before, 6.0, 5.0, 4.0 after |" in text
    assert "last ran 2030-03-04 00:00:00 on test-machine, 2 CPUs, load 1.0, 1.0, 1.0 at the " \
           "start and 2.0, 2.0, 2.0 at the end" in text
    assert all(len(w) == 1 for w in table_widths(text)), table_widths(text)

    for name in ("resnet56_accuracy", "resnet_full", "alignment_resnet20"):
        os.remove(results / f"{name}.json")
    write(str(results), "suite_run", {"suite": "full", "date": "2030-03-05 00:00:00",
                                      "complete": False, "total_seconds": 600.0,
                                      "benchmarks": []})
    text = report.render(str(results), str(tmp_path / "BENCHMARKS.md"))
    assert "last ran 2030-03-05 00:00:00 and had run 10.0 minutes when last recorded: still " \
           "running, or interrupted" in text
    assert "ResNet-56: *Not run yet* (`python -m benchmarks.resnet_accuracy --model=resnet56 " \
           "--seeds=0,1 --rules=bp,rec_lra --out=benchmarks/results/resnet56_accuracy.json` " \
           "then `python -m benchmarks.resnet_accuracy --model=resnet56 --seeds=0 " \
           "--rules=wm,fa" in text
    for claim in glance:
        if "ResNet-20 (epochs" not in claim:
            assert f"| {claim} | **not measured** |" in text, claim


def test_the_full_suite_runs_what_the_report_names_and_the_quick_suite_less():
    def words(invocation):  # the arguments but --out and --noresume
        return [a for a in invocation if not a.startswith(("--out=", "--noresume"))]

    for name, (module, _, full) in {**run.SUITE, **run.OPTIONAL}.items():
        assert name in SCRIPTS, name
        cmds = run.commands(name, "full", "/results")
        assert all(c[-1] == f"--out=/results/{name}.json" for c in cmds)
        scripts = [s.split(" ") for s in invocations(name)]
        assert [s[0] for s in scripts] == [module.replace(".", "/") + ".py"] * len(cmds), name
        assert [words(s[1:]) for s in scripts] == [words(c[3:]) for c in cmds], name
    assert all(run.in_suite(n, "full") for n in run.SUITE)
    quick = [n for n in run.SUITE if run.in_suite(n, "quick")]
    for name in ("resnet32_accuracy", "resnet56_accuracy", "resnet_depth", "resnet_full",
                 "resnet_ablation"):
        assert name not in quick
        with pytest.raises(ValueError, match="not part of the quick suite"):
            run.commands(name, "quick", "/results")
    full = list(run.SUITE)  # the timing runs come last
    assert full[-4:] == ["diagnostics_overhead", "mixed_precision", "step_time", "step_time_bn"]
    assert full.index("resnet_depth") > full.index("resnet56_accuracy")
    first, second = run.commands("resnet56_accuracy", "full", "/results")
    assert "--noresume" in first and "--noresume" not in second  # the second keeps the first's


def test_a_suite_run_records_the_load_and_dates_of_every_benchmark(tmp_path, monkeypatch):
    # A stand-in benchmark of two invocations: a module that does nothing when run.
    monkeypatch.setitem(run.SUITE, "stub", ("benchmarks.environment", None, ([], [])))
    seen = []
    records, _ = run.run("full", ["stub"], str(tmp_path / "out"), str(tmp_path / "logs"),
                         lambda records, seconds: seen.append(len(records)))
    assert seen == [1]  # suite_run.json is rewritten after every benchmark
    (r,) = records
    assert r["status"] == "ok" and len(r["commands"]) == 2
    assert len(r["load_before"]) == 3 and len(r["load_after"]) == 3
    assert r["started"] <= r["finished"]


def test_depth_plot_draws_the_gaps(tmp_path):
    from benchmarks import depth_plot

    summaries = {m: report.accuracy_summary(d) for m, d in depth_files().items()}
    gaps = report.depth_gaps(summaries)
    seeds = {m: {r: len(s["seeds"]) for r, s in summary.items()}
             for m, summary in summaries.items()}
    path = tmp_path / "resnet_depth.png"
    depth_plot.plot(gaps, seeds, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
