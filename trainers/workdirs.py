"""The work directory of a run: its file names, its JSON files and what to do with it.

Files go through `tf.io.gfile`, so a workdir may be a `gs://` path. `prepare_workdir` decides
whether a directory is a new run, a run to resume or a finished one (and refuses one that holds
another config, or no run at all); `remove_run` deletes what a refused run wrote. Every file the
trainer writes goes through `write_atomically` (a temporary file beside it, then a rename), so a
kill at any instant leaves the previous version readable.
"""

import json
import os
import posixpath
import tempfile

import tensorflow as tf

from trainers import presets
from trainers.errors import fail

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
WORKERS_DIR = ".workers"
LOCK_FILE = "lock.json"  # held by the running trainer (`trainers/preemption.py`)

# Settings that change how a run executes, not what it computes: a rerun may change them and
# still resume the same run.
RUNTIME_FIELDS = (
    "strategy", "tpu_address", "jit_compile", "diagnostics_every", "data_dir", "manual_dir",
    "steps_per_execution",
)


def join(*parts):
    """`os.path.join`, or `posixpath.join` for a URL such as `gs://bucket/run`."""
    return posixpath.join(*parts) if "://" in parts[0] else os.path.join(*parts)


def split(path):
    """`(folder, name)` of `path`, for a local path or a URL."""
    return posixpath.split(path) if "://" in path else os.path.split(path)


def write_atomically(path, write):
    """Calls `write(tmp)` for a temporary path beside `path`, then renames it onto `path`.

    A kill at any instant leaves either the old file or the new one at `path`, never a part of
    one. The temporary name keeps the file's extension (Keras checks `.keras`, `.weights.h5`).
    """
    folder, name = split(path)
    tmp = join(folder, ".tmp-" + name) if folder else ".tmp-" + name
    write(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_text(path, text):
    """Writes `text` to `path` atomically."""

    def write(tmp):
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)

    write_atomically(path, write)


def write_json(path, obj):
    """Writes `obj` as strict JSON, atomically (a temporary file, then a rename)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_model(model, path):
    """`model.save(path)`, atomically."""
    write_atomically(path, model.save)


def read_json(path):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def check_workdir(workdir):
    """Refuses (`TrainerError`) a local `workdir` that is a file, lies under a file, or cannot
    be created or written, trying it with a temporary file: nothing is left behind. (A URL is
    checked when it is first written.)"""
    if "://" in workdir:
        return
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        fail(f"workdir={workdir!r} exists and is not a directory")
    missing = os.path.abspath(workdir)
    while not os.path.exists(os.path.dirname(missing)) and os.path.dirname(missing) != missing:
        missing = os.path.dirname(missing)  # the first folder that a run would create
    parent = os.path.dirname(missing)
    if not os.path.exists(workdir) and not os.path.isdir(parent):
        fail(f"workdir={workdir!r} cannot be created: {parent} is a file")
    created = not os.path.exists(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as err:
        what = "cannot be created" if created else "cannot be written"
        fail(f"workdir={workdir!r} {what}: {err.strerror or err}")
    finally:
        if created:  # only the folders it made, and only while they are empty (another
            # worker of the same run may have started writing into them meanwhile)
            folder = os.path.abspath(workdir)
            while True:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                if folder == missing:
                    break
                folder = os.path.dirname(folder)


def _comparable(config_json):
    """The fields of a config that decide what a run computes, with the defaults of the
    fields a run written by an older version does not record."""
    try:
        config_json = presets.from_json(config_json).to_json()
    except (TypeError, ValueError):
        pass  # an unknown field: compared as it is, so the configs differ
    return {k: v for k, v in config_json.items() if k not in RUNTIME_FIELDS}


def prepare_workdir(workdir, config, overwrite, keep=()):
    """Decides what to do with `workdir`; writes nothing except when wiping for `overwrite`.

    Returns `"new"`, `"resume"` (same config, unfinished), `"complete"` (same config,
    `metrics.json` written) or `"extend"` (a finished run of the same config with fewer
    `epochs`: it goes on from its last epoch). A run that differs only by fewer `epochs` than
    asked for is the same run: an unfinished one resumes, a finished one is extended. A
    directory holding a run of another config is refused unless `overwrite`; a non-empty
    directory without `config.json` is always refused.
    """
    if not tf.io.gfile.exists(workdir):
        return "new"
    if not tf.io.gfile.isdir(workdir):
        fail(f"workdir={workdir!r} exists and is not a directory")
    keep = (*keep, LOCK_FILE)
    entries = [e.rstrip("/") for e in tf.io.gfile.listdir(workdir) if e.rstrip("/") not in keep]
    if not entries:
        return "new"
    config_path = join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        fail(
            f"workdir={workdir!r} is not empty and holds no {CONFIG_FILE}, so it is not a run "
            "directory of this trainer; choose a new or empty workdir (--overwrite only "
            "replaces runs of this trainer)"
        )
    try:
        stored = read_json(config_path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        stored = {}
    new, old = _comparable(config.to_json()), _comparable(stored)
    done = tf.io.gfile.exists(join(workdir, METRICS_FILE))
    longer = isinstance(old.get("epochs"), int) and old["epochs"] < new["epochs"] and \
        dict(old, epochs=new["epochs"]) == new
    if longer and not overwrite:
        return "extend" if done else "resume"
    if new != old:
        if not overwrite:
            diff = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:8])
            fail(
                f"workdir={workdir!r} holds a run with a different config ({shown}). Use "
                "another workdir, rerun with the same settings to resume, or pass --overwrite "
                "to delete that run"
            )
    elif not overwrite:
        return "complete" if done else "resume"
    for entry in entries:
        path = join(workdir, entry)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    return "new"


def remove_run(outdir, keep):
    """Deletes what this run wrote into `outdir` (it started empty or absent; the lock stays)."""
    for entry in tf.io.gfile.listdir(outdir):
        entry = entry.rstrip("/")
        if entry in keep or entry == LOCK_FILE:
            continue
        path = join(outdir, entry)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)


def remove_if_empty(path):
    """Removes the local folder `path` if it exists and is empty (what a refused run created)."""
    if "://" not in path and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
