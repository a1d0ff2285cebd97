"""The trainer's errors: what the binaries turn into a message and an exit code.

`TrainerError` (exit code 2) is a problem with what the user asked for, raised before anything
is written where it can be; `NonFiniteLossError` (exit code 3) is a run that diverged;
`TrainingInterrupted` (exit code 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT) is
a run stopped by a signal once its backup was written, which the same command resumes. Every
module of the trainer raises them, so they sit below all of them.
"""

import signal


class TrainerError(Exception):
    """A problem with what the user asked for; the message says what and how to fix it."""

    exit_code = 2
    kind = "error"  # how the binary labels the message


class NonFiniteLossError(TrainerError):
    """Training produced a non-finite loss or weights; nothing from that step is kept."""

    exit_code = 3


class TrainingInterrupted(TrainerError):
    """The run was stopped by SIGTERM or SIGINT; its state up to the last step is backed up.

    `exit_code` is 128 + the signal's number (the shells' convention for a process ended by a
    signal, and what TensorFlow's own preemption handler exits with on Google Cloud): 143 for
    SIGTERM, 130 for SIGINT. Rerunning the same command resumes at the backed-up step.
    """

    kind = "interrupted"

    def __init__(self, message, signum=signal.SIGTERM):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def fail(message):
    """Raises `TrainerError(message)` (for checks that read as one line)."""
    raise TrainerError(message)
