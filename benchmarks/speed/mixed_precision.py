"""Training step time under Keras' mixed-precision policies, and float16 headroom of the errors.

For each policy (`float32`, `mixed_bfloat16`, `mixed_float16`) and rule (`bp`, `rec_lra`),
ResNet-20 (CIFAR stem, 28x28x1, 10 classes, batch 128) is built under the policy, compiled
with SGD (momentum 0.9; Keras adds loss scaling to backprop under float16), warmed up, and
`--steps` steps of `train_on_batch` on one fixed batch of real Fashion-MNIST training images
are timed (wall and process CPU seconds; median). Configurations run one after another in
this process, round-robin over `--repeats` rounds, so machine noise hits them alike.

Float16 headroom: after the timed steps of `rec_lra` under `mixed_float16`, one more batch
gives, per unit, the largest magnitude of its error unit `e` (float32) and of the
displacement that unit's error synapse makes of it in float16 (the transposed convolution
runs in the compute dtype), and of the pre-activations `h`. float16 overflows at 65,504.

    python -m benchmarks.speed.mixed_precision                 # ~10 minutes on 2 cores
    python -m benchmarks.speed.mixed_precision --steps=3 --repeats=1

Writes `benchmarks/results/speed_mixed_precision.json` and prints a table. On a CPU without native
bfloat16 or float16 kernels the mixed policies are expected to be slower: they are for TPUs
and GPUs; this measures what they cost here and that they run.
"""

import os
import statistics
import time

from absl import app, flags

from benchmarks import harness

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
RULES = ("bp", "rec_lra")

_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per configuration per round.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Round-robin rounds.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_OUT = flags.DEFINE_string("out", harness.default_out("speed_mixed_precision"),
                           "The JSON results.")


def build(policy, rule, x, y):
    import keras

    from rlra_tf.models import resnet

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = resnet("resnet20", input_shape=(28, 28, 1), num_classes=10)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), rule=rule,
                      jit_compile=False)
    finally:
        keras.config.set_dtype_policy(previous)
    model.train_on_batch(x, y)  # traces
    model.train_on_batch(x, y)
    return model


def time_steps(model, x, y, steps):
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train_on_batch(x, y)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def float16_headroom(model, x, y):
    """Per unit: max |e| (float32), max |F applied to e| in the compute dtype, max |h|."""
    import numpy as np
    import tensorflow as tf

    from rlra_tf.diagnostics import unit_names

    labels = model.one_hot_labels(y)
    trace = model.trace(tf.convert_to_tensor(x), training=True, local=True)
    _, sig = model.rule.signals(trace, labels)
    out = {}
    for name, ut, e in zip(unit_names(model), trace.units, sig.per_unit):
        through = ut.unit.norm_transpose(e, ut)
        d = ut.unit.feedback_input(through) if len(e.shape) == 2 else ut.unit.feedback_input(
            through, input_shape=tf.shape(ut.inputs))
        out[name] = {
            "max_abs_error": float(np.max(np.abs(e.numpy()))),
            "max_abs_displacement": float(np.max(np.abs(tf.cast(d, tf.float32).numpy()))),
            "displacement_dtype": d.dtype.name,
            "max_abs_pre_activation": float(np.max(np.abs(tf.cast(ut.pre, tf.float32).numpy()))),
            "finite": bool(np.isfinite(e.numpy()).all() and np.isfinite(
                tf.cast(d, tf.float32).numpy()).all()),
        }
    return out


def main(argv):
    del argv
    from rlra_tf import data

    env = harness.environment()
    x, y = next(iter(data.load("fashion_mnist", "train", _BATCH.value, limit=_BATCH.value)))
    configs = [(p, r) for p in POLICIES for r in RULES]
    models = {}
    start = time.time()
    for policy, rule in configs:
        print(f"build {policy} {rule}", flush=True)
        models[(policy, rule)] = build(policy, rule, x, y)
    timings = {c: ([], []) for c in configs}
    for r in range(_REPEATS.value):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            wall, cpu = time_steps(models[c], x, y, _STEPS.value)
            timings[c][0].extend(wall)
            timings[c][1].extend(cpu)
        print(f"round {r + 1}/{_REPEATS.value} done (load {os.getloadavg()[0]:.1f})", flush=True)
    rows = []
    for policy, rule in configs:
        wall, cpu = timings[(policy, rule)]
        rows.append({"policy": policy, "rule": rule, "median_step_seconds": statistics.median(wall),
                     "median_cpu_seconds": statistics.median(cpu), "step_seconds": wall,
                     "cpu_seconds": cpu})
    headroom = float16_headroom(models[("mixed_float16", "rec_lra")], x, y)
    result = {
        "benchmark": os.path.splitext(os.path.basename(_OUT.value))[0],
        **env,
        "settings": {"model": "resnet20 (CIFAR stem), 28x28x1, 10 classes",
                     "batch_size": _BATCH.value, "steps_per_round": _STEPS.value,
                     "repeats": _REPEATS.value, "optimizer": "SGD(0.05, momentum=0.9)",
                     "jit_compile": False, "wall_seconds": time.time() - start},
        "results": rows,
        "float16_headroom": headroom,
    }
    harness.write_json(_OUT.value, result)
    f32 = {r["rule"]: r for r in rows if r["policy"] == "float32"}
    print(f"\n{'policy':16} {'rule':8} {'step s':>7} {'cpu s':>7} {'cpu x f32':>9}")
    for r in rows:
        print(f"{r['policy']:16} {r['rule']:8} {r['median_step_seconds']:7.2f} "
              f"{r['median_cpu_seconds']:7.2f} "
              f"{r['median_cpu_seconds'] / f32[r['rule']]['median_cpu_seconds']:9.2f}")
    worst = max(headroom.values(), key=lambda m: m["max_abs_displacement"])
    print(f"float16: largest |e| {max(m['max_abs_error'] for m in headroom.values()):.3g}, "
          f"largest |F e| {worst['max_abs_displacement']:.3g}, largest |h| "
          f"{max(m['max_abs_pre_activation'] for m in headroom.values()):.3g} (float16 max "
          f"65504); all finite: {all(m['finite'] for m in headroom.values())}")
    print(f"Wrote {_OUT.value} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)
