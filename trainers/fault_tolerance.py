"""Fault tolerance: the step-level backup a run resumes from, and the non-finite-loss guard.

`StepBackup` records weights, optimiser state and `(epoch, step)` under `workdir/backup`, so an
interrupted run resumes at the exact batch; `NonFiniteGuard` stops a diverging run before any
backup or checkpoint is written from the bad step, and says what was kept.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from trainers.errors import NonFiniteLossError
from trainers.workdirs import join, read_json, write_json


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
        pointer = join(self.backup_dir, "latest")
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
            folder = join(self.backup_dir, name)
            try:
                state = read_json(join(folder, "state.json"))
                model.load_weights(join(folder, "state.weights.h5"))
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
        folder = join(self.backup_dir, name)
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)
        tf.io.gfile.makedirs(folder)
        self.model.save_weights(join(folder, "state.weights.h5"))
        write_json(
            join(folder, "state.json"),
            {"epoch": epoch, "step": step, "global_step": global_step},
        )
        pointer = join(self.backup_dir, "latest")
        with tf.io.gfile.GFile(pointer + ".tmp", "w") as f:
            f.write(name)
        tf.io.gfile.rename(pointer + ".tmp", pointer, overwrite=True)
        previous = self.last_saved
        self.last_saved = (epoch, step, global_step)
        for entry in tf.io.gfile.listdir(self.backup_dir):
            entry = entry.rstrip("/")
            keep = {name} | ({f"ckpt-{previous[2]:09d}"} if previous else set())
            if entry.startswith("ckpt-") and entry not in keep:
                tf.io.gfile.rmtree(join(self.backup_dir, entry))

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
