"""Runs `trainers.train` as a separate process, as a user would, for the subprocess tests.

Test hooks, read from the environment:

- `RLRA_TEST_HANG_AT_STEP=N` with `RLRA_TEST_HANG_FILE=PATH`: after training step N (after
  that step's callbacks, so after its backup) the trainer writes PATH and then waits for as
  long as PATH exists. The tests send their signal (SIGKILL, SIGTERM, SIGINT) while it waits,
  and delete PATH to let a process that survived the signal go on.
- `RLRA_TEST_STEP_LOG=PATH`: the global step after every training step is appended to PATH,
  so a test can tell how many steps the process finished before it stopped.
"""

import functools
import os
import pathlib
import sys
import time

import keras

from trainers import train, train_lib


class TestHooks(keras.callbacks.Callback):
    def __init__(self, hang_at=None, hang_file=None, step_log=None):
        super().__init__()
        self.hang_at, self.hang_file, self.step_log = hang_at, hang_file, step_log

    @classmethod
    def from_env(cls, env=os.environ):
        """The hooks the environment asks for, or `None`."""
        if not (env.get("RLRA_TEST_HANG_AT_STEP") or env.get("RLRA_TEST_STEP_LOG")):
            return None
        hang_at = env.get("RLRA_TEST_HANG_AT_STEP")
        return cls(int(hang_at) if hang_at else None, env.get("RLRA_TEST_HANG_FILE"),
                   env.get("RLRA_TEST_STEP_LOG"))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.step_log:
            with open(self.step_log, "a") as f:
                f.write(f"{step}\n")
        if step == self.hang_at:
            marker = pathlib.Path(self.hang_file)
            marker.write_text(str(step))
            while marker.exists():
                time.sleep(0.05)


if __name__ == "__main__":
    hooks = TestHooks.from_env()
    if hooks is not None:
        train_lib.train_and_evaluate = functools.partial(
            train_lib.train_and_evaluate, callbacks=[hooks]
        )
    sys.argv[0] = "train"
    train.run()
