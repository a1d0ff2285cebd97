"""The trainer's data: a training order that depends on `(seed, epoch)` only, so it resumes
exactly.

It owns the per-epoch seed, the pipelines of a split (sharded by data, so a multi-worker run
sees the batches of a single-process run), the label guard inside them and the message made
from its assertion, the steps per epoch, and `preflight`: one batch read before anything is
written, to check the data exist and fit the model.
"""

import re

import tensorflow as tf

from rlra_tf import data
from rlra_tf.models.labels import checked_class_ids
from trainers.errors import fail


def epoch_seed(seed, epoch):
    """The data seed of one epoch (order and augmentation)."""
    return int(seed) * 1_000_003 + int(epoch)


def _label_guard(num_classes, split):
    """The model's own label check (`checked_class_ids`), run in the input pipeline."""

    def check(images, labels):
        return images, checked_class_ids(labels, num_classes, where=f"{split} data")

    return check


def _auto_shard_by_data(ds):
    # Every worker builds the same pipeline and keeps its share of each global batch, so a
    # multi-worker run sees exactly the batches of a single-process run.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def load_split(config, ds_info, split, batch_size, **kwargs):
    """The pipeline of `split` with its label guard, sharded by data (limits of `config`)."""
    limit = config.train_limit if split == "train" else config.eval_limit
    ds = data.load(
        config.dataset, split, batch_size, data_dir=config.data_dir, manual_dir=config.manual_dir,
        limit=limit, deterministic=config.deterministic, **kwargs,
    )
    ds = ds.map(_label_guard(ds_info.num_classes, split))
    return _auto_shard_by_data(ds)


def train_epoch(config, ds_info, epoch):
    """The training batches of one epoch (full batches only), ordered by `(seed, epoch)`."""
    return load_split(
        config, ds_info, "train", config.batch_size, shuffle=True, augment=config.augment,
        seed=epoch_seed(config.seed, epoch), drop_remainder=True,
    )


def train_epochs(config, ds_info, first, last):
    """Epochs `first` .. `last - 1` back to back (one iterator over them, as `fit` wants)."""
    ds = train_epoch(config, ds_info, first)
    for epoch in range(first + 1, last):
        ds = ds.concatenate(train_epoch(config, ds_info, epoch))
    return ds


def steps_per_epoch(config, ds_info):
    """Full batches per epoch (from the pipeline's cardinality when it is known)."""
    cardinality = int(train_epoch(config, ds_info, 0).cardinality())
    if cardinality > 0:
        return cardinality
    n = ds_info.num_train if config.train_limit is None else min(ds_info.num_train,
                                                                   config.train_limit)
    return n // config.batch_size


def preflight(config, ds_info):
    """Reads one training batch: the data exist, have the model's shape and valid labels."""
    n = min(config.batch_size, 64, config.train_limit or config.batch_size)
    ds = data.load(
        config.dataset, "train", n, shuffle=False, data_dir=config.data_dir,
        manual_dir=config.manual_dir, limit=n,
    )
    batches = list(ds)  # read to the end: a cached pipeline left half-read warns
    if not batches:
        fail(f"The train split of {config.dataset} is empty")
    images, labels = batches[0]
    if tuple(images.shape[1:]) != tuple(ds_info.image_shape):
        fail(
            f"The {config.dataset} images have shape {tuple(images.shape[1:])}, but the model "
            f"expects {tuple(ds_info.image_shape)}"
        )
    try:
        checked_class_ids(labels, ds_info.num_classes, where="train data")
    except tf.errors.InvalidArgumentError as err:
        fail(bad_labels_message(err) + ", in the first training batch")


def bad_labels_message(err):
    """The sentence of the label check (`checked_class_ids`) in `err`, for the user.

    Inside `fit` the assertion is buried in a "Graph execution error" several lines down.
    """
    text = str(err.message)
    found = re.search(r"(Received a label value of [^\]\n']*)", text)
    sentence = found.group(1).strip() if found else text.strip().splitlines()[0]
    return (f"Bad labels in the data: {sentence} (the model has as many outputs as the "
            "dataset has classes)")
