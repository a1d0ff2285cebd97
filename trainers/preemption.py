"""Preemption and shared work directories: stop on SIGTERM/SIGINT at a backup, lock the workdir.

It owns three things, each used by `train_lib` for the length of one run:

- `WorkdirLock`: a run holds `workdir/lock.json` (pid, host, start time, command) from before it
  looks at the directory until it returns. A second trainer on the same directory is refused
  (`TrainerError`, exit status 2) with the holder named; a lock whose process is gone is taken
  over, and `took_over` says whose it was. On a local or NFS path the lock is an exclusive
  `flock` on that file, which the kernel drops when the process dies however it dies; on a URL
  (`gs://...`), where there is no such lock, the holder rewrites its record every
  `HEARTBEAT_SECONDS`, and a record is stale when its process is gone (same machine and boot)
  or its heartbeat is older than `STALE_SECONDS`.
- `SignalGuard`: catches SIGTERM and SIGINT. Outside training a signal stops the run at once
  (`TrainingInterrupted`); while `deferring()` it is only recorded, the step in progress
  finishes, and `StopOnSignal` acts on it. Further signals while stopping are ignored with a
  message, so they cannot cut the backup short.
- `StopOnSignal`: the Keras callback that, before each training step, checks for a recorded
  signal, writes a backup at the step reached (through `StepBackup.save`) and raises
  `TrainingInterrupted` (exit status 128 + the signal: 143 for SIGTERM, 130 for SIGINT). Under
  `MultiWorkerMirroredStrategy` it defers to TensorFlow's `PreemptionCheckpointHandler`, which
  agrees on one step across the workers through the coordination service, so that every worker
  saves at that same step and stops.

The check runs before each step, where the position `(epoch, step)` is always one the trainer
can resume at: a signal during the last step of an epoch or during its validation is acted on
once the epoch's end (history row, checkpoints, epoch-end backup) is written.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

import keras
import tensorflow as tf

from trainers.errors import TrainingInterrupted, fail
from trainers.workdirs import LOCK_FILE, join, write_text

HEARTBEAT_SECONDS = 60
STALE_SECONDS = 600  # a URL lock whose heartbeat is this old is taken over
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _say(message):
    """Writes a line to stderr with one system call: safe inside a signal handler, which may run
    while the main thread is in the middle of printing (a buffered `print` would then raise
    "reentrant call")."""
    os.write(2, f"rlra-train: {message}\n".encode())


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# ---------------------------------------------------------------------------------------------
# The workdir lock.


class WorkdirLock:
    """The lock a run holds on its work directory (`with WorkdirLock(workdir) as lock:`).

    Args:
        workdir: the run directory (created if absent; a local path or a URL).
        stale_seconds: (URLs only) how old a heartbeat must be for its lock to be taken over.

    Attributes:
        path: the lock file, `workdir/lock.json`.
        took_over: the record of the stale lock that `acquire` replaced, or `None`.
    """

    def __init__(self, workdir, stale_seconds=STALE_SECONDS):
        self.workdir = workdir
        self.path = join(workdir, LOCK_FILE)
        self.url = "://" in workdir
        self.stale_seconds = stale_seconds
        self.took_over = None
        self.record = None
        self._fd = None
        self._stop = None
        self._thread = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def _new_record(self):
        return {
            "pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
            "started": _now(), "heartbeat": time.time(), "token": uuid.uuid4().hex,
            "command": " ".join(sys.argv),
        }

    def acquire(self):
        """Takes the lock; raises `TrainerError` naming the holder if another run has it."""
        tf.io.gfile.makedirs(self.workdir)
        self.record = self._new_record()
        if self.url:
            self._acquire_url()
        else:
            self._acquire_local()
        return self

    def release(self):
        """Removes the lock file and drops the lock (idempotent)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            # Remove while still holding it: a process that opened the old file then gets the
            # lock of a file that is gone, notices (`_acquire_local`) and starts again.
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        elif self.url and self.record is not None:
            holder = self._read_url()
            if holder is not None and holder.get("token") == self.record["token"]:
                tf.io.gfile.remove(self.path)
        self.record = None

    # Local paths: flock.

    def _acquire_local(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise
                holder = self._read_local(fd, wait=True)
                os.close(fd)
                self._refuse(holder)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released (and removed) it meanwhile: lock the new file
        previous = self._read_local(fd, wait=False)
        if previous:
            self.took_over = previous
        data = json.dumps(self.record, indent=2).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self._fd = fd

    @staticmethod
    def _read_local(fd, wait):
        """The record in the lock file; waits up to 2 s for a holder that is still writing it."""
        deadline = time.monotonic() + (2.0 if wait else 0.0)
        while True:
            raw = os.pread(fd, 1 << 16, 0)
            try:
                return json.loads(raw) if raw.strip() else None
            except ValueError:
                if time.monotonic() >= deadline:
                    return {"unreadable": raw[:200].decode(errors="replace")}
            time.sleep(0.1)

    # URLs: a record with a heartbeat.

    def _read_url(self):
        try:
            with tf.io.gfile.GFile(self.path) as f:
                return json.loads(f.read())
        except tf.errors.NotFoundError:
            return None
        except (ValueError, tf.errors.OpError):
            return {"unreadable": True, "heartbeat": 0}

    def _alive(self, holder):
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
                return False  # written before this machine last booted
            return _pid_running(holder["pid"])
        heartbeat = holder.get("heartbeat")
        return isinstance(heartbeat, (int, float)) and time.time() - heartbeat < self.stale_seconds

    def _acquire_url(self):
        holder = self._read_url()
        if holder is not None:
            if self._alive(holder):
                self._refuse(holder)
            self.took_over = holder
        write_text(self.path, json.dumps(self.record, indent=2) + "\n")
        # No exclusive create on an object store: read back after a pause; of two trainers that
        # wrote at once, the one whose record is not there gives way.
        time.sleep(1.0)
        holder = self._read_url()
        if holder is None or holder.get("token") != self.record["token"]:
            self.record = None
            self._refuse(holder or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.record["heartbeat"] = time.time()
            try:
                write_text(self.path, json.dumps(self.record, indent=2) + "\n")
            except tf.errors.OpError as err:  # a transient storage error: try again next beat
                _say(f"warning: could not refresh the lock {self.path}: {err}")

    # Messages.

    def _refuse(self, holder):
        fail(
            f"workdir={self.workdir!r} is in use by another trainer "
            f"({describe_holder(holder, heartbeat=self.url)}). "
            "Two trainers on one workdir would overwrite each other's backups and checkpoints: "
            "wait for that run to end, stop it (SIGTERM or Ctrl-C saves a backup), or use "
            "another --workdir. "
            + (f"If that process is gone, delete {self.path} (a lock whose heartbeat is "
               f"{self.stale_seconds // 60} minutes old is taken over by itself)" if self.url else
               "The lock is released when that process ends, however it ends")
        )

    def takeover_message(self):
        """A line saying whose stale lock was taken over, or `None`."""
        if self.took_over is None:
            return None
        return (
            f"took over the lock of {self.workdir}: its holder ({describe_holder(self.took_over)})"
            " is no longer running"
        )


def describe_holder(holder, heartbeat=False):
    """`pid 123 on host 'a', started 2026-...: <command>` from a lock record."""
    if not holder or "pid" not in holder:
        return f"holder unknown: lock record {holder!r}" if holder else "holder unknown"
    text = f"pid {holder['pid']} on host {holder.get('host')!r}, started {holder.get('started')}"
    if heartbeat and isinstance(holder.get("heartbeat"), (int, float)):
        text += f", last heartbeat {time.time() - holder['heartbeat']:.0f} s ago"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


# ---------------------------------------------------------------------------------------------
# Signals.


class SignalGuard:
    """Catches SIGTERM and SIGINT while it is entered (`with SignalGuard() as guard:`).

    Outside `deferring()` a signal raises `TrainingInterrupted` at once (nothing is lost: no
    step is in progress, or the last backup already holds everything). Inside it, the signal
    is recorded in `signum` and the run goes on until `StopOnSignal` acts on it. Any signal
    after the first is ignored with a message. Handlers can only be installed from the main
    thread; elsewhere the guard does nothing (`active` is False) and signals keep their
    default effect. The previous handlers are put back on exit.
    """

    def __init__(self):
        self.signum = None
        self.active = False
        self._defer = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        self.active = False

    @contextlib.contextmanager
    def deferring(self, defer=True):
        """Context: while inside (and `defer`), a signal is recorded and acted on later."""
        before, self._defer = self._defer, defer
        try:
            yield
        finally:
            self._defer = before

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum, frame):
        del frame
        name = signal.Signals(signum).name
        if self.signum is not None:
            _say(f"{name} received while stopping after {self.name}: ignored until the backup "
                 "is written (SIGKILL stops at once; the previous backup stays readable)")
            return
        self.signum = signum
        if self._defer:
            _say(f"{name} received: finishing the current step, then writing a backup and "
                 f"exiting with status {128 + signum}; rerun the same command to resume")
            return
        raise self.interrupted(
            "while not training; nothing was lost (the last backup holds every step done): "
            "rerun the same command to go on"
        )

    def interrupted(self, detail):
        """The `TrainingInterrupted` to raise for the recorded signal (SIGTERM if none)."""
        signum = self.signum if self.signum is not None else signal.SIGTERM
        return TrainingInterrupted(
            f"Stopped by {signal.Signals(signum).name} {detail}", signum=signum
        )


class StopOnSignal(keras.callbacks.Callback):
    """Before each training step: if a signal was recorded, back up the step reached and stop.

    Place it after the `StepBackup` it writes through. The position is taken from the
    optimiser's step counter, which the backup restores, so it is right in every `fit` segment.

    Args:
        guard: the run's `SignalGuard`.
        backup: the run's `StepBackup`.
        strategy: under `MultiWorkerMirroredStrategy` the decision is TensorFlow's
            `PreemptionCheckpointHandler`'s (see `coordinate`).
    """

    def __init__(self, guard, backup, strategy=None):
        super().__init__()
        self.guard = guard
        self.backup = backup
        self.handler = None
        self.uncoordinated = False  # multi-worker, and TensorFlow's handler is off here
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            self.coordinate(strategy)

    def coordinate(self, strategy):
        """Lets TensorFlow's `PreemptionCheckpointHandler` pick the step for every worker.

        On SIGTERM a worker posts "save after step N + 1" to the cluster's coordination service
        (TensorFlow's signal handler, installed by the handler and wrapped here so that SIGINT
        does the same and a second signal is ignored); every worker saves at that step and
        stops, whichever of them got the signal. Nothing of TensorFlow's checkpointing is
        used: the save is `StepBackup.save`.
        """
        if not self.guard.active:
            return  # not the main thread: TensorFlow's handler could not install its own
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(), self.backup.backup_dir, max_to_keep=1
        )
        config = tf.distribute.experimental.TerminationConfig(
            exit_fn=self._exit_coordinated, grace_period=0, save_fn=self._save_coordinated
        )
        self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, manager, termination_config=config
        )
        tf_handler = signal.getsignal(signal.SIGTERM)  # what the handler installed
        if not callable(tf_handler) or tf_handler == self.guard._handle:
            # TensorFlow watches no signal on this platform (its handler is off on Google Cloud
            # CPU and TPU VMs): one worker cannot make the others save, so a signal stops the
            # run at once and it resumes from the last periodic backup.
            self.uncoordinated = True
            return
        guard = self.guard

        def on_signal(signum, frame):
            if guard.signum is not None:
                _say(f"{signal.Signals(signum).name} received while stopping after "
                     f"{guard.name}: ignored until the backup is written")
                return
            guard.signum = signum
            _say(f"{signal.Signals(signum).name} received: every worker finishes its step, "
                 f"writes a backup at the same step and exits with status {128 + signum}")
            tf_handler(signal.SIGTERM, frame)

        for signum in SIGNALS:
            signal.signal(signum, on_signal)

    def _position(self):
        steps = int(self.model.optimizer.iterations.numpy())
        return divmod(steps, self.backup.steps_per_epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.uncoordinated and self.guard.signum is not None:
            raise self.guard.interrupted(
                "on one worker, which cannot make the others save at the same step here; the "
                f"run resumes from the last periodic backup in {self.backup.backup_dir}"
            )
        if self.handler is not None:
            self.handler.save_checkpoint_if_preempted()
        elif self.guard.signum is not None:
            epoch, step = self._position()
            self._save(epoch, step)
            raise self.stopped(epoch, step)

    def _save(self, epoch, step):
        stopped_by = self.guard.name or "another worker's signal"
        self.backup.save(epoch, step, stopped_by=stopped_by, time=_now())

    def _save_coordinated(self):
        self._stop_at = self._position()
        self._save(*self._stop_at)

    def _exit_coordinated(self):
        raise self.stopped(*self._stop_at)

    def stopped(self, epoch, step):
        global_step = epoch * self.backup.steps_per_epoch + step
        where = f"end of epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, batch {step}"
        detail = (
            f"after step {global_step} ({where}); the backup of that step is in "
            f"{self.backup.backup_dir}. Rerun the same command to resume there"
        )
        if self.guard.signum is None:  # a peer got the signal
            return TrainingInterrupted(
                f"Stopped because another worker of the cluster received SIGTERM or SIGINT, "
                f"{detail}", signum=signal.SIGTERM,
            )
        return self.guard.interrupted(detail)
