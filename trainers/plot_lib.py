"""Comparison plots of training runs, from each run's `metrics.json`, or for a run in
progress its `history.csv` (no TensorFlow needed).

A run directory holds `metrics.json` with, as the trainer writes it:
- `history`: per-epoch lists such as `val_accuracy`, `val_loss`, `accuracy`, `loss` (a list of
  per-epoch dicts is accepted too);
- `config`: with `rule` (a name or `{"name": ...}`) and `preset` (else `model` and `dataset`
  label the run);
- `test_accuracy` (optional): the final test accuracy, shown in the legend;
- `diagnostics` (optional): what `rlra_tf.diagnostics.AlignmentDiagnostics.as_dict()` returns
  (or just its `history` list): `[{"step": int, "units": {unit: {"angle": ...}}}, ...]`.
Missing pieces are skipped, never an error, so partial or older runs still plot.
"""

import csv
import json
import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Preferred keys per panel: held-out curves first, the training curves as a fallback.
ACCURACY_KEYS = ("test_accuracy", "val_accuracy", "accuracy")
LOSS_KEYS = ("test_loss", "val_loss", "loss")
TRAIN_KEYS = {"accuracy": "accuracy", "loss": "loss"}


def load_run(run_dir):
    """The metrics of a run: its `metrics.json` (a run directory, or the JSON file itself), or,
    for a run still in progress, what its `history.csv` and `config.json` hold so far
    (`"in_progress": True`).

    Raises:
        ValueError: `run_dir` holds neither (the message names it).
    """
    path = str(run_dir)
    if os.path.isfile(path):
        return _read_json(path)
    if not os.path.isdir(path):
        raise ValueError(f"No run at {path!r}: expected a run directory or a metrics.json")
    metrics = os.path.join(path, "metrics.json")
    if os.path.isfile(metrics):
        return _read_json(metrics)
    history = os.path.join(path, "history.csv")
    if not os.path.isfile(history):
        raise ValueError(f"No run at {path!r}: the folder holds neither metrics.json nor "
                         "history.csv (has a trainer written an epoch there yet?)")
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    config = os.path.join(path, "config.json")
    return {"history": rows, "config": _read_json(config) if os.path.isfile(config) else {},
            "in_progress": True}


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read {path}: {err}") from None


def epoch_history(metrics):
    """`history` as a dict of per-epoch lists (a list of per-epoch dicts is converted)."""
    history = metrics.get("history") or {}
    if isinstance(history, list):
        merged = {}
        for epoch in history:
            for key, value in (epoch or {}).items():
                merged.setdefault(key, []).append(value)
        history = merged
    return {k: v for k, v in history.items() if isinstance(v, list)}


def _finite(values):
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = math.nan
        out.append(v if math.isfinite(v) else math.nan)
    return out


def curve(metrics, keys):
    """`(key, values)` of the first of `keys` present in the history, or `(None, [])`."""
    history = epoch_history(metrics)
    for key in keys:
        if history.get(key):
            return key, _finite(history[key])
    return None, []


def run_label(metrics, run_dir):
    """`"rule / preset (test 88.1%)"`, falling back to model and dataset, then the directory."""
    config = metrics.get("config") or {}
    rule = config.get("rule") or metrics.get("rule")
    if isinstance(rule, dict):
        rule = rule.get("name")
    preset = config.get("preset") or metrics.get("preset")
    if not preset:
        preset = " ".join(str(config[k]) for k in ("model", "dataset") if config.get(k)) or None
    parts = [str(p) for p in (rule, preset) if p]
    label = " / ".join(parts) if parts else os.path.basename(os.path.normpath(str(run_dir)))
    test = metrics.get("test_accuracy")
    if isinstance(test, (int, float)) and math.isfinite(test):
        label += f" (test {100 * test:.1f}%)"
    elif metrics.get("in_progress"):
        label += f" (in progress: {len(epoch_history(metrics).get('epoch', []))} epochs)"
    return label


def alignment_history(metrics, metric="angle"):
    """`(steps, {unit: [values]})` from `metrics["diagnostics"]`; `([], {})` if absent."""
    diag = metrics.get("diagnostics")
    if isinstance(diag, dict):
        diag = diag.get("history")
    if not isinstance(diag, list):
        return [], {}
    steps, per_unit = [], {}
    records = [r for r in diag if isinstance(r, dict) and isinstance(r.get("units"), dict)]
    for i, record in enumerate(records):
        steps.append(record.get("step", i))
        for unit, values in record["units"].items():
            per_unit.setdefault(unit, [math.nan] * i)
        for unit, series in per_unit.items():
            value = (record["units"].get(unit) or {}).get(metric)
            series.append(_finite([value])[0])
    return steps, per_unit


def plot_runs(run_dirs, out, alignment=False, alignment_run=0, alignment_metric="angle",
              train_curves=False):
    """Draw accuracy and loss per epoch for every run (one line each) and save a PNG.

    Args:
        run_dirs: run directories (or `metrics.json` paths).
        out: the PNG path to write.
        alignment: add a panel with the per-unit `alignment_metric` curves of one run.
        alignment_run: index in `run_dirs` of the run whose alignment is drawn.
        alignment_metric: a per-unit diagnostic, e.g. `"angle"` or `"feedback_angle"`.
        train_curves: also draw each run's training curves (dashed, same colour).

    Returns:
        The matplotlib `Figure` (axes: accuracy, loss[, alignment]).
    """
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError(f"Expected at least one run directory, received: {run_dirs!r}")
    if alignment and not 0 <= alignment_run < len(run_dirs):
        raise ValueError(
            f"Expected alignment_run in [0, {len(run_dirs) - 1}], "
            f"received: alignment_run={alignment_run!r}"
        )
    runs = [(d, load_run(d)) for d in run_dirs]
    panels = 3 if alignment else 2
    fig = Figure(figsize=(5.2 * panels, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, keys, title in ((axes[0], ACCURACY_KEYS, "accuracy"), (axes[1], LOSS_KEYS, "loss")):
        for i, (run_dir, metrics) in enumerate(runs):
            key, values = curve(metrics, keys)
            if key is None:
                continue
            color = f"C{i % 10}"
            epochs = list(range(1, len(values) + 1))
            ax.plot(epochs, values, color=color, marker="." if len(values) < 30 else None,
                    label=f"{run_label(metrics, run_dir)}")
            if train_curves and key != TRAIN_KEYS[title]:
                _, train = curve(metrics, (TRAIN_KEYS[title],))
                if train:
                    ax.plot(range(1, len(train) + 1), train, color=color, linestyle="--",
                            alpha=0.6)
            ax.set_ylabel(key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title + (" (dashed: training)" if train_curves else ""))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small", loc="lower right")
    if alignment:
        run_dir, metrics = runs[alignment_run]
        ax = axes[2]
        steps, per_unit = alignment_history(metrics, alignment_metric)
        for unit, values in per_unit.items():
            ax.plot(steps, values, label=unit)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{alignment_metric} (degrees)" if "angle" in alignment_metric
                      else alignment_metric)
        if "angle" in alignment_metric:
            ax.set_ylim(0, 180)
            ax.set_yticks([0, 45, 90, 135, 180])
        ax.set_title(f"{alignment_metric} per unit: {run_label(metrics, run_dir)}",
                     fontsize="medium")
        ax.grid(True, alpha=0.3)
        if per_unit:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no diagnostics in metrics.json", ha="center",
                    transform=ax.transAxes)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(str(out)))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(str(out), dpi=110)
    return fig
