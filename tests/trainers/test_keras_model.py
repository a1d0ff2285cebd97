"""`python -m trainers.train --keras_model=PATH.keras`: a user's saved Keras model is converted,
trained, resumed, extended and exported; a model that does not fit the data is refused."""

import json
import os

import keras
import numpy as np
import pytest
from trainer_testing import run_main

import rlra_tf
from export import export_lib

L = keras.layers


def save_cnn(path, input_shape=(28, 28, 1), extra=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(input_shape), L.Conv2D(4, 3, strides=2), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(), *extra, L.Flatten(), L.Dense(16, activation="relu"), L.Dropout(0.2),
        L.Dense(10, activation="softmax")])
    model.save(path)
    return str(path)


def test_a_saved_sequential_cnn_trains_resumes_extends_and_exports(tmp_path, mock_fmnist,
                                                                   capsys):
    path = save_cnn(tmp_path / "cnn.keras")
    workdir = tmp_path / "run"
    base = ["--preset=tiny_mlp", f"--data_dir={mock_fmnist}", f"--keras_model={path}",
            f"--workdir={workdir}"]
    code, out, err = run_main(base + ["--epochs=1"], capsys)
    assert code == 0, err
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == "keras" and config["keras_model"] == path
    model = keras.saving.load_model(workdir / "model.keras")
    assert isinstance(model, rlra_tf.models.AlignedModel)
    assert [type(b).__name__ for b in model.blocks] == ["UnitStack"] * 3
    original = keras.saving.load_model(path)
    assert rlra_tf.models.parameter_counts(model)["forward"] + rlra_tf.models.parameter_counts(
        model)["statistics"] == original.count_params()

    code, out, _ = run_main(base + ["--epochs=1"], capsys)  # the same command: finished
    assert code == 0 and "nothing to do" in out
    code, _, err = run_main(base + ["--epochs=2"], capsys)  # extended from its last state
    assert code == 0, err
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["rule"]["name"] == "rec_lra"

    report = export_lib.export_model(str(workdir / "model.keras"), str(tmp_path / "export"),
                                     "savedmodel,onnx", dataset="none")
    assert report["passed"], report["failures"]
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    trained = keras.saving.load_model(workdir / "model.keras")
    np.testing.assert_allclose(trained.to_keras()(x), trained(x), rtol=1e-5, atol=1e-5)


def test_a_backup_is_resumed(tmp_path, mock_fmnist, capsys, monkeypatch):
    """Interrupted after its first epoch's backup, the rerun resumes there (not from scratch)."""
    from trainers import train_lib

    path = save_cnn(tmp_path / "cnn.keras")
    workdir = tmp_path / "run"
    base = ["--preset=tiny_mlp", f"--data_dir={mock_fmnist}", f"--keras_model={path}",
            f"--workdir={workdir}", "--epochs=2", "--backup_every=4"]
    calls = {"n": 0}
    real_fit = rlra_tf.models.AlignedModel.fit

    def fit_then_crash(self, *args, **kwargs):
        calls["n"] += 1
        result = real_fit(self, *args, **kwargs)
        if calls["n"] == 1:
            raise KeyboardInterrupt  # a hard stop after the first segment's backups
        return result

    monkeypatch.setattr(rlra_tf.models.AlignedModel, "fit", fit_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_main(base, capsys)
    monkeypatch.setattr(rlra_tf.models.AlignedModel, "fit", real_fit)
    assert (workdir / train_lib.BACKUP_DIR).exists()
    code, out, err = run_main(base, capsys)
    assert code == 0, err
    assert "Resuming" in out


@pytest.mark.parametrize("make, message", [
    (lambda p: save_cnn(p, input_shape=(32, 32, 3)),
     "takes inputs of shape (32, 32, 3) but fashion_mnist has images of shape (28, 28, 1)"),
    (lambda p: save_cnn(p, extra=(L.DepthwiseConv2D(3, name="dw"),)),
     "cannot be trained by rlra_tf: Cannot convert layer 'dw' (DepthwiseConv2D)"),
    (lambda p: str(p), "No Keras model file at --keras_model="),
])
def test_a_model_that_does_not_fit_exits_2_before_writing(make, message, tmp_path, mock_fmnist,
                                                          capsys):
    path = make(tmp_path / "model.keras")
    workdir = tmp_path / "run"
    code, _, err = run_main(["--preset=tiny_mlp", f"--data_dir={mock_fmnist}",
                             f"--keras_model={path}", f"--workdir={workdir}"], capsys)
    assert code == 2 and message in err
    assert not os.path.exists(workdir)


def test_flags_of_the_built_in_models_do_not_apply(tmp_path, mock_fmnist, capsys):
    path = save_cnn(tmp_path / "cnn.keras")
    code, _, err = run_main(["--preset=tiny_mlp", f"--data_dir={mock_fmnist}",
                             f"--keras_model={path}", "--hidden_units=8,8",
                             f"--workdir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "--hidden_units" in err and "model='keras'" in err
