"""Summaries of per-epoch test-accuracy runs (the accuracy benchmarks and the report share them).

A run is `{"rule": name, "seed": int, "final_test_accuracy": fraction, "epochs": [{"epoch": 1,
"test_accuracy": fraction, "test_loss": float, "epoch_seconds": s}, ...],
"mean_seconds_per_epoch": s, "wall_seconds": s}` (the sweep's runs also have a `setting`).
"""

THRESHOLDS = (0.85, 0.88)


def _mean(values):
    return sum(values) / len(values) if values else None


def time_to_reach(record, threshold):
    """`(epochs, seconds)` at which `record` first reached `threshold` test accuracy, or None.

    Seconds are the trainer's epoch times summed up to and including that epoch.
    """
    seconds = 0.0
    for e in record["epochs"]:
        seconds += e["epoch_seconds"] or 0.0
        if e["test_accuracy"] >= threshold:
            return e["epoch"], seconds
    return None


def summarize(runs, thresholds=THRESHOLDS, key="rule"):
    """Per `key` (the rule variant, or the sweep's `setting`): final test accuracy mean, std,
    min and max over seeds, curves, time per epoch and epochs/seconds to each threshold (mean
    over the seeds that reached it; `reached` counts them)."""
    out = {}
    for name in dict.fromkeys(r[key] for r in runs):
        rs = [r for r in runs if r[key] == name]
        finals = [r["final_test_accuracy"] for r in rs]
        n_epochs = min(len(r["epochs"]) for r in rs)
        curve = [_mean([r["epochs"][i]["test_accuracy"] for r in rs]) for i in range(n_epochs)]
        lo = [min(r["epochs"][i]["test_accuracy"] for r in rs) for i in range(n_epochs)]
        hi = [max(r["epochs"][i]["test_accuracy"] for r in rs) for i in range(n_epochs)]
        loss = [_mean([r["epochs"][i].get("test_loss") for r in rs
                       if r["epochs"][i].get("test_loss") is not None]) for i in range(n_epochs)]
        reach = {}
        for t in thresholds:
            hits = [time_to_reach(r, t) for r in rs]
            got = [h for h in hits if h is not None]
            reach[f"{t:.2f}"] = {
                "reached": len(got),
                "runs": len(rs),
                "epochs_mean": _mean([h[0] for h in got]),
                "seconds_mean": _mean([h[1] for h in got]),
            }
        spe = [r["mean_seconds_per_epoch"] for r in rs if r.get("mean_seconds_per_epoch")]
        mean = _mean(finals)
        out[name] = {
            "label": rs[0].get("label", name),
            "seeds": [r["seed"] for r in rs],
            "final_test_accuracy_mean": mean,
            "final_test_accuracy_min": min(finals),
            "final_test_accuracy_max": max(finals),
            "final_test_accuracy_std": (
                (sum((f - mean) ** 2 for f in finals) / (len(finals) - 1)) ** 0.5
                if len(finals) > 1 else None),
            "test_accuracy_per_epoch_mean": curve,
            "test_accuracy_per_epoch_min": lo,
            "test_accuracy_per_epoch_max": hi,
            "test_loss_per_epoch_mean": loss,
            "seconds_per_epoch_mean": _mean(spe),
            "wall_seconds_mean": _mean([r["wall_seconds"] for r in rs]),
            "wall_seconds_including_tests_mean": _mean(
                [r["wall_seconds_including_per_epoch_tests"] for r in rs]),
            "reach": reach,
        }
    return out
