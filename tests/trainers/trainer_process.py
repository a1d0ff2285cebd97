"""Runs `trainers.train` as a separate process, as a user would, for the subprocess tests.

With `RLRA_TEST_HANG_AT_STEP=N` in the environment, the trainer writes the file named by
`RLRA_TEST_HANG_FILE` after training step N (after that step's callbacks, so after its backup)
and then hangs until it is killed: the kill-and-resume test SIGKILLs it at a known point.
"""

import functools
import os
import pathlib
import sys
import time

import keras

from trainers import train, train_lib


class HangAtStep(keras.callbacks.Callback):
    def __init__(self, step, marker):
        super().__init__()
        self.step, self.marker = step, marker

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            pathlib.Path(self.marker).write_text(str(self.step))
            while True:
                time.sleep(1)


if __name__ == "__main__":
    if os.environ.get("RLRA_TEST_HANG_AT_STEP"):
        hang = HangAtStep(int(os.environ["RLRA_TEST_HANG_AT_STEP"]),
                          os.environ["RLRA_TEST_HANG_FILE"])
        train_lib.train_and_evaluate = functools.partial(
            train_lib.train_and_evaluate, callbacks=[hang]
        )
    sys.argv[0] = "train"
    train.run()
