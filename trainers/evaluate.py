r"""Evaluate a saved model: `python -m trainers.evaluate --model=runs/fmnist_mlp/model.keras`.

`--model` is a `.keras` file or a run directory. The dataset and data folders are the run's
(the trainer's `config.json` beside the file, or one folder up for `checkpoints/*.keras`);
without one, the only dataset whose image shape and class count fit the model, else
`--dataset` must say. Prints accuracy, loss and the confusion matrix; `--output=FILE.json`
also writes them.

Exit status: 0 evaluated; 2 bad input (a flag, a missing or unloadable model, a dataset that
is unknown, unavailable or does not fit the model, labels outside its classes, an
`--output` that cannot be written), with one line naming it (`trainers/cli.py`).
"""

import json
import os

from trainers import cli

cli.quiet_start()

from absl import flags  # noqa: E402

PROGRAM = "rlra-evaluate"

_MODEL = flags.DEFINE_string("model", None, "A .keras file or a run directory.", required=True)
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset (default: the run's, else the only one that fits the model).")
_SPLIT = flags.DEFINE_string("split", "test", "train, validation or test.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_LIMIT = flags.DEFINE_integer("limit", None, "Evaluate only the first N examples.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory (default: the run's).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with raw dataset files.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results to this JSON file.")


def main(argv):
    del argv  # `cli.run` refuses arguments that are not flags
    from trainers import evaluate_lib
    from trainers.errors import TrainerError

    output = _OUTPUT.value
    if output:
        folder = os.path.dirname(os.path.abspath(output))
        if os.path.isdir(output):
            cli.fail(PROGRAM, f"Cannot write --output={output}: it is a folder")
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            cli.fail(PROGRAM, f"Cannot write --output={output}: {folder} is not a writable "
                              "folder")
    try:
        result = evaluate_lib.evaluate(
            _MODEL.value, dataset=_DATASET.value, split=_SPLIT.value,
            batch_size=_BATCH_SIZE.value, data_dir=_DATA_DIR.value,
            manual_dir=_MANUAL_DIR.value, limit=_LIMIT.value,
        )
    except TrainerError as err:
        cli.fail(PROGRAM, str(err), err.exit_code)
    print(evaluate_lib.format_report(result))
    if output:
        with open(output, "w") as f:
            json.dump(result, f, indent=2)


def run():
    """Console-script entry point."""
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run()
