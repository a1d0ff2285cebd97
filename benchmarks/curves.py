"""Summaries of per-epoch test-accuracy runs (the accuracy benchmarks and the report share them).

A run is `{"variant" or "rule": name, "seed": int, "final_test_accuracy": fraction,
"epochs": [{"epoch": 1, "test_accuracy": fraction, "test_loss": float, "epoch_seconds": s},
...], "mean_seconds_per_epoch": s, "wall_seconds": s}`.
"""

THRESHOLDS = (0.85, 0.88)


def _name(run):
    return run.get("variant") or run["rule"]


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


def summarize(runs, thresholds=THRESHOLDS):
    """Per variant: final test accuracy mean/min/max over seeds, curves, time per epoch and
    epochs/seconds to each threshold (mean over the seeds that reached it; `reached` counts
    them)."""
    out = {}
    for name in dict.fromkeys(_name(r) for r in runs):
        rs = [r for r in runs if _name(r) == name]
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
                "per_seed": [None if h is None else {"epochs": h[0], "seconds": h[1]}
                             for h in hits],
            }
        spe = [r["mean_seconds_per_epoch"] for r in rs if r.get("mean_seconds_per_epoch")]
        walls = [r["wall_seconds"] for r in rs if r.get("wall_seconds") is not None]
        out[name] = {
            "label": rs[0].get("label", name),
            "seeds": [r["seed"] for r in rs],
            "final_test_accuracy_mean": _mean(finals),
            "final_test_accuracy_min": min(finals),
            "final_test_accuracy_max": max(finals),
            "final_test_accuracy_std": (
                (sum((f - _mean(finals)) ** 2 for f in finals) / (len(finals) - 1)) ** 0.5
                if len(finals) > 1 else None),
            "final_test_loss_mean": _mean([r["final_test_loss"] for r in rs
                                           if r.get("final_test_loss") is not None]),
            "test_accuracy_per_epoch_mean": curve,
            "test_accuracy_per_epoch_min": lo,
            "test_accuracy_per_epoch_max": hi,
            "test_loss_per_epoch_mean": loss,
            "seconds_per_epoch_mean": _mean(spe),
            "wall_seconds_mean": _mean(walls),
            "reach": reach,
        }
    return out
