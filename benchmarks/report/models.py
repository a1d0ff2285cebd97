"""Your own model: does a Keras model converted by `from_keras` train as well?

The converted Keras CNN and VGG-style network on Fashion-MNIST under bp, rec_lra, wm and fa (the
accuracy runner's `--model=keras_cnn` / `keras_vgg`, through the trainer's `--keras_model`),
and `keras.applications.ResNet50` converted, beside the library's own `resnet50` preset: its
parameters and its step cost.
"""

from benchmarks.report import summaries as s
from benchmarks.report.accuracy import rule_table
from benchmarks.report.markdown import num, table
from benchmarks.report.results import subsection

TITLE = "Your own model: does a converted Keras model train as well?"


def _keras_accuracy(name, title, claim):
    def part(results, out_dir, verdicts):
        lines, src = subsection(results, name, title, budget=True)
        if src is None:
            return lines
        lines += ["", rule_table(s.accuracy_summary(src.data))] + src.figure(out_dir)
        return lines + ["", verdicts[claim].render()]
    return part


def resnet50_rows(data):
    """Per model and rule: forward parameters (and folded), median step, CPU time per step,
    rec_lra / bp, peak memory of the timed steps."""
    rows = s.step_rows(data)
    params = {(r["model"], r["rule"]): r for r in data["results"]}
    out = []
    for r in rows:
        source = params[(r["model"], r["rule"])]
        folded = source.get("forward_params_folded")
        out.append((f"`{r['model']}`", f"`{r['rule']}`", f"{source['forward_params']:,}",
                    f"{folded:,}" if folded else "—", num(r["step_ms"], "{:.0f}"),
                    num(r["cpu_ms"], "{:.0f}"), num(r["cpu_ratio_to_bp"], "{:.3f}"),
                    num(r["peak_mb"], "{:.0f}")))
    return out


def _resnet50(results, out_dir, verdicts):
    lines, src = subsection(results, "speed_keras_resnet50",
                            "keras.applications.ResNet50, converted, beside the resnet50 preset")
    if src is None:
        return lines
    settings = src.data["settings"]
    batch = next(iter(settings["models"].values()))["batch_size"]
    lines += ["", f"224x224x3 inputs, 1000 classes, batch {batch}, jit off, one fixed random "
              f"batch; {settings['repeats']} round-robin rounds of {settings['steps_per_round']} "
              "steps, every configuration in its own process, both models in one round-robin. "
              "Keras' ResNet-50 (v1) puts a block's stride on its first 1x1 convolution and "
              "gives every convolution a bias; the preset (torchvision's v1.5) strides the 3x3 "
              "and has no bias in front of BatchNorm.", "",
              table(["model", "rule", "forward parameters", "folded", "ms / step",
                     "CPU ms / step", "CPU x bp", "peak MiB"], resnet50_rows(src.data))]
    return lines + src.figure(out_dir) + ["", verdicts["models.keras_resnet50"].render()]


INTRO = ("A Keras `Sequential` or functional model converts in one call "
         "(`rlra_tf.models.from_keras`, [docs/MODELS.md](docs/MODELS.md)) and trains under "
         "every rule. Here: two models written as a Keras user writes them, saved to `.keras` "
         "files and trained by `python -m trainers.train --keras_model=...` at the ResNet "
         "benchmarks' budget (5 epochs), and keras.applications' ResNet-50 against the "
         "library's own.")
PARTS = (
    _keras_accuracy("accuracy_keras_cnn", "A Keras CNN with BatchNorm", "models.keras_cnn"),
    _keras_accuracy("accuracy_keras_vgg", "A Keras VGG-style network without BatchNorm",
                    "models.keras_vgg"),
    _resnet50,
)
