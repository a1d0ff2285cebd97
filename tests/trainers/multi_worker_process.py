"""One worker of the MultiWorkerMirroredStrategy test (`test_multi_worker.py` starts two).

`python multi_worker_process.py OUT_DIR [TRAINER_WORKDIR [trainer_only]]`, with `TF_CONFIG`
naming this worker. The worker

1. trains a tiny rec-LRA MLP (`train_steps`) for `STEPS` steps of `GLOBAL_BATCH` examples
   under the strategy, with the dataset distributed by the strategy as `model.fit` does it,
   and writes `OUT_DIR/weights.npz` (the final weights, in `model.weights` order) and
   `OUT_DIR/shards.npz` (the examples this worker's replica received at each step);
2. if `TRAINER_WORKDIR` is given, runs the trainer (`train_lib.train_and_evaluate`) on the
   `tiny_mlp` preset under `tfds.testing.mock_data` with the same strategy
   (`--strategy=multi_worker`); the chief writes `TRAINER_WORKDIR`, worker 1 writes under
   `TRAINER_WORKDIR/.workers/worker-1/`. With `trainer_only`, step 1 is skipped, and the
   test hooks of `trainer_process.py` (`RLRA_TEST_HANG_AT_STEP`, `RLRA_TEST_STEP_LOG`) apply;
   a `TrainingInterrupted` ends the process with its exit status, as the binary does.

The test calls `train_steps()` and `trainer_config()` itself for the single-process reference.
"""

import contextlib
import os
import sys

import keras
import numpy as np
import tensorflow as tf

GLOBAL_BATCH = 8
STEPS = 3
MOCK_EXAMPLES = 64


def batches():
    """`STEPS` global batches of a 3-class problem with 6 features, as NumPy arrays."""
    rng = np.random.RandomState(7)
    centres = rng.normal(0.0, 1.0, (3, 6))
    y = rng.randint(0, 3, GLOBAL_BATCH * STEPS).astype("int32")
    x = (centres[y] + rng.normal(0.0, 0.6, (y.size, 6))).astype("float32")
    return x, y


def dataset():
    """The global batches; under a strategy each worker keeps its share of every batch."""
    x, y = batches()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_steps(strategy=None):
    """The weights of the tiny MLP after `STEPS` rec-LRA steps (single process if no strategy)."""
    import rlra_tf

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        keras.utils.set_random_seed(3)
        model = rlra_tf.models.mlp((6,), hidden_units=(5, 4), num_classes=3, block_size=1)
        # SGD, not Adam: Adam is scale-invariant and would hide a wrong replica scaling.
        model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9), rule="rec_lra",
                      jit_compile=False)
    history = model.fit(dataset(), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == STEPS, model.optimizer.iterations
    assert np.isfinite(history.history["loss"][-1])
    return [w.numpy() for w in model.weights]


def shards(strategy):
    """What this worker's replicas receive at each step: arrays (steps, local examples, ...)."""
    xs, ys = [], []
    for x, y in strategy.experimental_distribute_dataset(dataset()):
        xs.append(np.concatenate([t.numpy() for t in strategy.experimental_local_results(x)]))
        ys.append(np.concatenate([t.numpy() for t in strategy.experimental_local_results(y)]))
    return np.stack(xs), np.stack(ys)


def trainer_config(data_dir):
    """tiny_mlp for one epoch with SGD (8 steps of 8 examples)."""
    from trainers import presets

    return presets.override(
        presets.get("tiny_mlp"), data_dir=data_dir, epochs=1, optimizer="sgd",
        learning_rate=0.5, momentum=0.9, strategy="multi_worker",
    )


def main(out_dir, trainer_workdir=None, mode=None):
    from rlra_tf import distribute

    strategy = distribute.get_strategy("multi_worker")  # reads TF_CONFIG
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    callbacks = []
    if mode == "trainer_only":
        from trainer_process import TestHooks

        callbacks += [hooks for hooks in [TestHooks.from_env()] if hooks is not None]
    else:
        weights = train_steps(strategy)
        np.savez(os.path.join(out_dir, "weights.npz"), *weights)
        x, y = shards(strategy)
        np.savez(os.path.join(out_dir, "shards.npz"), x=x, y=y)

    if trainer_workdir:
        import tensorflow_datasets as tfds

        from trainers import errors, train_lib

        # One MultiWorkerMirroredStrategy per process: the trainer reuses this one.
        distribute.get_strategy = lambda *args, **kwargs: strategy
        with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
            try:
                train_lib.train_and_evaluate(
                    trainer_config(os.path.join(out_dir, "tfds")), trainer_workdir,
                    callbacks=callbacks, verbose=0,
                )
            except errors.TrainingInterrupted as err:
                print(f"rlra-train: {err.kind}: {err}", flush=True)
                sys.exit(err.exit_code)


if __name__ == "__main__":
    main(*sys.argv[1:])
