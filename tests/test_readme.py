"""The README's commands and code, run as written, in a fresh folder on the local Fashion-MNIST.

Read from README.md itself, so the README cannot drift from what works. Two changes only, both
for time: the trainer runs with a budget of its own (`BUDGET`: the `fmnist_mlp` preset trains
10 epochs on 58,000 images, about 3 minutes on 2 cores; here 1 epoch, and 2 for the command
that extends the run, on 5,000), and the API example fits one epoch of 20 steps. Every binary
must exit 0 with nothing on stderr: no TensorFlow start-up lines, no warnings.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600
BUDGET = ["--train_limit=5000", "--eval_limit=1000"]

pytestmark = pytest.mark.slow  # real processes, ~10 s of TensorFlow import each


def readme_block(heading, language):
    """The first ```language block after the line `heading` of README.md."""
    text = open(os.path.join(REPO, "README.md")).read()
    start = text.index(heading + "\n")
    match = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    return match.group(1)


def commands(block):
    """The `python -m ...` commands of a bash block: continuations joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+#.*$", "", line).split() for line in lines
            if line.startswith("python -m")]


def with_budget(argv):
    """A trainer command with this test's budget: the extension's --epochs=12 becomes
    --epochs=2, any other run trains 1 epoch (the preset's 10 would take minutes)."""
    if argv[:3] != ["python", "-m", "trainers.train"] or "--list_presets" in argv:
        return argv
    epochs = "--epochs=2" if any(a.startswith("--epochs=") for a in argv) else "--epochs=1"
    return [a for a in argv if not a.startswith("--epochs=")] + [epochs] + BUDGET


def test_the_readme_commands_and_code_run_as_written(fmnist_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(TFDS_DATA_DIR=fmnist_dir, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p))

    def run(argv):
        return subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)

    ran = []
    for argv in commands(readme_block("## Command-line tools", "bash")):
        result = run(with_budget(argv))
        assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
        assert result.stderr == "", (argv, result.stderr[-2000:])
        ran.append((argv[2], result.stdout))
    assert [name for name, _ in ran] == ["trainers.train"] * 4 + [
        "trainers.evaluate", "trainers.plot", "export"]
    assert "Extending runs/fmnist_mlp from 1 to 2 epochs" in ran[2][1]
    assert "fmnist_resnet20:" in ran[3][1] and "Command:" in ran[3][1]
    assert re.search(r"fashion_mnist/test: 10000 examples, accuracy 0\.\d+", ran[4][1])
    assert os.path.getsize(tmp_path / "curves.png") > 5000
    assert "tflite int8: input int8" in ran[6][1]
    for name in ("model.onnx", "model.tflite", "model_int8.tflite", "saved_model"):
        assert os.path.exists(tmp_path / "runs" / "fmnist_mlp" / "export" / name), name

    # The API in ten lines, one epoch of 20 steps; Keras must not warn about shuffle=True.
    api = readme_block("## The API in ten lines", "python")
    assert api.count("epochs=10") == 1
    api = api.replace("epochs=10", "epochs=1, steps_per_epoch=20")
    result = run(["python", "-c", api + "\nprint('loss', loss, 'accuracy', accuracy)"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "will be ignored" not in result.stderr and "accuracy 0." in result.stdout
    assert os.path.exists(tmp_path / "fmnist_rec_lra.keras")

    # Your own Keras model: the snippet (one epoch of 20 steps), then the trainer on its file.
    own = readme_block("## Your own Keras model", "python")
    assert own.count("epochs=1)") == 1
    own = own.replace("epochs=1)", "epochs=1, steps_per_epoch=20)")
    result = run(["python", "-c", own + "\nprint(type(plain).__name__, len(model.blocks))"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Functional 2" in result.stdout
    [argv] = commands(readme_block("## Your own Keras model", "bash"))
    result = run(with_budget(argv))
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    assert "test_accuracy=" in result.stdout

    # The deployment examples, on the export above instead of `make demo`'s.
    text = open(os.path.join(REPO, "README.md")).read()
    deploy = text[text.index("## Deploy:"):text.index("## Known limitations")]
    blocks = re.findall(r"```python\n(.*?)```", deploy, re.S)
    assert len(blocks) == 2
    for code in blocks:
        result = run(["python", "-c", code.replace("runs/demo/", "runs/fmnist_mlp/")])
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip(), code
