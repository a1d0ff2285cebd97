"""Preemption and shared workdirs, in-process: stop on a signal at a backup, the workdir lock,
unreadable backups, atomic writes.

The signals here are real (`os.kill` of this process from a callback at a known step, so the
handler runs exactly as it would for a signal from outside); the subprocess tests
(`test_train_subprocess.py`, `test_multi_worker.py`) send them from another process and check
the exit status.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from test_train import TINY_STEPS, snapshot
from trainer_testing import MOCK_EXAMPLES, run_main

import rlra_tf  # noqa: F401  (registers the layers and models for loading)
from trainers import builders, errors, fault_tolerance, preemption, presets, train_lib, workdirs


def tiny(data_dir, **changes):
    return presets.override(presets.get("tiny_mlp"), data_dir=data_dir, **changes)


def weights(path):
    return [w.numpy() for w in keras.saving.load_model(path).weights]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


class AtStep(keras.callbacks.Callback):
    """Calls `action()` once, at the end of global training step `step`."""

    def __init__(self, step, action):
        super().__init__()
        self.step, self.action, self.done = step, action, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done and int(self.model.optimizer.iterations.numpy()) == self.step:
            self.done = True
            self.action()


class StepLog(keras.callbacks.Callback):
    """The global step after each training step of this process, in `steps`."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.optimizer.iterations.numpy()))


class Crash(Exception):
    pass


def crash():
    raise Crash("simulated crash")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of tiny_mlp trained in one go (the mock data are the same each time)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        train_lib.train_and_evaluate(tiny(str(root / "tfds")), str(root / "run"), verbose=0)
    return weights(str(root / "run" / "model.keras"))


def latest(workdir):
    return open(os.path.join(workdir, "backup", "latest")).read().strip()


# ---------------------------------------------------------------------------------------------
# A signal during fit: the step finishes, a backup of it is written, the rerun resumes there.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_at_a_backup_and_the_rerun_ends_as_if_uninterrupted(
        signum, tmp_path, mock_fmnist, uninterrupted, capfd):
    workdir = str(tmp_path / "run")
    first = StepLog()
    kill = AtStep(13, lambda: os.kill(os.getpid(), signum))  # epoch 2, batch 5
    handler_before = signal.getsignal(signum)
    with pytest.raises(errors.TrainingInterrupted) as excinfo:
        train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, callbacks=[first, kill],
                                     verbose=0)
    err = excinfo.value
    assert err.exit_code == 128 + signum and err.signum == signum
    assert f"Stopped by {signum.name} after step 13 (epoch 2, batch 5)" in str(err)
    assert signal.getsignal(signum) == handler_before  # the guard put the handler back
    stderr = capfd.readouterr().err
    assert f"{signum.name} received: finishing the current step" in stderr

    # The backup is of the last step that ran; nothing claims the run finished.
    assert first.steps[-1] == 13
    assert latest(workdir) == "ckpt-000000013"
    state = json.load(open(os.path.join(workdir, "backup", "ckpt-000000013", "state.json")))
    assert (state["epoch"], state["step"], state["stopped_by"]) == (1, 5, signum.name)
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
    assert not os.path.exists(os.path.join(workdir, "model.keras"))
    assert not os.path.exists(os.path.join(workdir, "lock.json"))  # released
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config == tiny(mock_fmnist).to_json()
    assert len(open(os.path.join(workdir, "history.csv")).read().strip().splitlines()) == 2

    rerun = StepLog()
    metrics = train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, callbacks=[rerun],
                                           verbose=0)
    out = capfd.readouterr().out
    assert f"global step 13); the run was stopped by {signum.name}" in out
    assert rerun.steps == list(range(14, 2 * TINY_STEPS + 1))  # no step of work repeated
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert_same_weights(weights(os.path.join(workdir, "model.keras")), uninterrupted)
    assert not os.path.exists(os.path.join(workdir, "backup"))


def test_signal_in_the_last_step_of_an_epoch_stops_after_the_epoch_end(tmp_path, mock_fmnist):
    workdir = str(tmp_path / "run")
    kill = AtStep(TINY_STEPS, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(errors.TrainingInterrupted) as excinfo:
        train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, callbacks=[kill], verbose=0)
    assert f"after step {TINY_STEPS} (end of epoch 1)" in str(excinfo.value)
    # Validation, the history row, the checkpoints and the epoch-end backup were all written.
    history = open(os.path.join(workdir, "history.csv")).read().strip().splitlines()
    assert len(history) == 2 and "val_accuracy" in history[0]
    assert os.path.isfile(os.path.join(workdir, "checkpoints", "last.keras"))
    assert latest(workdir) == f"ckpt-{TINY_STEPS:09d}"


def test_a_second_signal_during_the_backup_does_not_cut_it_short(tmp_path, mock_fmnist,
                                                                 uninterrupted, monkeypatch,
                                                                 capfd):
    workdir = str(tmp_path / "run")
    save = fault_tolerance.StepBackup.save

    def save_with_a_signal_in_the_middle(self, epoch, step, **extra):
        if extra.get("stopped_by"):  # the save made on stopping: Ctrl-C again, mid-way
            write_weights = self.model.save_weights

            def then_signal(path):
                write_weights(path)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the handler runs here, between the weights and state.json

            monkeypatch.setattr(self.model, "save_weights", then_signal)
        return save(self, epoch, step, **extra)

    monkeypatch.setattr(fault_tolerance.StepBackup, "save", save_with_a_signal_in_the_middle)
    kill = AtStep(11, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(errors.TrainingInterrupted) as excinfo:
        train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, callbacks=[kill], verbose=0)
    assert excinfo.value.exit_code == 143  # the first signal's
    assert "SIGINT received while stopping after SIGTERM: ignored" in capfd.readouterr().err
    assert latest(workdir) == "ckpt-000000011"
    monkeypatch.setattr(fault_tolerance.StepBackup, "save", save)
    train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, verbose=0)
    assert "global step 11)" in capfd.readouterr().out
    assert_same_weights(weights(os.path.join(workdir, "model.keras")), uninterrupted)


def test_signal_before_training_stops_at_once_and_leaves_nothing(tmp_path, mock_fmnist,
                                                                 monkeypatch):
    workdir = tmp_path / "run"
    build = builders.build_model

    def build_then_signal(*args):
        model = build(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return model

    monkeypatch.setattr(train_lib, "build_model", build_then_signal)
    with pytest.raises(errors.TrainingInterrupted) as excinfo:
        train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, verbose=0)
    assert excinfo.value.exit_code == 130
    assert "while not training; nothing was lost" in str(excinfo.value)
    assert not workdir.exists()  # nothing written yet, and the lock and folder are removed


# ---------------------------------------------------------------------------------------------
# The workdir lock.


def test_a_second_trainer_on_a_busy_workdir_is_refused_naming_the_holder(tmp_path, mock_fmnist,
                                                                         capsys):
    workdir = str(tmp_path / "run")
    argv = ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}"]
    with preemption.WorkdirLock(workdir) as held:
        before = snapshot(workdir)
        code, _, err = run_main(argv, capsys)
        assert code == 2, err
        assert f"workdir={workdir!r} is in use by another trainer" in err
        assert f"pid {os.getpid()} on host {socket.gethostname()!r}" in err
        assert f"started {held.record['started']}" in err
        assert snapshot(workdir) == before  # nothing written
    assert os.listdir(workdir) == []  # releasing removes the lock file


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path, mock_fmnist, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = {"pid": gone.pid, "host": socket.gethostname(), "started": "2026-01-02T03:04:05",
             "command": "python -m trainers.train --preset=tiny_mlp"}
    (workdir / "lock.json").write_text(json.dumps(stale))
    code, _, err = run_main(
        ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}"], capsys
    )
    assert code == 0, err
    assert (f"took over the lock of {workdir}: its holder (pid {gone.pid} on host "
            f"{socket.gethostname()!r}, started 2026-01-02T03:04:05") in err
    assert "no longer running" in err
    assert (workdir / "metrics.json").exists() and not (workdir / "lock.json").exists()


def test_url_lock_is_stale_when_its_process_or_heartbeat_is_gone(monkeypatch):
    monkeypatch.setattr(preemption.time, "sleep", lambda seconds: None)
    root = "ram://locks"

    def held_by(**record):
        workdir = f"{root}/{len(tf.io.gfile.glob(root + '/*'))}"
        tf.io.gfile.makedirs(workdir)
        base = {"pid": 1, "host": "other-host", "started": "2026-01-02T03:04:05",
                "heartbeat": time.time(), "token": "theirs"}
        workdirs.write_json(f"{workdir}/lock.json", {**base, **record})
        return workdir

    # Another machine with a fresh heartbeat: busy, and the message says how fresh.
    busy = held_by(heartbeat=time.time() - 30)
    with pytest.raises(errors.TrainerError) as excinfo:
        preemption.WorkdirLock(busy).acquire()
    assert "pid 1 on host 'other-host'" in str(excinfo.value)
    assert "last heartbeat 30 s ago" in str(excinfo.value)
    # Its heartbeat stopped long ago / the same machine, but the process is gone / the same
    # machine before its last boot: taken over.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for record in [dict(heartbeat=time.time() - 3600),
                   dict(host=socket.gethostname(), pid=gone.pid,
                        boot_id=preemption._boot_id()),
                   dict(host=socket.gethostname(), pid=os.getpid(), boot_id="an-earlier-boot")]:
        workdir = held_by(**record)
        lock = preemption.WorkdirLock(workdir).acquire()
        try:
            assert lock.took_over["token"] == "theirs", record
            mine = json.loads(tf.io.gfile.GFile(f"{workdir}/lock.json").read())
            assert mine["pid"] == os.getpid() and mine["token"] == lock.record["token"]
        finally:
            lock.release()
        assert not tf.io.gfile.exists(f"{workdir}/lock.json")
    # Our own live process on this machine and boot: busy.
    live = held_by(host=socket.gethostname(), pid=os.getpid(), boot_id=preemption._boot_id())
    with pytest.raises(errors.TrainerError):
        preemption.WorkdirLock(live).acquire()


# ---------------------------------------------------------------------------------------------
# Unreadable backups.


@pytest.fixture(scope="module")
def crashed_template(tmp_path_factory):
    """A run that crashed after step 13: backups of steps 12 (newest) and 8."""
    root = tmp_path_factory.mktemp("crashed")
    workdir = str(root / "run")
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        with pytest.raises(Crash):
            train_lib.train_and_evaluate(tiny(str(root / "tfds")), workdir,
                                         callbacks=[AtStep(13, crash)], verbose=0)
    assert sorted(os.listdir(os.path.join(workdir, "backup"))) == [
        "ckpt-000000008", "ckpt-000000012", "latest"]
    assert not os.path.exists(os.path.join(workdir, "lock.json"))  # released on the way out
    return workdir


@pytest.fixture
def crashed_run(crashed_template, tmp_path):
    """A copy of `crashed_template` of this test's own (data_dir may differ: a runtime field)."""
    workdir = str(tmp_path / "crashed")
    shutil.copytree(crashed_template, workdir)
    return workdir


def corrupt(workdir, name, filename):
    path = os.path.join(workdir, "backup", name, filename)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # a write cut short


@pytest.mark.parametrize("filename", ["state.json", "state.weights.h5"])
def test_unreadable_newest_backup_is_named_and_the_previous_one_used(
        filename, crashed_run, mock_fmnist, uninterrupted, capfd):
    corrupt(crashed_run, "ckpt-000000012", filename)
    train_lib.train_and_evaluate(tiny(mock_fmnist), crashed_run, verbose=0)
    out, err = capfd.readouterr()
    assert "rlra-train: warning: Some backups in" in err
    assert f"ckpt-000000012: {filename}" in err
    assert ("not valid JSON" if filename == "state.json" else "cannot be loaded") in err
    assert ("Resumed from ckpt-000000008 (step 8: end of epoch 1) instead; the 4 steps after "
            "it are trained again") in err
    assert "epoch 2, step 0 (global step 8)" in out
    assert_same_weights(weights(os.path.join(crashed_run, "model.keras")), uninterrupted)


def test_no_readable_backup_is_refused_unless_overwrite(crashed_run, mock_fmnist, capsys):
    corrupt(crashed_run, "ckpt-000000012", "state.weights.h5")
    corrupt(crashed_run, "ckpt-000000008", "state.json")
    argv = ["--preset=tiny_mlp", f"--workdir={crashed_run}", f"--data_dir={mock_fmnist}"]
    before = snapshot(crashed_run)
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert "None of the backups in" in err and "so the run cannot resume" in err
    assert "ckpt-000000012: state.weights.h5 cannot be loaded" in err
    assert "ckpt-000000008: state.json is not valid JSON" in err
    assert "Pass --overwrite" in err
    assert snapshot(crashed_run) == before
    code, _, err = run_main(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert len(json.load(open(os.path.join(crashed_run, "metrics.json")))["history"]) == 2


def test_backup_of_another_epoch_length_is_not_used(crashed_run):
    # The same settings over a dataset of another size (a runtime setting such as data_dir
    # points elsewhere): step 12 no longer is epoch 2, batch 4, so neither backup fits.
    model = keras.saving.load_model(os.path.join(crashed_run, "checkpoints", "last.keras"))
    backup = fault_tolerance.StepBackup(os.path.join(crashed_run, "backup"), 4, 5)
    assert backup.restore(model) == (0, 0) and backup.restored is None
    report = backup.unreadable_report()
    assert "None of the backups" in report
    assert ("ckpt-000000012: state.json says epoch 1, step 4, global step 12, which does not "
            "fit this run's 5 steps per epoch") in report


# ---------------------------------------------------------------------------------------------
# Atomic writes: a write cut short leaves the previous version readable.


def test_a_backup_cut_short_leaves_the_previous_one_to_resume_from(tmp_path, mock_fmnist,
                                                                  monkeypatch, uninterrupted):
    workdir = str(tmp_path / "run")
    write_json = fault_tolerance.write_json

    def dies_at_step_12(path, obj):
        if obj.get("global_step") == 12:
            raise Crash("killed between the weights and state.json")
        write_json(path, obj)

    monkeypatch.setattr(fault_tolerance, "write_json", dies_at_step_12)
    with pytest.raises(Crash):
        train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, verbose=0)
    monkeypatch.setattr(fault_tolerance, "write_json", write_json)
    entries = sorted(os.listdir(os.path.join(workdir, "backup")))
    assert entries == ["ckpt-000000004", "ckpt-000000008", "ckpt-000000012.partial", "latest"]
    assert latest(workdir) == "ckpt-000000008"
    train_lib.train_and_evaluate(tiny(mock_fmnist), workdir, verbose=0)
    assert_same_weights(weights(os.path.join(workdir, "model.keras")), uninterrupted)


def test_write_atomically_keeps_the_old_file_when_the_write_dies(tmp_path):
    path = str(tmp_path / "last.keras")
    workdirs.write_text(path, "old")

    def half_then_die(tmp):
        assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").write("ne")
        raise Crash("killed mid-write")

    with pytest.raises(Crash):
        workdirs.write_atomically(path, half_then_die)
    assert open(path).read() == "old"
    workdirs.write_text(path, "new")
    assert open(path).read() == "new"
