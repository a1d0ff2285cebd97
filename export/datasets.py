"""Which dataset an export draws on: for the real test images and for the class names.

Part of the shared layer of `export/`. `dataset="auto"` means the `dataset` of a trainer's
`config.json` beside the model when there is one (`dataset_from_run_config`), else the datasets
of `rlra_tf.data` whose image shape and class count match the model's. `real_test_images`
reads a few test images of that dataset (when it is available offline) and says which one it
used or why none; `dataset_class_names` gives that dataset's class names, or "0".."K-1";
`labelled_images` and `labelled_batches` read more of a split once a dataset is chosen (the
int8 TFLite model's calibration images from "train", its evaluation batches from "test").
"""

import json
import os

import numpy as np

from export.common import EXIT_USAGE, ExportError
from export.serving import default_class_names, image_shape
from rlra_tf import data


def real_test_images(model, dataset="auto", count=8, data_dir=None):
    """`(images, note)`: up to `count` float32 test images in [0, 1] of the model's shape.

    `dataset="auto"` tries the datasets of `rlra_tf.data` whose image shape and class count
    match the model, `None`/`"none"` uses none; a named dataset that does not match or is not
    available offline raises `ExportError`. `images` is `None` when none could be had, and
    `note` says why (or which dataset was used).
    """
    if dataset in (None, "", "none"):
        return None, {"skipped": "no dataset requested"}
    shape = image_shape(model)
    if dataset == "auto":
        candidates = [
            n for n in data.DATASETS
            if tuple(data.info(n).image_shape) == shape
            and data.info(n).num_classes == model.num_classes
        ]
        if not candidates:
            return None, {"skipped": f"no dataset in rlra_tf.data has images of shape {shape} "
                                     f"and {model.num_classes} classes", "candidates": []}
    else:
        if dataset not in data.DATASETS:
            raise ExportError(f"Unknown dataset, received: dataset={dataset!r}; expected one of "
                              f"{', '.join(data.DATASETS)}, 'auto' or 'none'", EXIT_USAGE)
        ds_info = data.info(dataset)
        if tuple(ds_info.image_shape) != shape or ds_info.num_classes != model.num_classes:
            raise ExportError(
                f"Dataset {dataset} has images of shape {tuple(ds_info.image_shape)} and "
                f"{ds_info.num_classes} classes, the model expects {shape} and "
                f"{model.num_classes}", EXIT_USAGE)
        candidates = [dataset]
    reasons = []
    for name in candidates:
        try:
            images, _ = labelled_images(name, "test", count, data_dir)
            return images, {"dataset": name, "split": "test", "candidates": candidates}
        except data.DatasetUnavailableError as e:
            reasons.append(f"{name}: {str(e).splitlines()[0]}")
    if dataset != "auto":
        raise ExportError(f"Dataset {dataset} is not available: {reasons[0]}", EXIT_USAGE)
    return None, {"skipped": "; ".join(reasons), "candidates": candidates}


def labelled_batches(name, split, count=None, data_dir=None, batch_size=1000):
    """Yields `(images, labels)` NumPy batches of the first `count` examples of a split of
    `rlra_tf.data` (all of them when `count` is None), in the split's stored order: float32
    images in [0, 1] and int labels. Raises `data.DatasetUnavailableError` when the dataset is
    not available offline.
    """
    batch_size = min(batch_size, count) if count else batch_size
    for x, y in data.load(name, split, batch_size, shuffle=False, limit=count, data_dir=data_dir):
        yield np.asarray(x, np.float32), np.asarray(y)


def labelled_images(name, split, count=None, data_dir=None):
    """`(images, labels)`: `labelled_batches` as two arrays."""
    images, labels = zip(*labelled_batches(name, split, count, data_dir))
    return np.concatenate(images), np.concatenate(labels)


def dataset_from_run_config(model_path, dataset):
    """`(dataset, config path)`: for "auto", the `dataset` of a trainer's `config.json`.

    `trainers.train` writes `config.json` (with the dataset name) beside `model.keras`; when
    it is there, "auto" means that dataset. Otherwise `(dataset, None)`.
    """
    if dataset != "auto":
        return dataset, None
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), "config.json")
    try:
        with open(path) as f:
            name = json.load(f).get("dataset")
    except (OSError, ValueError, AttributeError):
        return dataset, None
    return (name, path) if isinstance(name, str) and name else (dataset, None)


def dataset_class_names(model, dataset, real_note):
    """Class names of the dataset named (or the only match "auto" found), else "0".."K-1".

    "auto" uses a dataset's names only when it is the one dataset of that image shape and
    class count (MNIST and Fashion-MNIST, for instance, are indistinguishable by shape).
    """
    name = dataset
    if dataset == "auto":
        candidates = real_note.get("candidates", [])
        name = candidates[0] if len(candidates) == 1 else None
    if name in (None, "", "none", "auto"):
        return default_class_names(model)
    try:
        names = list(data.info(name).class_names)
    except ValueError:
        return default_class_names(model)
    return names if len(names) == model.num_classes else default_class_names(model)

