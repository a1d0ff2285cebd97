"""Fault tolerance: the step-level backup a run resumes from, the epoch checkpoints, and the
non-finite-loss guard.

`StepBackup` records weights, optimiser state and `(epoch, step)` under `workdir/backup`, so an
interrupted run resumes at the exact batch, and says which backups it could not read and what
that costs; `EpochCheckpoint` writes `checkpoints/last.keras` and `best.keras`; both write aside
and rename, so a kill at any instant leaves the previous good state readable. `NonFiniteGuard`
stops a diverging run before any backup or checkpoint is written from the bad step, and says
what was kept.
"""

import json
import math

import keras
import numpy as np
import tensorflow as tf

from trainers.errors import NonFiniteLossError
from trainers.workdirs import join, read_json, save_model, write_json, write_text

STATE_FILE = "state.json"
WEIGHTS_FILE = "state.weights.h5"
POINTER_FILE = "latest"
PARTIAL = ".partial"  # suffix of a backup being written


def backup_name(global_step):
    return f"ckpt-{global_step:09d}"


def _global_step_of(name):
    try:
        return int(name[len("ckpt-"):])
    except ValueError:
        return None


def _reason(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class StepBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also restores the step inside the epoch, atomically.

    Keras' own callback (3.15) restores the epoch only: after a mid-epoch interruption it
    replays the whole epoch on top of weights that already saw part of it. This one records
    `(epoch, step)` with the weights and optimiser state, and the trainer restarts the data at
    exactly that batch (`restore` is called before `fit`, not in `on_train_begin`).

    Layout: `backup_dir/ckpt-<global step>/{state.weights.h5, state.json}` and a pointer file
    `backup_dir/latest` naming the newest complete one. A backup is written into
    `ckpt-<global step>.partial/` and renamed when complete, then the pointer is replaced by
    rename, so a kill at any moment leaves the previous backup readable; the previous one is
    kept as a fallback. `restore` records every backup it could not read in `unreadable`, and
    `unreadable_report` says which, why, and what resuming from an older one costs.

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
        self.restored = None  # the state.json of the backup `restore` loaded
        self.unreadable = []  # (name, global step or None, reason) of backups `restore` skipped
        self._epoch = 0

    def _global(self, epoch, step):
        return epoch * self.steps_per_epoch + step

    def _candidates(self):
        """Backup names, the one `latest` points to first, then the others newest first."""
        names = []
        pointer = join(self.backup_dir, POINTER_FILE)
        if tf.io.gfile.exists(pointer):
            with tf.io.gfile.GFile(pointer) as f:
                names.append(f.read().strip())
        if tf.io.gfile.isdir(self.backup_dir):
            older = sorted(
                (e.rstrip("/") for e in tf.io.gfile.listdir(self.backup_dir)
                 if e.startswith("ckpt-") and not e.rstrip("/").endswith(PARTIAL)),
                reverse=True,
            )
            names += [n for n in older if n not in names]
        return names

    def _read_state(self, name):
        """The backup's `state.json`, checked against its name and this run's epoch length."""
        folder = join(self.backup_dir, name)
        if not tf.io.gfile.isdir(folder):
            raise ValueError(f"{POINTER_FILE} names it but it does not exist")
        path = join(folder, STATE_FILE)
        if not tf.io.gfile.exists(path):
            raise ValueError(f"{STATE_FILE} is missing")
        try:
            state = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{STATE_FILE} is not valid JSON ({err})") from None
        if not isinstance(state, dict) or not all(
            isinstance(state.get(k), int) for k in ("epoch", "step", "global_step")
        ):
            raise ValueError(f"{STATE_FILE} lacks integer epoch, step and global_step: {state!r}")
        epoch, step, global_step = state["epoch"], state["step"], state["global_step"]
        if name != backup_name(global_step):
            raise ValueError(f"{STATE_FILE} is of step {global_step}, not of this backup")
        if not 0 <= step < self.steps_per_epoch or self._global(epoch, step) != global_step:
            raise ValueError(
                f"{STATE_FILE} says epoch {epoch}, step {step}, global step {global_step}, which "
                f"does not fit this run's {self.steps_per_epoch} steps per epoch"
            )
        return state

    def restore(self, model):
        """Loads the newest readable backup into `model`; returns `(epoch, step)` to resume at.

        Returns `(0, 0)` when there is none; `unreadable` then says whether there were
        backups that could not be read (the trainer refuses to start over silently).
        """
        self.set_model(model)
        self.unreadable = []
        for name in self._candidates():
            try:
                state = self._read_state(name)
            except (OSError, ValueError, tf.errors.OpError) as err:
                reason = str(err) if isinstance(err, ValueError) else _reason(err)
                self.unreadable.append((name, _global_step_of(name), reason))
                continue
            try:
                model.load_weights(join(self.backup_dir, name, WEIGHTS_FILE))
            except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
                reason = f"{WEIGHTS_FILE} cannot be loaded: {_reason(err)}"
                self.unreadable.append((name, _global_step_of(name), reason))
                continue
            self.restored = dict(state, name=name)
            self.last_saved = (state["epoch"], state["step"], state["global_step"])
            return state["epoch"], state["step"]
        return 0, 0

    def unreadable_report(self):
        """What `restore` skipped and what that costs, or `None` if it read the newest backup."""
        if not self.unreadable:
            return None
        lines = [f"  {name}: {reason}" for name, _, reason in self.unreadable]
        if self.restored is None:
            return (
                f"None of the backups in {self.backup_dir} can be read, so the run cannot "
                "resume:\n" + "\n".join(lines) + "\nPass --overwrite to delete this run and train "
                "it again from step 0 (or put a readable copy of a backup back first)"
            )
        newest = max((g for _, g, _ in self.unreadable if g is not None), default=None)
        resumed = self.restored["global_step"]
        lost = ""
        if newest is not None and newest > resumed:
            n = newest - resumed
            lost = f"; the {n} steps after it are" if n > 1 else "; the step after it is"
            lost += " trained again"
        return (
            f"Some backups in {self.backup_dir} cannot be read:\n" + "\n".join(lines)
            + f"\nResumed from {self.restored['name']} ({self._describe()}) instead{lost}."
        )

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

    def save(self, epoch, step, **extra):
        """Backs up the model now as `(epoch, step)`; returns False if that step already is.

        Non-finite weights are never saved. `extra` goes into `state.json` (e.g. the signal
        that stopped the run).
        """
        global_step = self._global(epoch, step)
        if self.last_saved is not None and self.last_saved[2] == global_step:
            return False
        for w in self.model.weights:
            if not np.all(np.isfinite(np.asarray(w.numpy()))):
                raise NonFiniteLossError(
                    f"Non-finite values in weight {w.path!r} after step {global_step} with rule "
                    f"{self.model.rule!r}; training stopped and the last backup "
                    f"({self._describe()}) was kept"
                )
        name = backup_name(global_step)
        folder = join(self.backup_dir, name)
        partial = folder + PARTIAL
        if tf.io.gfile.exists(partial):
            tf.io.gfile.rmtree(partial)
        tf.io.gfile.makedirs(partial)
        self.model.save_weights(join(partial, WEIGHTS_FILE))
        write_json(
            join(partial, STATE_FILE),
            {"epoch": epoch, "step": step, "global_step": global_step, **extra},
        )
        if tf.io.gfile.exists(folder):  # an unreadable backup of this step, from an earlier try
            tf.io.gfile.rmtree(folder)
        tf.io.gfile.rename(partial, folder)
        write_text(join(self.backup_dir, POINTER_FILE), name)
        previous = self.last_saved
        self.last_saved = (epoch, step, global_step)
        keep = {name} | ({backup_name(previous[2])} if previous else set())
        for entry in tf.io.gfile.listdir(self.backup_dir):
            entry = entry.rstrip("/")
            if entry.startswith("ckpt-") and entry not in keep:
                tf.io.gfile.rmtree(join(self.backup_dir, entry))
        return True

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


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model to `path` at every epoch's end, or only when `monitor` improves.

    Keras' `ModelCheckpoint` writes the `.keras` file in place, so a kill during the write
    leaves a truncated file where the last good checkpoint was; this writes a temporary file
    beside it and renames it.

    Args:
        path: the `.keras` file.
        monitor: a log key to maximise (`val_accuracy`); `None` saves every epoch.
        best: the best value of `monitor` so far (from an interrupted run's history), if any.
    """

    def __init__(self, path, monitor=None, best=None):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            current = (logs or {}).get(self.monitor)
            if current is None:
                return
            current = float(np.asarray(current))
            if not current > (-math.inf if self.best is None else self.best):
                return  # not an improvement (NaN never is)
            self.best = current
        save_model(self.model, self.path)


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
