"""The binaries as real processes on the local Fashion-MNIST: evaluate, kill-and-resume, exit codes.

Each process pays about 10 s of TensorFlow import, so there are four: the evaluate binary, a
trainer killed with SIGKILL, its rerun, and one refused command line.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import rlra_tf  # noqa: F401  (registers the layers and models for loading)
from rlra_tf import data
from trainers import presets, train_lib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TRAINER_PROCESS = os.path.join(HERE, "trainer_process.py")
TIMEOUT = 300  # seconds; a hung process fails the test instead of stalling CI

pytestmark = pytest.mark.slow  # real processes, ~10 s of TensorFlow import each

# tiny_mlp: 64 training examples in batches of 8, so 8 steps per epoch, 2 epochs, a backup
# every 4 steps and at each epoch's end.
STEPS_PER_EPOCH = 8
KILL_AFTER_STEP = 13  # epoch 2, batch 5: the newest backup is step 12 (epoch 2, batch 4)


def child_env(**extra):
    env = dict(os.environ)  # tests/conftest.py has pointed KERAS_HOME, TFDS_DATA_DIR, ... away
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def run(args, **kwargs):
    return subprocess.run(
        [sys.executable, *args], env=child_env(), cwd=REPO, capture_output=True, text=True,
        timeout=TIMEOUT, **kwargs,
    )


def saved_weights(path):
    return [w.numpy() for w in keras.saving.load_model(path).weights]


@pytest.fixture(scope="module")
def uninterrupted(fmnist_dir, tmp_path_factory):
    """tiny_mlp trained in one go (in-process) on the first 64 real training examples."""
    workdir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    config = presets.override(presets.get("tiny_mlp"), data_dir=fmnist_dir)
    train_lib.train_and_evaluate(config, workdir, verbose=0)
    return workdir


def test_train_then_evaluate_on_local_fashion_mnist(uninterrupted, fmnist_dir, tmp_path):
    metrics = json.load(open(os.path.join(uninterrupted, "metrics.json")))
    config = json.load(open(os.path.join(uninterrupted, "config.json")))
    assert config == metrics["config"]
    assert config["train_limit"] == 64 and config["data_dir"] == fmnist_dir
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert len(metrics["seconds_per_epoch"]) == 2 and metrics["examples_per_second"] > 0

    # Independent evaluation of the saved model on the whole real test split.
    model = keras.saving.load_model(os.path.join(uninterrupted, "model.keras"))
    images, labels = [], []
    for x, y in data.load("fashion_mnist", "test", 1000, data_dir=fmnist_dir):
        images.append(x.numpy())
        labels.append(y.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    logits = model.predict(images, batch_size=1000, verbose=0)
    predicted = np.argmax(logits, -1)
    accuracy = float(np.mean(predicted == labels))
    loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, True)))
    # The trainer's test metrics are those of the first 32 test examples (eval_limit).
    assert metrics["test_accuracy"] == pytest.approx(np.mean(predicted[:32] == labels[:32]))

    output = str(tmp_path / "evaluation.json")
    result = run(["-m", "trainers.evaluate", f"--model={uninterrupted}", f"--output={output}"])
    assert result.returncode == 0, result.stderr
    head = re.search(r"fashion_mnist/test: (\d+) examples, accuracy ([\d.]+), loss ([\d.]+)",
                     result.stdout)
    assert head, result.stdout
    assert int(head.group(1)) == 10_000
    assert float(head.group(2)) == pytest.approx(accuracy, abs=1e-4)
    assert float(head.group(3)) == pytest.approx(loss, abs=1e-4)

    printed = printed_confusion_matrix(result.stdout, 10)
    assert printed.sum() == 10_000
    assert np.trace(printed) / printed.sum() == pytest.approx(float(head.group(2)), abs=1e-4)
    reference = tf.math.confusion_matrix(labels, predicted, num_classes=10).numpy()
    np.testing.assert_array_equal(printed, reference)
    saved = json.load(open(output))
    assert saved["confusion_matrix"] == reference.tolist() and saved["num_examples"] == 10_000
    assert saved["accuracy"] == pytest.approx(accuracy)


def printed_confusion_matrix(stdout, k):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Confusion matrix"))
    rows = lines[start + 2: start + 2 + k]
    # "<class name> v_0 ... v_{k-1}   <row index>"; class names may contain spaces.
    return np.array([[int(t) for t in row.split()[-(k + 1):-1]] for row in rows])


def test_sigkill_then_rerun_ends_with_the_uninterrupted_weights(uninterrupted, fmnist_dir,
                                                                  tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, TRAINER_PROCESS, "--preset=tiny_mlp", f"--workdir={workdir}",
               f"--data_dir={fmnist_dir}"]
    marker = tmp_path / "hanging"
    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen(
        command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env=child_env(RLRA_TEST_HANG_AT_STEP=str(KILL_AFTER_STEP),
                      RLRA_TEST_HANG_FILE=str(marker)),
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists():
            assert process.poll() is None, open(tmp_path / "killed.log").read()
            assert time.monotonic() < deadline, "the trainer never reached the kill step"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    # Killed in epoch 2 after the backup of step 12: no results, one epoch in the history.
    assert open(workdir / "backup" / "latest").read().strip() == "ckpt-000000012"
    assert not (workdir / "metrics.json").exists() and not (workdir / "model.keras").exists()
    assert len(open(workdir / "history.csv").read().strip().splitlines()) == 1 + 1
    backed_up = keras.saving.load_model(os.path.join(uninterrupted, "model.keras"))
    backed_up.load_weights(str(workdir / "backup" / "ckpt-000000012" / "state.weights.h5"))
    backed_up = [w.numpy() for w in backed_up.weights]

    rerun = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Resuming" in rerun.stdout and "epoch 2, step 4 (global step 12)" in rerun.stdout

    resumed = saved_weights(str(workdir / "model.keras"))
    reference = saved_weights(os.path.join(uninterrupted, "model.keras"))
    for a, b in zip(resumed, reference):
        np.testing.assert_array_equal(a, b)
    # The rerun did train on from the backup (4 more steps), so the equality is not trivial.
    assert any(not np.array_equal(a, b) for a, b in zip(backed_up, reference))
    metrics = json.load(open(workdir / "metrics.json"))
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["test_accuracy"] == json.load(
        open(os.path.join(uninterrupted, "metrics.json")))["test_accuracy"]
    assert not (workdir / "backup").exists()


def test_bad_command_line_exits_with_status_2(tmp_path):
    workdir = tmp_path / "run"
    result = run(["-m", "trainers.train", "--preset=tiny_mlp", "--epochs=0",
                  f"--workdir={workdir}"])
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "rlra-train: error: Expected a positive integer for epochs, received: epochs=0")
    assert not workdir.exists()
