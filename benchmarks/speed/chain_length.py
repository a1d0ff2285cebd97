"""The longest chain of dependent ops from the output error to the last weight update, per rule.

For MLPs and ResNets of several depths, traces the per-replica update computation of every
rule (`rlra_tf.diagnostics.update_chain`) and counts the ops on the longest data-dependency
path from the logits' op to any op producing an update handed to the optimiser, bookkeeping
ops (identities, constants, variable reads, shape manipulation) excluded. Backprop's chain
runs back through every layer, and so does rec-LRA's default (`feedback="adjacent"`: targets
pass unit by unit); with skip synapses it goes from the output error through one skip synapse
into one block. The count depends on the graph only (not on widths or batch size).

`--rules` takes the rule variants of `benchmarks.variants`: `rec_lra-skip_synapses` is the
default rule with `feedback="skip"` (block outputs take their displacement from the output
error through their skip synapse, so no block waits for the block above).

    python -m benchmarks.speed.chain_length                 # about 2 minutes on 2 cores
    python -m benchmarks.speed.chain_length --models=mlp2,mlp8,resnet20,resnet18

Writes `benchmarks/results/speed_chain_length.json` and a PNG beside it, and prints a table.
"""

import os
import time

from absl import app, flags

from benchmarks import harness, variants

DEFAULT_MODELS = ("mlp2", "mlp4", "mlp8", "resnet8", "resnet14", "resnet20", "resnet18")

_MODELS = flags.DEFINE_list(
    "models", list(DEFAULT_MODELS),
    "mlpN (N tanh hidden units of width 16, blocks of one unit) or resnetN (a ResNet preset or "
    "depth of rlra_tf.models.resnet; ImageNet-family nets at 32x32x3 input).",
)
DEFAULT_RULES = variants.RULES + ("rec_lra-skip_synapses",)

_RULES = flags.DEFINE_list("rules", list(DEFAULT_RULES),
                           "Rule variants to measure (benchmarks.variants).")
_OUT = flags.DEFINE_string("out", harness.default_out("speed_chain_length"),
                           "The JSON results (the PNG goes beside it).")


def build(name):
    """`(model, input_shape, family, depth in units)` for a model name of `--models`."""
    import keras

    from rlra_tf.models import mlp

    keras.utils.set_random_seed(0)
    if name.startswith("mlp") and name[3:].isdigit():
        depth = int(name[3:])
        model = mlp((16,), hidden_units=(16,) * depth, num_classes=10)
        return model, (16,), "mlp", len(model.unit_layers)
    if name.startswith("resnet"):
        from rlra_tf.models import resnet

        preset = name if not name[6:].isdigit() else int(name[6:])
        if preset in (18, 34, 50):
            preset = f"resnet{preset}"
        model = resnet(preset, input_shape=(32, 32, 3), num_classes=10)
        return model, (32, 32, 3), "resnet", len(model.unit_layers)
    raise ValueError(f"Expected a model name like mlp4 or resnet20, received: {name!r}")


def measure(names, rules):
    from rlra_tf import rules as rules_lib
    from rlra_tf.diagnostics import update_chain

    rows = []
    for name in names:
        model, input_shape, family, depth = build(name)
        for rule in rules:
            model.compile(optimizer="sgd", rule=variants.make_rule(rule))
            start = time.perf_counter()
            chain = update_chain(model, input_shape)
            rows.append({
                "model": name,
                "family": family,
                "units": depth,
                "blocks": len(model.blocks),
                "rule": rule,
                "rule_config": rules_lib.serialize(model.rule),
                "chain_ops": chain.compute_ops,
                "chain_ops_all": chain.ops,
                "graph_ops": chain.num_ops,
                "path": chain.path,
                "trace_seconds": time.perf_counter() - start,
            })
            print(f"{name:10} {rule:12} units={depth:3d} chain={chain.compute_ops:4d} "
                  f"(all ops {chain.ops:4d}, graph {chain.num_ops:5d})", flush=True)
    return rows


def plot(rows, rules, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    families = [f for f in ("mlp", "resnet") if any(r["family"] == f for r in rows)]
    fig = Figure(figsize=(5.5 * len(families), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, family in zip(axes, families):
        for i, rule in enumerate(rules):
            points = sorted((r["units"], r["chain_ops"]) for r in rows
                            if r["family"] == family and r["rule"] == rule)
            if points:
                ax.plot(*zip(*points), marker="o", color=f"C{i}", label=rule)
        ax.set_xlabel("parameterised units (depth)")
        ax.set_ylabel("ops on the longest error-to-update chain")
        ax.set_title(f"{family}: sequential depth of one update")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    try:
        rules = variants.check(_RULES.value)
    except ValueError as err:  # a bad name fails before any tracing
        raise app.UsageError(str(err)) from None
    env = harness.environment()
    rows = measure(_MODELS.value, rules)
    png = harness.png_path(_OUT.value)
    result = {
        "benchmark": os.path.splitext(os.path.basename(_OUT.value))[0],
        "definition": (
            "ops on the longest data-dependency path in the traced per-replica update "
            "computation, from the op producing the logits (excluded) to any op producing an "
            "update handed to the optimiser; Identity/NoOp/Const/Placeholder/StopGradient/"
            "ReadVariableOp, shape-only ops and Cast count 0 (rlra_tf.diagnostics."
            "BOOKKEEPING_OPS); control edges ignored"
        ),
        **env,
        "results": rows,
    }
    harness.write_json(_OUT.value, result)
    plot(rows, rules, png)
    models = list(dict.fromkeys(r["model"] for r in rows))
    print(f"\n{'model':10} {'units':>5} " + " ".join(f"{r:>22}" for r in rules))
    for name in models:
        by_rule = {r["rule"]: r for r in rows if r["model"] == name}
        units = next(iter(by_rule.values()))["units"]
        print(f"{name:10} {units:5d} " + " ".join(
            f"{by_rule[r]['chain_ops']:22d}" if r in by_rule else f"{'-':>22}" for r in rules))
    print(f"Wrote {_OUT.value} and {png}")


if __name__ == "__main__":
    app.run(main)
