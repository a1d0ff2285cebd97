r"""Plot several training runs on one figure.

    python -m trainers.plot RUN_DIR [RUN_DIR ...] --out=comparison.png [--alignment]

Each RUN_DIR holds the trainer's `metrics.json`, or, for a run still in progress, its
`history.csv` so far. The figure shows held-out accuracy and loss per epoch, one line per run
labelled by rule and preset; `--alignment` adds the per-unit alignment angles over training of
one run (`--alignment_run`, default the first). No TensorFlow is imported.

Exit status: 0 written; 2 bad input (no RUN_DIR, a folder that holds no run, an index out of
range, an --out that cannot be written), with one line naming it (`trainers/cli.py`).
"""

import os

from absl import flags

from trainers import cli

PROGRAM = "rlra-plot"

_OUT = flags.DEFINE_string("out", "comparison.png", "The PNG file to write.")
_ALIGNMENT = flags.DEFINE_bool("alignment", False, "Add the per-unit alignment curves.")
_ALIGNMENT_RUN = flags.DEFINE_integer(
    "alignment_run", 0, "Index among the RUN_DIRs of the run whose alignment is drawn."
)
_ALIGNMENT_METRIC = flags.DEFINE_string(
    "alignment_metric", "angle", "Per-unit diagnostic to draw (angle, feedback_angle, ...)."
)
_TRAIN_CURVES = flags.DEFINE_bool("train_curves", False, "Also draw the training curves.")


def main(argv):
    from trainers import plot_lib

    run_dirs = argv[1:]
    if not run_dirs:
        cli.fail(PROGRAM, "Expected at least one RUN_DIR (a trainer's work directory)")
    out = _OUT.value
    folder = os.path.dirname(os.path.abspath(out))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if os.path.isdir(out) or not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        cli.fail(PROGRAM, f"Cannot write --out={out}: "
                          + ("it is a folder" if os.path.isdir(out)
                             else f"{existing} is not a writable folder"))
    try:
        plot_lib.plot_runs(
            run_dirs,
            out,
            alignment=_ALIGNMENT.value,
            alignment_run=_ALIGNMENT_RUN.value,
            alignment_metric=_ALIGNMENT_METRIC.value,
            train_curves=_TRAIN_CURVES.value,
        )
    except ValueError as err:
        cli.fail(PROGRAM, str(err))
    print(f"Wrote {out}")


def run():
    """Console-script entry point."""
    cli.run(main, PROGRAM, positional=True)


if __name__ == "__main__":
    run()
