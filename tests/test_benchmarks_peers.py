"""benchmarks/peers/'s logic: the refusal without BioTorch, the batches both libraries see,
the schedule rebuilt for torch, the timing protocol, and (where the `peers` extra is installed,
in its own venv) BioTorch's side for real.

`benchmarks.peers.biotorch` itself is only run as a subprocess: its absl flags (the accuracy
benchmark's) would clash with the trainer's in this process.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from report_json import REPO

from benchmarks import workers
from benchmarks.peers import lib as peers_lib
from benchmarks.peers import torch_side
from benchmarks.report.summaries import step_ratios

ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture
def python_without_torch(tmp_path):
    """A Python whose `import torch` fails (a shadowing module), whatever is installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError(\"No module named 'torch' (test)\")\n")
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shadow}:{REPO} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def test_check_peers_says_what_is_missing_and_how_to_install(python_without_torch):
    with pytest.raises(peers_lib.PeersMissingError) as err:
        peers_lib.check_peers(python_without_torch)
    text = str(err.value)
    assert "No module named 'torch' (test)" in text
    assert "make bench-peers" in text and "pip install -e '.[peers]'" in text
    with pytest.raises(peers_lib.PeersMissingError, match="could not be run"):
        peers_lib.check_peers("/nonexistent/python")


def test_benchmark_refuses_at_once_without_the_extra(python_without_torch, tmp_path):
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers.biotorch",
         f"--torch_python={python_without_torch}",
         f"--out={out}"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "needs BioTorch and torch" in proc.stderr and "make bench-peers" in proc.stderr
    assert not out.exists()


def test_benchmark_refuses_bad_flags(python_without_torch):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers.biotorch", "--biotorch_rules=bp,kolen",
         f"--torch_python={python_without_torch}"], cwd=REPO, env=ENV, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode != 0 and "received: 'kolen'" in proc.stderr


@pytest.mark.parametrize("decay, warmup", [("cosine", 20), ("cosine", 0), ("constant", 7)])
def test_torch_schedule_equals_the_trainers(decay, warmup):
    from rlra_tf.schedules import WarmupSchedule

    schedule = WarmupSchedule(1e-3, decay=decay, total_steps=300, warmup_steps=warmup)
    for step in (0, 1, warmup - 1, warmup, warmup + 1, 150, 299, 300, 400):
        if step < 0:
            continue
        expected = float(schedule(step))
        got = torch_side.learning_rate(step, 1e-3, 300, warmup, decay)
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-9), step  # Keras: float32


def test_biotorch_gets_the_trainers_batches_in_the_trainers_order(fmnist_dir):
    """What `fit` consumes (`train_epochs`, deterministic) is what BioTorch is handed."""
    from rlra_tf import data
    from trainers import presets
    from trainers.input_pipeline import train_epochs

    config = presets.Config(dataset="fashion_mnist", train_limit=256, batch_size=64, epochs=2,
                            seed=3, deterministic=True, data_dir=fmnist_dir)
    info = data.info("fashion_mnist")
    first, second = (peers_lib.epoch_arrays(config, info, e) for e in (0, 1))
    fed = [(x.numpy(), y.numpy()) for x, y in train_epochs(config, info, 0, 2)]
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]),
                                  np.concatenate([x for x, _ in fed]))
    np.testing.assert_array_equal(np.concatenate([first[1], second[1]]),
                                  np.concatenate([y for _, y in fed]))
    assert first[0].shape == (256, 28, 28, 1) and first[0].dtype == np.float32
    # Reproducible, a new order each epoch, the same 256 images.
    np.testing.assert_array_equal(peers_lib.epoch_arrays(config, info, 0)[0], first[0])
    assert not np.array_equal(first[1], second[1])
    assert sorted(first[0].sum(axis=(1, 2, 3))) == sorted(second[0].sum(axis=(1, 2, 3)))


def test_reused_runs_take_only_the_same_budget(tmp_path):
    from trainers import presets

    def config_of(rule, seed):
        return presets.override(presets.get("fmnist_resnet20"), rule=rule, seed=seed,
                                epochs=3, train_limit=12800, mixed_precision="off",
                                deterministic=True)

    def record(rule, seed, **changes):
        config = presets.override(config_of(rule, seed), deterministic=False, **changes)
        return {"rule": rule, "seed": seed, "config": config.to_json(),
                "final_test_accuracy": 0.8, "epochs": [{"epoch": 1, "test_accuracy": 0.8,
                                                        "test_loss": 0.5}]}

    older = record("fa", 0)
    del older["config"]["mixed_precision"]  # a field an older trainer did not have
    path = tmp_path / "resnet_accuracy.json"
    path.write_text(json.dumps({"date": "2030-01-01", "runs": [
        record("bp", 0), older, record("bp", 1, epochs=2), record("lra", 0),
        record("bp", 2)]}))
    runs = peers_lib.reused_runs(str(path), ["bp", "fa"], [0, 1], config_of)
    assert [(r["rule"], r["seed"]) for r in runs] == [("bp", 0), ("fa", 0)]
    assert all(r["library"] == "rlra_tf" and r["source"]["deterministic"] is False
               and r["source"]["date"] == "2030-01-01" for r in runs)


FAKE_WORKER = textwrap.dedent("""
    import sys
    from benchmarks.workers import send
    wall = float(sys.argv[1])
    print("some progress line")
    send({"ready": True, "first_step_seconds": 3.0})
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":
            n = int(cmd[1])
            send({"wall": [wall] * n, "cpu": [2 * wall] * n, "load_average": [1.0, 1.0, 1.0]})
        elif cmd[0] == "quit":
            send({"bye": True})
            break
""")


def test_time_steps_drives_workers_round_robin_and_ratios_pair_the_libraries():
    entries = [(lib, rule, [sys.executable, "-c", FAKE_WORKER, str(wall)])
               for lib, rule, wall in (("rlra_tf", "bp", 0.2), ("biotorch", "bp", 0.25),
                                       ("rlra_tf", "rec_lra", 0.3), ("biotorch", "fa", 0.4))]
    rows = peers_lib.time_steps(entries, threads=2, rounds=3, steps=2, min_free_gb=0.0)
    by = {(r["library"], r["rule"]): r for r in rows}
    assert len(by[("rlra_tf", "bp")]["step_seconds"]) == 6
    assert by[("biotorch", "fa")]["median_cpu_seconds"] == pytest.approx(0.8)
    assert by[("rlra_tf", "bp")]["load_average_during"] == [1.0] * 3
    ratios = {(r["rlra_tf"], r["biotorch"]): r for r in step_ratios(rows)}
    assert set(ratios) == {("bp", "bp"), ("rec_lra", "fa")}
    assert ratios[("bp", "bp")]["ratio"] == pytest.approx(0.8)
    assert ratios[("rec_lra", "fa")]["cpu_ratio"] == pytest.approx(0.75)


def test_worker_protocol_skips_other_lines():
    w = workers.Worker("fake", [sys.executable, "-c", FAKE_WORKER, "0.5"], cwd=REPO, env=ENV)
    assert w.receive() == {"ready": True, "first_step_seconds": 3.0}
    assert w.command("run 1")["wall"] == [0.5]
    assert w.command("quit") == {"bye": True}
    assert w.proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_rlra_timing_worker_times_the_trainers_step(tmp_path):
    from trainers import presets

    config = presets.override(presets.get("tiny_resnet"), optimizer="adam", augment=False,
                              rule="rec_lra", jit_compile="off")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "batch.npz", x=rng.random((8, 28, 28, 1), dtype=np.float32),
             y=rng.integers(0, 10, 8).astype(np.int32))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": config.to_json(), "steps_per_epoch": 4,
                                "batch": str(tmp_path / "batch.npz"), "warmup": 2,
                                "threads": 1}))
    proc = subprocess.run(peers_lib.rlra_worker_command(str(spec)), input="run 3\nquit\n",
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = [json.loads(line[len(workers.PREFIX):]) for line in proc.stdout.splitlines()
               if line.startswith(workers.PREFIX)]
    assert answers[0]["ready"] and answers[0]["forward_params"] > 0
    assert len(answers[1]["wall"]) == 3 and all(t > 0 for t in answers[1]["cpu"])
    assert answers[2] == {"bye": True}


# ------------------------------------------------ BioTorch's side, in the peers venv if any


def _peers_python():
    python = peers_lib.default_torch_python()
    try:
        peers_lib.check_peers(python)
    except peers_lib.PeersMissingError:
        pytest.skip("the `peers` extra (torch, biotorch) is not installed")
    return python


def run_in_peers(code, tmp_path):
    """Runs `code` under the peers Python in the repository; returns its last stdout line as
    JSON."""
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([_peers_python(), str(script)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_biotorch_resnet20_one_channel_stem_and_matched_init(tmp_path):
    out = run_in_peers("""
        import json, torch
        from benchmarks.peers.torch_side import build_model
        res = {}
        for rule in ("bp", "fa", "usf"):
            for init in ("matched", "native"):
                net = build_model("resnet20", rule, 10, 1, init, seed=0)
                conv = net.module.layer3[1].conv1  # 64 -> 64, 3x3: fan-out 576
                res[rule + "-" + init] = {
                    "params": sum(p.numel() for p in net.parameters() if p.requires_grad),
                    "stem": list(net.module.conv1.weight.shape),
                    "std": float(conv.weight.std()),
                    "fb_std": float(getattr(conv, "weight_backward", conv.weight).std()),
                    "type": type(conv).__module__}
        print(json.dumps(res))
    """, tmp_path)
    # He et al.'s ResNet-20 with option-A shortcuts: 269,722 weights with a 3-channel stem,
    # 288 fewer with the 1-channel one.
    assert out["bp-matched"]["params"] == 269_722 - 288 == out["fa-matched"]["params"]
    assert out["bp-matched"]["stem"] == [16, 1, 3, 3]
    he, xavier = (2 / 576) ** 0.5, (2 / (576 + 576)) ** 0.5
    for rule in ("bp", "fa", "usf"):
        assert out[f"{rule}-matched"]["std"] == pytest.approx(he, rel=0.05)
        assert out[f"{rule}-native"]["std"] == pytest.approx(xavier, rel=0.05)
    # FA's feedback weights keep BioTorch's Xavier initialisation under the matched init.
    assert out["fa-matched"]["fb_std"] == pytest.approx(xavier, rel=0.05)
    assert "fa_constructor" in out["fa-matched"]["type"]


def test_biotorch_step_applies_the_schedule_and_keras_weight_decay(tmp_path):
    out = run_in_peers("""
        import copy, json, torch
        from benchmarks.peers.torch_side import Trainer, build_model, learning_rate
        spec = dict(optimizer="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.01,
                    epochs=1, steps_per_epoch=10, warmup_epochs=0.5, schedule="cosine")
        net = build_model("resnet20", "bp", 10, 1, "matched", seed=0)
        trainer = Trainer(net, "bp", spec)
        torch.manual_seed(1)
        x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        trainer.step(x, y)  # step 0: lr 0.1 * 1/5
        ref = copy.deepcopy(net)
        ref.train()
        loss = torch.nn.functional.cross_entropy(ref(x), y)
        w = ref.module.layer2[0].conv1.weight
        bn = ref.module.layer2[0].bn1.weight
        gw, gbn = torch.autograd.grad(loss, [w, bn])
        lr = learning_rate(1, 0.1, 10, 5, "cosine")
        trainer.step(x, y)
        new_w = net.module.layer2[0].conv1.weight
        new_bn = net.module.layer2[0].bn1.weight
        print(json.dumps({
            "lr": trainer.optimizer.param_groups[0]["lr"], "expected_lr": lr,
            "w_err": float((new_w - (w * (1 - lr * 0.01) - lr * gw)).abs().max()),
            "bn_err": float((new_bn - (bn - lr * gbn)).abs().max()),
            "w_change": float((new_w - w).abs().max())}))
    """, tmp_path)
    assert out["lr"] == pytest.approx(out["expected_lr"]) and out["lr"] == pytest.approx(0.04)
    # Decoupled decay on conv weights (w * (1 - lr * wd) before the SGD step), none on BN.
    assert out["w_err"] < 1e-6 * max(1.0, out["w_change"] * 1e3)
    assert out["bn_err"] < 1e-6


def test_biotorch_trains_and_times_on_the_arrays_it_is_given(tmp_path):
    rng = np.random.default_rng(0)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    for name, n in (("epoch0", 128), ("epoch1", 128), ("test", 100)):
        np.savez(arrays / f"{name}.npz", x=rng.random((n, 28, 28, 1), dtype=np.float32),
                 y=rng.integers(0, 10, n).astype(np.int32))
    spec = dict(model="resnet20", num_classes=10, in_channels=1, init="matched", epochs=2,
                batch_size=64, steps_per_epoch=2, optimizer="adam", learning_rate=1e-3,
                momentum=0.9, weight_decay=0.0, warmup_epochs=0.5, schedule="cosine",
                mean=0.286, std=0.353, threads=1, seed=0)
    record = {}
    for rule in ("dfa", "usf"):
        record[rule] = peers_lib.run_biotorch(dict(spec, rule=rule), str(arrays),
                                              _peers_python(), str(tmp_path))
    for r in record.values():
        assert [e["epoch"] for e in r["epochs"]] == [1, 2]
        assert all(e["test_examples"] == 100 for e in r["epochs"])
        # The record's accuracy is the test split's: 100 images, so a multiple of 1/100.
        assert all(abs(100 * e["test_accuracy"] - round(100 * e["test_accuracy"])) < 1e-9
                   for e in r["epochs"])
        assert r["final_test_accuracy"] == r["epochs"][-1]["test_accuracy"]
        assert r["wall_seconds"] < r["wall_seconds_including_per_epoch_tests"]
        assert r["forward_params"] == 269_434
    path = tmp_path / "time.json"
    path.write_text(json.dumps(dict(spec, rule="usf", batch=str(arrays / "epoch0.npz"),
                                    warmup=1)))
    proc = subprocess.run(peers_lib.torch_command(_peers_python(), f"--time={path}"),
                          input="run 2\nquit\n", cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=600)
    answers = [json.loads(line[len(workers.PREFIX):]) for line in proc.stdout.splitlines()
               if line.startswith(workers.PREFIX)]
    assert answers[0]["ready"] and len(answers[1]["wall"]) == 2 and answers[2] == {"bye": True}
