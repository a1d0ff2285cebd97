"""The trainer's errors: what the binaries turn into a message and an exit code.

`TrainerError` (exit code 2) is a problem with what the user asked for, raised before anything
is written where it can be; `NonFiniteLossError` (exit code 3) is a run that diverged. Every
module of the trainer raises them, so they sit below all of them.
"""


class TrainerError(Exception):
    """A problem with what the user asked for; the message says what and how to fix it."""

    exit_code = 2


class NonFiniteLossError(TrainerError):
    """Training produced a non-finite loss or weights; nothing from that step is kept."""

    exit_code = 3


def fail(message):
    """Raises `TrainerError(message)` (for checks that read as one line)."""
    raise TrainerError(message)
