"""The depth study's plot: each rule's gap to backprop against the ResNet's depth.

Reads the depth study's results as the report does (the files of the claim `scaling.depth`:
`accuracy_resnet20.json`, `accuracy_resnet32.json`, `accuracy_resnet56.json`, written by
`benchmarks.accuracy.train --model=...`; the full suite's where present, else the quick
suite's), and draws bp's mean final test accuracy minus each rule's (points) against the depth,
one line per rule (bp is the zero line), with the claim's bar at ResNet-56. It trains nothing;
the full suite runs it after the depth runs.

    python -m benchmarks.accuracy.depth_plot   # benchmarks/results/accuracy_depth.png and .json

Writes the PNG beside `--out` and, at `--out`, the gaps it plotted with the files they came
from.
"""

import os

from absl import app, flags

from benchmarks import harness, variants
from benchmarks.report import claims
from benchmarks.report.results import Results
from benchmarks.report.summaries import depth_gaps, depth_label, depth_of

_OUT = flags.DEFINE_string("out", harness.default_out("accuracy_depth"),
                           "The JSON of the plotted gaps (the PNG goes beside it).")
_RESULTS = flags.DEFINE_string(
    "results", None, "The folder of the depth study's JSON (default: --out's folder).",
)


ZOOM = 5.0  # points: the right-hand panel shows the rules whose gaps all stay within this


def plot(gaps, seeds, path, budget=""):
    """`gaps`: `depth_gaps`' `{rule: {model: points}}`; `seeds`: `{model: {rule: n}}`;
    `budget`: what the runs trained on, for the title. Left: every rule; right (when a rule is
    far behind): the rules within `ZOOM` points of bp."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rules = variants.ordered(gaps)
    close = [r for r in rules if all(abs(g) <= ZOOM for g in gaps[r].values())]
    panels = [(rules, "every rule")] + (
        [(close, f"zoom: the rules within {ZOOM:.0f} points of bp")]
        if len(close) < len(rules) else [])
    fig = Figure(figsize=(6.0 * len(panels), 4.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    bar = claims.CLAIMS["scaling.depth"].bar
    deepest = bar["models"][-1]
    for ax, (shown, title) in zip(axes, panels):
        for rule in shown:
            i = rules.index(rule)
            models = sorted(gaps[rule], key=depth_of)
            xs = [depth_of(m) for m in models]
            ys = [gaps[rule][m] for m in models]
            n = sorted({seeds.get(m, {}).get(rule, 0) for m in models})
            ax.plot(xs, ys, marker="o", color=f"C{i}", linestyle="--" if rule == "bp" else "-",
                    label=f"{rule} ({'/'.join(map(str, n))} seed{'s' if n != [1] else ''})")
            if rule != "bp" and (len(panels) == 1 or rule in close) == (ax is axes[-1]):
                for x, y in zip(xs, ys):
                    ax.annotate(f"{y:+.2f}", (x, y), textcoords="offset points",
                                xytext=(5, 6 - 12 * (i % 2)), fontsize="x-small", color=f"C{i}")
        ax.plot([depth_of(deepest)], [bar["max_gap_at_deepest"]], marker="v", color="k",
                linestyle="", label=f"bar: rec_lra at {depth_label(deepest)} <= "
                                    f"{bar['max_gap_at_deepest']}")
        ax.set_xticks([depth_of(m) for m in bar["models"]])
        ax.set_xlabel("ResNet depth (CIFAR family)")
        ax.margins(x=0.1)
        ax.set_title(title, fontsize="small")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("bp minus the rule, final test accuracy (points)")
    fig.suptitle("Gap to backprop against depth on Fashion-MNIST (means over seeds; above 0: "
                 "below bp)" + (f"\n{budget}" if budget else ""), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _budget(budget):
    return (f"{budget['train_examples']} training examples, {budget['epochs']} epochs, "
            f"{budget['optimizer']} lr {budget['learning_rate']}")


def main(argv):
    del argv
    out = _OUT.value
    folder = _RESULTS.value or os.path.dirname(out) or "."
    summaries, sources = claims.depth_summaries(Results(folder),
                                                claims.CLAIMS["scaling.depth"].bar)
    if not summaries:
        raise app.UsageError(f"No depth study results in {folder} (accuracy_resnet20.json, "
                             "accuracy_resnet32.json, accuracy_resnet56.json)")
    gaps = depth_gaps(summaries)
    seeds = {m: {r: len(s["seeds"]) for r, s in summary.items()}
             for m, summary in summaries.items()}
    budgets = sorted({_budget(s.data["budget"]) for s in sources.values()})
    plot(gaps, seeds, harness.png_path(out), " | ".join(budgets))
    result = {"benchmark": os.path.splitext(os.path.basename(out))[0], **harness.environment(),
              "gaps": gaps, "seeds": seeds,
              "sources": {m: {"path": s.shown_path, "suite": s.suite, "date": s.date}
                          for m, s in sources.items()}}
    harness.write_json(out, result)
    for rule in variants.ordered(gaps):
        print(f"{rule:10} " + "  ".join(f"{depth_label(m)} {g:+6.2f}"
                                        for m, g in sorted(gaps[rule].items(),
                                                           key=lambda kv: depth_of(kv[0]))))
    print(f"Wrote {out} and {harness.png_path(out)}")


if __name__ == "__main__":
    app.run(main)
