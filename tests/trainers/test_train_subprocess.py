"""The binaries as real processes on the local Fashion-MNIST: evaluate, kill-and-resume, stop on
SIGTERM/SIGINT and resume, a busy workdir, exit codes.

Each process pays about 10 s of TensorFlow import, so there are few: the evaluate binary, a
trainer killed with SIGKILL and its rerun, a trainer stopped by SIGTERM (with a second trainer
refused meanwhile) and its rerun, the same for SIGINT, and one refused command line.
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
    # The model file, as the README has it: the dataset and data_dir come from the run's
    # config.json beside it.
    result = run(["-m", "trainers.evaluate", f"--model={uninterrupted}/model.keras",
                  f"--output={output}"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow start-up lines
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


def start_paused(command, tmp_path, step, name):
    """Starts the trainer, waits until it has finished `step` and pauses; returns
    `(process, marker, log path, step log path)`. Deleting `marker` lets it go on."""
    marker, log, step_log = (tmp_path / f"{name}.{ext}" for ext in ("paused", "log", "steps"))
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env=child_env(RLRA_TEST_HANG_AT_STEP=str(step), RLRA_TEST_HANG_FILE=str(marker),
                          RLRA_TEST_STEP_LOG=str(step_log)),
        )
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"the trainer never reached step {step}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process, marker, log, step_log


def stop(process):
    if process.poll() is None:
        process.kill()
        process.wait()


def trainer_command(workdir, fmnist_dir):
    return [sys.executable, TRAINER_PROCESS, "--preset=tiny_mlp", f"--workdir={workdir}",
            f"--data_dir={fmnist_dir}"]


def test_sigkill_then_rerun_ends_with_the_uninterrupted_weights(uninterrupted, fmnist_dir,
                                                                  tmp_path):
    workdir = tmp_path / "run"
    command = trainer_command(workdir, fmnist_dir)
    process, _, _, _ = start_paused(command, tmp_path, KILL_AFTER_STEP, "killed")
    try:
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        stop(process)

    # Killed in epoch 2 after the backup of step 12: no results, one epoch in the history,
    # and the lock file of a process that is gone.
    assert open(workdir / "backup" / "latest").read().strip() == "ckpt-000000012"
    assert not (workdir / "metrics.json").exists() and not (workdir / "model.keras").exists()
    assert len(open(workdir / "history.csv").read().strip().splitlines()) == 1 + 1
    assert json.load(open(workdir / "lock.json"))["pid"] == process.pid
    backed_up = keras.saving.load_model(os.path.join(uninterrupted, "model.keras"))
    backed_up.load_weights(str(workdir / "backup" / "ckpt-000000012" / "state.weights.h5"))
    backed_up = [w.numpy() for w in backed_up.weights]

    rerun = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Resuming" in rerun.stdout and "epoch 2, step 4 (global step 12)" in rerun.stdout
    assert f"took over the lock of {workdir}: its holder (pid {process.pid} on host" in rerun.stderr
    assert "is no longer running" in rerun.stderr
    assert not (workdir / "lock.json").exists()

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


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_then_rerun_ends_with_the_uninterrupted_weights(signum, uninterrupted, fmnist_dir,
                                                               tmp_path):
    workdir = tmp_path / "run"
    command = trainer_command(workdir, fmnist_dir)
    process, marker, log, step_log = start_paused(command, tmp_path, KILL_AFTER_STEP, "stopped")
    try:
        if signum == signal.SIGTERM:
            # Meanwhile a second trainer on the same workdir is refused, and writes nothing.
            before = snapshot(workdir)
            second = run([TRAINER_PROCESS, *command[2:]])
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"is in use by another trainer (pid {process.pid} on host" in second.stderr
            assert "started 20" in second.stderr and "--preset=tiny_mlp" in second.stderr
            assert snapshot(workdir) == before
        process.send_signal(signum)
        marker.unlink()  # it goes on to the next step's start, backs up step 13 there and stops
        assert process.wait(timeout=120) == 128 + signum, log.read_text()[-3000:]
    finally:
        stop(process)

    output = log.read_text()
    finished = [int(line) for line in step_log.read_text().split()]
    assert finished == list(range(1, KILL_AFTER_STEP + 1))
    assert f"{signum.name} received: finishing the current step" in output
    assert (f"rlra-train: interrupted: Stopped by {signum.name} after step {KILL_AFTER_STEP} "
            "(epoch 2, batch 5)") in output
    assert open(workdir / "backup" / "latest").read().strip() == f"ckpt-{KILL_AFTER_STEP:09d}"
    assert not (workdir / "metrics.json").exists() and not (workdir / "lock.json").exists()

    step_log.unlink()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                           env=child_env(RLRA_TEST_STEP_LOG=str(step_log)))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (f"global step {KILL_AFTER_STEP}); the run was stopped by {signum.name}"
            in rerun.stdout)
    assert "took over the lock" not in rerun.stderr  # it was released
    # No step of work is done twice: the backup is of the last step that finished.
    resumed_from = int(step_log.read_text().split()[0]) - 1
    assert finished[-1] - resumed_from == 0
    for a, b in zip(saved_weights(str(workdir / "model.keras")),
                    saved_weights(os.path.join(uninterrupted, "model.keras"))):
        np.testing.assert_array_equal(a, b)
    assert not (workdir / "backup").exists()


def test_bad_command_line_exits_with_status_2(tmp_path):
    """One line on stderr, nothing else (TensorFlow's start-up lines neither), status 2."""
    workdir = tmp_path / "run"
    result = run(["-m", "trainers.train", "--preset=tiny_mlp", "--epochs=0",
                  f"--workdir={workdir}"])
    assert result.returncode == 2
    assert result.stderr == \
        "rlra-train: error: Expected a positive integer for epochs, received: epochs=0\n"
    assert not workdir.exists()
    result = run(["-m", "trainers.evaluate", f"--model={tmp_path / 'missing.keras'}"])
    assert result.returncode == 2
    assert result.stderr == (f"rlra-evaluate: error: No saved model at "
                             f"'{tmp_path / 'missing.keras'}' (expected a .keras file or a run "
                             "directory)\n")
