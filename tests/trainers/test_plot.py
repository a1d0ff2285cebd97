"""trainers.plot: one line per run, alignment curves per unit, a real PNG, tolerant reading."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trainers import plot_lib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fake_run(directory, rule, preset, acc, loss, diagnostics=None, test_accuracy=None):
    os.makedirs(directory, exist_ok=True)
    metrics = {
        "config": {"rule": rule, "preset": preset},
        "history": {"val_accuracy": acc, "val_loss": loss,
                    "accuracy": [a - 0.01 for a in acc], "loss": [x + 0.1 for x in loss]},
    }
    if test_accuracy is not None:
        metrics["test_accuracy"] = test_accuracy
    if diagnostics is not None:
        metrics["diagnostics"] = diagnostics
    with open(os.path.join(directory, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    return str(directory)


def diagnostics_history(steps=(0, 100, 200), units=("dense_0", "dense_1", "head")):
    return {
        "rule": "rec_lra",
        "every_n_steps": 100,
        "history": [
            {"step": s, "loss": 1.0, "units": {u: {"angle": 80.0 - 10 * i - j, "error_norm": 0.1}
                                              for j, u in enumerate(units)}}
            for i, s in enumerate(steps)
        ],
    }


@pytest.fixture
def two_runs(tmp_path):
    a = fake_run(tmp_path / "a", "rec_lra", "fmnist_mlp", [0.70, 0.80, 0.85], [0.9, 0.6, 0.45],
                 diagnostics=diagnostics_history(), test_accuracy=0.851)
    b = fake_run(tmp_path / "b", {"name": "bp", "config": {}}, "fmnist_mlp",
                 [0.75, 0.84, 0.87, 0.88], [0.8, 0.5, 0.4, 0.35])
    return a, b


def test_one_line_per_run_with_the_run_values(two_runs, tmp_path):
    out = tmp_path / "cmp.png"
    fig = plot_lib.plot_runs(two_runs, out)
    acc_ax, loss_ax = fig.axes[:2]
    assert len(fig.axes) == 2
    assert len(acc_ax.get_lines()) == 2 and len(loss_ax.get_lines()) == 2
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_ydata(), [0.75, 0.84, 0.87, 0.88])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3])
    labels = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert labels == ["rec_lra / fmnist_mlp (test 85.1%)", "bp / fmnist_mlp"]
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_alignment_panel_has_one_curve_per_unit(two_runs, tmp_path):
    fig = plot_lib.plot_runs(two_runs, tmp_path / "align.png", alignment=True)
    ax = fig.axes[2]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["dense_0", "dense_1", "head"]
    np.testing.assert_allclose(lines[1].get_xdata(), [0, 100, 200])
    np.testing.assert_allclose(lines[1].get_ydata(), [79.0, 69.0, 59.0])
    with pytest.raises(ValueError, match="alignment_run=5"):
        plot_lib.plot_runs(two_runs, tmp_path / "x.png", alignment=True, alignment_run=5)


def test_tolerates_partial_and_list_shaped_metrics(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    # Per-epoch dicts, only training curves, a NaN, no config, diagnostics as a bare list.
    metrics = {"history": [{"accuracy": 0.5, "loss": 1.2}, {"accuracy": 0.6, "loss": None}],
               "diagnostics": diagnostics_history(steps=(0, 5))["history"]}
    (run / "metrics.json").write_text(json.dumps(metrics))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.json").write_text("{}")
    fig = plot_lib.plot_runs([run, empty], tmp_path / "odd.png", alignment=True)
    acc_ax, loss_ax, align_ax = fig.axes
    assert len(acc_ax.get_lines()) == 1 and acc_ax.get_legend().get_texts()[0].get_text() == "odd"
    assert np.isnan(loss_ax.get_lines()[0].get_ydata()[1])
    assert len(align_ax.get_lines()) == 3
    with pytest.raises(ValueError, match="metrics.json"):
        plot_lib.load_run(tmp_path)


def test_a_run_in_progress_plots_from_its_history_csv(tmp_path):
    """No metrics.json yet: the epochs history.csv holds so far, labelled as in progress."""
    run = tmp_path / "running"
    run.mkdir()
    (run / "history.csv").write_text(
        "accuracy,epoch,epoch_seconds,loss,val_accuracy,val_loss\n"
        "0.7,0,3.1,0.9,0.72,0.8\n0.8,1,3.0,0.6,0.81,0.5\n")
    (run / "config.json").write_text(json.dumps({"rule": "rec_lra", "model": "mlp",
                                                 "dataset": "fashion_mnist"}))
    fig = plot_lib.plot_runs([run], tmp_path / "p.png")
    acc_ax, loss_ax = fig.axes
    np.testing.assert_allclose(acc_ax.get_lines()[0].get_ydata(), [0.72, 0.81])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [0.8, 0.5])
    assert acc_ax.get_legend().get_texts()[0].get_text() == \
        "rec_lra / mlp fashion_mnist (in progress: 2 epochs)"
    with pytest.raises(ValueError) as excinfo:
        plot_lib.load_run(tmp_path / "nowhere")
    assert str(excinfo.value) == (f"No run at {str(tmp_path / 'nowhere')!r}: expected a run "
                                  "directory or a metrics.json")


def test_reads_the_trainers_metrics_layout(tmp_path):
    """trainers.train_lib writes per-epoch dicts (from history.csv) and a config without preset."""
    run = tmp_path / "trained"
    run.mkdir()
    metrics = {
        "test_accuracy": 0.8125, "test_loss": 0.5,
        "history": [{"epoch": 0, "accuracy": 0.7, "loss": 0.9, "val_accuracy": 0.75,
                     "val_loss": 0.7},
                    {"epoch": 1, "accuracy": 0.8, "loss": 0.6, "val_accuracy": 0.8,
                     "val_loss": 0.55}],
        "rule": {"name": "lra", "config": {"beta": 0.1}},
        "config": {"model": "mlp", "dataset": "fashion_mnist", "rule": "lra"},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    fig = plot_lib.plot_runs([run], tmp_path / "t.png")
    acc_ax, loss_ax = fig.axes
    np.testing.assert_allclose(acc_ax.get_lines()[0].get_ydata(), [0.75, 0.8])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [0.7, 0.55])
    label = acc_ax.get_legend().get_texts()[0].get_text()
    assert label == "lra / mlp fashion_mnist (test 81.2%)"


def test_command_line_writes_the_png(two_runs, tmp_path):
    out = tmp_path / "cli.png"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.plot", *two_runs, f"--out={out}", "--alignment",
         "--train_curves"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(PNG_MAGIC) and out.stat().st_size > 5000
    for args, message in [
        ([], "rlra-plot: error: Expected at least one RUN_DIR (a trainer's work directory)\n"),
        ([str(tmp_path / "nowhere")], f"rlra-plot: error: No run at "
                                      f"{str(tmp_path / 'nowhere')!r}: expected a run directory "
                                      "or a metrics.json\n"),
    ]:
        bad = subprocess.run([sys.executable, "-m", "trainers.plot", *args, f"--out={out}"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr == message
