"""Test accuracy after every epoch, for the accuracy benchmarks (MLP and ResNet-20).

`TestEvaluator(dataset)(model)` gives accuracy, mean cross-entropy and the example count on a
fixed dataset, from the model's logits with TF ops (not Keras' metrics, so the training loop's
metric state is left alone). `make_test_callback(evaluator, record)` is a Keras callback that
appends one entry per epoch to `record["epochs"]` (the layout `benchmarks/curves.py` reads);
the test pass is timed apart from the trainer's epoch time.
"""

import time


def as_float(v):
    """`None` stays `None`; a number, NumPy value or tensor becomes a Python float."""
    if v is None:
        return None
    import numpy as np

    return float(np.asarray(v))


class TestEvaluator:
    """Accuracy and mean cross-entropy of a model on a fixed dataset, batch by batch."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._fns = {}

    def __call__(self, model):
        import tensorflow as tf

        fn = self._fns.get(id(model))
        if fn is None:

            @tf.function
            def fn(x, y):
                logits = model(x, training=False)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
                hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y)
                return tf.reduce_sum(tf.cast(hits, tf.float32)), tf.reduce_sum(ce)

            self._fns = {id(model): fn}  # one model at a time: the previous one can go
        n = hits = loss = 0.0
        for x, y in self.dataset:
            h, ce = fn(x, y)
            hits, loss, n = hits + float(h), loss + float(ce), n + int(y.shape[0])
        return hits / n, loss / n, int(n)


def make_test_callback(evaluator, record):
    """A callback: after each epoch, the test metrics and the trainer's logs into `record`."""
    import keras

    class PerEpochTest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            start = time.perf_counter()
            acc, loss, n = evaluator(self.model)
            entry = {
                "epoch": epoch + 1,
                "test_accuracy": acc,
                "test_loss": loss,
                "test_examples": n,
                "train_accuracy": as_float(logs.get("accuracy")),
                "train_loss": as_float(logs.get("loss")),
                "val_accuracy": as_float(logs.get("val_accuracy")),
                "epoch_seconds": as_float(logs.get("epoch_seconds")),
                "test_eval_seconds": time.perf_counter() - start,
            }
            record["epochs"].append(entry)
            print(f"    epoch {epoch + 1}: test {100 * acc:.2f}% loss {loss:.4f} "
                  f"(train {100 * (entry['train_accuracy'] or 0):.1f}%, "
                  f"{entry['epoch_seconds'] or 0:.1f} s)", flush=True)

    return PerEpochTest()


def train_with_tests(config, workdir, evaluator, record):
    """Runs the trainer on `config` in `workdir` with the per-epoch test; deletes the workdir.

    Appends the epochs to `record["epochs"]` and returns `(metrics, wall seconds)`; the wall
    time includes the per-epoch test passes (their own times are in the epoch entries).
    """
    import shutil

    from trainers import train_lib

    start = time.perf_counter()
    metrics = train_lib.train_and_evaluate(
        config, workdir, overwrite=True, verbose=0,
        callbacks=[make_test_callback(evaluator, record)],
    )
    wall = time.perf_counter() - start
    shutil.rmtree(workdir, ignore_errors=True)
    return metrics, wall
