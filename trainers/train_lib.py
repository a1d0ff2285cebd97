"""What `trainers/train.py` runs: check a `Config`, train with fault tolerance, evaluate, write.

`train_and_evaluate(config, workdir)` is the whole run:

1. Check every setting, the data (one batch is read: availability, image shape, label range)
   and the work directory *before* anything is written; a problem raises `TrainerError` with a
   message for the user (`exit_code` 2).
2. Create the strategy (`rlra_tf.distribute`), build and compile the model in its scope.
3. Resume from `workdir/backup` if a previous run of the same config was interrupted: weights,
   optimiser state, epoch *and* step inside the epoch. Each epoch's data order is a function
   of `(seed, epoch)` only, so the resumed run sees exactly the batches the interrupted one
   would have seen, and in deterministic mode ends with the same weights. A backup that cannot
   be read is named with the reason, and the run resumes from the previous one (saying how
   many steps that repeats); if none can be read, it refuses (`TrainerError`) unless
   `overwrite`.
4. Train with callbacks: progress bar, TensorBoard, epoch checkpoints (`checkpoints/last.keras`,
   `checkpoints/best.keras`), the step-level backup, CSVLogger (`history.csv`), a
   non-finite-loss guard (`NonFiniteLossError`, `exit_code` 3) and the stop on SIGTERM/SIGINT:
   the step in progress finishes, a backup of it is written and `TrainingInterrupted`
   (`exit_code` 128 + signal: 143, 130) is raised; rerunning resumes at that step.
5. Evaluate on the test split, save `model.keras`, write `metrics.json`, drop the backup.

Steps 2 to 5 hold the lock of the work directory (`lock.json`): a second trainer on it is
refused with the holder named, and a lock left by a process that is gone is taken over. Every
file is written aside and renamed into place, so a kill at any instant leaves the previous
good state readable.

Work directory (the chief's; other workers of a multi-worker run write theirs under
`workdir/.workers/<task>-<id>/`): `config.json`, `metrics.json`, `model.keras`, `history.csv`,
`checkpoints/`, `tensorboard/`, `backup/` (only while a run is unfinished), `lock.json` (only
while a trainer runs in it).

This module holds the run itself; the steps it takes live beside it, each module importing only
those listed below it (and none of them this one); callers import a name from the module that
defines it:

    config_checks.py     `validate` and `check_dataset` (step 1, nothing read or written)
    builders.py          models, rules and optimisers by name
    input_pipeline.py    the data: per-epoch order, label guard, preflight
    fault_tolerance.py   `StepBackup` (backup and resume), `EpochCheckpoint`, `NonFiniteGuard`
    preemption.py        `WorkdirLock`, `SignalGuard` and `StopOnSignal` (stop at a backup)
    run_logs.py          epoch timing, TensorBoard (with its fallback), history, strict JSON
    workdirs.py          the work directory: file names, JSON files, new/resume/complete
    errors.py            `TrainerError`, `NonFiniteLossError`, `TrainingInterrupted`
"""

import contextlib
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from rlra_tf import data, diagnostics, distribute, rules
from trainers.builders import (
    JIT_COMPILE,
    build_model,
    dtype_policy,
    make_optimizer,
    make_rule,
    policy_name,
)
from trainers.config_checks import check_dataset, validate
from trainers.errors import TrainerError, fail
from trainers.fault_tolerance import EpochCheckpoint, NonFiniteGuard, StepBackup
from trainers.input_pipeline import (
    bad_labels_message,
    load_split,
    preflight,
    steps_per_epoch,
    train_epochs,
)
from trainers.preemption import SignalGuard, StopOnSignal, WorkdirLock
from trainers.run_logs import (
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
    TENSORBOARD_DIR,
    WORKERS_DIR,
    check_workdir,
    join,
    prepare_workdir,
    read_json,
    remove_if_empty,
    remove_run,
    save_model,
    write_json,
)

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
    split = "validation" if ds_info.num_validation else "test"
    n = min(PROBE_SIZE, config.eval_limit or PROBE_SIZE)
    ds = data.load(
        config.dataset, split, n, shuffle=False, data_dir=config.data_dir,
        manual_dir=config.manual_dir, limit=n,
    )
    x, y = list(ds)[0]  # read to the end: a cached pipeline left half-read warns
    return diagnostics.AlignmentDiagnostics(
        x.numpy(), y.numpy(), every_n_steps=config.diagnostics_every, log_dir=log_dir
    )


def train_and_evaluate(config, workdir, *, overwrite=False, callbacks=(), verbose=None):
    """Trains `config` into `workdir` (resuming an interrupted run) and returns the metrics.

    Args:
        config: a `trainers.presets.Config`.
        workdir: the run directory (local path or a `gs://` URL).
        overwrite: replace a run of another config in `workdir` (or one whose backups
            cannot be read).
        callbacks: extra Keras callbacks, run after the trainer's own.
        verbose: Keras' `verbose` (default: progress bar on a terminal, a line per epoch
            otherwise).

    Returns:
        The dict written to `metrics.json`.

    SIGTERM and SIGINT are caught while it runs (from the main thread): the step in progress
    finishes and is backed up, then `TrainingInterrupted` is raised; calling again resumes.

    Raises:
        TrainerError: bad input (before anything is written), unusable data, a workdir that
            another trainer holds, or no readable backup to resume from.
        NonFiniteLossError: training diverged (the last good checkpoint and backup are kept).
        TrainingInterrupted: stopped by SIGTERM or SIGINT (`exit_code` 143 or 130) after
            backing up the last step.
    """
    validate(config)
    workdir = os.fspath(workdir)
    check_workdir(workdir)
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
    existed = tf.io.gfile.exists(outdir)
    try:
        with SignalGuard() as guard, _locked(outdir) as lock:
            if lock.took_over is not None:
                print(f"rlra-train: {lock.takeover_message()}", file=sys.stderr)
            run = _Run(config, outdir, keep, existed, strategy, chief, ds_info, steps, guard)
            return run.train_and_evaluate(overwrite, extra_callbacks, verbose)
    finally:
        if not existed:
            remove_if_empty(outdir)  # a refused or interrupted start leaves no empty folder


@contextlib.contextmanager
def _locked(outdir):
    """`WorkdirLock(outdir)`, a folder that cannot be created or written being bad input."""
    lock = WorkdirLock(outdir)
    try:
        lock.acquire()
    except (OSError, tf.errors.OpError) as err:
        lock.release()
        reason = err.message if isinstance(err, tf.errors.OpError) else err.strerror or err
        fail(f"workdir={outdir!r} cannot be used: {reason}")
    try:
        yield lock
    finally:
        lock.release()


class _Run:
    """One run in its locked work directory: the steps of `train_and_evaluate` after the checks."""

    def __init__(self, config, outdir, keep, existed, strategy, chief, ds_info, steps, guard):
        self.config, self.outdir, self.keep, self.existed = config, outdir, keep, existed
        self.strategy, self.chief, self.ds_info, self.steps = strategy, chief, ds_info, steps
        self.guard = guard

    def train_and_evaluate(self, overwrite, extra_callbacks, verbose):
        config, outdir, steps, strategy = self.config, self.outdir, self.steps, self.strategy
        state = prepare_workdir(outdir, config, overwrite, keep=self.keep)
        if state == "complete":
            print(f"{outdir} already holds the finished run of this config; nothing to do "
                  "(--overwrite retrains it).")
            return read_json(join(outdir, METRICS_FILE))
        self.policy = policy_name(config.mixed_precision)
        with strategy.scope(), dtype_policy(self.policy):
            keras.utils.set_random_seed(config.seed)
            model = build_model(config, self.ds_info)
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
        report = backup.unreadable_report()
        if report and backup.restored is None:
            fail(report)
        if report:
            print(f"rlra-train: warning: {report}", file=sys.stderr)
        if state == "extend":
            start_epoch, start_step = self._extend(model, backup)
        write_json(join(outdir, CONFIG_FILE), config.to_json())  # runtime fields may differ
        if state == "resume" and backup.restored is not None:
            stopped = backup.restored.get("stopped_by")
            print(f"Resuming {outdir} at epoch {start_epoch + 1}, step {start_step} "
                  f"(global step {start_epoch * steps + start_step})"
                  + (f"; the run was stopped by {stopped}" if stopped else "") + ".")
        model, test, history = self._fit(model, backup, start_epoch, start_step, state,
                                         extra_callbacks, verbose)
        return self._write_results(model, test, history, backup)

    def _extend(self, model, backup):
        """A finished run asked for more epochs: it goes on from its last epoch's checkpoint
        (weights and optimiser state), which becomes the backup it resumes from.

        The backup is written and `metrics.json` removed before the new `config.json`, so a
        run stopped at any point resumes the extension (or, rerun with the old epochs,
        finishes as it was).
        """
        outdir, steps = self.outdir, self.steps
        done = int(read_json(join(outdir, CONFIG_FILE))["epochs"])
        last = join(outdir, CHECKPOINT_DIR, "last.keras")
        if not tf.io.gfile.exists(last):
            fail(f"{outdir} holds a finished run of {done} epochs but not its last checkpoint "
                 f"{last} to extend it from; --overwrite trains it again from the start")
        with self.strategy.scope():
            model.load_weights(last)
        step = int(model.optimizer.iterations)
        if step != done * steps:
            fail(f"{last} is of step {step}, not of the end of epoch {done} ({done * steps}); "
                 "the run cannot be extended (--overwrite trains it again)")
        backup.save(done, 0)
        tf.io.gfile.remove(join(outdir, METRICS_FILE))
        print(f"Extending {outdir} from {done} to {self.config.epochs} epochs (the "
              "learning-rate schedule is the one of a run of "
              f"{self.config.epochs} epochs, at step {step}).")
        return done, 0

    def _fit(self, model, backup, start_epoch, start_step, state, extra_callbacks, verbose):
        config, outdir, steps, strategy = self.config, self.outdir, self.steps, self.strategy
        history_path = join(outdir, HISTORY_FILE)
        past = history_from_csv(history_path)
        ckpt_dir = join(outdir, CHECKPOINT_DIR)
        has_val = self.ds_info.num_validation > 0
        monitor = "val_accuracy" if has_val else "accuracy"
        timer = EpochTimer(config.batch_size, steps)
        guard = NonFiniteGuard(steps, backup=backup, checkpoint=join(ckpt_dir, "last.keras"))
        cbs = [timer, guard]
        if self.chief:
            tf.io.gfile.makedirs(ckpt_dir)
            cbs += [
                EpochCheckpoint(join(ckpt_dir, "last.keras")),
                EpochCheckpoint(join(ckpt_dir, "best.keras"), monitor=monitor,
                                best=best_so_far(past, monitor)),
                keras.callbacks.CSVLogger(history_path, append=True),
                tensorboard_callback(join(outdir, TENSORBOARD_DIR)),
            ]
        self.diagnostics = None
        if config.diagnostics_every > 0:
            self.diagnostics = _diagnostics_callback(
                config, self.ds_info,
                join(outdir, TENSORBOARD_DIR, "diagnostics") if self.chief else None,
            )
            cbs.append(self.diagnostics)
        stopper = StopOnSignal(self.guard, backup, strategy)
        cbs += [backup, stopper] + extra_callbacks

        val_ds = (load_split(config, self.ds_info, "validation", config.batch_size)
                  if has_val else None)
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
                    if self.guard.signum is not None and stopper.handler is None:
                        raise stopper.stopped(first, 0)  # came during the epoch's end: saved
                    train_ds = train_epochs(config, self.ds_info, first, last)
                    if skip:
                        train_ds = train_ds.skip(skip)
                    backup.step_offset = guard.step_offset = skip
                    timer.steps = steps - skip
                    with self.guard.deferring():
                        result = model.fit(
                            train_ds, epochs=last, initial_epoch=first,
                            steps_per_epoch=steps - skip, validation_data=val_ds, callbacks=cbs,
                            verbose=verbose, shuffle=False,
                        )
                    fit_history.append(result.history)
                if self.guard.signum is not None and stopper.handler is None:
                    raise stopper.stopped(config.epochs, 0)  # came during the last epoch's end
                # A multi-worker run evaluates in step with its peers: a signal now is noted
                # (the last epoch's end is backed up) and the run finishes.
                with self.guard.deferring(stopper.handler is not None):
                    test = model.evaluate(
                        load_split(config, self.ds_info, "test", config.batch_size),
                        return_dict=True, verbose=0,
                    )
        except tf.errors.InvalidArgumentError as err:
            if "Received a label value of" not in str(err):
                raise
            if state == "new" and backup.last_saved is None:
                remove_run(outdir, self.keep)  # bad input: leave no half-written run behind
            raise TrainerError(bad_labels_message(err)) from None
        self.train_seconds = time.perf_counter() - started
        self.fit_history = fit_history
        return model, test, history_from_csv(history_path) if self.chief else None

    def _write_results(self, model, test, history, backup):
        config, outdir, strategy = self.config, self.outdir, self.strategy
        save_model(model, join(outdir, MODEL_FILE))
        if history is None:
            history = merge_histories(self.fit_history)
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
            "train_seconds_this_process": self.train_seconds,
            "steps_per_epoch": self.steps,
            "num_replicas": strategy.num_replicas_in_sync,
            "strategy": type(strategy).__name__,
            "jit_compile": bool(model.jit_compile or getattr(model, "_inner_jit", False)),
            "dtype_policy": self.policy,  # what --mixed_precision resolved to on this machine
            "parameters": {"forward": int(n_fwd), "feedback": int(n_fb)},
            "rule": rules.serialize(model.rule),
            "config": config.to_json(),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        if self.diagnostics is not None:
            metrics["diagnostics"] = self.diagnostics.as_dict()
        # From here the run is complete: a signal is only noted, and the backup is dropped.
        with self.guard.deferring():
            write_json(join(outdir, METRICS_FILE), finite(metrics))
            backup.delete()
        return metrics

