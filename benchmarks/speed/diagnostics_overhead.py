"""How much `AlignmentDiagnostics` slows training down at its default interval.

Trains the paper's MLP (784-256-256-256-10, tanh) on Fashion-MNIST (or synthetic data of the
same shape with `--data=synthetic`) with and without the callback, alternating the two arms
`--repeats` times, and reports the wall-clock overhead of one `fit` call of `--steps` steps
(probe tracing and the extra probes at the start and end of training included), plus the
steady-state estimate `probe time / (every_n_steps * step time)` from medians. On a shared
machine the end-to-end numbers are noisy: the JSON keeps every timing, and the table shows the
median and the min-to-min ratios.

    python -m benchmarks.speed.diagnostics_overhead              # ~8 minutes on 2 cores
    python -m benchmarks.speed.diagnostics_overhead --data=synthetic --steps=600

Writes `benchmarks/results/speed_diagnostics.json` and prints a table.
"""

import os
import statistics
import time

from absl import app, flags

from benchmarks import harness, variants

_DATA = flags.DEFINE_enum("data", "fashion_mnist", ["fashion_mnist", "synthetic"], "Data.")
_RULES = flags.DEFINE_list("rules", ["rec_lra", "bp"],
                           "Rule variants to measure (benchmarks.variants).")
_STEPS = flags.DEFINE_integer("steps", 3600, "Training steps per timed fit (1200 = 1 epoch).")
_BATCH = flags.DEFINE_integer("batch_size", 50, "Training batch size (the paper's).")
_PROBE = flags.DEFINE_integer("probe_size", 256, "Probe batch size.")
_EVERY = flags.DEFINE_integer("every_n_steps", None, "Probe interval (default: the callback's).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed fits per arm.")
_OUT = flags.DEFINE_string("out", harness.default_out("speed_diagnostics"),
                           "Where to write the JSON results.")


def _data(batch_size, probe_size):
    """`(training dataset repeated forever, probe_x, probe_y, source name)`."""
    import numpy as np
    import tensorflow as tf

    if _DATA.value == "fashion_mnist":
        from rlra_tf import data

        try:
            train = data.load("fashion_mnist", "train", batch_size, repeat=True, seed=0)
            probe = next(iter(data.load("fashion_mnist", "validation", probe_size)))
            return train, probe[0].numpy(), probe[1].numpy(), "fashion_mnist"
        except data.DatasetUnavailableError as err:
            print(f"Fashion-MNIST unavailable ({err}); using synthetic data.")
    rng = np.random.RandomState(0)
    x = rng.rand(4096, 28, 28, 1).astype("float32")
    y = rng.randint(0, 10, 4096).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(4096, seed=0)
    train = train.batch(batch_size, drop_remainder=True).repeat().prefetch(2)
    return train, x[:probe_size], y[:probe_size], "synthetic"


def _model(rule):
    import keras

    from rlra_tf.models import mlp

    keras.utils.set_random_seed(0)
    model = mlp((28, 28, 1), hidden_units=(256, 256, 256), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), rule=variants.make_rule(rule),
                  metrics=["accuracy"])
    return model


def measure(rule, train, probe_x, probe_y, steps, every_n_steps, repeats):
    import numpy as np

    from rlra_tf.diagnostics import AlignmentDiagnostics

    kwargs = {} if every_n_steps is None else {"every_n_steps": every_n_steps}
    model = _model(rule)
    model.fit(train, steps_per_epoch=20, epochs=1, verbose=0)  # trace the training step
    first = AlignmentDiagnostics(probe_x, probe_y, **kwargs)
    first.set_model(model)
    start = time.perf_counter()
    first.run_probe()  # tracing + graph optimisation + one run: paid once per callback
    first_probe = time.perf_counter() - start
    plain, probed, probes = [], [], []
    for r in range(repeats):
        diag = AlignmentDiagnostics(probe_x, probe_y, **kwargs)
        for arm in ("plain", "probed") if r % 2 == 0 else ("probed", "plain"):
            callbacks = [diag] if arm == "probed" else []
            start = time.perf_counter()
            model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks)
            (probed if arm == "probed" else plain).append(time.perf_counter() - start)
        probes.append(len(diag.history))
    # Steady state: the median probe (already traced) against the median training step.
    probe_times = []
    for _ in range(5):
        start = time.perf_counter()
        diag.run_probe()
        probe_times.append(time.perf_counter() - start)
    step_time = statistics.median(plain) / steps
    probe_time = statistics.median(probe_times)
    return {
        "rule": rule,
        "every_n_steps": diag.every_n_steps,
        "steps": steps,
        "fit_seconds_plain": plain,
        "fit_seconds_with_diagnostics": probed,
        "probes_per_fit": probes,
        "overhead_fit": statistics.median(probed) / statistics.median(plain) - 1.0,
        "overhead_fit_min": min(probed) / min(plain) - 1.0,
        "first_probe_seconds": first_probe,
        "step_seconds": step_time,
        "probe_seconds": probe_time,
        "overhead_steady_state": probe_time / (diag.every_n_steps * step_time),
        "final_angles": {k: v.get("angle") for k, v in diag.history[-1]["units"].items()},
        "final_angles_mean": float(
            np.mean([v["angle"] for v in diag.history[-1]["units"].values() if v.get("angle")
                     is not None])
        ),
    }


def main(argv):
    del argv
    try:
        rules = variants.check(_RULES.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    env = harness.environment()
    train, probe_x, probe_y, source = _data(_BATCH.value, _PROBE.value)
    rows = [
        measure(rule, train, probe_x, probe_y, _STEPS.value, _EVERY.value, _REPEATS.value)
        for rule in rules
    ]
    result = {
        "benchmark": os.path.splitext(os.path.basename(_OUT.value))[0],
        "data": source,
        "model": "mlp 784-256-256-256-10 tanh",
        "batch_size": _BATCH.value,
        "probe_size": _PROBE.value,
        **env,
        "results": rows,
    }
    harness.write_json(_OUT.value, result)
    print(f"{'rule':8} {'every':>5} {'plain s':>8} {'diag s':>8} {'fit ovh':>8} {'(min)':>7} "
          f"{'1st s':>6} {'probe ms':>8} {'step ms':>8} {'steady':>7}")
    for r in rows:
        plain = statistics.median(r["fit_seconds_plain"])
        probed = statistics.median(r["fit_seconds_with_diagnostics"])
        print(
            f"{r['rule']:8} {r['every_n_steps']:5d} {plain:8.2f} {probed:8.2f} "
            f"{100 * r['overhead_fit']:7.1f}% {100 * r['overhead_fit_min']:6.1f}% "
            f"{r['first_probe_seconds']:6.2f} {1000 * r['probe_seconds']:8.1f} "
            f"{1000 * r['step_seconds']:8.2f} {100 * r['overhead_steady_state']:6.1f}%"
        )
    print(f"Wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
