"""MultiWorkerMirroredStrategy: two worker processes on loopback ports equal one process.

Both workers (`multi_worker_process.py`, `TF_CONFIG` on free localhost ports) train the same
tiny rec-LRA MLP for a few steps on a fixed global batch, then run the trainer with
`--strategy=multi_worker` on mocked data. Their weights must be identical to each other and
equal (1e-5) to a single-process run on the same global batches. A second pair of workers runs
the trainer, is stopped by SIGTERM to one of them and rerun: both must save at the same step
and end with the weights of the uninterrupted pair.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import rlra_tf  # noqa: F401  (registers the layers and models for loading)
from trainers import presets, train_lib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "multi_worker_process.py")
TIMEOUT = 240  # seconds for both workers; a hang (e.g. a lost peer) fails instead of stalling

pytestmark = pytest.mark.slow  # real processes, ~10 s of TensorFlow import each


def _worker_module():
    spec = importlib.util.spec_from_file_location("multi_worker_process", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _worker_module()


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def npz_list(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def start_workers(root, workdir, *args, env_for=lambda index: {}):
    """Starts the two workers on fresh loopback ports; returns their processes and log paths."""
    hosts = [f"localhost:{port}" for port in free_ports(2)]
    processes, logs = [], []
    for index in range(2):
        out = root / f"worker{index}"
        out.mkdir(exist_ok=True)
        env = dict(os.environ)  # tests/conftest.py has pointed KERAS_HOME, ... away from $HOME
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        )
        env.update(env_for(index))
        log = out / f"log{len(list(out.glob('log*.txt')))}.txt"
        with open(log, "w") as f:
            processes.append(subprocess.Popen(
                [sys.executable, WORKER, str(out), workdir, *args], cwd=REPO, env=env,
                stdout=f, stderr=subprocess.STDOUT,
            ))
        logs.append(log)
    return processes, logs


def wait_for(processes, timeout=TIMEOUT):
    """Waits for every process (killing all of them after `timeout`); returns the statuses."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [process.returncode for process in processes]


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """Runs the two workers once; returns (their output folders, the trainer's workdir)."""
    root = tmp_path_factory.mktemp("multi_worker")
    workdir = str(root / "trainer")
    processes, logs = start_workers(root, workdir)
    codes = wait_for(processes)
    for index, code in enumerate(codes):
        assert code == 0, f"worker {index} exited with {code}:\n" + logs[index].read_text()[-5000:]
    return [root / "worker0", root / "worker1"], workdir


def test_two_workers_equal_one_process(cluster_run):
    outs, _ = cluster_run
    single = worker.train_steps()
    workers = [npz_list(out / "weights.npz") for out in outs]
    assert len(workers[0]) == len(workers[1]) == len(single)
    for a, b in zip(*workers):
        np.testing.assert_array_equal(a, b)  # the replicas are in sync
    for a, b in zip(workers[0], single):
        np.testing.assert_allclose(a, b, atol=1e-5)
    keras.utils.set_random_seed(3)  # and training did move the weights
    initial = rlra_tf.models.mlp((6,), hidden_units=(5, 4), num_classes=3, block_size=1)
    assert any(not np.allclose(w.numpy(), a) for w, a in zip(initial.weights, single))


def test_each_worker_gets_its_half_of_every_global_batch(cluster_run):
    outs, _ = cluster_run
    x, y = worker.batches()
    shards = [np.load(out / "shards.npz") for out in outs]
    half = worker.GLOBAL_BATCH // 2
    for shard in shards:
        assert shard["x"].shape == (worker.STEPS, half, 6)
    for step in range(worker.STEPS):
        batch = slice(step * worker.GLOBAL_BATCH, (step + 1) * worker.GLOBAL_BATCH)
        seen_x = np.concatenate([shard["x"][step] for shard in shards])
        seen_y = np.concatenate([shard["y"][step] for shard in shards])
        # Together the two halves are exactly this step's global batch, each example once.
        order = np.lexsort(seen_x.T)
        expected = np.lexsort(x[batch].T)
        np.testing.assert_array_equal(seen_x[order], x[batch][expected])
        np.testing.assert_array_equal(seen_y[order], y[batch][expected])


def test_trainer_with_multi_worker_strategy_equals_one_process(cluster_run, tmp_path):
    _, workdir = cluster_run
    chief = json.load(open(os.path.join(workdir, "metrics.json")))
    # (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.)
    assert chief["num_replicas"] == 2 and chief["strategy"] == "CollectiveAllReduceStrategy"
    # Only the chief writes the run's files; worker 1 keeps its own under .workers/.
    other = os.path.join(workdir, ".workers", "worker-1")
    assert os.path.isfile(os.path.join(other, "model.keras"))
    assert os.path.isfile(os.path.join(workdir, "checkpoints", "last.keras"))
    assert not os.path.exists(os.path.join(other, "checkpoints"))

    with tfds.testing.mock_data(num_examples=worker.MOCK_EXAMPLES):
        config = worker.trainer_config(str(tmp_path / "tfds"))
        single = train_lib.train_and_evaluate(
            presets.override(config, strategy="auto"), tmp_path / "single", verbose=0
        )
    assert single["num_replicas"] == 1
    reference = keras.saving.load_model(str(tmp_path / "single" / "model.keras")).weights
    chief_weights = keras.saving.load_model(os.path.join(workdir, "model.keras")).weights
    other_weights = keras.saving.load_model(os.path.join(other, "model.keras")).weights
    for r, c, o in zip(reference, chief_weights, other_weights):
        np.testing.assert_array_equal(c.numpy(), o.numpy(), err_msg=c.path)
        np.testing.assert_allclose(c.numpy(), r.numpy(), atol=1e-5, err_msg=c.path)
    assert chief["test_accuracy"] == pytest.approx(single["test_accuracy"])


def test_sigterm_to_one_worker_stops_both_at_one_step_and_the_rerun_resumes(cluster_run,
                                                                             tmp_path):
    """SIGTERM to worker 1 after step 5 of 8: TensorFlow's PreemptionCheckpointHandler has
    both workers back up step 6 and stop (status 143); rerun, they end as the uninterrupted
    pair did."""
    _, reference_workdir = cluster_run
    workdir = str(tmp_path / "trainer")
    marker = tmp_path / "paused"
    steps = {index: tmp_path / f"steps{index}.txt" for index in range(2)}

    def hooks(index):
        env = {"RLRA_TEST_STEP_LOG": str(steps[index])}
        if index == 1:
            env.update(RLRA_TEST_HANG_AT_STEP="5", RLRA_TEST_HANG_FILE=str(marker))
        return env

    processes, logs = start_workers(tmp_path, workdir, "trainer_only", env_for=hooks)
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            wait_for(processes, timeout=1)
            pytest.fail("worker 1 never reached step 5:\n" + logs[1].read_text()[-5000:])
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGTERM)
    marker.unlink()
    codes = wait_for(processes)
    outputs = [log.read_text() for log in logs]
    assert codes == [143, 143], "\n".join(o[-3000:] for o in outputs)
    assert "Stopped by SIGTERM after step 6 (epoch 1, batch 6)" in outputs[1]
    assert ("Stopped because another worker of the cluster received SIGTERM or SIGINT, after "
            "step 6 (epoch 1, batch 6)") in outputs[0]
    folders = [workdir, os.path.join(workdir, ".workers", "worker-1")]
    for index, folder in enumerate(folders):
        # Both finished exactly steps 1..6 and backed up step 6, the same step.
        assert steps[index].read_text().split() == [str(s) for s in range(1, 7)], index
        assert open(os.path.join(folder, "backup", "latest")).read().strip() == "ckpt-000000006"
        assert not os.path.exists(os.path.join(folder, "model.keras"))
        assert not os.path.exists(os.path.join(folder, "lock.json"))

    for log in steps.values():
        log.unlink()
    processes, logs = start_workers(
        tmp_path, workdir, "trainer_only",
        env_for=lambda index: {"RLRA_TEST_STEP_LOG": str(steps[index])},
    )
    codes = wait_for(processes)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    for index, folder in enumerate(folders):
        assert "(global step 6); the run was stopped by" in outputs[index], outputs[index]
        assert steps[index].read_text().split() == ["7", "8"]  # no step done twice
    reference = keras.saving.load_model(os.path.join(reference_workdir, "model.keras")).weights
    for folder in folders:
        resumed = keras.saving.load_model(os.path.join(folder, "model.keras")).weights
        for r, w in zip(reference, resumed):
            np.testing.assert_array_equal(w.numpy(), r.numpy(), err_msg=w.path)
