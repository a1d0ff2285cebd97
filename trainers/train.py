r"""Train an rlra_tf model: `python -m trainers.train --preset=fmnist_mlp --workdir=runs/x`.

`--preset` (default `fmnist_mlp`) gives every setting; any other flag overrides one. The flags
are generated from `trainers.presets.Config` (one per field, and one per parameter of the
learning rules: `--help` lists them with the default preset's values); a flag given for a
setting that the chosen model, rule, optimiser, schedule or strategy does not use is refused.

Rerunning the same command resumes an interrupted run (also after SIGKILL); rerunning it with
a larger `--epochs` and nothing else changed extends the run, finished or not, from its last
state (docs/ALGORITHM.md#schedule says what the learning-rate schedule does then). A workdir
holding a run with other settings is refused unless `--overwrite`, and so is a workdir
another trainer is running in (`WORKDIR/lock.json` names it; a lock whose process is gone is
taken over).

SIGTERM (what preemptible and spot machines send before they stop) and SIGINT (Ctrl-C) stop the
run cleanly: the step in progress finishes, a backup of it is written, and the same command
resumes at exactly that step. A second signal while the backup is written is ignored. Under
`--strategy=multi_worker` every worker saves at the same step, whichever one got the signal.

Exit status (as for every binary of the project, `trainers/cli.py`):
  0    finished (metrics.json written), or the workdir already held the finished run
  2    bad input, one line naming it: a flag that does not parse or does not apply, a value
       out of range, data that are missing or do not fit, a workdir that is a file, cannot be
       written, holds another run or is used by another trainer, or no readable backup to
       resume from (--overwrite starts again)
  3    the run diverged (non-finite loss); the last good checkpoint and backup are kept
  143  stopped by SIGTERM, 130 stopped by SIGINT (128 + the signal): the backup of the last
       step is written; rerun the same command to resume

Examples:
  python -m trainers.train                                   # fmnist_mlp into runs/fmnist_mlp
  python -m trainers.train --preset=fmnist_mlp --rule=bp --workdir=runs/bp
  python -m trainers.train --preset=fmnist_mlp --workdir=runs/fmnist_mlp --epochs=12
  python -m trainers.train --preset=cifar10_resnet18 --strategy=mirrored --batch_size=512
  python -m trainers.train --list_presets
"""

import sys

from trainers import cli

cli.quiet_start()

from absl import flags  # noqa: E402

from trainers import config_flags, presets  # noqa: E402

PROGRAM = "rlra-train"

_PRESET = flags.DEFINE_string(
    "preset", presets.DEFAULT_PRESET, f"Named configuration: {', '.join(presets.PRESETS)}."
)
_LIST_PRESETS = flags.DEFINE_bool("list_presets", False, "Print the presets and exit.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<preset>).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete a run of another config in --workdir instead of refusing."
)
# One flag per field of `trainers.presets.Config` (rule parameters included), unset unless
# given: the preset's value is used.
config_flags.define()
flags.adopt_module_key_flags(config_flags)  # --help lists them with this binary's flags


def resolve_config():
    """The preset named by `--preset` with every flag that was given applied.

    A flag given for a setting that the chosen model, rule, optimiser, schedule or strategy
    does not use is refused (`TrainerError`), naming it and why.
    """
    from trainers.errors import TrainerError

    try:
        config = presets.get(_PRESET.value)
    except ValueError as err:
        raise TrainerError(str(err)) from None
    changes = config_flags.overrides()
    config = presets.override(config, **changes)
    for name, reason in presets.not_applying(config, changes).items():
        raise TrainerError(f"--{name}={getattr(config, name)!r} does not apply: {reason}; "
                           "remove it")
    return config


def main(argv):
    del argv  # `cli.run` refuses arguments that are not flags
    from trainers import train_lib
    from trainers.errors import TrainerError

    if _LIST_PRESETS.value:
        for name in presets.PRESETS:
            print(f"{name}:\n  {presets.describe(name).strip()}\n")
        return
    try:
        config = resolve_config()
        workdir = _WORKDIR.value or f"runs/{_PRESET.value}"
        metrics = train_lib.train_and_evaluate(config, workdir, overwrite=_OVERWRITE.value)
    except TrainerError as err:
        print(f"{PROGRAM}: {err.kind}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(f"test_accuracy={metrics['test_accuracy']:.4f} test_loss={metrics['test_loss']:.4f} "
          f"({workdir}/metrics.json)")


def run():
    """Console-script entry point (`rlra-train`)."""
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run()
