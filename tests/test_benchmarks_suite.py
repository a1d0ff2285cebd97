"""The registry of benchmarks, the named rule variants and the suite runner."""

import json
import subprocess
import sys

import pytest
from report_json import REPO

from benchmarks import registry, run, variants
from benchmarks.registry import Benchmark


def test_suites_run_the_registry_in_order_and_the_quick_suite_less():
    full = [b.name for b in registry.suite("full")]
    quick = [b.name for b in registry.suite("quick")]
    assert "peers_biotorch" not in full  # needs the peers extra: only with --only
    assert full[-5:] == ["speed_mixed_precision", "speed_step_time", "speed_step_time_b64",
                         "speed_batch_norm", "speed_keras_resnet50"]
    assert full.index("accuracy_depth") > full.index("accuracy_resnet56")
    assert quick == [n for n in full if registry.get(n).quick is not None]
    for name in ("accuracy_resnet32", "accuracy_resnet20_full", "accuracy_resnet20_ablation"):
        assert name not in quick
        with pytest.raises(ValueError, match="Not in the quick suite"):
            run.selected("quick", [name])
    with pytest.raises(ValueError, match="received: 'resnet_accuracy'"):
        run.selected("full", ["resnet_accuracy"])


def test_commands_write_the_benchmarks_file_and_later_invocations_resume():
    first, second = run.commands(registry.get("accuracy_resnet56"), "full", "/results")
    assert first[1:4] == ["-m", "benchmarks.accuracy.train", "--model=resnet56"]
    assert first[-1] == second[-1] == "--out=/results/accuracy_resnet56.json"
    assert "--noresume" in first and "--noresume" not in second  # the second keeps the first's
    assert registry.get("accuracy_mlp").commands("quick")[0].endswith(
        "--out=benchmarks/results/quick/accuracy_mlp.json")


def test_every_rule_a_benchmark_is_given_is_a_registered_variant():
    for b in registry.BENCHMARKS:
        for suite in ("full", "quick") if b.quick is not None else ("full",):
            for args in b.invocations(suite):
                for arg in args:
                    if arg.startswith("--rules="):
                        variants.check(arg.split("=", 1)[1].split(","))


def test_variant_names_have_one_spelling():
    for name, v in variants.VARIANTS.items():
        rule, _, change = name.partition("-")
        assert rule == v.rule and (change or not v.params or name == "lra"), name
    assert "rec_lra_first" not in variants.VARIANTS and "rec_lra_nomirror" not in variants.VARIANTS
    with pytest.raises(ValueError, match="received: 'rec_lra_first'"):
        variants.check(["bp", "rec_lra_first"])


def test_variants_make_the_rule_and_the_trainer_changes():
    rule = variants.make_rule("rec_lra-mirror_taps_warm_m32")
    assert (rule.mirror_batch, rule.mirror_normalise, rule.mirror_warm_start) == (32, "taps", True)
    assert rule.feedback == "adjacent"  # the rest is the library's default
    changes = variants.config_changes("rec_lra-first", beta=0.2)
    assert changes["rule"] == "rec_lra" and changes["beta"] == 0.2
    assert changes["feedback"] == "skip" and changes["mirror_batch"] is None
    assert variants.config_changes("bp")["beta"] is None
    assert set(variants.rule_params()) >= {"beta", "synapse_update", "mirror_warm_start"}


def test_a_suite_run_records_the_load_and_dates_of_every_benchmark(tmp_path):
    # A stand-in benchmark of two invocations: a module that does nothing when run.
    stub = Benchmark("stub", "benchmarks.harness", full=((), ()))
    seen = []
    records, _ = run.run("full", [stub], str(tmp_path / "out"), str(tmp_path / "logs"),
                         lambda records, seconds: seen.append(len(records)))
    assert seen == [1]  # suite_run.json is rewritten after every benchmark
    (r,) = records
    assert r["status"] == "ok" and len(r["commands"]) == 2
    assert len(r["load_before"]) == 3 and r["started"] <= r["finished"]
    failing = Benchmark("stub", "benchmarks.no_such_module", full=((), ()))
    (r,) = run.run("full", [failing], str(tmp_path / "out"), str(tmp_path / "logs"))[0]
    assert r["status"] == "failed (exit 1)" and len(r["commands"]) == 2


def test_the_runner_lists_the_quick_suite_without_running_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite=quick", "--list",
                           f"--results={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(registry.suite("quick"))
    assert lines[0] == ("python -m benchmarks.accuracy.train --model=mlp --seeds=0 --epochs=3 "
                        f"--rules=bp,fa,wm,rec_lra --noresume "
                        f"--out={tmp_path}/quick/accuracy_mlp.json")
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_the_accuracy_runner_trains_the_runs_of_record():
    """The new commands train what the committed results were trained with: each config the
    accuracy runner makes equals the recorded one (`deterministic` aside: newer runs)."""
    checks = {  # file -> (its first invocation's flags, the runs to compare)
        "accuracy_mlp": (registry.get("accuracy_mlp").full[0], ("rec_lra", "rec_lra-first", "lra")),
        "accuracy_resnet20": (registry.get("accuracy_resnet20").full[0],
                              ("bp", "rec_lra", "fa", "kp", "rec_lra-mirror_every1")),
        "accuracy_resnet20_ablation": (registry.get("accuracy_resnet20_ablation").full[0],
                                       ("rec_lra-no_through", "rec_lra-first")),
        "accuracy_resnet20_full": (registry.get("accuracy_resnet20_full").full[0],
                                   ("bp", "rec_lra-mirror_taps_warm_m32")),
        "accuracy_resnet20_sgd": (registry.get("accuracy_resnet20_sgd").full[0],
                                  ("bp", "rec_lra")),
    }
    for name, (args, rules) in checks.items():
        with open(f"{REPO}/benchmarks/results/{name}.json") as f:
            recorded = {r["rule"]: r["config"] for r in json.load(f)["runs"] if r["seed"] == 0}
        code = ("import json, sys; from absl import flags; "
                "from benchmarks.accuracy import train; flags.FLAGS(sys.argv); "
                f"print(json.dumps({{n: train.run_config(n, 0).to_json() for n in {rules!r}}}))")
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        made = json.loads(out.stdout.strip().splitlines()[-1])
        for rule in rules:
            differ = {k: (made[rule].get(k), recorded[rule].get(k))
                      for k in set(made[rule]) | set(recorded[rule])
                      if k != "deterministic" and made[rule].get(k) != recorded[rule].get(k)}
            assert not differ, (name, rule, differ)
