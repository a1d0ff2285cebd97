"""Synthetic benchmark JSON for the report tests, and a check of the Markdown tables."""

import json
import os
import re

# A trainer config as resnet_accuracy.py records it after revision 2 (`synapse_update` is one
# of the rule options revision 2 added to the config).
REV2_CONFIG = {"model": "resnet20", "optimizer": "adam", "learning_rate": 1e-3,
               "weight_decay": 0.0, "epochs": 3, "batch_size": 128, "train_limit": 12800,
               "mixed_precision": "off", "beta": None, "synapse_update": None}
ADAM_BUDGET = {"train_examples": 12800, "epochs": 3, "optimizer": "adam", "learning_rate": 1e-3,
               "weight_decay": 0.0, "mixed_precision": "off"}


def write(folder, name, obj):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump(obj, f)


def resnet_json(finals, budget=ADAM_BUDGET, config=REV2_CONFIG, changes=None, seeds=None):
    """resnet_accuracy.py's JSON: `finals` {rule: [final test accuracy per seed]} (seeds 0, 1,
    ... unless `seeds` gives them); each run's config is `config` with its rule and seed and
    `changes[rule]`."""
    runs = []
    for rule, accs in finals.items():
        for seed, acc in zip(seeds or range(len(accs)), accs):
            cfg = dict(config, rule=rule, seed=seed, **(changes or {}).get(rule, {}))
            runs.append({"rule": rule, "seed": seed, "config": cfg, "final_test_accuracy": acc,
                         "mean_seconds_per_epoch": 30.0, "epochs": [
                             {"epoch": 1, "test_accuracy": acc - 0.05, "epoch_seconds": 30.0},
                             {"epoch": 2, "test_accuracy": acc, "epoch_seconds": 30.0}]})
    return {"benchmark": "resnet_accuracy", "date": "2030-02-03 04:05:06", "budget": dict(budget),
            "runs": runs}


def table_widths(text):
    """The number of cells of every row of every Markdown table in `text` (`\\|` is a pipe
    inside a cell), one set per table."""
    widths, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = len(re.split(r"(?<!\\)\|", line.strip())) - 2
            current = current if current is not None else set()
            current.add(cells)
        elif current is not None:
            widths.append(current)
            current = None
    return widths + ([current] if current is not None else [])
