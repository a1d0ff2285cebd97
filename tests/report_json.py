"""Synthetic result JSON in the benchmarks' layout, for the report and benchmark tests."""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, REPO)

from benchmarks.harness import write_json  # noqa: E402
from benchmarks.report.results import Results  # noqa: E402

MACHINE = {"platform": "test-machine", "cpus": 2, "load_average": [3.0, 2.0, 1.0]}
VERSIONS = {"tensorflow": "2.21.0", "keras": "3.15.1", "python": "3.11.7"}
# A trainer config as the accuracy runner records it (the fields the report reads).
CONFIG = {"model": "resnet20", "optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 0.0,
          "epochs": 3, "batch_size": 128, "train_limit": 12800, "mixed_precision": "off",
          "deterministic": False, "beta": None, "gamma": None, "feedback": None,
          "synapse_update": None, "mirror_batch": None, "mirror_normalise": None,
          "mirror_warm_start": None}
ADAM_BUDGET = {"train_examples": 12800, "epochs": 3, "batch_size": 128, "optimizer": "adam",
               "learning_rate": 1e-3, "weight_decay": 0.0, "mixed_precision": "off"}
SGD_BUDGET = dict(ADAM_BUDGET, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4)
SGD_CONFIG = dict(CONFIG, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4)


def write(folder, name, obj):
    write_json(os.path.join(str(folder), name + ".json"), obj)


def results(**data_by_name):
    """The report's `Results` holding these files (as the full suite's)."""
    return Results.from_data(data_by_name)


def accuracy_json(curves, budget=ADAM_BUDGET, config=CONFIG, changes=None, seeds=None,
                  seconds=None, date="2030-01-02 03:04:05"):
    """An accuracy file: `curves` {rule: [test-accuracy curve per seed]} (seeds 0, 1, ...
    unless `seeds` gives them); each run's config is `config` with its rule and seed and
    `changes[rule]`; `seconds` {rule: seconds per epoch} (10 by default)."""
    runs = []
    for rule, per_seed in curves.items():
        sec = (seconds or {}).get(rule, 10.0)
        for seed, curve in zip(seeds or range(len(per_seed)), per_seed):
            cfg = dict(config, rule=rule.split("-")[0], seed=seed, **(changes or {}).get(rule, {}))
            runs.append({
                "rule": rule, "seed": seed, "config": cfg,
                "epochs": [{"epoch": i + 1, "test_accuracy": a, "test_loss": 1.0 - a,
                            "epoch_seconds": sec, "test_eval_seconds": 1.0}
                           for i, a in enumerate(curve)],
                "final_test_accuracy": curve[-1], "final_test_loss": 1.0 - curve[-1],
                "mean_seconds_per_epoch": sec, "wall_seconds": sec * len(curve),
                "wall_seconds_including_per_epoch_tests": (sec + 1.0) * len(curve)})
    return {"benchmark": "accuracy", "budget": dict(budget), "machine": MACHINE,
            "versions": VERSIONS, "date": date, "runs": runs, "complete": True}


def finals_json(finals, **kwargs):
    """An accuracy file from final accuracies: `finals` {rule: [final per seed]}, each run's
    curve two epochs long (5 points lower after the first)."""
    return accuracy_json({r: [[a - 0.05, a] for a in accs] for r, accs in finals.items()},
                         **kwargs)


def step_json(cpu, model="resnet18", peak=2000.0):
    """A step-time file at jit off: `cpu` {rule: median CPU seconds}; wall = 2 x CPU, mean
    CPU = 1.1 x median; rec_lra variants peak 100 MiB above the others."""
    rows = [{"model": model, "rule": rule, "jit_compile": False, "batch_size": 128,
             "median_step_seconds": 2 * c, "min_step_seconds": 1.9 * c,
             "median_cpu_seconds": c, "mean_cpu_seconds": 1.1 * c,
             "step_peak_rss_mb": peak + (100.0 if rule.startswith("rec_lra") else 0.0)}
            for rule, c in cpu.items()]
    return {"benchmark": "speed_step_time", "machine": MACHINE, "versions": VERSIONS,
            "date": "2030-02-03 00:00:00", "settings": {"repeats": 4, "steps_per_round": 1},
            "results": rows}


def chain_json(per_rule, models=(("r8", 8), ("r20", 20)), family="resnet"):
    """A chain-length file: `per_rule` {rule: [chain ops per model of `models`]}."""
    rows = [{"model": m, "family": family, "units": u, "blocks": 1, "rule": r, "chain_ops": c}
            for r, ops in per_rule.items() for (m, u), c in zip(models, ops)]
    return {"benchmark": "speed_chain_length", "definition": "ops", "machine": MACHINE,
            "versions": VERSIONS, "date": "2030-02-03 00:00:00", "results": rows}


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
