r"""Evaluate a saved model: `python -m trainers.evaluate --model=runs/fmnist_mlp`.

`--model` is a `.keras` file or a run directory (whose `config.json` supplies the dataset).
Prints accuracy, loss and the confusion matrix; `--output=FILE.json` also writes them.
Bad input exits with status 2 and a message.
"""

import json
import sys

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "A .keras file or a run directory.", required=True)
_DATASET = flags.DEFINE_string("dataset", None, "Dataset (default: the run's).")
_SPLIT = flags.DEFINE_string("split", "test", "train, validation or test.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_LIMIT = flags.DEFINE_integer("limit", None, "Evaluate only the first N examples.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory (default: the run's).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with raw dataset files.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results to this JSON file.")


def main(argv):
    from trainers import evaluate_lib

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = evaluate_lib.evaluate(
            _MODEL.value, dataset=_DATASET.value, split=_SPLIT.value,
            batch_size=_BATCH_SIZE.value, data_dir=_DATA_DIR.value,
            manual_dir=_MANUAL_DIR.value, limit=_LIMIT.value,
        )
    except evaluate_lib.TrainerError as err:
        print(f"rlra-evaluate: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(evaluate_lib.format_report(result))
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(result, f, indent=2)


def run():
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
