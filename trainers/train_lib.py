"""What `trainers/train.py` runs: check a `Config`, train with fault tolerance, evaluate, write.

`train_and_evaluate(config, workdir)` is the whole run:

1. Check every setting, the data (one batch is read: availability, image shape, label range)
   and the work directory *before* anything is written; a problem raises `TrainerError` with a
   message for the user (`exit_code` 2).
2. Create the strategy (`rlra_tf.distribute`), build and compile the model in its scope.
3. Resume from `workdir/backup` if a previous run of the same config was interrupted: weights,
   optimiser state, epoch *and* step inside the epoch. Each epoch's data order is a function
   of `(seed, epoch)` only, so the resumed run sees exactly the batches the interrupted one
   would have seen, and in deterministic mode ends with the same weights.
4. Train with callbacks: progress bar, TensorBoard, ModelCheckpoint (`checkpoints/last.keras`,
   `checkpoints/best.keras`), the step-level backup, CSVLogger (`history.csv`) and a
   non-finite-loss guard (`NonFiniteLossError`, `exit_code` 3).
5. Evaluate on the test split, save `model.keras`, write `metrics.json`, drop the backup.

Work directory (the chief's; other workers of a multi-worker run write theirs under
`workdir/.workers/<task>-<id>/`): `config.json`, `metrics.json`, `model.keras`, `history.csv`,
`checkpoints/`, `tensorboard/`, `backup/` (only while a run is unfinished).
"""

import contextlib
import csv
import dataclasses
import importlib
import io
import json
import math
import os
import posixpath
import re
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from rlra_tf import data, distribute, rules, schedules
from rlra_tf import models as models_lib
from trainers import presets

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
WORKERS_DIR = ".workers"

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = schedules.DECAYS
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}
# Settings that change how a run executes, not what it computes: a rerun may change them and
# still resume the same run.
RUNTIME_FIELDS = (
    "strategy", "tpu_address", "jit_compile", "diagnostics_every", "data_dir", "manual_dir",
    "steps_per_execution",
)
# Parameters that weight decay leaves alone (biases, BatchNorm scale and offset).
NO_DECAY = ("bias", "gamma", "beta")
PROBE_SIZE = 256


class TrainerError(Exception):
    """A problem with what the user asked for; the message says what and how to fix it."""

    exit_code = 2


class NonFiniteLossError(TrainerError):
    """Training produced a non-finite loss or weights; nothing from that step is kept."""

    exit_code = 3


# ---------------------------------------------------------------------------------------------
# Models, rules, optimisers: the one place that maps names to builders.


def model_names():
    """`"mlp"` and the ResNet presets of `rlra_tf.models.resnet` (when that module exists)."""
    names = ["mlp"]
    try:
        resnet = _resnet_module()
    except ImportError:  # an install without the ResNets still trains MLPs
        return tuple(names)
    return tuple(names + sorted(resnet.PRESETS))


def _resnet_module():
    # By module path: `rlra_tf.models.resnet` is also the name of the builder function.
    return importlib.import_module("rlra_tf.models.resnet")


def build_model(config, ds_info):
    """The built `AlignedModel` of `config.model` for the dataset (call inside the scope)."""
    kwargs = {"noise_seed": config.seed}
    if config.normalize:
        kwargs.update(input_mean=ds_info.mean, input_std=ds_info.std)
    if config.model == "mlp":
        return models_lib.mlp(
            ds_info.image_shape,
            hidden_units=config.hidden_units,
            num_classes=ds_info.num_classes,
            activation=config.activation,
            block_size=config.block_size,
            **kwargs,
        )
    return _resnet_module().resnet(
        config.model,
        input_shape=ds_info.image_shape,
        num_classes=ds_info.num_classes,
        stem=config.stem,
        width=config.width,
        activation=config.activation,
        **kwargs,
    )


def make_rule(config):
    """The rule object from `config.rule` and the rule parameters that are set.

    Each rule takes the parameters of its `get_config()` (`rec_lra`/`lra`: all of them;
    `fa`/`wm`: the synapse and mirror ones; `dfa`/`bp`: none); any other is refused.
    """
    params = config.rule_params()
    taken = set(rules.get(config.rule).get_config())
    extra = {k: v for k, v in params.items() if k not in taken}
    if extra:
        allowed = ", ".join(sorted(taken)) if taken else "no parameters"
        raise ValueError(
            f"Rule {config.rule!r} takes {allowed}; received: "
            + ", ".join(f"{k}={v!r}" for k, v in extra.items())
        )
    return rules.get({"name": config.rule, "config": params})


def make_optimizer(config, steps_per_epoch):
    """The optimiser with its warm-up schedule; steps are optimiser steps."""
    lr = schedules.WarmupSchedule(
        config.learning_rate,
        decay=config.schedule,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)),
        boundaries=[e * steps_per_epoch for e in config.step_epochs],
        factor=config.step_factor,
    )
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, weight_decay=wd)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=wd)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer


# ---------------------------------------------------------------------------------------------
# Checking the configuration (pure Python: nothing is read or written).


def _fail(message):
    raise TrainerError(message)


def _choice(name, value, allowed):
    if value not in allowed:
        _fail(f"Unknown {name}, received: {name}={value!r}. Expected one of {list(allowed)}")


def _int(name, value, minimum=1, optional=False):
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive" if minimum == 1 else f"an integer >= {minimum}, i.e. a"
        _fail(f"Expected {kind} integer for {name}, received: {name}={value!r}")


def _number(name, value, low=0.0, high=None, low_open=False, high_open=True):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        _fail(f"Expected a number {lo}{hi} for {name}, received: {name}={value!r}")


def validate(config):
    """Raises `TrainerError` for the first setting of `config` that cannot work."""
    if not isinstance(config, presets.Config):
        _fail(f"Expected a trainers.presets.Config, received: {type(config).__name__}")
    _choice("dataset", config.dataset, data.DATASETS)
    _choice("model", config.model, model_names())
    _choice("rule", config.rule, rules.NAMES)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("schedule", config.schedule, SCHEDULES)
    _choice("strategy", config.strategy, distribute.STRATEGIES)
    _choice("jit_compile", config.jit_compile, tuple(JIT_COMPILE))
    _int("epochs", config.epochs)
    _int("batch_size", config.batch_size)
    _number("learning_rate", config.learning_rate, low_open=True)
    _number("momentum", config.momentum, 0.0, 1.0)
    _number("weight_decay", config.weight_decay)
    _number("label_smoothing", config.label_smoothing, 0.0, 1.0)
    _number("warmup_epochs", config.warmup_epochs, 0.0, config.epochs)
    _number("step_factor", config.step_factor, low_open=True)
    steps = list(config.step_epochs)
    for e in steps:
        _int("step_epochs[i]", e)
    if steps != sorted(set(steps)) or (steps and steps[-1] >= config.epochs):
        _fail(
            "Expected increasing step_epochs below epochs, received: "
            f"step_epochs={tuple(steps)}, epochs={config.epochs}"
        )
    if config.schedule == "step" and not steps:
        _fail("schedule='step' needs step_epochs (the epochs at which the rate drops)")
    if not config.hidden_units:
        _fail(f"Expected at least one hidden layer, received: hidden_units={config.hidden_units!r}")
    for w in config.hidden_units:
        _int("hidden_units[i]", w)
    _int("block_size", config.block_size)
    _int("width", config.width, optional=True)
    _int("num_classes", config.num_classes, optional=True)
    if config.image_shape is not None:
        if len(config.image_shape) != 3:
            _fail(
                "Expected image_shape=(height, width, channels), received: "
                f"image_shape={config.image_shape!r}"
            )
        for s in config.image_shape:
            _int("image_shape[i]", s)
    _int("train_limit", config.train_limit, optional=True)
    _int("eval_limit", config.eval_limit, optional=True)
    if config.train_limit is not None and config.train_limit < config.batch_size:
        _fail(
            f"train_limit={config.train_limit} is smaller than batch_size={config.batch_size}: "
            "not one full training batch"
        )
    _int("seed", config.seed, minimum=0)
    _int("backup_every", config.backup_every, minimum=0)
    _int("diagnostics_every", config.diagnostics_every, minimum=0)
    _int("steps_per_execution", config.steps_per_execution)
    if config.diagnostics_every and config.steps_per_execution > 1:
        _fail("diagnostics_every needs steps_per_execution=1 (probes run between steps)")
    try:
        make_rule(config)
    except ValueError as err:
        raise TrainerError(str(err)) from None


def check_dataset(config, ds_info):
    """The model's fixed image shape / class count, if set, must be the dataset's."""
    if config.num_classes is not None and config.num_classes != ds_info.num_classes:
        _fail(
            f"The model has num_classes={config.num_classes} but {ds_info.name} has "
            f"{ds_info.num_classes} classes; use a model for {ds_info.num_classes} classes"
        )
    if config.image_shape is not None and tuple(config.image_shape) != ds_info.image_shape:
        _fail(
            f"The model expects images of shape {tuple(config.image_shape)} but {ds_info.name} "
            f"has images of shape {ds_info.image_shape}"
        )


# ---------------------------------------------------------------------------------------------
# Data: a training order that depends on (seed, epoch) only, so it resumes exactly.


def epoch_seed(seed, epoch):
    """The data seed of one epoch (order and augmentation)."""
    return int(seed) * 1_000_003 + int(epoch)


def _label_guard(num_classes, split):
    message = f"labels of the {split} data must be in [0, {num_classes})"

    def check(images, labels):
        checks = [
            tf.debugging.assert_non_negative(labels, message=message),
            tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return images, tf.identity(labels)

    return check


def _auto_shard_by_data(ds):
    # Every worker builds the same pipeline and keeps its share of each global batch, so a
    # multi-worker run sees exactly the batches of a single-process run.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _load(config, ds_info, split, batch_size, **kwargs):
    limit = config.train_limit if split == "train" else config.eval_limit
    ds = data.load(
        config.dataset, split, batch_size, data_dir=config.data_dir, manual_dir=config.manual_dir,
        limit=limit, deterministic=config.deterministic, **kwargs,
    )
    ds = ds.map(_label_guard(ds_info.num_classes, split))
    return _auto_shard_by_data(ds)


def train_epoch(config, ds_info, epoch):
    """The training batches of one epoch (full batches only), ordered by `(seed, epoch)`."""
    return _load(
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
    ds = data.load(
        config.dataset, "train", min(config.batch_size, 64), shuffle=False,
        data_dir=config.data_dir, manual_dir=config.manual_dir, limit=config.train_limit,
    )
    batch = next(iter(ds.take(1)), None)
    if batch is None:
        _fail(f"The train split of {config.dataset} is empty")
    images, labels = (np.asarray(t) for t in batch)
    if tuple(images.shape[1:]) != tuple(ds_info.image_shape):
        _fail(
            f"The {config.dataset} images have shape {tuple(images.shape[1:])}, but the model "
            f"expects {tuple(ds_info.image_shape)}"
        )
    bad = labels[(labels < 0) | (labels >= ds_info.num_classes)]
    if bad.size:
        _fail(
            f"Labels of {config.dataset} must be in [0, {ds_info.num_classes}) for this model, "
            f"received labels {sorted(set(bad.tolist()))[:10]} in the first training batch"
        )


# ---------------------------------------------------------------------------------------------
# Files (through tf.io.gfile, so a workdir may be a gs:// path).


def _join(*parts):
    return posixpath.join(*parts) if "://" in parts[0] else os.path.join(*parts)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _read_json(path):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def _comparable(config_json):
    return {k: v for k, v in config_json.items() if k not in RUNTIME_FIELDS}


def prepare_workdir(workdir, config, overwrite, keep=()):
    """Decides what to do with `workdir`; writes nothing except when wiping for `overwrite`.

    Returns `"new"`, `"resume"` (same config, unfinished) or `"complete"` (same config,
    `metrics.json` written). A directory holding a run of another config is refused unless
    `overwrite`; a non-empty directory without `config.json` is always refused.
    """
    if not tf.io.gfile.exists(workdir):
        return "new"
    if not tf.io.gfile.isdir(workdir):
        _fail(f"workdir={workdir!r} exists and is not a directory")
    entries = [e.rstrip("/") for e in tf.io.gfile.listdir(workdir) if e.rstrip("/") not in keep]
    if not entries:
        return "new"
    config_path = _join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        _fail(
            f"workdir={workdir!r} is not empty and holds no {CONFIG_FILE}, so it is not a run "
            "directory of this trainer; choose a new or empty workdir (--overwrite only "
            "replaces runs of this trainer)"
        )
    try:
        stored = _read_json(config_path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        stored = {}
    new, old = _comparable(config.to_json()), _comparable(stored)
    if new != old:
        if not overwrite:
            diff = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:8])
            _fail(
                f"workdir={workdir!r} holds a run with a different config ({shown}). Use "
                "another workdir, rerun with the same settings to resume, or pass --overwrite "
                "to delete that run"
            )
    elif not overwrite:
        done = tf.io.gfile.exists(_join(workdir, METRICS_FILE))
        return "complete" if done else "resume"
    for entry in entries:
        path = _join(workdir, entry)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    return "new"


# ---------------------------------------------------------------------------------------------
# Callbacks.


class StepBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also restores the step inside the epoch, atomically.

    Keras' own callback (3.15) restores the epoch only: after a mid-epoch interruption it
    replays the whole epoch on top of weights that already saw part of it. This one records
    `(epoch, step)` with the weights and optimiser state, and the trainer restarts the data at
    exactly that batch (`restore` is called before `fit`, not in `on_train_begin`).

    Layout: `backup_dir/ckpt-<global step>/{state.weights.h5, state.json}` and a pointer file
    `backup_dir/latest` naming the newest complete one (written last, by rename, so a kill at
    any moment leaves a consistent backup); the previous one is kept as a fallback.

    Args:
        backup_dir: the folder (its contents belong to this callback).
        save_freq: steps between backups (0: only at epoch ends); every epoch end is backed up.
        steps_per_epoch: training steps per epoch.
    """

    def __init__(self, backup_dir, save_freq, steps_per_epoch):
        super().__init__(backup_dir, save_freq=save_freq or "epoch", delete_checkpoint=False)
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_offset = 0
        self.last_saved = None  # (epoch, step, global step) of the newest backup
        self._epoch = 0

    def _global(self, epoch, step):
        return epoch * self.steps_per_epoch + step

    def restore(self, model):
        """Loads the newest readable backup into `model`; returns `(epoch, step)` to resume at."""
        self.set_model(model)
        names = []
        pointer = _join(self.backup_dir, "latest")
        if tf.io.gfile.exists(pointer):
            with tf.io.gfile.GFile(pointer) as f:
                names.append(f.read().strip())
        if tf.io.gfile.isdir(self.backup_dir):
            older = sorted(
                (e.rstrip("/") for e in tf.io.gfile.listdir(self.backup_dir)
                 if e.startswith("ckpt-") and not e.rstrip("/").endswith(".partial")),
                reverse=True,
            )
            names += [n for n in older if n not in names]
        for name in names:
            folder = _join(self.backup_dir, name)
            try:
                state = _read_json(_join(folder, "state.json"))
                model.load_weights(_join(folder, "state.weights.h5"))
            except (OSError, ValueError, KeyError, tf.errors.OpError):
                continue  # incomplete or corrupt: try the previous one
            self.last_saved = (state["epoch"], state["step"], state["global_step"])
            return state["epoch"], state["step"]
        return 0, 0

    def on_train_begin(self, logs=None):
        pass  # restoring happens in `restore`, before the data are built

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_offset + batch + 1
        if not isinstance(self.save_freq, int) or step >= self.steps_per_epoch:
            return  # the epoch's end is backed up by on_epoch_end
        last = self.last_saved[2] if self.last_saved else 0
        if self._global(self._epoch, step) - last >= self.save_freq:
            self.save(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        self.save(epoch + 1, 0)

    def on_train_end(self, logs=None):
        pass  # the trainer deletes the backup once the results are written

    def save(self, epoch, step):
        """Backs up the model now as `(epoch, step)` (non-finite weights are never saved)."""
        global_step = self._global(epoch, step)
        for w in self.model.weights:
            if not np.all(np.isfinite(np.asarray(w.numpy()))):
                raise NonFiniteLossError(
                    f"Non-finite values in weight {w.path!r} after step {global_step} with rule "
                    f"{self.model.rule!r}; training stopped and the last backup "
                    f"({self._describe()}) was kept"
                )
        name = f"ckpt-{global_step:09d}"
        folder = _join(self.backup_dir, name)
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)
        tf.io.gfile.makedirs(folder)
        self.model.save_weights(_join(folder, "state.weights.h5"))
        _write_json(
            _join(folder, "state.json"),
            {"epoch": epoch, "step": step, "global_step": global_step},
        )
        pointer = _join(self.backup_dir, "latest")
        with tf.io.gfile.GFile(pointer + ".tmp", "w") as f:
            f.write(name)
        tf.io.gfile.rename(pointer + ".tmp", pointer, overwrite=True)
        previous = self.last_saved
        self.last_saved = (epoch, step, global_step)
        for entry in tf.io.gfile.listdir(self.backup_dir):
            entry = entry.rstrip("/")
            keep = {name} | ({f"ckpt-{previous[2]:09d}"} if previous else set())
            if entry.startswith("ckpt-") and entry not in keep:
                tf.io.gfile.rmtree(_join(self.backup_dir, entry))

    def _describe(self):
        if self.last_saved is None:
            return "none yet"
        epoch, step, global_step = self.last_saved
        if step == 0:
            return f"step {global_step}: end of epoch {epoch}"
        return f"step {global_step}: epoch {epoch + 1}, batch {step}"

    def delete(self):
        if tf.io.gfile.exists(self.backup_dir):
            tf.io.gfile.rmtree(self.backup_dir)


class NonFiniteGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that raises `NonFiniteLossError` naming the step and the rule.

    Raising (instead of setting `stop_training`) stops every later callback of that step: no
    backup or checkpoint is written from the bad step, so the last good ones stay intact.
    Place it before the checkpointing callbacks.
    """

    def __init__(self, steps_per_epoch, backup=None, checkpoint=None):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.backup = backup
        self.checkpoint = checkpoint
        self.step_offset = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(np.asarray(loss))
        if math.isfinite(loss):
            return
        step_in_epoch = self.step_offset + batch + 1
        step = self._epoch * self.steps_per_epoch + step_in_epoch
        kept = []
        if self.checkpoint and tf.io.gfile.exists(self.checkpoint):
            kept.append(f"checkpoint {self.checkpoint}")
        if self.backup is not None and self.backup.last_saved is not None:
            kept.append(f"backup at {self.backup._describe()}")
        rule = self.model.rule
        raise NonFiniteLossError(
            f"Non-finite loss ({loss}) at step {step} (epoch {self._epoch + 1}, batch "
            f"{step_in_epoch}) with rule {rule.name!r} ({rule!r}). Training stopped; kept: "
            f"{', '.join(kept) or 'nothing (no checkpoint yet)'}. Lower the learning rate or "
            "beta, or set clip_norm."
        )


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
            self._writers[run] = tf.summary.create_file_writer(_join(self.log_dir, run))
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


# ---------------------------------------------------------------------------------------------
# The run.


@contextlib.contextmanager
def _op_determinism(enabled):
    """Op determinism for the run, restored afterwards (tests run several trainers in-process)."""
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    if enabled and not before:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and not before:
            tf_config.disable_op_determinism()


def _history_from_csv(path):
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


def _best_so_far(history, key):
    values = [h[key] for h in history if h.get(key) is not None]
    return max(values) if values else None


def _verbose():
    return 1 if sys.stdout.isatty() else 2


def _diagnostics_callback(config, ds_info, log_dir):
    try:
        from rlra_tf import diagnostics
    except ImportError:
        _fail("diagnostics_every > 0 needs rlra_tf.diagnostics, which this install lacks")
    split = "validation" if ds_info.num_validation else "test"
    ds = data.load(
        config.dataset, split, PROBE_SIZE, shuffle=False, data_dir=config.data_dir,
        manual_dir=config.manual_dir, limit=config.eval_limit,
    )
    x, y = next(iter(ds.take(1)))
    return diagnostics.AlignmentDiagnostics(
        x.numpy(), y.numpy(), every_n_steps=config.diagnostics_every, log_dir=log_dir
    )


def train_and_evaluate(config, workdir, *, overwrite=False, callbacks=(), verbose=None):
    """Trains `config` into `workdir` (resuming an interrupted run) and returns the metrics.

    Args:
        config: a `trainers.presets.Config`.
        workdir: the run directory (local path or a `gs://` URL).
        overwrite: replace a run of another config in `workdir`.
        callbacks: extra Keras callbacks, run after the trainer's own.
        verbose: Keras' `verbose` (default: progress bar on a terminal, a line per epoch
            otherwise).

    Returns:
        The dict written to `metrics.json`.

    Raises:
        TrainerError: bad input (before anything is written) or unusable data.
        NonFiniteLossError: training diverged (the last good checkpoint and backup are kept).
    """
    validate(config)
    workdir = os.fspath(workdir)
    with _op_determinism(config.deterministic):
        return _run(config, workdir, overwrite, list(callbacks),
                    _verbose() if verbose is None else verbose)


def _run(config, workdir, overwrite, extra_callbacks, verbose):
    keras.utils.set_random_seed(config.seed)
    try:
        strategy = distribute.get_strategy(config.strategy, config.tpu_address)
        distribute.per_replica_batch_size(config.batch_size, strategy)
    except ValueError as err:
        raise TrainerError(str(err)) from None
    chief = distribute.is_chief(strategy)
    ds_info = data.info(config.dataset)
    check_dataset(config, ds_info)
    try:
        preflight(config, ds_info)
        steps = steps_per_epoch(config, ds_info)
    except data.DatasetUnavailableError as err:
        raise TrainerError(str(err)) from None
    if steps < 1:
        _fail(f"The train split holds less than one batch of {config.batch_size} examples")

    if chief:
        outdir, keep = workdir, (WORKERS_DIR,)
    else:
        task_type, task_index = distribute.task_id(strategy)
        outdir, keep = _join(workdir, WORKERS_DIR, f"{task_type}-{task_index}"), ()
    state = prepare_workdir(outdir, config, overwrite, keep=keep)
    if state == "complete":
        print(f"{outdir} already holds the finished run of this config; nothing to do "
              "(--overwrite retrains it).")
        return _read_json(_join(outdir, METRICS_FILE))
    existed = tf.io.gfile.exists(outdir)
    tf.io.gfile.makedirs(outdir)
    _write_json(_join(outdir, CONFIG_FILE), config.to_json())

    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        model = build_model(config, ds_info)
        model.compile(
            optimizer=make_optimizer(config, steps),
            rule=make_rule(config),
            metrics=["accuracy"],
            label_smoothing=config.label_smoothing,
            jit_compile=JIT_COMPILE[config.jit_compile],
            steps_per_execution=config.steps_per_execution,
        )
    backup = StepBackup(_join(outdir, BACKUP_DIR), config.backup_every, steps)
    with strategy.scope():
        start_epoch, start_step = backup.restore(model)
    if state == "resume" and (start_epoch, start_step) != (0, 0):
        print(f"Resuming {outdir} at epoch {start_epoch + 1}, step {start_step} "
              f"(global step {start_epoch * steps + start_step}).")

    history_path = _join(outdir, HISTORY_FILE)
    past = _history_from_csv(history_path)
    ckpt_dir = _join(outdir, CHECKPOINT_DIR)
    has_val = ds_info.num_validation > 0
    monitor = "val_accuracy" if has_val else "accuracy"
    timer = EpochTimer(config.batch_size, steps)
    guard = NonFiniteGuard(steps, backup=backup, checkpoint=_join(ckpt_dir, "last.keras"))
    cbs = [timer, guard]
    if chief:
        tf.io.gfile.makedirs(ckpt_dir)
        cbs += [
            keras.callbacks.ModelCheckpoint(_join(ckpt_dir, "last.keras")),
            keras.callbacks.ModelCheckpoint(
                _join(ckpt_dir, "best.keras"), monitor=monitor, mode="max", save_best_only=True,
                initial_value_threshold=_best_so_far(past, monitor),
            ),
            keras.callbacks.CSVLogger(history_path, append=True),
            tensorboard_callback(_join(outdir, TENSORBOARD_DIR)),
        ]
    diagnostics_cb = None
    if config.diagnostics_every > 0:
        diagnostics_cb = _diagnostics_callback(
            config, ds_info, _join(outdir, TENSORBOARD_DIR, "diagnostics") if chief else None
        )
        cbs.append(diagnostics_cb)
    cbs += [backup] + extra_callbacks

    val_ds = _load(config, ds_info, "validation", config.batch_size) if has_val else None
    segments = []
    if start_step > 0 and start_epoch < config.epochs:
        segments.append((start_epoch, start_epoch + 1, start_step))
        start_epoch += 1
    if start_epoch < config.epochs:
        segments.append((start_epoch, config.epochs, 0))
    fit_history = []
    started = time.perf_counter()
    try:
        with strategy.scope():
            for first, last, skip in segments:
                train_ds = train_epochs(config, ds_info, first, last)
                if skip:
                    train_ds = train_ds.skip(skip)
                backup.step_offset = guard.step_offset = skip
                timer.steps = steps - skip
                result = model.fit(
                    train_ds, epochs=last, initial_epoch=first, steps_per_epoch=steps - skip,
                    validation_data=val_ds, callbacks=cbs, verbose=verbose, shuffle=False,
                )
                fit_history.append(result.history)
            test = model.evaluate(
                _load(config, ds_info, "test", config.batch_size), return_dict=True, verbose=0
            )
    except tf.errors.InvalidArgumentError as err:
        if "labels of the" not in str(err):
            raise
        if state == "new" and backup.last_saved is None:
            _remove_run(outdir, keep, existed)  # bad input: leave no half-written run behind
        raise TrainerError(_bad_labels_message(err)) from None
    train_seconds = time.perf_counter() - started

    model_path = _join(outdir, MODEL_FILE)
    tmp_path = _join(outdir, "tmp-" + MODEL_FILE)
    model.save(tmp_path)
    tf.io.gfile.rename(tmp_path, model_path, overwrite=True)

    history = _history_from_csv(history_path) if chief else _merge(fit_history)
    seconds = [h["epoch_seconds"] for h in history if h.get("epoch_seconds") is not None]
    rates = [h["examples_per_second"] for h in history if h.get("examples_per_second")]
    n_fwd, n_fb = model.count_params_split()
    metrics = {
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "history": history,
        "seconds_per_epoch": seconds,
        "mean_seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "examples_per_second": float(np.mean(rates)) if rates else None,
        "train_seconds_this_process": train_seconds,
        "steps_per_epoch": steps,
        "num_replicas": strategy.num_replicas_in_sync,
        "strategy": type(strategy).__name__,
        "jit_compile": bool(model.jit_compile or getattr(model, "_inner_jit", False)),
        "parameters": {"forward": int(n_fwd), "feedback": int(n_fb)},
        "rule": rules.serialize(model.rule),
        "config": config.to_json(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if diagnostics_cb is not None:
        metrics["diagnostics"] = diagnostics_cb.as_dict()
    _write_json(_join(outdir, METRICS_FILE), _finite(metrics))
    backup.delete()
    return metrics


def _bad_labels_message(err):
    """The label guard's assertion (which split, which range, which labels) from `err`.

    Inside `fit` the assertion is buried in a "Graph execution error" several lines down.
    """
    text = str(err.message)
    what = re.search(r"\[(labels of the [^\]]*)\]", text)
    values = re.search(r"\[x \([^)]*\) = \] \[([^\]]*)\]", text)
    what = what.group(1).strip().rstrip(".") if what else text.strip()
    message = f"Bad labels in the data: {what}"
    if values:
        message += f", received labels [{values.group(1)}]"
    return message + " (the model has as many outputs as the dataset has classes)"


def _remove_run(outdir, keep, existed):
    """Deletes what this run wrote into `outdir` (it started empty or absent)."""
    for entry in tf.io.gfile.listdir(outdir):
        entry = entry.rstrip("/")
        if entry in keep:
            continue
        path = _join(outdir, entry)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    if not existed and "://" not in outdir and not os.listdir(outdir):
        os.rmdir(outdir)


def _merge(histories):
    out = []
    for h in histories:
        keys = list(h)
        for i in range(len(h[keys[0]]) if keys else 0):
            out.append({k: float(h[k][i]) for k in keys})
    return out


def _finite(obj):
    """NaN/inf to None, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def config_summary(config):
    """One line per field that differs from the dataclass default (for logs)."""
    default = presets.Config()
    return "\n".join(
        f"  {f.name} = {getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    )
