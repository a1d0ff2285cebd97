"""Training step time, forward time and peak memory of ResNet-18 and ResNet-50, per rule.

Every configuration (model x rule x `jit_compile`, plus a forward-only "rule" `forward`, which
is inference: `predict_on_batch`) lives in its own worker subprocess, so that its peak memory
is its own. A worker builds the model, compiles it with SGD (momentum 0.9), runs `--warmup`
steps (the first one traces and, with XLA, compiles), then waits. The parent drives all the
workers of a group (one model at one jit setting by default: forward + 5 rules, six
processes; `--group=model` puts both jit settings together) round-robin: in each of
`--repeats` rounds every worker times `--steps` steps of `train_on_batch` (or
`predict_on_batch`) on the same fixed random batch, one worker at a time, the order rotated
every round. So machine noise (this machine is shared) hits every rule alike. Each step
records wall seconds and process CPU seconds (all threads): on a loaded machine the CPU
time is the steadier measure of the work a step does, the wall time is what a user waits.

Peak memory per configuration, from Linux: `peak_rss_mb` is the worker's resident-set
high-water mark over its whole life (imports, build, tracing/XLA compilation included;
`ru_maxrss`); `step_peak_rss_mb` is the high-water mark over the timed steps only (VmHWM
after resetting it through /proc/self/clear_refs once the warm-up is done), and
`idle_rss_mb` the resident set after the warm-up. Workers wait idle while another one
runs, so their memory does not mix. (TF's CPU allocator keeps a step's memory, so a warm
worker's resident set is already close to its step peak.)

Models: ResNet-18 with the CIFAR stem at 32x32x3, batch 128, 10 classes; ResNet-50 with the
ImageNet stem at 224x224x3, batch `--resnet50_batch` (8: a group's six warm workers must fit
in memory together), 1000 classes; `keras_resnet50`: `keras.applications.ResNet50`
(`weights=None`, the same input, batch and classes) converted by `rlra_tf.models.from_keras`.
`--models=resnet20`: the Fashion-MNIST ResNet-20 (28x28x1, batch `--resnet18_batch`).

`--rules` takes the rule variants of `benchmarks.variants`; `bp-keras_bn`, `fa-keras_bn` and
`rec_lra-keras_bn` run that rule with the conv units' BatchNorm on Keras' op-by-op code path
instead of TensorFlow's fused kernel (`rlra_tf.layers.FusedBatchNormalization`, the default),
to measure what the kernel saves:

    python -m benchmarks.speed.step_time --models=resnet20 --jit=off --steps=4 \
        --rules=bp,fa,rec_lra,bp-keras_bn,fa-keras_bn,rec_lra-keras_bn \
        --out=benchmarks/results/speed_batch_norm.json

    python -m benchmarks.speed.step_time          # about 30 minutes on 2 shared cores
    python -m benchmarks.speed.step_time --quick  # ResNet-18, jit off, 2 rounds: ~4 minutes

Writes `benchmarks/results/speed_step_time.json` and a PNG beside it, and prints a table with
the median step, the ratios to bp and to the forward pass (`benchmarks.report.summaries`).
"""

import os
import resource
import sys
import time

from absl import app, flags

from benchmarks import harness, variants, workers

RULES = variants.RULES
MODELS = {
    # name: (preset, stem, input shape, classes)
    "resnet18": ("resnet18", "cifar", (32, 32, 3), 10),
    "resnet20": ("resnet20", "cifar", (28, 28, 1), 10),  # the Fashion-MNIST benchmarks' net
    "resnet50": ("resnet50", "imagenet", (224, 224, 3), 1000),
    # keras.applications.ResNet50 (weights=None) converted by rlra_tf.models.from_keras: the
    # same network as the preset but for Keras' v1 stride placement and its conv biases.
    "keras_resnet50": ("keras.ResNet50", None, (224, 224, 3), 1000),
}

_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models: {', '.join(MODELS)}.")
_RULES = flags.DEFINE_list(
    "rules", list(RULES), "Rule variants to time (benchmarks.variants; forward is always timed).")
_JIT = flags.DEFINE_list("jit", ["off", "on"], "jit_compile settings: off, on.")
_RESNET18_BATCH = flags.DEFINE_integer(
    "resnet18_batch", 128, "ResNet-18 (and ResNet-20) batch size.")
_RESNET50_BATCH = flags.DEFINE_integer(
    "resnet50_batch", 8,
    "ResNet-50 batch size (8: six workers of a group, 2-3 GB each, fit in this machine's memory).",
)
_REPEATS = flags.DEFINE_integer("repeats", 4, "Round-robin rounds.")
_STEPS = flags.DEFINE_integer("steps", 1, "Timed steps per worker per round.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (the first one traces).")
_GROUP = flags.DEFINE_enum(
    "group", "jit", ["model", "jit", "all"],
    "Workers alive and interleaved together: all of a model's (both jit settings), one "
    "jit setting's at a time (less memory), or all of every model's (to compare models' "
    "ratios measured in one round-robin).",
)
_QUICK = flags.DEFINE_bool(
    "quick", False, "ResNet-18 only, jit off, 2 rounds (the quick bench suite)."
)
_OUT = flags.DEFINE_string(
    "out", harness.default_out("speed_step_time"), "The JSON results (the PNG goes beside it).")
_MIN_FREE = flags.DEFINE_float(
    "min_free_gb", 3.0,
    "Stop (rather than push the shared machine into swapping or the OOM killer) when less "
    "than this much memory is available before a worker starts.",
)
_WORKER = flags.DEFINE_string(
    "worker", None, "Internal: run as the worker MODEL:MODE:JIT:BATCH."
)


# ------------------------------------------------------------------------------------ worker


def _proc_status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def _reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_worker(spec):
    """One configuration: build, compile, warm up, then time steps on request."""
    import keras
    import tensorflow as tf

    from rlra_tf.models import from_keras, resnet
    from rlra_tf.models.resnet import parameter_counts

    name, mode, jit, batch = spec.split(":")
    batch = int(batch)
    if mode != "forward" and variants.get(mode).keras_batch_norm:
        from rlra_tf.layers import FusedBatchNormalization

        FusedBatchNormalization._fusable = lambda *args: False  # Keras' path, this process only
    preset, stem, shape, classes = MODELS[name]
    keras.utils.set_random_seed(0)
    folded = None
    if preset.startswith("keras."):
        application = getattr(keras.applications, preset.split(".", 1)[1])
        original = application(weights=None, input_shape=shape, classes=classes)
        model = from_keras(original)
        folded = parameter_counts(from_keras(original, fold_batchnorm_bias=True))["forward"]
        del original
    else:
        model = resnet(preset, input_shape=shape, num_classes=classes, stem=stem)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        rule="bp" if mode == "forward" else variants.make_rule(mode),
        jit_compile=jit == "on",
    )
    x = tf.random.uniform((batch,) + shape, seed=1)
    y = tf.random.uniform((batch,), 0, classes, dtype=tf.int32, seed=2)
    if mode == "forward":
        def step():
            model.predict_on_batch(x)
    else:
        def step():
            model.train_on_batch(x, y)

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(_WARMUP.value - 1):
        step()
    counts = parameter_counts(model)
    idle = _proc_status_mb("VmRSS")
    reset = _reset_peak_rss()
    workers.send({"ready": True, "first_step_seconds": first, "idle_rss_mb": idle,
                  "forward_params": counts["forward"], "feedback_params": counts["feedback"],
                  "forward_params_folded": folded})
    workers.serve(step, on_quit=lambda: {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "step_peak_rss_mb": _proc_status_mb("VmHWM") if reset else None,
        "rss_mb": _proc_status_mb("VmRSS"),
    })


# ------------------------------------------------------------------------------------ parent


class Worker(workers.Worker):
    """The worker subprocess of one configuration (model, mode, jit setting, batch)."""

    def __init__(self, model, mode, jit, batch):
        self.batch = batch
        super().__init__(
            (model, mode, jit),
            [sys.executable, "-m", "benchmarks.speed.step_time",
             f"--worker={model}:{mode}:{jit}:{batch}", f"--warmup={_WARMUP.value}"],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )


def measure_group(configs, batches, repeats, steps):
    """Starts the workers of a group one after another, then times them round-robin."""
    started = []
    try:
        for model, mode, jit in configs:
            free = workers.mem_available_gb()
            if free is not None and free < _MIN_FREE.value:
                raise RuntimeError(
                    f"Only {free:.1f} GB of memory available (--min_free_gb={_MIN_FREE.value}); "
                    "use a smaller batch or --group=jit"
                )
            w = Worker(model, mode, jit, batches[model])
            w.ready = w.receive()  # warm up before the next worker starts: one heavy process
            print(f"  ready {model:9} {mode:16} jit={jit:3} first step "
                  f"{w.ready['first_step_seconds']:6.1f} s", flush=True)
            started.append(w)
        workers.round_robin(started, repeats, steps)
        rows = []
        for w in started:
            mem = w.quit()
            model, mode, jit = w.key
            rows.append({
                "model": model,
                "preset": MODELS[model][0],
                "stem": MODELS[model][1],
                "input_shape": list(MODELS[model][2]),
                "num_classes": MODELS[model][3],
                "batch_size": w.batch,
                "rule": mode,
                "jit_compile": jit == "on",
                **w.stats(),
                "first_step_seconds": w.ready["first_step_seconds"],
                "idle_rss_mb": w.ready["idle_rss_mb"],
                "peak_rss_mb": mem["peak_rss_mb"],
                "step_peak_rss_mb": mem["step_peak_rss_mb"],
                "forward_params": w.ready["forward_params"],
                "feedback_params": w.ready["feedback_params"],
                # A converted Keras model's forward parameters with the conv biases in front of
                # BatchNorm folded away (from_keras(fold_batchnorm_bias=True)); else None.
                "forward_params_folded": w.ready.get("forward_params_folded"),
            })
        return rows
    finally:
        workers.kill_remaining(started)


def plot(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(6.5 * len(models), 7.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(models), squeeze=False)
    for col, model in enumerate(models):
        sub = [r for r in rows if r["model"] == model]
        modes = ["forward"] + variants.ordered(r["rule"] for r in sub if r["rule"] != "forward")
        jits = sorted({r["jit_compile"] for r in sub})
        width = 0.8 / len(jits)
        for j, jit in enumerate(jits):
            by = {r["rule"]: r for r in sub if r["jit_compile"] == jit}
            xs = [i + (j - (len(jits) - 1) / 2) * width for i in range(len(modes))]
            label = f"jit_compile={'on' if jit else 'off'}"
            wall = [by[m]["median_step_seconds"] if m in by else 0 for m in modes]
            cpu = [by[m]["median_cpu_seconds"] if m in by else 0 for m in modes]
            err_lo = [w - by[m]["min_step_seconds"] if m in by else 0 for m, w in zip(modes, wall)]
            axes[0][col].bar(xs, wall, width, yerr=[err_lo, [0] * len(wall)],
                             color=f"C{j}", label=f"{label} (wall)")
            axes[0][col].plot(xs, cpu, "k_", markersize=14, mew=2,
                              label="CPU seconds" if j == 0 else None)
            mem = [(by[m]["step_peak_rss_mb"] or 0) if m in by else 0 for m in modes]
            axes[1][col].bar(xs, [m / 1024 for m in mem], width, color=f"C{j}", label=label)
        batch = sub[0]["batch_size"]
        for row, ylabel in ((0, "seconds per step (median; bar to min)"),
                            (1, "peak RSS during the timed steps (GiB)")):
            ax = axes[row][col]
            ax.set_xticks(range(len(modes)))
            ax.set_xticklabels(modes)
            ax.set_ylabel(ylabel)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize="small")
        axes[0][col].set_title(f"{model} ({sub[0]['stem']} stem, "
                               f"{'x'.join(map(str, sub[0]['input_shape']))}, batch {batch})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows):
    from benchmarks.report.summaries import step_rows

    print(f"\n{'model':9} {'jit':3} {'rule':24} {'step ms':>8} {'cpu ms':>8} {'x bp':>5} "
          f"{'cpu x bp':>8} {'mean cpu x bp':>13} {'/fwd':>5} {'step MiB':>8}")

    def f(v, fmt):
        return format(v, fmt) if v is not None else "-"

    for r in step_rows({"results": rows}):
        print(f"{r['model']:9} {r['jit']:3} {r['rule']:24} {r['step_ms']:8.0f} "
              f"{r['cpu_ms']:8.0f} {f(r['ratio_to_bp'], '5.2f'):>5} "
              f"{f(r['cpu_ratio_to_bp'], '8.2f'):>8} {f(r['mean_cpu_ratio_to_bp'], '13.3f'):>13} "
              f"{f(r['step_per_forward'], '5.2f'):>5} {f(r['peak_mb'], '8.0f'):>8}")


def main(argv):
    del argv
    if _WORKER.value:
        run_worker(_WORKER.value)
        return
    models, jits, repeats = list(_MODELS.value), list(_JIT.value), _REPEATS.value
    if _QUICK.value:
        models, jits, repeats = ["resnet18"], ["off"], min(repeats, 2)
    try:
        for m in models:
            if m not in MODELS:
                raise ValueError(f"Expected models among {sorted(MODELS)}, received: {m!r}")
        for j in jits:
            if j not in ("off", "on"):
                raise ValueError(f"Expected jit settings 'off' or 'on', received: {j!r}")
        variants.check(_RULES.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    out = _OUT.value
    batches = {"resnet18": _RESNET18_BATCH.value, "resnet20": _RESNET18_BATCH.value,
               "resnet50": _RESNET50_BATCH.value, "keras_resnet50": _RESNET50_BATCH.value}
    modes = ["forward"] + variants.ordered(_RULES.value)
    env = harness.environment()
    start = time.time()
    rows = []
    if _GROUP.value == "all":
        print(f"{'/'.join(models)}: jit {'/'.join(jits)}, {len(modes)} modes, {repeats} rounds",
              flush=True)
        configs = [(model, mode, jit) for model in models for jit in jits for mode in modes]
        rows += measure_group(configs, batches, repeats, _STEPS.value)
    for model in models if _GROUP.value != "all" else ():
        groups = [jits] if _GROUP.value == "model" else [[j] for j in jits]
        for group in groups:
            print(f"{model}: jit {'/'.join(group)}, {len(modes)} modes, {repeats} rounds",
                  flush=True)
            configs = [(model, mode, jit) for jit in group for mode in modes]
            rows += measure_group(configs, batches, repeats, _STEPS.value)
    env["machine"]["load_average_after"] = list(os.getloadavg())
    result = {
        "benchmark": os.path.splitext(os.path.basename(out))[0],
        **env,
        "settings": {
            "quick": _QUICK.value,
            "models": {m: {"preset": MODELS[m][0], "stem": MODELS[m][1],
                           "input_shape": list(MODELS[m][2]), "num_classes": MODELS[m][3],
                           "batch_size": batches[m]} for m in models},
            "rules": modes,
            "jit_compile": jits,
            "repeats": repeats,
            "steps_per_round": _STEPS.value,
            "warmup_steps": _WARMUP.value,
            "group": _GROUP.value,
            "optimizer": "SGD(0.01, momentum=0.9)",
            "data": "one fixed random batch (uniform [0, 1) images, uniform labels)",
            "forward": "predict_on_batch (inference mode), same jit setting",
            "timing": "wall (time.perf_counter) and process CPU time (all threads) per step; "
                      "round-robin across the group's workers, order rotated each round",
            "memory": "peak_rss_mb: ru_maxrss of the worker (whole life, compilation "
                      "included); step_peak_rss_mb: VmHWM over the timed steps (reset after "
                      "warm-up); idle_rss_mb: VmRSS after warm-up",
            "wall_seconds": time.time() - start,
        },
        "results": rows,
    }
    harness.write_json(out, result)
    plot(rows, harness.png_path(out))
    print_table(rows)
    print(f"Wrote {out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)
