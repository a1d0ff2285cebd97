"""What the trainer tests share: the binary's `main` run in-process (the `mock_fmnist` fixture is
in conftest.py)."""

from absl import flags

from trainers import train

MOCK_EXAMPLES = 64


def run_main(argv, capsys=None):
    """`python -m trainers.train *argv` in-process; returns (exit code, stdout, stderr)."""
    if capsys is not None:
        capsys.readouterr()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", *argv])
    code = 0
    try:
        train.main(["train"])
    except SystemExit as exit_:
        code = exit_.code
    finally:
        flags.FLAGS.unparse_flags()
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err
