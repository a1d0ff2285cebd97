"""trainers.train in-process: end to end under mock data, divergence, bad input, work directories.

The binary's `main` is called with parsed absl flags (as `python -m trainers.train ...` would,
minus the ~10 s of TensorFlow import); `tests/trainers/test_train_subprocess.py` runs real
processes. `trainers.evaluate` is checked through `evaluate_lib` here: its absl flags share
names with the trainer's (`--model`, `--dataset`, ...), so the two binaries cannot be imported
into one process; its command line runs in the subprocess tests.
"""

import json
import os
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from trainer_testing import run_main

import rlra_tf  # noqa: F401  (registers the layers and models for loading)
from rlra_tf import data, distribute
from trainers import builders, errors, evaluate_lib, presets, train_lib

# tiny_mlp: 64 training examples in batches of 8 (8 steps per epoch), 32 validation/test ones.
TINY_STEPS = 8
def model_weights(path):
    model = keras.saving.load_model(path)
    return {w.path: w.numpy() for w in model.weights}


# ---------------------------------------------------------------------------------------------
# End to end.


def test_train_then_evaluate_under_mock_data(tmp_path, mock_fmnist, capsys):
    workdir = str(tmp_path / "run")
    code, out, err = run_main(
        ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}"], capsys
    )
    assert code == 0, err
    assert f"{workdir}/metrics.json" in out

    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and np.isfinite(metrics["test_loss"])
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    for h in metrics["history"]:
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"):
            assert np.isfinite(h[key]), key
    assert len(metrics["seconds_per_epoch"]) == 2 and min(metrics["seconds_per_epoch"]) > 0
    assert metrics["examples_per_second"] > 0
    assert metrics["steps_per_epoch"] == TINY_STEPS and metrics["num_replicas"] == 1
    # The resolved flags: the preset with --data_dir applied, in metrics.json and config.json.
    expected = presets.override(presets.get("tiny_mlp"), data_dir=mock_fmnist).to_json()
    assert metrics["config"] == expected
    assert json.load(open(os.path.join(workdir, "config.json"))) == expected
    assert metrics["rule"]["name"] == "rec_lra" and metrics["rule"]["config"]["beta"] == 0.1
    for name in ("model.keras", "history.csv", "checkpoints/last.keras", "checkpoints/best.keras"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert not os.path.exists(os.path.join(workdir, "backup"))  # dropped once finished

    # The saved model, evaluated independently of evaluate_lib, gives the trainer's test metrics.
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert isinstance(model, rlra_tf.models.AlignedModel) and model.rule.name == "rec_lra"
    x, y = next(iter(data.load("fashion_mnist", "test", 32, data_dir=mock_fmnist, limit=32)))
    logits = model.predict(x, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == y.numpy()))
    loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, logits, True)))
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-5)

    result = evaluate_lib.evaluate(workdir, split="test", limit=32)  # dataset from config.json
    matrix = np.asarray(result["confusion_matrix"])
    assert result["num_examples"] == 32 and matrix.sum() == 32
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / 32)
    assert result["accuracy"] == pytest.approx(accuracy) and result["loss"] == pytest.approx(loss)
    reference = tf.math.confusion_matrix(y, np.argmax(logits, -1), num_classes=10).numpy()
    np.testing.assert_array_equal(matrix, reference)
    report = evaluate_lib.format_report(result)
    assert f"accuracy {accuracy:.4f}" in report and f"loss {loss:.4f}" in report
    assert parse_confusion_matrix(report, 10).tolist() == matrix.tolist()

    # A model file finds its run's config.json beside it (or one folder up, for a
    # checkpoint); a copy elsewhere needs --dataset, since two datasets fit its shape.
    for path in (os.path.join(workdir, "model.keras"),
                 os.path.join(workdir, "checkpoints", "last.keras")):
        again = evaluate_lib.evaluate(path, split="test", limit=32)
        assert again["dataset"] == "fashion_mnist" and again["num_examples"] == 32
    assert again["confusion_matrix"] == result["confusion_matrix"]  # last.keras: the same model
    copy = str(tmp_path / "copy.keras")
    shutil.copy(os.path.join(workdir, "model.keras"), copy)
    with pytest.raises(errors.TrainerError) as excinfo:
        evaluate_lib.evaluate(copy, split="test", limit=32)
    assert str(excinfo.value) == (
        f"Which dataset? {copy} has no trainer's config.json beside it and mnist and "
        "fashion_mnist fit the model; pass --dataset (one of mnist, fashion_mnist, cifar10, "
        "cifar100, imagenet2012)")
    named = evaluate_lib.evaluate(copy, dataset="fashion_mnist", split="test", limit=32,
                                  data_dir=mock_fmnist)
    assert named["confusion_matrix"] == result["confusion_matrix"]


def parse_confusion_matrix(report, k):
    """The matrix of `format_report` text: the k rows after the header line of column ids."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Confusion matrix"))
    rows = lines[start + 2: start + 2 + k]
    assert len(rows) == k, report
    # A row is "<class name> v_0 ... v_{k-1}   <row index>"; names may contain spaces.
    return np.array([[int(t) for t in row.split()[-(k + 1):-1]] for row in rows])


def test_mirrored_trainer_equals_one_device(tmp_path, mock_fmnist, monkeypatch,
                                            mirrored_strategy):
    """The trainer's global batch under 2 replicas gives one device's weights (SGD, 1 epoch)."""
    config = presets.override(
        presets.get("tiny_mlp"), data_dir=mock_fmnist, epochs=1, optimizer="sgd",
        learning_rate=0.5, momentum=0.9,  # SGD: a wrong replica scaling would show
    )
    train_lib.train_and_evaluate(config, tmp_path / "single", verbose=0)
    monkeypatch.setattr(distribute, "get_strategy", lambda *args, **kwargs: mirrored_strategy)
    metrics = train_lib.train_and_evaluate(config, tmp_path / "mirrored", verbose=0)
    assert metrics["num_replicas"] == 2 and metrics["strategy"] == "MirroredStrategy"
    single = model_weights(str(tmp_path / "single" / "model.keras"))
    mirrored = model_weights(str(tmp_path / "mirrored" / "model.keras"))
    assert single.keys() == mirrored.keys()
    for name in single:
        np.testing.assert_allclose(mirrored[name], single[name], atol=1e-5, err_msg=name)


# ---------------------------------------------------------------------------------------------
# A diverging run.


def test_non_finite_loss_stops_naming_step_and_rule(tmp_path, mock_fmnist, capsys):
    # Epoch 1 trains normally (and is checkpointed); from step 9 on the rate is 1e-3 * 1e41.
    workdir = str(tmp_path / "run")
    code, out, err = run_main(
        ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}",
         "--optimizer=sgd", "--schedule=step", "--step_epochs=1", "--step_factor=1e41"],
        capsys,
    )
    assert code == 3, err
    assert "rlra-train: error: Non-finite" in err and "'rec_lra'" in err
    step = int(re.search(r"at step (\d+)", err).group(1))
    assert TINY_STEPS < step <= 2 * TINY_STEPS, err
    assert "checkpoints/last.keras" in err
    assert f"backup at step {TINY_STEPS}: end of epoch 1" in err

    # Nothing of the bad steps was kept: no results, and the last good checkpoint (epoch 1)
    # loads, is finite and holds exactly the epoch-end backup's weights.
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
    assert not os.path.exists(os.path.join(workdir, "model.keras"))
    last = keras.saving.load_model(os.path.join(workdir, "checkpoints", "last.keras"))
    assert all(np.all(np.isfinite(w.numpy())) for w in last.weights)
    latest = open(os.path.join(workdir, "backup", "latest")).read().strip()
    assert latest == f"ckpt-{TINY_STEPS:09d}"  # epoch 1's end; nothing from the bad steps
    backup = keras.saving.load_model(os.path.join(workdir, "checkpoints", "last.keras"))
    backup.load_weights(os.path.join(workdir, "backup", latest, "state.weights.h5"))
    for a, b in zip(last.weights, backup.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    x, y = next(iter(data.load("fashion_mnist", "test", 32, data_dir=mock_fmnist, limit=32)))
    assert np.isfinite(last.evaluate(x, y, verbose=0, return_dict=True)["loss"])


def test_mixed_precision_trains_records_and_restores_the_policy(tmp_path, mock_fmnist, capsys):
    """`--mixed_precision=bfloat16`: the model is built under mixed_bfloat16 (its file says
    so), config.json and metrics.json record the setting and the policy, and the process's
    global policy is float32 again afterwards."""
    workdir = str(tmp_path / "run")
    code, out, err = run_main(
        ["--preset=tiny_resnet", f"--workdir={workdir}", f"--data_dir={mock_fmnist}",
         "--mixed_precision=bfloat16"], capsys
    )
    assert code == 0, err
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["mixed_precision"] == "bfloat16"
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["dtype_policy"] == "mixed_bfloat16" and np.isfinite(metrics["test_loss"])
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert {u.compute_dtype for u in model.unit_layers} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    assert builders.policy_name("auto") == "float32"  # this machine has no GPU or TPU


# ---------------------------------------------------------------------------------------------
# Bad input: a message that says what is wrong and what is allowed, exit status 2, and no
# workdir written.


BAD_FLAGS = [
    (["--dataset=svhn"], ["dataset='svhn'", "'fashion_mnist'", "'cifar10'", "'imagenet2012'"]),
    (["--preset=nope"], ["preset='nope'", "'fmnist_mlp'", "'tiny_mlp'", "'imagenet_resnet50'"]),
    (["--model=vgg16"], ["model='vgg16'", "'mlp'", "'resnet18'", "'resnet50'"]),
    (["--rule=backprop"], ["rule='backprop'", "'rec_lra'", "'lra'", "'dfa'", "'bp'"]),
    (["--epochs=0"], ["positive integer for epochs", "epochs=0"]),
    (["--batch_size=-8"], ["positive integer for batch_size", "batch_size=-8"]),
    (["--learning_rate=0"], ["learning_rate", "> 0", "learning_rate=0.0"]),
    (["--learning_rate=-0.1"], ["learning_rate", "> 0", "learning_rate=-0.1"]),
    (["--num_classes=100"], ["num_classes=100", "fashion_mnist has 10 classes"]),
    (["--image_shape=32,32,3"], ["(32, 32, 3)", "(28, 28, 1)"]),
    (["--mixed_precision=half"], ["mixed_precision='half'", "'bfloat16'", "'float16'", "'auto'"]),
    (["--rule=dfa", "--synapse_update=mirror"], ["'dfa' takes no parameters",
                                                 "synapse_update='mirror'"]),
    (["--synapse_update=kolen"], ["synapse_update='kolen'", "'mirror'"]),
]


@pytest.mark.parametrize("argv, expected", BAD_FLAGS, ids=lambda v: " ".join(v)[:30])
def test_bad_flag_is_refused_before_anything_is_written(argv, expected, tmp_path, mock_fmnist,
                                                        capsys):
    workdir = str(tmp_path / "run")
    args = ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}"]
    code, out, err = run_main(args + argv, capsys)
    assert code == 2
    assert err.startswith("rlra-train: error: ")
    for text in expected:
        assert text in err, (text, err)
    assert not os.path.exists(workdir)


def relabel(monkeypatch, shift, train_pipeline_only=False):
    """Makes `rlra_tf.data.load` (as the trainer calls it) add `shift` to every label."""
    load = data.load

    def shifted(*args, **kwargs):
        ds = load(*args, **kwargs)
        if train_pipeline_only and not kwargs.get("shuffle"):
            return ds
        return ds.map(lambda x, y: (x, y + shift))

    monkeypatch.setattr(data, "load", shifted)


def test_labels_outside_the_classes_are_refused(tmp_path, mock_fmnist, monkeypatch):
    relabel(monkeypatch, 10)  # mock labels are 0..9, now 10..19
    config = presets.override(presets.get("tiny_mlp"), data_dir=mock_fmnist)
    workdir = tmp_path / "run"
    with pytest.raises(errors.TrainerError) as excinfo:
        train_lib.train_and_evaluate(config, workdir, verbose=0)
    assert excinfo.value.exit_code == 2
    message = str(excinfo.value)
    # The first training batch (8 examples), checked before anything is written, by the
    # model's own check: the first label out of range is named.
    _, y = next(iter(data.load("fashion_mnist", "train", 8, shuffle=False, data_dir=mock_fmnist)))
    assert message == (
        f"Bad labels in the data: Received a label value of {int(y[0])} (train data) which is "
        "outside the valid range [0, 10) of this model (num_classes=10) (the model has as "
        "many outputs as the dataset has classes), in the first training batch")
    assert not os.path.exists(workdir)


def test_bad_labels_met_during_training_are_refused(tmp_path, mock_fmnist, monkeypatch):
    # The first batch (the pre-flight check) is fine; the shuffled training batches are not.
    relabel(monkeypatch, -10, train_pipeline_only=True)
    config = presets.override(presets.get("tiny_mlp"), data_dir=mock_fmnist)
    with pytest.raises(errors.TrainerError) as excinfo:
        train_lib.train_and_evaluate(config, tmp_path / "run", verbose=0)
    assert excinfo.value.exit_code == 2
    message = str(excinfo.value)
    assert message.startswith("Bad labels in the data: Received a label value of -")
    assert "(train data) which is outside the valid range [0, 10) of this model " \
           "(num_classes=10)" in message
    assert not os.path.exists(tmp_path / "run")  # the run had no backup yet: nothing is kept


def test_missing_offline_files_say_which_files_go_where(tmp_path, monkeypatch, capsys):
    absent, manual = tmp_path / "absent", tmp_path / "manual"
    manual.mkdir()
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(absent))
    # Offline also where the machine has network.
    monkeypatch.setattr(data, "_unreachable_hosts", lambda urls: ["fashion-mnist.example"])
    workdir = str(tmp_path / "run")
    code, _, err = run_main(
        ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={tmp_path / 'tfds'}",
         f"--manual_dir={manual}"],
        capsys,
    )
    assert code == 2
    for filename in data.FASHION_MNIST_FILES:
        assert filename in err
    assert str(absent) in err and str(manual) in err and "dataset-fashion-mnist" in err
    assert not os.path.exists(workdir)


def test_global_batch_must_divide_by_the_replicas(tmp_path, mock_fmnist, monkeypatch,
                                                  mirrored_strategy):
    monkeypatch.setattr(distribute, "get_strategy", lambda *args, **kwargs: mirrored_strategy)
    config = presets.override(presets.get("tiny_mlp"), data_dir=mock_fmnist, batch_size=7,
                              strategy="mirrored")
    with pytest.raises(errors.TrainerError) as excinfo:
        train_lib.train_and_evaluate(config, tmp_path / "run", verbose=0)
    assert excinfo.value.exit_code == 2
    message = str(excinfo.value)
    assert "number of replicas in sync (2)" in message and "batch_size=7" in message
    assert "batch_size=6" in message  # the suggestion
    assert not os.path.exists(tmp_path / "run")


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, folder)] = open(path, "rb").read()
    return files


def test_workdir_of_another_config_is_refused_unless_overwrite(tmp_path, mock_fmnist, capsys):
    workdir = str(tmp_path / "run")
    base = ["--preset=tiny_mlp", f"--workdir={workdir}", f"--data_dir={mock_fmnist}",
            "--epochs=1"]
    assert run_main(base, capsys)[0] == 0
    before = snapshot(workdir)

    code, _, err = run_main(base + ["--learning_rate=0.01"], capsys)
    assert code == 2
    assert "holds a run with a different config (learning_rate: 0.001 -> 0.01)" in err
    assert "--overwrite" in err
    assert snapshot(workdir) == before

    # The same config (a runtime setting may differ) finds the finished run: nothing changes.
    code, out, _ = run_main(base + ["--jit_compile=off"], capsys)
    assert code == 0 and "already holds the finished run" in out
    assert snapshot(workdir) == before

    code, _, err = run_main(base + ["--learning_rate=0.01", "--overwrite"], capsys)
    assert code == 0, err
    assert json.load(open(os.path.join(workdir, "config.json")))["learning_rate"] == 0.01
    assert json.load(open(os.path.join(workdir, "metrics.json")))["config"]["learning_rate"] == 0.01

    # A folder that is not a run of this trainer is never deleted, not even with --overwrite.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = run_main(base[:1] + [f"--workdir={other}", "--overwrite"] + base[2:], capsys)
    assert code == 2 and "holds no config.json" in err
    assert (other / "notes.txt").read_text() == "keep me" and len(os.listdir(other)) == 1


# ---------------------------------------------------------------------------------------------
# Extending a finished run.


def test_raising_epochs_extends_a_finished_run(tmp_path, mock_fmnist, capsys):
    """1 epoch, then --epochs=2: the same weights as 2 epochs in one go (a constant rate: the
    schedule does not depend on the run's length), one history, the new config written."""
    base = ["--preset=tiny_mlp", f"--data_dir={mock_fmnist}"]
    assert run_main(base + [f"--workdir={tmp_path / 'whole'}"], capsys)[0] == 0
    extended = str(tmp_path / "extended")
    assert run_main(base + [f"--workdir={extended}", "--epochs=1"], capsys)[0] == 0
    code, out, err = run_main(base + [f"--workdir={extended}"], capsys)
    assert code == 0, err
    assert f"Extending {extended} from 1 to 2 epochs" in out
    whole = model_weights(str(tmp_path / "whole" / "model.keras"))
    for name, value in model_weights(os.path.join(extended, "model.keras")).items():
        np.testing.assert_array_equal(value, whole[name], err_msg=name)
    metrics = json.load(open(os.path.join(extended, "metrics.json")))
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["config"]["epochs"] == 2
    assert json.load(open(os.path.join(extended, "config.json")))["epochs"] == 2
    assert not os.path.exists(os.path.join(extended, "backup"))
    # Fewer epochs than the finished run is another config.
    code, _, err = run_main(base + [f"--workdir={extended}", "--epochs=1"], capsys)
    assert code == 2 and "different config (epochs: 2 -> 1)" in err


def test_an_extended_cosine_schedule_resumes_on_the_longer_curve(tmp_path, mock_fmnist, capsys):
    """A cosine decay that reached 0 after 1 epoch resumes at the 2-epoch curve's value at
    step 8, half the peak rate (docs/ALGORITHM.md#schedule)."""
    workdir = str(tmp_path / "run")
    base = ["--preset=tiny_mlp", f"--data_dir={mock_fmnist}", f"--workdir={workdir}",
            "--schedule=cosine", "--learning_rate=0.01"]
    assert run_main(base + ["--epochs=1"], capsys)[0] == 0
    first = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert float(first.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    seen = []

    class RateAtStart(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not seen:
                step = int(self.model.optimizer.iterations)
                seen.append((step, float(self.model.optimizer.learning_rate)))

    config = presets.override(presets.get("tiny_mlp"), data_dir=mock_fmnist, epochs=2,
                              schedule="cosine", learning_rate=0.01)
    train_lib.train_and_evaluate(config, workdir, callbacks=[RateAtStart()], verbose=0)
    assert seen[0][0] == TINY_STEPS
    assert seen[0][1] == pytest.approx(0.01 * (1 + np.cos(np.pi * 0.5)) / 2, rel=1e-5)
    assert [h["epoch"] for h in json.load(open(os.path.join(workdir, "metrics.json")))[
        "history"]] == [0, 1]
