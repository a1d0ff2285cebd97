"""Evaluate a saved model on a dataset split: accuracy, loss and the confusion matrix."""

import os

import keras
import numpy as np
import tensorflow as tf

import rlra_tf  # noqa: F401  (registers the layers, models and schedules for loading)
from rlra_tf import data
from rlra_tf.models.labels import checked_class_ids
from trainers.errors import TrainerError
from trainers.input_pipeline import bad_labels_message
from trainers.workdirs import CONFIG_FILE, MODEL_FILE, read_json


def run_config(model_file):
    """`(config dict, path)` of the trainer's `config.json` that belongs to `model_file`: in
    its folder (`WORKDIR/model.keras`) or the one above (`WORKDIR/checkpoints/last.keras`);
    `(None, None)` if there is none."""
    folder = os.path.dirname(os.path.abspath(model_file))
    for candidate in (folder, os.path.dirname(folder)):
        path = os.path.join(candidate, CONFIG_FILE)
        if tf.io.gfile.exists(path):
            try:
                config = read_json(path)
            except ValueError:
                continue
            if isinstance(config, dict) and config.get("dataset"):
                return config, path
    return None, None


def datasets_matching(model):
    """The datasets of `rlra_tf.data` whose image shape and class count are the model's."""
    shape = _input_shape(model)
    return [n for n in data.DATASETS
            if data.info(n).num_classes == _num_classes(model)
            and (shape is None or tuple(data.info(n).image_shape) == shape)]


def _num_classes(model):
    return getattr(model, "num_classes", None) or int(model.output_shape[-1])


def _input_shape(model):
    build = (model.get_build_config() or {}).get("input_shape")
    return None if build is None else tuple(build[1:])


def resolve(path, dataset=None, data_dir=None, manual_dir=None):
    """`(model file, dataset or None, data_dir, manual_dir)` from a model file or a run
    directory.

    A run directory supplies its `model.keras`; a model file the run's `config.json` beside
    it (or one folder up, for `checkpoints/*.keras`). That config gives what is not passed:
    the dataset and the data folders. Without one the dataset stays `None` (`evaluate` then
    takes the only dataset that fits the model).
    """
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not tf.io.gfile.exists(path):
        raise TrainerError(
            f"No saved model at {path!r} (expected a .keras file or a run directory)"
        )
    config, _ = run_config(path)
    if config is not None:
        dataset = dataset or config.get("dataset")
        data_dir = data_dir or config.get("data_dir")
        manual_dir = manual_dir or config.get("manual_dir")
    return path, dataset, data_dir, manual_dir


def evaluate(path, dataset=None, split="test", batch_size=256, data_dir=None, manual_dir=None,
             limit=None):
    """Evaluates the saved model at `path` (a `.keras` file or a run directory).

    Returns:
        A dict: `accuracy`, `loss` (mean cross-entropy), `num_examples`, `confusion_matrix`
        (rows: true class, columns: predicted class), `class_names`, `dataset`, `split`.

    Raises:
        TrainerError: unknown dataset or split, missing model or data, a dataset that
            cannot be told (no config.json beside the model, and not exactly one dataset of
            its shape), a model whose input shape or class count does not match the dataset,
            or labels outside its classes.
    """
    path, dataset, data_dir, manual_dir = resolve(path, dataset, data_dir, manual_dir)
    if dataset is not None and dataset not in data.DATASETS:
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
    try:
        model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as err:
        raise TrainerError(f"Cannot load a model from {path!r}: {err}") from None
    if dataset is None:
        matching = datasets_matching(model)
        if len(matching) != 1:
            fits = (f"{' and '.join(matching)} fit the model" if matching else
                    "no dataset of rlra_tf.data fits the model")
            raise TrainerError(
                f"Which dataset? {path} has no trainer's config.json beside it and {fits}; "
                f"pass --dataset (one of {', '.join(data.DATASETS)})")
        dataset = matching[0]
    ds_info = data.info(dataset)
    num_classes = _num_classes(model)
    if num_classes != ds_info.num_classes:
        raise TrainerError(
            f"The model has {num_classes} classes but {dataset} has {ds_info.num_classes}"
        )
    shape = _input_shape(model)
    if shape is not None and shape != tuple(ds_info.image_shape):
        raise TrainerError(
            f"The model expects inputs of shape {shape} but {dataset} has images "
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
        try:
            labels = checked_class_ids(labels, num_classes, where=f"{dataset} {split} data")
        except tf.errors.InvalidArgumentError as err:
            raise TrainerError(bad_labels_message(err)) from None
        labels = labels.numpy().astype(np.int64)
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
