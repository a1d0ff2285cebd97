"""What a run records about its epochs, and reads back for `metrics.json`.

It owns the epoch timer (`epoch_seconds`, `examples_per_second` in the logs), the TensorBoard
callback with its fallback when the `tensorboard` package is absent (`EpochScalars`), the
history read back from `history.csv` (or merged from `fit`'s own histories on a non-chief
worker), the best value so far of a metric, and `finite`, which makes `metrics.json` strict
JSON.
"""

import csv
import io
import math
import time

import keras
import numpy as np
import tensorflow as tf

from trainers.workdirs import join


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `examples_per_second` to each epoch's logs (place it first)."""

    def __init__(self, batch_size, steps_per_epoch):
        super().__init__()
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.steps = self.steps_per_epoch
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["examples_per_second"] = self.steps * self.batch_size / max(seconds, 1e-9)
        self.steps = self.steps_per_epoch


class EpochScalars(keras.callbacks.Callback):
    """TensorBoard scalars of every epoch's logs, for when the `tensorboard` package is absent.

    Keras' `TensorBoard` callback needs `tensorboard` (not a dependency of tensorflow-cpu);
    this writes the same `epoch_<metric>` scalars (train/ and validation/ runs) with core ops.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(join(self.log_dir, run))
        return self._writers[run]

    def on_epoch_end(self, epoch, logs=None):
        from rlra_tf.diagnostics import write_scalar

        for key, value in (logs or {}).items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(run).as_default():
                write_scalar(f"epoch_{name}", float(np.asarray(value)), epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.flush()


def tensorboard_callback(log_dir):
    """Keras' `TensorBoard` if the `tensorboard` package is installed, else `EpochScalars`."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return EpochScalars(log_dir)
    return keras.callbacks.TensorBoard(log_dir)


def history_from_csv(path):
    """Per-epoch dicts from `history.csv` (non-finite values as None); [] if it is absent."""
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    history = []
    for row in rows:
        entry = {}
        for k, v in row.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            entry[k] = int(value) if k == "epoch" else (value if math.isfinite(value) else None)
        history.append(entry)
    return history


def best_so_far(history, key):
    values = [h[key] for h in history if h.get(key) is not None]
    return max(values) if values else None


def merge_histories(histories):
    """Per-epoch dicts from the `History.history` of several `fit` calls, in order."""
    out = []
    for h in histories:
        keys = list(h)
        for i in range(len(h[keys[0]]) if keys else 0):
            out.append({k: float(h[k][i]) for k in keys})
    return out


def finite(obj):
    """NaN/inf to None, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
