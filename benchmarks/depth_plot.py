"""The depth study's plot: each rule's gap to backprop against the ResNet's depth.

Reads the depth study's results as the report does (`resnet_accuracy.json` for ResNet-20,
`resnet32_accuracy.json` and `resnet56_accuracy.json`, written by
`benchmarks/resnet_accuracy.py --model=...`; the full suite's where present, else the quick
suite's), and draws bp's mean final test accuracy minus each rule's (points) against the depth,
one line per rule (bp is the zero line), with the bar of the scale issue at ResNet-56. It trains
nothing; the full suite runs it after the depth runs.

    python -m benchmarks.depth_plot       # benchmarks/results/resnet_depth.png (and .json)

Writes `resnet_depth.png` beside `--out` and, at `--out`, the gaps it plotted with the files
they came from.
"""

import json
import os

from absl import app, flags

from benchmarks.environment import environment
from benchmarks.report_common import load_results, ordered
from benchmarks.report_scale import depth_summaries
from benchmarks.report_scale_verdicts import DEPTH_BAR, depth_gaps, depth_label, depth_of

_OUT = flags.DEFINE_string(
    "out", "benchmarks/results/resnet_depth.json",
    "The JSON of the plotted gaps (the PNG goes beside it).",
)
_RESULTS = flags.DEFINE_string(
    "results", None, "The folder of the depth study's JSON (default: --out's folder).",
)


def plot(gaps, seeds, path):
    """`gaps`: `depth_gaps`' `{rule: {model: points}}`; `seeds`: `{model: {rule: n}}`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.3))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, rule in enumerate(ordered(gaps)):
        models = sorted(gaps[rule], key=depth_of)
        xs = [depth_of(m) for m in models]
        ys = [gaps[rule][m] for m in models]
        n = sorted({seeds.get(m, {}).get(rule, 0) for m in models})
        label = f"{rule} ({'/'.join(map(str, n))} seed{'s' if n != [1] else ''})"
        ax.plot(xs, ys, marker="o", color=f"C{i}", label=label,
                linestyle="--" if rule == "bp" else "-")
        for x, y in zip(xs, ys):
            if rule != "bp":
                ax.annotate(f"{y:+.1f}", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize="x-small", color=f"C{i}")
    deepest = depth_of(DEPTH_BAR["models"][-1])
    ax.plot([deepest], [DEPTH_BAR["max_gap_at_deepest"]], marker="v", color="k", linestyle="",
            label=f"bar: rec_lra at {depth_label(DEPTH_BAR['models'][-1])} <= "
                  f"{DEPTH_BAR['max_gap_at_deepest']}")
    ax.set_xticks([depth_of(m) for m in DEPTH_BAR["models"]])
    ax.set_xlabel("ResNet depth (CIFAR family, Fashion-MNIST, 12,800 examples, 3 epochs)")
    ax.set_ylabel("bp minus the rule, final test accuracy (points)")
    ax.set_title("Gap to backprop against depth (mean over seeds; above 0: below bp)",
                 fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    out = _OUT.value
    folder = _RESULTS.value or os.path.dirname(out) or "."
    summaries, sources = depth_summaries(load_results(folder))
    if not summaries:
        raise app.UsageError(f"No depth study results in {folder} (resnet_accuracy.json, "
                             "resnet32_accuracy.json, resnet56_accuracy.json)")
    gaps = depth_gaps(summaries)
    seeds = {m: {r: len(s.get("seeds") or []) for r, s in summary.items()}
             for m, summary in summaries.items()}
    png = os.path.splitext(out)[0] + ".png"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    plot(gaps, seeds, png)
    result = {"benchmark": "resnet_depth", **environment(), "gaps": gaps, "seeds": seeds,
              "sources": {m: {"path": s.path, "suite": s.suite, "date": s.data.get("date")}
                          for m, s in sources.items()},
              "png": png}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    for rule in ordered(gaps):
        print(f"{rule:10} " + "  ".join(f"{depth_label(m)} {g:+6.2f}"
                                        for m, g in sorted(gaps[rule].items(),
                                                           key=lambda kv: depth_of(kv[0]))))
    print(f"Wrote {out} and {png}")


if __name__ == "__main__":
    app.run(main)
