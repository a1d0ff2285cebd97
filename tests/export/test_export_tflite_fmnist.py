"""The int8 TFLite model of a small MLP trained on real Fashion-MNIST images, measured on them.

Calibrated on training images and measured on the whole test split (10,000 images), as the
`make demo` export is: the report's agreement and accuracy figures are checked against the
interpreter run here, on inputs quantized as a user would from the recorded scale and zero
point.
"""

import json

import keras
import numpy as np
import pytest

import rlra_tf
from export import common, datasets, export_lib, tflite_lib
from rlra_tf import data


@pytest.fixture(scope="module")
def run_folder(fmnist_dir, tmp_path_factory):
    """A trainer-like run folder: a 784-32-10 MLP trained 2 epochs on 2,000 Fashion-MNIST
    training images with rec_lra, `model.keras`, and `config.json` naming the dataset."""
    keras.utils.set_random_seed(0)
    info = data.info("fashion_mnist")
    model = rlra_tf.models.mlp(info.image_shape, hidden_units=(32,), num_classes=10,
                               input_mean=info.mean, input_std=info.std)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), rule="rec_lra", jit_compile=False,
                  metrics=["accuracy"])
    train = data.load("fashion_mnist", "train", 50, limit=2000, data_dir=fmnist_dir)
    model.fit(train, epochs=2, verbose=0, shuffle=False)  # load() shuffles already
    run = tmp_path_factory.mktemp("fmnist_run")
    model.save(str(run / "model.keras"))
    (run / "config.json").write_text(json.dumps({"dataset": "fashion_mnist"}))
    return model, run


@pytest.fixture(scope="module")
def exported(run_folder, fmnist_dir):
    model, run = run_folder
    report = export_lib.export_model(str(run / "model.keras"), str(run / "export"), "tflite",
                                     data_dir=fmnist_dir, tflite_quantize="int8")
    return model, run / "export", report


def test_int8_report_on_the_test_split(exported):
    _, _, report = exported
    assert report["real_images"]["dataset"] == "fashion_mnist"
    assert report["real_images"]["dataset_from"].endswith("config.json")
    entry = report["formats"]["tflite_int8"]
    cal, ev = entry["calibration"], entry["evaluation"]
    assert cal == {"source": "fashion_mnist train", "real": True, "images": 300,
                   "order": cal["order"]}
    assert ev["source"] == "fashion_mnist test" and ev["real"] and ev["images"] == 10_000
    assert ev["min_agreement"] == common.DEFAULT_MIN_AGREEMENT
    # A model with a clear margin: far above chance (0.1), and int8 costs little of it.
    assert ev["keras_accuracy"] > 0.5
    assert abs(ev["accuracy"] - ev["keras_accuracy"]) < 0.03
    assert ev["top1_agreement"] > 0.95 and report["passed"]
    # Calibrated on real pixels (black 0 and white 1 among them), the input quantization is
    # that of uint8 pixels shifted by 128: q = pixel - 128.
    assert entry["input"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
    assert entry["input"]["zero_point"] == -128


def test_int8_figures_match_the_interpreter(exported, fmnist_dir):
    model, folder, report = exported
    images, labels = datasets.labelled_images("fashion_mnist", "test", 2000, fmnist_dir)
    entry = report["formats"]["tflite_int8"]
    runner = tflite_lib.interpreter(str(folder / "model_int8.tflite")).get_signature_runner()
    scale, zero_point = entry["input"]["scale"], entry["input"]["zero_point"]
    q = np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)
    pixels = np.round(images * 255).astype(np.int16)
    np.testing.assert_array_equal(q, pixels - 128)  # as the report's scale and zero point say
    int8_top1 = runner(images=q)["logits"].argmax(-1)
    keras_top1 = np.asarray(model(images, training=False)).argmax(-1)
    agreement = np.mean(int8_top1 == keras_top1)
    # The first 2,000 of the 10,000 the report measured on: close to its figures.
    assert abs(agreement - entry["evaluation"]["top1_agreement"]) < 0.02
    assert abs(np.mean(int8_top1 == labels) - entry["evaluation"]["accuracy"]) < 0.03


def test_low_agreement_fails_the_export(run_folder, fmnist_dir, tmp_path):
    _, run = run_folder
    out = tmp_path / "strict"
    with pytest.raises(common.ExportError) as info:
        export_lib.export_model(str(run / "model.keras"), str(out), "tflite",
                                data_dir=fmnist_dir, tflite_quantize="int8", eval_images=1000,
                                min_agreement=1.0)
    assert info.value.exit_code == common.EXIT_VERIFY
    assert "top-1 agreement with Keras" in str(info.value) and "below 1" in str(info.value)
    report = json.load(open(out / "export_report.json"))
    assert report["passed"] is False and report["formats"]["tflite_int8"]["evaluation"][
        "images"] == 1000
    assert (out / "model_int8.tflite").exists()
