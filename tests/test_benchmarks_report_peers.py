"""benchmarks/report_peers.py on synthetic peers JSON: its verdicts and its section."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, REPO)

from benchmarks import peers_lib, report_peers  # noqa: E402
from benchmarks.report_common import Source  # noqa: E402
from benchmarks.report_verdicts import FAILS, HOLDS, UNKNOWN  # noqa: E402


def run(library, rule, seed, curve):
    return {"library": library, "rule": rule, "seed": seed, "final_test_accuracy": curve[-1],
            "epochs": [{"epoch": i + 1, "test_accuracy": a, "test_loss": 1 - a,
                        "epoch_seconds": 30.0} for i, a in enumerate(curve)],
            "mean_seconds_per_epoch": 30.0, "wall_seconds": 100.0}


# Final accuracies per (library, rule), two seeds each.
OURS = {"bp": (0.860, 0.858), "fa": (0.61, 0.55), "wm": (0.851, 0.849),
        "rec_lra": (0.855, 0.853)}  # rec_lra 0.50 points behind bp
THEIRS = {"bp": (0.874, 0.870), "fa": (0.506, 0.52), "usf": (0.847, 0.843),
          "frsf": (0.80, 0.81)}  # best local rule usf, 2.70 points behind bp


def summary(ours=OURS, theirs=THEIRS):
    runs = [run(lib, rule, seed, [acc - 0.05, acc])
            for lib, table in (("rlra_tf", ours), ("biotorch", theirs))
            for rule, accs in table.items() for seed, acc in enumerate(accs)]
    return peers_lib.summaries(runs), runs


def timing_rows(seconds):
    """`seconds`: {(library, rule, threads): (wall, cpu)} -> rows as `time_steps` gives."""
    return [{"library": lib, "rule": rule, "threads": t, "median_step_seconds": w,
             "min_step_seconds": 0.9 * w, "mean_step_seconds": w, "median_cpu_seconds": c,
             "mean_cpu_seconds": c, "step_seconds": [w] * 4, "cpu_seconds": [c] * 4,
             "load_average_during": [1.5, 2.5], "first_step_seconds": 9.0}
            for (lib, rule, t), (w, c) in seconds.items()]


FAST = {("rlra_tf", "bp", 2): (0.27, 0.50), ("biotorch", "bp", 2): (0.28, 0.52),
        ("rlra_tf", "fa", 2): (0.30, 0.55), ("biotorch", "fa", 2): (0.33, 0.60),
        ("rlra_tf", "rec_lra", 2): (0.32, 0.58), ("biotorch", "usf", 2): (0.35, 0.62)}


def test_summaries_give_each_rule_its_gap_to_its_own_backprop():
    s, _ = summary()
    assert abs(s["rlra_tf"]["rec_lra"]["gap_to_bp"] - 0.005) < 1e-9
    assert abs(s["biotorch"]["usf"]["gap_to_bp"] - 0.027) < 1e-9
    assert s["biotorch"]["bp"]["gap_to_bp"] == 0.0


def test_accuracy_gap_verdict_holds_when_rec_lra_is_closer_to_its_backprop():
    v = report_peers.accuracy_gap_verdict(summary()[0])
    assert v.status == HOLDS
    # The best local rule is BioTorch's usf, not its fa or frsf.
    assert "usf" in v.text and "0.50 points behind" in v.text and "2.70 points behind" in v.text


def test_accuracy_gap_verdict_fails_when_rec_lra_falls_further_behind():
    ours = dict(OURS, rec_lra=(0.82, 0.83))  # 3.4 points behind bp, usf only 2.7
    v = report_peers.accuracy_gap_verdict(summary(ours=ours)[0])
    assert v.status == FAILS and "3.40 points behind" in v.text
    # A local rule ahead of its backprop is said so, not as a negative gap.
    theirs = dict(THEIRS, usf=(0.88, 0.88))
    v = report_peers.accuracy_gap_verdict(summary(ours=ours, theirs=theirs)[0])
    assert v.status == FAILS and "0.80 points ahead of BioTorch's bp" in v.text


def test_accuracy_gap_verdict_needs_both_backprops_and_a_local_rule():
    assert report_peers.accuracy_gap_verdict({}).status == UNKNOWN
    s = summary(theirs={"bp": (0.87, 0.87)})[0]
    assert report_peers.accuracy_gap_verdict(s).status == UNKNOWN


def test_step_time_verdicts_hold_when_ours_is_no_slower():
    ratios = peers_lib.step_ratios(timing_rows(FAST))
    assert {(r["rlra_tf"], r["biotorch"]) for r in ratios} == {("bp", "bp"), ("fa", "fa"),
                                                               ("rec_lra", "fa"),
                                                               ("rec_lra", "usf")}
    v = report_peers.step_time_verdict(ratios)
    assert v.status == HOLDS and "ratio 0.96" in v.text and "ratio 0.91" in v.text
    v = report_peers.rec_lra_step_verdict(ratios)
    assert v.status == HOLDS and "ratio 0.97" in v.text


def test_step_time_verdicts_fail_when_ours_is_slower():
    slow = dict(FAST)
    slow[("rlra_tf", "fa", 2)] = (0.36, 0.50)  # 0.36 / 0.33 = 1.09 wall, CPU still faster
    slow[("rlra_tf", "rec_lra", 2)] = (0.40, 0.70)
    ratios = peers_lib.step_ratios(timing_rows(slow))
    v = report_peers.step_time_verdict(ratios)
    assert v.status == FAILS and "ratio 1.09" in v.text
    assert "CPU-time ratio is on the other side of the bar for fa vs fa" in v.text
    assert report_peers.rec_lra_step_verdict(ratios).status == FAILS


def test_step_time_verdicts_need_every_thread_count():
    # bp faster at 2 threads but slower at 1 (BioTorch's bp gains less from the 2nd thread):
    # the bar does not hold.
    both = dict(FAST)
    for (lib, rule, _), (w, c) in FAST.items():
        both[(lib, rule, 1)] = (w * (1.2 if (lib, rule) == ("biotorch", "bp") else 1.5), c)
    ratios = peers_lib.step_ratios(timing_rows(both))
    assert report_peers.step_time_verdict(ratios).status == FAILS
    assert report_peers.rec_lra_step_verdict(ratios).status == HOLDS
    # A pair missing at one thread count leaves the bar unmeasured.
    del both[("biotorch", "fa", 1)]
    v = report_peers.step_time_verdict(peers_lib.step_ratios(timing_rows(both)))
    assert v.status == UNKNOWN and "fa vs fa at 1 thread(s)" in v.text
    assert report_peers.rec_lra_step_verdict([]).status == UNKNOWN


def peers_json(with_timing=True):
    s, runs = summary()
    data = {"benchmark": "peers", "date": "2030-01-02 03:04:05",
            "machine": {"platform": "test", "cpus": 2, "load_average": [3.0, 2.0, 1.0]},
            "versions": {"tensorflow": "2.21.0", "torch": "2.14.1", "biotorch": "0.0.16"},
            "budget": {"train_examples": 12800, "epochs": 3, "batch_size": 128,
                       "optimizer": "adam", "learning_rate": 0.001,
                       "schedule": "cosine after 0.2 epochs of linear warm-up"},
            "settings": {"input": "28x28x1 for both", "threads": 2},
            "forward_params": {"rlra_tf": 272186},
            "runs": [dict(r, forward_params=269434) if r["library"] == "biotorch" else r
                     for r in runs],
            "summary": s}
    if with_timing:
        rows = timing_rows(FAST)
        data["step_time"] = {"date": "2030-01-02 04:00:00", "load_average_before": [1.0],
                             "load_average_after": [2.0], "rows": rows,
                             "ratios": peers_lib.step_ratios(rows),
                             "settings": {"rounds": 6, "steps_per_round": 5, "threads": [2]}}
    return data


def test_section_renders_tables_and_verdicts(tmp_path):
    src = Source("peers", peers_json(), str(tmp_path / "peers.json"), "full")
    text, verdicts = report_peers.section_peers({"peers": src}, str(tmp_path), str(tmp_path))
    assert text.startswith("## Against BioTorch")
    assert [c for c, _ in verdicts] == list(report_peers.CLAIMS)
    assert [v.status for _, v in verdicts] == [HOLDS, HOLDS, HOLDS]
    # Accuracy row of usf: BioTorch's mean and its gap to BioTorch's bp; no rlra_tf entry.
    usf = next(line for line in text.splitlines() if line.startswith("| `usf`"))
    assert "84.50" in usf and "-2.70" in usf and usf.count("—") == 3
    assert "| 2 | `bp` / `bp` | 270 | 280 | 0.96 | 0.96 |" in text
    assert "during it median 2.5 (range 1.5-2.5)" in text
    assert "rlra_tf 272,186, BioTorch 269,434" in text
    assert "**Verdict (accuracy gap): holds**" in text


def test_section_without_results_or_timing(tmp_path):
    text, verdicts = report_peers.section_peers({}, str(tmp_path), str(tmp_path))
    assert "*Not run yet*" in text and "make bench-peers" in text
    assert [v.status for _, v in verdicts] == [UNKNOWN] * 3
    src = Source("peers", peers_json(with_timing=False), str(tmp_path / "p.json"), "full")
    text, verdicts = report_peers.section_peers({"peers": src}, str(tmp_path), str(tmp_path))
    assert "*Not timed yet*" in text
    assert [v.status for _, v in verdicts] == [HOLDS, UNKNOWN, UNKNOWN]


def test_section_shows_what_the_fused_batch_norm_saves(tmp_path):
    def row(rule, wall, cpu):
        return {"rule": rule, "median_step_seconds": wall, "median_cpu_seconds": cpu}

    bn = Source("step_time_bn", {
        "machine": {"load_average": [1.2, 1.0, 1.0], "cpus": 2},
        "settings": {"repeats": 4, "steps_per_round": 4},
        "results": [row("bp", 0.150, 0.290), row("bp_keras_bn", 0.200, 0.400),
                    row("rec_lra", 0.180, 0.350), row("rec_lra_keras_bn", 0.240, 0.500)],
    }, str(tmp_path / "step_time_bn.json"), "full")
    src = Source("peers", peers_json(), str(tmp_path / "peers.json"), "full")
    text, _ = report_peers.section_peers({"peers": src, "step_time_bn": bn}, str(tmp_path),
                                         str(tmp_path))
    assert "### Where the time goes: the BatchNorm kernel" in text
    assert "| `bp` | 200 | 150 | 0.75 | 0.72 |" in text
    assert "| `rec_lra` | 240 | 180 | 0.75 | 0.70 |" in text
    assert "`fa`" not in text.split("BatchNorm kernel")[1]  # not timed: no row
    text, _ = report_peers.section_peers({"peers": src}, str(tmp_path), str(tmp_path))
    assert "BatchNorm kernel" not in text


def test_the_fused_kernel_accuracy_check_sits_beside_the_same_seed(tmp_path):
    def runs(**finals):
        return {"date": "2026-11-30 14:53:24",
                "runs": [{"rule": r, "seed": 0, "final_test_accuracy": a}
                         for r, a in finals.items()]}

    bn = Source("step_time_bn", {"results": []}, str(tmp_path / "step_time_bn.json"), "full")
    before = Source("resnet_accuracy", runs(bp=0.8603, rec_lra=0.8551, fa=0.52),
                    str(tmp_path / "resnet_accuracy.json"), "full")
    after = Source("resnet_accuracy_fused", runs(bp=0.8590, rec_lra=0.8570),
                   str(tmp_path / "resnet_accuracy_fused.json"), "full")
    text = report_peers.batch_norm_text(
        {"step_time_bn": bn, "resnet_accuracy": before, "resnet_accuracy_fused": after},
        str(tmp_path))
    assert "| `bp` | 0 | 86.03 | 85.90 | -0.13 |" in text
    assert "| `rec_lra` | 0 | 85.51 | 85.70 | +0.19 |" in text
    assert "`fa`" not in text  # only what was trained again
    assert text.count("Accuracy is unaffected (every difference within 0.5 points") == 1
    moved = Source("resnet_accuracy_fused", runs(bp=0.8503), str(tmp_path / "f.json"), "full")
    assert "Accuracy moved by more than 0.5 points" in report_peers.batch_norm_text(
        {"step_time_bn": bn, "resnet_accuracy": before, "resnet_accuracy_fused": moved},
        str(tmp_path))
    assert "Accuracy is unaffected" not in report_peers.batch_norm_text(
        {"step_time_bn": bn, "resnet_accuracy": before}, str(tmp_path))
