"""Export times, artefact sizes and parity with Keras for the Fashion-MNIST MLP and ResNet-18.

For each model: build it, train it `--train_steps` rec-LRA steps on random data (so biases and
BatchNorm statistics are not at their initial values; export cost does not depend on the
weights), save the `.keras` file as a trainer does (error synapses and optimiser state
included; the size without the optimiser state is reported too), then export it with
`export.export_lib.export_model` to a SavedModel, to ONNX (opset 17) and to TFLite (float32,
and int8 calibrated on 300 training images), the float ones verified against Keras on random
(and, for the MLP, real Fashion-MNIST test) images at batch sizes 1 and 7. Reports the export
and verification times, the artefact sizes against the `.keras` file, the max abs differences
of logits and probabilities, and for the int8 model its top-1 agreement with Keras and its
accuracy on the test split (or, without the dataset, its agreement on 1,000 random images).
These models are barely trained, so their int8 agreement is reported but not held to the
exporter's 0.9 bar; the trained model of `--trained_model` (the `make demo` MLP, exported as
it is with its run's dataset and the bar) gives the int8 figures that mean something.

    python -m benchmarks.export.artefacts                      # a few minutes on 2 cores
    python -m benchmarks.export.artefacts --models=fmnist_mlp  # the MLP (and the demo model)

Models: `fmnist_mlp` (784-256-256-256-10 tanh, rec-LRA blocks of one unit, Fashion-MNIST
normalisation) and `resnet18_cifar` (ResNet-18 with the CIFAR stem, 32x32x3, 10 classes).
Writes `benchmarks/results/export_artefacts.json` and a PNG beside it, and prints a table.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags

from benchmarks import harness

MODELS = ("fmnist_mlp", "resnet18_cifar")

_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models to export: {', '.join(MODELS)}.")
_OUT = flags.DEFINE_string("out", harness.default_out("export_artefacts"),
                           "The JSON results (the PNG goes beside it).")
_OPSET = flags.DEFINE_integer("opset", 17, "ONNX opset.")
_DATASET = flags.DEFINE_string(
    "mlp_dataset", "fashion_mnist",
    "Dataset of real test images for the MLP's verification ('none' to skip).",
)
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 2, "rec-LRA steps (batch 8, random data) before saving; 0 keeps the init."
)
_KEEP = flags.DEFINE_string("keep", None, "Keep the artefacts in this folder (default: deleted).")
_TRAINED = flags.DEFINE_string(
    "trained_model", "runs/demo/model.keras",
    "A trained .keras file (default: the one `make demo` writes) also exported to every format, "
    "int8 included, with the dataset of its run's config.json; '' or a missing file: not "
    "measured (the results say so).",
)
FLOAT_FORMATS = ("savedmodel", "onnx", "tflite")
FORMATS = FLOAT_FORMATS + ("tflite_int8",)


def build(name):
    """`(model, dataset for the verification)` for a name of `MODELS`."""
    import keras

    from rlra_tf import models

    keras.utils.set_random_seed(0)
    if name == "fmnist_mlp":
        mean, std = _fashion_mnist_stats()
        model = models.mlp((28, 28, 1), hidden_units=(256, 256, 256), num_classes=10,
                           input_mean=mean, input_std=std, name="fmnist_mlp")
        return model, _DATASET.value
    if name == "resnet18_cifar":
        model = models.resnet("resnet18", input_shape=(32, 32, 3), num_classes=10, stem="cifar",
                              name="resnet18_cifar")
        return model, "auto"
    raise ValueError(f"Expected one of {MODELS}, received: {name!r}")


def _fashion_mnist_stats():
    try:
        from rlra_tf import data

        info = data.info("fashion_mnist")
        return info.mean, info.std
    except (ImportError, ValueError):
        return None, None


def _train(model, steps):
    import keras
    import numpy as np

    if steps <= 0:
        return 0.0
    model.compile(optimizer=keras.optimizers.Adam(1e-3), rule="rec_lra")
    shape = tuple(model.get_build_config()["input_shape"][1:])
    rng = np.random.default_rng(0)
    x = rng.random((8 * steps,) + shape, dtype=np.float32)
    y = rng.integers(0, model.num_classes, size=8 * steps)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return time.perf_counter() - t0


def measure(name, workdir, opset):
    from export import export_lib

    model, dataset = build(name)
    train_seconds = _train(model, _TRAIN_STEPS.value)
    path = os.path.join(workdir, f"{name}.keras")
    t0 = time.perf_counter()
    model.save(path)  # as a trainer saves it: with the optimiser state
    save_seconds = time.perf_counter() - t0
    weights_only = os.path.join(workdir, f"{name}_weights_only.keras")
    fresh, _ = build(name)  # uncompiled: forward and feedback weights, no optimiser state
    fresh.set_weights(model.get_weights())
    fresh.save(weights_only)
    weights_only_bytes = os.path.getsize(weights_only)
    os.remove(weights_only)
    report = export_lib.export_model(
        path, os.path.join(workdir, name), ("savedmodel", "onnx", "tflite"), opset=opset,
        dataset=dataset, tflite_quantize="int8", min_agreement=0.0,  # barely trained: report
    )
    row = _row(name, report, weights_only_bytes, opset)
    row.update(keras_save_seconds=round(save_seconds, 3), train_steps=_TRAIN_STEPS.value,
               train_seconds=round(train_seconds, 3))
    return row


def measure_trained(path, workdir, opset):
    """The row of a trained `.keras` file, exported as it is (the exporter's agreement bar on)."""
    import keras

    from export import export_lib

    weights_only = os.path.join(workdir, "trained_weights_only.keras")
    keras.saving.load_model(path, compile=False).save(weights_only)
    weights_only_bytes = os.path.getsize(weights_only)
    os.remove(weights_only)
    report = export_lib.export_model(
        path, os.path.join(workdir, "trained"), ("savedmodel", "onnx", "tflite"), opset=opset,
        tflite_quantize="int8",
    )
    row = _row("demo_trained", report, weights_only_bytes, opset)
    row.update(source=os.path.abspath(path), keras_save_seconds=None, train_steps=None,
               train_seconds=None)
    return row


def _row(name, report, weights_only_bytes, opset):
    row = {
        "model": name,
        "forward_params": report["forward_params"],
        "feedback_params": report["feedback_params"],
        "keras_bytes": report["model_bytes"],
        "keras_bytes_without_optimizer": weights_only_bytes,
        "real_images": report["real_images"],
        "load_seconds": report["load_seconds"],
        "batch_sizes": report["batch_sizes"],
        "serving_dtype": report["serving_dtype"],
    }
    for fmt, entry in report["formats"].items():
        row[fmt] = {
            "bytes": entry["bytes"],
            "bytes_vs_keras": round(entry["bytes"] / report["model_bytes"], 4),
            "bytes_vs_keras_without_optimizer": round(entry["bytes"] / weights_only_bytes, 4),
            "export_seconds": entry["export_seconds"],
            "verify_seconds": entry["verify_seconds"],
            "feedback_weights_found": len(entry["feedback_weights_found"]),
        }
        if fmt == "tflite_int8":
            ev = entry["evaluation"]
            row[fmt].update(
                top1_agreement=ev["top1_agreement"], agreement_images=ev["images"],
                agreement_on=ev["source"], accuracy=ev.get("accuracy"),
                keras_accuracy=ev.get("keras_accuracy"), integer_only=entry["integer_only"],
                calibration=f"{entry['calibration']['images']} {entry['calibration']['source']}",
                input_scale=entry["input"]["scale"], input_zero_point=entry["input"]["zero_point"])
        else:
            row[fmt].update(max_abs_diff_logits=entry["max_abs_diff"]["logits"],
                            max_abs_diff_probabilities=entry["max_abs_diff"]["probabilities"])
    row["onnx"]["opset"] = opset
    return row


def table(rows):
    head = (f"{'model':<16}{'format':<12}{'bytes':>12}{'vs .keras':>10}{'export s':>10}"
            f"{'verify s':>10}{'max|dlogit|':>13}{'max|dprob|':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["keras_save_seconds"] is not None:
            lines.append(f"{r['model']:<16}{'.keras':<12}{r['keras_bytes']:>12}{1:>10.3f}"
                         f"{r['keras_save_seconds']:>10.2f}   (with optimiser state)")
        else:
            lines.append(f"{r['model']:<16}{'.keras':<12}{r['keras_bytes']:>12}{1:>10.3f}"
                         f"{'':>10}   (as trained: {r['source']})")
        lines.append(f"{'':<16}{'.keras':<12}{r['keras_bytes_without_optimizer']:>12}"
                     f"{r['keras_bytes_without_optimizer'] / r['keras_bytes']:>10.3f}"
                     f"{'':>10}   (weights only: forward + feedback)")
        for fmt in FORMATS:
            e = r[fmt]
            cells = (f"{'':<16}{fmt:<12}{e['bytes']:>12}{e['bytes_vs_keras']:>10.3f}"
                     f"{e['export_seconds']:>10.2f}{e['verify_seconds']:>10.2f}")
            if fmt == "tflite_int8":
                accuracy = ("" if e["accuracy"] is None else
                            f", accuracy {e['accuracy']:.2%} (Keras {e['keras_accuracy']:.2%})")
                lines.append(f"{cells}   top-1 agreement {e['top1_agreement']:.2%} on "
                             f"{e['agreement_images']} {e['agreement_on']} images{accuracy}")
            else:
                lines.append(f"{cells}{e['max_abs_diff_logits']:>13.2e}"
                             f"{e['max_abs_diff_probabilities']:>12.2e}")
        lines.append(f"{'':<16}params: {r['forward_params']:,} forward, "
                     f"{r['feedback_params']:,} feedback (not exported); real images: "
                     f"{r['real_images'].get('dataset', 'none')}")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    kinds = {".keras (+ optimiser)": lambda r: r["keras_bytes"],
             ".keras (weights)": lambda r: r["keras_bytes_without_optimizer"]}
    kinds.update({fmt: lambda r, fmt=fmt: r[fmt]["bytes"] for fmt in FORMATS})
    width = 0.8 / len(kinds)
    for i, (kind, size) in enumerate(kinds.items()):
        sizes = [size(r) / 2**20 for r in rows]
        offset = (i - (len(kinds) - 1) / 2) * width
        ax.bar([j + offset for j in range(len(rows))], sizes, width, label=kind)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_ylabel("MiB")
    ax.set_title("Artefact sizes (.keras holds the feedback weights too)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    import onnx
    import onnxruntime
    import tf2onnx

    env = harness.environment(onnx=onnx.__version__, tf2onnx=tf2onnx.__version__,
                              onnxruntime=onnxruntime.__version__)
    workdir = _KEEP.value or tempfile.mkdtemp(prefix="export_bench_")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    trained = {"path": _TRAINED.value or None}
    try:
        for name in _MODELS.value:
            rows.append(measure(name, workdir, _OPSET.value))
        if _TRAINED.value and os.path.exists(_TRAINED.value):
            rows.append(measure_trained(_TRAINED.value, workdir, _OPSET.value))
        else:
            trained["skipped"] = (f"no trained model at {_TRAINED.value!r} (run `make demo`)"
                                  if _TRAINED.value else "--trained_model=''")
            print(f"trained model not measured: {trained['skipped']}")
    finally:
        if not _KEEP.value:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {"benchmark": os.path.splitext(os.path.basename(_OUT.value))[0], **env,
              "trained_model": trained, "rows": rows}
    harness.write_json(_OUT.value, result)
    plot(rows, harness.png_path(_OUT.value))
    print(table(rows))
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
