r"""Plot several training runs on one figure.

    python -m trainers.plot RUN_DIR [RUN_DIR ...] --out=comparison.png [--alignment]

Each RUN_DIR holds the trainer's `metrics.json`. The figure shows held-out accuracy and loss
per epoch, one line per run labelled by rule and preset; `--alignment` adds the per-unit
alignment angles over training of one run (`--alignment_run`, default the first).
"""

from absl import app, flags

from trainers import plot_lib

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
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("Expected at least one RUN_DIR.")
    plot_lib.plot_runs(
        run_dirs,
        _OUT.value,
        alignment=_ALIGNMENT.value,
        alignment_run=_ALIGNMENT_RUN.value,
        alignment_metric=_ALIGNMENT_METRIC.value,
        train_curves=_TRAIN_CURVES.value,
    )
    print(f"Wrote {_OUT.value}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
