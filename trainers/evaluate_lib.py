"""Evaluate a saved model on a dataset split: accuracy, loss and the confusion matrix."""

import os

import keras
import numpy as np
import tensorflow as tf

import rlra_tf  # noqa: F401  (registers the layers, models and schedules for loading)
from rlra_tf import data
from trainers.errors import TrainerError
from trainers.workdirs import CONFIG_FILE, MODEL_FILE, read_json


def resolve(path, dataset=None, data_dir=None, manual_dir=None):
    """`(model file, dataset, data_dir, manual_dir)` from a model file or a run directory.

    A run directory supplies its `model.keras` and, for what is not given, the dataset and
    data folders of its `config.json`.
    """
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        config_path = os.path.join(path, CONFIG_FILE)
        if tf.io.gfile.exists(config_path):
            config = read_json(config_path)
            dataset = dataset or config.get("dataset")
            data_dir = data_dir or config.get("data_dir")
            manual_dir = manual_dir or config.get("manual_dir")
        path = os.path.join(path, MODEL_FILE)
    if not tf.io.gfile.exists(path):
        raise TrainerError(
            f"No saved model at {path!r} (expected a .keras file or a run directory)"
        )
    if dataset is None:
        raise TrainerError(f"Which dataset? Pass dataset= (one of {list(data.DATASETS)})")
    return path, dataset, data_dir, manual_dir


def evaluate(path, dataset=None, split="test", batch_size=256, data_dir=None, manual_dir=None,
             limit=None):
    """Evaluates the saved model at `path` (a `.keras` file or a run directory).

    Returns:
        A dict: `accuracy`, `loss` (mean cross-entropy), `num_examples`, `confusion_matrix`
        (rows: true class, columns: predicted class), `class_names`, `dataset`, `split`.

    Raises:
        TrainerError: unknown dataset or split, missing model or data, or a model whose input
            shape or class count does not match the dataset.
    """
    path, dataset, data_dir, manual_dir = resolve(path, dataset, data_dir, manual_dir)
    if dataset not in data.DATASETS:
        raise TrainerError(
            f"Unknown dataset, received: dataset={dataset!r}. Expected one of {list(data.DATASETS)}"
        )
    if split not in data.SPLITS:
        raise TrainerError(
            f"Unknown split, received: split={split!r}. Expected one of {list(data.SPLITS)}"
        )
    for name, value in (("batch_size", batch_size), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value <= 0):
            raise TrainerError(
                f"Expected a positive integer for {name}, received: {name}={value!r}"
            )
    ds_info = data.info(dataset)
    try:
        model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as err:
        raise TrainerError(f"Cannot load a model from {path!r}: {err}") from None
    num_classes = getattr(model, "num_classes", None) or int(model.output_shape[-1])
    if num_classes != ds_info.num_classes:
        raise TrainerError(
            f"The model has {num_classes} classes but {dataset} has {ds_info.num_classes}"
        )
    build = (model.get_build_config() or {}).get("input_shape")
    if build is not None and tuple(build[1:]) != tuple(ds_info.image_shape):
        raise TrainerError(
            f"The model expects inputs of shape {tuple(build[1:])} but {dataset} has images "
            f"of shape {ds_info.image_shape}"
        )
    try:
        ds = data.load(dataset, split, batch_size, shuffle=False, data_dir=data_dir,
                       manual_dir=manual_dir, limit=limit)
    except data.DatasetUnavailableError as err:
        raise TrainerError(str(err)) from None

    predict = tf.function(lambda x: model(x, training=False))
    confusion = np.zeros((num_classes, num_classes), np.int64)
    total_loss, count = 0.0, 0
    for images, labels in ds:
        logits = predict(images)
        labels = labels.numpy().astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise TrainerError(
                f"Labels of {dataset}/{split} must be in [0, {num_classes}), received "
                f"{sorted(set(labels[(labels < 0) | (labels >= num_classes)].tolist()))[:10]}"
            )
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))
        total_loss += float(tf.reduce_sum(losses))
        count += labels.size
        predicted = np.argmax(logits.numpy(), axis=-1)
        np.add.at(confusion, (labels, predicted), 1)
    if count == 0:
        raise TrainerError(f"The {split} split of {dataset} is empty")
    return {
        "dataset": dataset,
        "split": split,
        "model": path,
        "num_examples": int(count),
        "accuracy": float(np.trace(confusion) / count),
        "loss": total_loss / count,
        "confusion_matrix": confusion.tolist(),
        "class_names": list(ds_info.class_names),
    }


def format_report(result):
    """The accuracy, the loss and the confusion matrix as text."""
    matrix = np.asarray(result["confusion_matrix"])
    k = matrix.shape[0]
    names = result["class_names"] or [str(i) for i in range(k)]
    lines = [
        f"{result['dataset']}/{result['split']}: {result['num_examples']} examples, "
        f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}",
    ]
    if k > 20:
        lines.append(f"(confusion matrix of {k} classes not printed; it is in the JSON output)")
        return "\n".join(lines)
    label_w = max(len(n) for n in names[:k]) + 1
    cell = max(len(str(matrix.max())), len(str(k - 1))) + 1
    lines.append("Confusion matrix (rows: true class, columns: predicted class):")
    lines.append(" " * label_w + "".join(f"{j:>{cell}}" for j in range(k)))
    for i in range(k):
        lines.append(f"{names[i]:<{label_w}}" + "".join(f"{v:>{cell}}" for v in matrix[i])
                     + f"   {i}")
    return "\n".join(lines)
