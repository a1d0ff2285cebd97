"""What every binary of the project shares: a quiet start, one-line errors, one set of exit codes.

The binaries are `python -m trainers.train`, `trainers.evaluate`, `trainers.plot` and
`python -m export` (with `export.savedmodel`, `export.onnx`, `export.tflite`). Each calls
`quiet_start()` before it imports TensorFlow and `run(main, program)` instead of `app.run`.

Exit codes:
  0    success
  2    bad input: a flag that does not parse, is unknown, is missing or does not apply to the
       chosen model or rule, a value out of range, a file or folder that is missing or
       unusable; one line on stderr, `<program>: error: <message>`, names the value
  other  as each binary documents: the trainer 3 (the run diverged) and 130 / 143 (stopped
       by SIGINT / SIGTERM: 128 + the signal); the exporter 5 (verification failed) and 6
       (conversion failed)
"""

import contextlib
import os
import sys
import tempfile

from absl import app, flags, logging

EXIT_BAD_INPUT = 2

# What TensorFlow's C++ runtime prints while it loads, whatever TF_CPP_MIN_LOG_LEVEL says (its
# two libraries each print the oneDNN notice): dropped by `quiet_start` unless --verbosity.
_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)


def _verbose_requested(argv):
    return any(a.startswith(("--verbosity", "-v=", "--v=")) for a in argv[1:])


def quiet_start():
    """Imports TensorFlow without its start-up notices (kept with `--verbosity`).

    Sets `TF_CPP_MIN_LOG_LEVEL=2` (warnings and errors of TensorFlow's C++ logging only)
    unless it is set, and captures what the import writes to the stderr file descriptor:
    the notices TensorFlow prints before its logging is set up are dropped, anything else is
    written out again. A no-op once TensorFlow is imported.
    """
    if "tensorflow" in sys.modules or _verbose_requested(sys.argv):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    for line in text.splitlines():
        if line.strip() and not any(noise in line for noise in _STARTUP_NOISE):
            sys.stderr.write(line + "\n")


@contextlib.contextmanager
def quiet_output(verbose=False, expected=()):
    """Runs the block with the process's stdout and stderr captured (file descriptors 1 and
    2: C++ logs and tools' prints included), and drops what it wrote.

    With `verbose` nothing is captured. If the block raises anything but one of `expected`
    (the binary's own errors, which say what went wrong), the captured text is written to
    stderr first, so an unexpected failure keeps its context.
    """
    if verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except expected:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))


def fail(program, message, code=EXIT_BAD_INPUT):
    """Prints `<program>: error: <message>` on stderr and exits with `code`."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_flags(argv, program, positional=False):
    """`flags.FLAGS(argv)` with the project's conventions (see `run`); returns the arguments
    that are not flags."""
    try:
        args = flags.FLAGS(argv)
    except flags.Error as err:
        fail(program, str(err).splitlines()[0] if str(err) else type(err).__name__)
    except SystemExit as exit_:
        # absl's --help (--helpfull, --helpshort, ...) prints the usage and exits with 1;
        # asking for help is a success.
        sys.exit(0 if exit_.code in (0, 1) else exit_.code)
    if len(args) > 1 and not positional:
        fail(program, f"Unexpected arguments: {' '.join(args[1:])} (flags take the form "
                      "--name=value; --help lists them)")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # tfds logs every pipeline it builds at INFO
    return args


def run(main, program, positional=False):
    """`app.run(main)`, with flag errors and stray arguments as bad input (exit 2, one line).

    absl prints two lines and exits 1 on a flag error; here the error is one line,
    `<program>: error: <what absl says>`, and the exit code 2. `--help` lists the main
    module's flags with their defaults (absl's own `--helpfull` lists all). Unless
    `--verbosity` is given, absl logs warnings and errors only. `positional`: the binary
    takes arguments that are not flags (`trainers.plot RUN_DIR ...`).
    """
    app.run(main, flags_parser=lambda argv: parse_flags(argv, program, positional))
