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

This module holds the run itself; the steps it takes live beside it, each module importing only
those listed below it (and none of them this one):

    config_checks.py     `validate` and `check_dataset` (step 1, nothing read or written)
    builders.py          models, rules and optimisers by name
    input_pipeline.py    the data: per-epoch order, label guard, preflight
    fault_tolerance.py   `StepBackup` (backup and resume) and `NonFiniteGuard`
    run_logs.py          epoch timing, TensorBoard (with its fallback), history, strict JSON
    workdirs.py          the work directory: file names, JSON files, new/resume/complete
    errors.py            `TrainerError`, `NonFiniteLossError`

Their public names are re-exported here (`train_lib.validate`, `train_lib.make_rule`,
`train_lib.StepBackup`, `train_lib.CONFIG_FILE`, ...).
"""

import contextlib
import dataclasses
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from rlra_tf import data, distribute, rules
from trainers import presets
from trainers.builders import (
    JIT_COMPILE,
    MIXED_PRECISION,
    NO_DECAY,
    OPTIMIZERS,
    SCHEDULES,
    build_model,
    dtype_policy,
    make_optimizer,
    make_rule,
    model_names,
    policy_name,
)
from trainers.config_checks import check_dataset, validate
from trainers.errors import NonFiniteLossError, TrainerError, fail
from trainers.fault_tolerance import NonFiniteGuard, StepBackup
from trainers.input_pipeline import (
    bad_labels_message,
    epoch_seed,
    load_split,
    preflight,
    steps_per_epoch,
    train_epoch,
    train_epochs,
)
from trainers.run_logs import (
    EpochScalars,
    EpochTimer,
    best_so_far,
    finite,
    history_from_csv,
    merge_histories,
    tensorboard_callback,
)
from trainers.workdirs import (
    BACKUP_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUNTIME_FIELDS,
    TENSORBOARD_DIR,
    WORKERS_DIR,
    join,
    prepare_workdir,
    read_json,
    remove_run,
    write_json,
)

__all__ = [
    "BACKUP_DIR", "CHECKPOINT_DIR", "CONFIG_FILE", "HISTORY_FILE", "JIT_COMPILE", "METRICS_FILE",
    "MODEL_FILE", "NO_DECAY", "OPTIMIZERS", "PROBE_SIZE", "RUNTIME_FIELDS", "SCHEDULES",
    "TENSORBOARD_DIR", "WORKERS_DIR",
    "EpochScalars", "EpochTimer", "NonFiniteGuard", "NonFiniteLossError", "StepBackup",
    "TrainerError",
    "MIXED_PRECISION", "build_model", "check_dataset", "config_summary", "dtype_policy",
    "epoch_seed", "make_optimizer", "policy_name",
    "make_rule", "model_names", "preflight", "prepare_workdir", "steps_per_epoch",
    "tensorboard_callback", "train_and_evaluate", "train_epoch", "train_epochs", "validate",
]

PROBE_SIZE = 256


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


def _verbose():
    return 1 if sys.stdout.isatty() else 2


def _diagnostics_callback(config, ds_info, log_dir):
    try:
        from rlra_tf import diagnostics
    except ImportError:
        fail("diagnostics_every > 0 needs rlra_tf.diagnostics, which this install lacks")
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
        fail(f"The train split holds less than one batch of {config.batch_size} examples")

    if chief:
        outdir, keep = workdir, (WORKERS_DIR,)
    else:
        task_type, task_index = distribute.task_id(strategy)
        outdir, keep = join(workdir, WORKERS_DIR, f"{task_type}-{task_index}"), ()
    state = prepare_workdir(outdir, config, overwrite, keep=keep)
    if state == "complete":
        print(f"{outdir} already holds the finished run of this config; nothing to do "
              "(--overwrite retrains it).")
        return read_json(join(outdir, METRICS_FILE))
    existed = tf.io.gfile.exists(outdir)
    tf.io.gfile.makedirs(outdir)
    write_json(join(outdir, CONFIG_FILE), config.to_json())

    policy = policy_name(config.mixed_precision)
    with strategy.scope(), dtype_policy(policy):
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
    backup = StepBackup(join(outdir, BACKUP_DIR), config.backup_every, steps)
    with strategy.scope():
        start_epoch, start_step = backup.restore(model)
    if state == "resume" and (start_epoch, start_step) != (0, 0):
        print(f"Resuming {outdir} at epoch {start_epoch + 1}, step {start_step} "
              f"(global step {start_epoch * steps + start_step}).")

    history_path = join(outdir, HISTORY_FILE)
    past = history_from_csv(history_path)
    ckpt_dir = join(outdir, CHECKPOINT_DIR)
    has_val = ds_info.num_validation > 0
    monitor = "val_accuracy" if has_val else "accuracy"
    timer = EpochTimer(config.batch_size, steps)
    guard = NonFiniteGuard(steps, backup=backup, checkpoint=join(ckpt_dir, "last.keras"))
    cbs = [timer, guard]
    if chief:
        tf.io.gfile.makedirs(ckpt_dir)
        cbs += [
            keras.callbacks.ModelCheckpoint(join(ckpt_dir, "last.keras")),
            keras.callbacks.ModelCheckpoint(
                join(ckpt_dir, "best.keras"), monitor=monitor, mode="max", save_best_only=True,
                initial_value_threshold=best_so_far(past, monitor),
            ),
            keras.callbacks.CSVLogger(history_path, append=True),
            tensorboard_callback(join(outdir, TENSORBOARD_DIR)),
        ]
    diagnostics_cb = None
    if config.diagnostics_every > 0:
        diagnostics_cb = _diagnostics_callback(
            config, ds_info, join(outdir, TENSORBOARD_DIR, "diagnostics") if chief else None
        )
        cbs.append(diagnostics_cb)
    cbs += [backup] + extra_callbacks

    val_ds = load_split(config, ds_info, "validation", config.batch_size) if has_val else None
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
                load_split(config, ds_info, "test", config.batch_size), return_dict=True, verbose=0
            )
    except tf.errors.InvalidArgumentError as err:
        if "labels of the" not in str(err):
            raise
        if state == "new" and backup.last_saved is None:
            remove_run(outdir, keep, existed)  # bad input: leave no half-written run behind
        raise TrainerError(bad_labels_message(err)) from None
    train_seconds = time.perf_counter() - started

    model_path = join(outdir, MODEL_FILE)
    tmp_path = join(outdir, "tmp-" + MODEL_FILE)
    model.save(tmp_path)
    tf.io.gfile.rename(tmp_path, model_path, overwrite=True)

    history = history_from_csv(history_path) if chief else merge_histories(fit_history)
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
        "dtype_policy": policy,  # what --mixed_precision resolved to on this machine
        "parameters": {"forward": int(n_fwd), "feedback": int(n_fb)},
        "rule": rules.serialize(model.rule),
        "config": config.to_json(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if diagnostics_cb is not None:
        metrics["diagnostics"] = diagnostics_cb.as_dict()
    write_json(join(outdir, METRICS_FILE), finite(metrics))
    backup.delete()
    return metrics


def config_summary(config):
    """One line per field that differs from the dataclass default (for logs)."""
    default = presets.Config()
    return "\n".join(
        f"  {f.name} = {getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    )
