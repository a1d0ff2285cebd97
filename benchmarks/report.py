"""Writes `BENCHMARKS.md` from the benchmark JSON files: every measured number comes from a run.

Reads `benchmarks/results/<name>.json` (the full suite) and, for a benchmark the full suite has
not produced, `benchmarks/results/quick/<name>.json` (the quick suite); every table says which
suite, date and machine it came from. Missing results are rendered as "not run yet". The only
numbers typed here are the *published* ones (docs/ALGORITHM.md section 8) and the bars of the
issues, both quoted as such.

    python -m benchmarks.report                      # rewrites BENCHMARKS.md
    python -m benchmarks.report --out=/tmp/B.md --results=benchmarks/results

The verdict functions (`*_verdict`) are pure: summaries in, `Verdict` out.

This module frames the report (the header with the table of sources, the verdicts at a glance,
the GPU/TPU presets) and puts it together (`render`, `main`); the rest lives beside it:

    report_common.py          the result files (`load_results`, `Source`), published
                              figures, the order of the rules, Markdown helpers
    report_verdicts.py        the bars of every issue, the summaries and the pure verdict
                              functions of claims 1-4 and issues 2 and 3
    report_rev2_verdicts.py   the verdicts of the revision-2 issue and of issue 12, and the
                              summaries they take
    report_accuracy.py        claims 1 and 2, the bars of issues 2 and 3 (superseded)
    report_speed.py           claim 3: step time and chain length
    report_diagnostics.py     claim 4 (alignment) and the diagnostics overhead
    report_rev2.py            "Revision 2: rec-LRA on ResNets"
    report_mixed_precision.py "Mixed precision" (issue 12)
    report_scale_verdicts.py  the bars and verdicts of the scale issue (depth, full data,
                              alignment over training) and the summaries they take
    report_scale.py           "Scale: depth, full data, alignment over training", with
                              "converges sooner" on the ResNet runs
    report_export.py          export parity

Their public names are re-exported here (`report.step_rows`, `report.HOLDS`, ...).
"""

import json
import os
import platform
import time

from benchmarks.report_accuracy import (
    accuracy_table,
    section_converge,
    section_generalise,
    section_mlp_bar,
    section_resnet_bar,
)
from benchmarks.report_common import (
    BENCHMARKS,
    PUBLISHED,
    PUBLISHED_SOURCE,
    QUICK,
    RESULTS_DIR,
    RULE_ORDER,
    SCRIPTS,
    Source,
    invocations,
    load_results,
    mean_spread,
    ordered,
    pct,
    table,
)
from benchmarks.report_diagnostics import section_alignment, section_overhead
from benchmarks.report_export import section_export
from benchmarks.report_mixed_precision import section_mixed_precision
from benchmarks.report_peers import section_peers
from benchmarks.report_rev2 import section_rev2
from benchmarks.report_rev2_verdicts import (
    bar_conditions,
    float16_headroom_verdict,
    hyper_parameter_differences,
    mixed_precision_verdict,
    precision_pairs,
    rev2_mlp_verdict,
    rev2_resnet_verdict,
    sgd_recipe_verdict,
    step_conditions,
    step_cost_verdict,
)
from benchmarks.report_scale import section_scale
from benchmarks.report_scale_verdicts import (
    ALIGNED_DEGREES,
    DEPTH_BAR,
    FULL_DATA_BAR,
    RESNET_THRESHOLDS,
    alignment_rows,
    depth_conditions,
    depth_gaps,
    depth_verdict,
    full_data_conditions,
    full_data_verdict,
    mirror_verdict,
)
from benchmarks.report_speed import section_cheaper
from benchmarks.report_verdicts import (
    FAILS,
    FLOAT16_MAX,
    GENERALISE_TOLERANCE,
    HOLDS,
    MIXED_PRECISION_BAR,
    MLP_BAR,
    OVERHEAD_BAR,
    RESNET_BAR,
    REV2_MLP_BAR,
    REV2_RESNET_BAR,
    REV2_SGD_BAR,
    STEP_COST_BAR,
    UNKNOWN,
    Verdict,
    accuracy_summary,
    alignment_verdict,
    best_step_times,
    chain_verdict,
    convergence_verdicts,
    generalisation_verdict,
    mlp_bar_verdict,
    overhead_verdict,
    resnet_bar_verdict,
    step_rows,
    step_time_verdict,
)

__all__ = [
    # report_common
    "BENCHMARKS", "PUBLISHED", "PUBLISHED_SOURCE", "QUICK", "RESULTS_DIR", "RULE_ORDER",
    "SCRIPTS", "Source", "load_results", "mean_spread", "ordered", "pct", "table",
    # report_verdicts
    "FAILS", "FLOAT16_MAX", "GENERALISE_TOLERANCE", "HOLDS", "MIXED_PRECISION_BAR", "MLP_BAR",
    "OVERHEAD_BAR", "RESNET_BAR", "REV2_MLP_BAR", "REV2_RESNET_BAR", "REV2_SGD_BAR",
    "STEP_COST_BAR", "UNKNOWN", "Verdict", "accuracy_summary", "alignment_verdict",
    "best_step_times", "chain_verdict", "convergence_verdicts", "generalisation_verdict",
    "mlp_bar_verdict", "overhead_verdict", "resnet_bar_verdict", "step_rows",
    "step_time_verdict",
    # report_rev2_verdicts
    "bar_conditions", "float16_headroom_verdict", "hyper_parameter_differences",
    "mixed_precision_verdict", "precision_pairs", "rev2_mlp_verdict", "rev2_resnet_verdict",
    "sgd_recipe_verdict", "step_conditions", "step_cost_verdict",
    # report_scale_verdicts
    "ALIGNED_DEGREES", "DEPTH_BAR", "FULL_DATA_BAR", "RESNET_THRESHOLDS", "alignment_rows",
    "depth_conditions", "depth_gaps", "depth_verdict", "full_data_conditions",
    "full_data_verdict", "mirror_verdict",
    # the sections
    "accuracy_table", "section_alignment", "section_cheaper", "section_converge",
    "section_export", "section_generalise", "section_mixed_precision", "section_mlp_bar",
    "section_overhead", "section_peers", "section_resnet_bar", "section_rev2", "section_scale",
    # this module
    "CLOUD_PRESETS", "main", "render", "section_cloud", "section_header", "section_summary",
]

CLOUD_PRESETS = ("fmnist_resnet20", "cifar10_resnet20", "cifar10_resnet18", "imagenet_resnet18",
                 "imagenet_resnet50")


def section_header(results, root, results_dir=RESULTS_DIR):
    from benchmarks.environment import environment

    env = environment()
    m, v = env["machine"], env["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.report` from the JSON files in "
        "`benchmarks/results/` (the full suite, `make bench-full`) or, where the full suite "
        "has not produced a file, `benchmarks/results/quick/` (`make bench`). Do not edit by "
        "hand: every measured number below comes from those files. Published numbers are "
        f"quoted from {PUBLISHED_SOURCE} (published without error bars).",
        "",
        f"Report generated {env['date']} on {m['platform']} ({m['processor']}, {m['cpus']} "
        f"CPUs, no GPU); TensorFlow {v['tensorflow']}, Keras {v['keras']}, Python "
        f"{v['python']}.",
        "",
        "| benchmark | script | suite | date | machine | load average in the file (1, 5, 15 min) |",
        "|---|---|---|---|---|---|",
    ]
    logs = {}
    for suite, folder in (("full", results_dir), ("quick", os.path.join(results_dir, QUICK))):
        log = _read(os.path.join(folder, "suite_run.json"))
        if log:
            logs[os.path.abspath(folder)] = log
            states = {}
            for b in log.get("benchmarks", []):
                states.setdefault(b["status"].split(" ")[0], []).append(b["name"])
            where = _machine(log.get("machine") or {})
            loads = ""
            if log.get("load_before") and log.get("load_after"):
                loads = (f", load {_load(log['load_before'])} at the start and "
                         f"{_load(log['load_after'])} at the end")
            lines.insert(-2, f"The {suite} suite (`python -m benchmarks.run --suite={suite}`) "
                         f"last ran {log.get('date', '?')}"
                         + (f" on {where}{loads}" if where != "n/a" else "")
                         + (f" and took {log.get('total_seconds', 0) / 60:.1f} minutes ("
                            if log.get("complete", True) else
                            f" and had run {log.get('total_seconds', 0) / 60:.1f} minutes when "
                            "last recorded: still running, or interrupted (")
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in states.items())
                         + ").\n")
    for name in BENCHMARKS:
        script = " then ".join(f"`{x}`" for x in invocations(name))
        s = results.get(name)
        if s is None:
            lines.append(f"| {name} | {script} | not run yet | | | |")
            continue
        mach = s.data.get("machine") or {}
        lines.append(
            f"| {name} | {script} | {s.suite} | {s.data.get('date', 'not recorded')} | "
            f"{_machine(mach)} | {_file_load(s, mach, logs)} |")
    return "\n".join(lines)


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _machine(machine):
    if not machine:
        return "n/a"
    return f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs"


def _load(load_average):
    """`"6.9, 6.1, 5.7"` from a `load_average` list, "n/a" without one."""
    if not load_average:
        return "n/a"
    return ", ".join(f"{x:.1f}" for x in load_average)


def _file_load(source, machine, logs):
    """The load a result file records (when it was written, and after, where recorded), and the
    load before and after its benchmark in the suite run that wrote it, if one did."""
    text = _load(machine.get("load_average"))
    if machine.get("load_average_after"):
        text += f" (after: {_load(machine['load_average_after'])})"
    log = logs.get(os.path.dirname(source.path)) or {}
    date = source.data.get("date")
    for b in log.get("benchmarks", []):
        if b.get("name") == source.name and date and b.get("started") and b.get("finished") \
                and b["started"] <= date <= b["finished"] and b.get("load_before"):
            text += (f"; suite run: {_load(b['load_before'])} before, "
                     f"{_load(b.get('load_after'))} after")
    return text


def section_summary(verdicts):
    rows = [(claim, f"**{v.status}**") for claim, v in verdicts]
    return "## Verdicts at a glance\n\n" + table(["claim / bar", "verdict"], rows)


def section_cloud():
    from rlra_tf import data
    from trainers import presets

    lines = ["## CIFAR-10 and ImageNet: running the presets on a GPU/TPU machine", "",
             "These cannot run on this 2-core CPU machine. Data preparation first:", "",
             "- `cifar10` (and `cifar100`): tfds downloads and prepares it on first use; on a "
             "machine without network, prepare it once elsewhere (`tfds build cifar10 "
             "--data_dir=DIR`) and copy `DIR/cifar10/` to the training machine's `--data_dir`.",
             f"- `imagenet2012`: tfds cannot download it. Put {' and '.join(data.IMAGENET_FILES)} "
             "(from image-net.org) in a folder and pass it as `--manual_dir`; tfds prepares "
             "them into `--data_dir` on the first run (hours, about 300 GB).",
             "", "Each preset's own description (`trainers.presets.describe(name)`):"]
    for name in CLOUD_PRESETS:
        if name not in presets.PRESETS:
            continue
        doc = presets.describe(name).strip("\n")
        body = "\n".join("> " + line.strip() if line.strip() else ">" for line in
                         doc.splitlines())
        lines += ["", f"### `{name}`", "", body]
    lines += ["", "Published results to compare with: rec-LRA on CIFAR-10 "
              f"{PUBLISHED['cifar10_rec_lra']}% (one paper quotes 93.88%); backprop ResNet-18 "
              f"on CIFAR-10 with augmentation about {PUBLISHED['cifar10_bp_resnet18']:.0f}%; "
              "ResNet-20 on CIFAR-10 (BioTorch, top-1 error): " + ", ".join(
                  f"{k.upper()} {v}%" for k, v in PUBLISHED["cifar10_resnet20_error"].items())
              + f" ({PUBLISHED_SOURCE})."]
    return "\n".join(lines)


def render(results_dir=RESULTS_DIR, out="BENCHMARKS.md"):
    """The Markdown text of BENCHMARKS.md for the JSON files under `results_dir`."""
    results = load_results(results_dir)
    out_dir = os.path.dirname(os.path.abspath(out))
    root = out_dir
    gen, v_gen = section_generalise(results, root, out_dir)
    conv, v_conv = section_converge(results, root)
    cheap, v_cheap = section_cheaper(results, root, out_dir)
    align, v_align = section_alignment(results, root, out_dir)
    bar2, v_bar2 = section_mlp_bar(results, root)
    bar3, v_bar3 = section_resnet_bar(results, root)
    rev2, v_rev2 = section_rev2(results, root, out_dir)
    scale, v_scale = section_scale(results, root, out_dir)
    mixed, v_mixed = section_mixed_precision(results, root)
    peers, v_peers = section_peers(results, root, out_dir)
    export, v_export = section_export(results, root, out_dir)
    overhead, v_overhead = section_overhead(results, root)
    rb, sb, mb = REV2_RESNET_BAR, REV2_SGD_BAR, MIXED_PRECISION_BAR
    claims = [("Generalises as well as backprop: MLP", v_gen[0]),
              ("Generalises as well as backprop: ResNet-20", v_gen[1]),
              ("Converges sooner (epochs)", v_conv[0]),
              ("Converges sooner (wall-clock)", v_conv[1])]
    claims += [("Cheaper updates: step time rec_lra <= bp", v_cheap[0]),
               ("Parallelisable updates: chain length of the default rec_lra", v_cheap[1]),
               ("Parallelisable updates: chain length of rec_lra_skip", v_cheap[2])]
    claims += [("Alignment: rec_lra's updates are descent directions", v_align[0]),
               ("Issue 2: MLP bar", v_bar2),
               ("Issue 3 (superseded): ResNet-20 accuracy bar", v_bar3[0]),
               ("Issue 3 (superseded): ResNet-18 step-time bar", v_bar3[1]),
               (f"Revision 2: ResNet-20, rec_lra within {rb['rec_lra_gap_to_bp']} of bp and "
                f"{rb['margin_over_fa_dfa']:.0f} above fa/dfa", v_rev2["resnet"]),
               (f"Revision 2: ResNet-20 SGD recipe, rec_lra within {sb['rec_lra_gap_to_bp']} "
                "of bp", v_rev2["sgd"]),
               (f"Revision 2: {STEP_COST_BAR['model']} CPU time rec_lra/bp <= "
                f"{STEP_COST_BAR['max_cpu_ratio']:.2f}", v_rev2["step"]),
               (f"Revision 2: MLP, rec_lra within {REV2_MLP_BAR['rec_lra_gap_to_bp']} of bp",
                v_rev2["mlp"])]
    db, fb = DEPTH_BAR, FULL_DATA_BAR
    reach = " and ".join(f"{100 * t:.0f}%" for t in RESNET_THRESHOLDS)
    claims += [(f"Scale: ResNet-56, rec_lra within {db['max_gap_at_deepest']} of bp and its gap "
                f"at most {db['max_gap_growth']} above ResNet-20's", v_scale["depth"]),
               (f"Scale: full data, the preset's recipe, rec_lra within "
                f"{fb['rec_lra_gap_to_bp']} of bp", v_scale["full"])]
    for key, what in (("converge_resnet20", "ResNet-20"), ("converge_full", "full-data ResNet-20")):
        claims += [(f"Converges sooner on {what} (epochs to {reach})", v_scale[key][0]),
                   (f"Converges sooner on {what} (wall-clock to {reach})", v_scale[key][1])]
    claims += [("Alignment over training, ResNet-20: rec_lra's updates are descent directions",
                v_scale["descent"]),
               ("Alignment over training, ResNet-20: the mirror brings every rec_lra synapse "
                f"within {ALIGNED_DEGREES:.0f}°", v_scale["mirror"])]
    claims += [(f"Issue 12: mixed_bfloat16 within {mb['max_gap_to_float32']} of float32, "
                f"{what}", v_mixed[what]) for what in ("ResNet-20", "MLP")]
    claims += v_peers
    claims += [("Issue 12: float16 headroom", v_mixed["float16"]),
               ("Export parity", v_export), ("Diagnostics overhead < 10%", v_overhead)]
    parts = [section_header(results, root, results_dir), section_summary(claims), gen, conv,
             cheap, align, bar2, bar3, rev2, scale, peers, mixed, export, overhead,
             section_cloud()]
    return "\n\n".join(parts).rstrip() + "\n"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=RESULTS_DIR, help="Folder of the JSON results.")
    parser.add_argument("--out", default="BENCHMARKS.md", help="The Markdown file to write.")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.results):
        parser.error(f"--results={args.results!r} is not a folder")
    text = render(args.results, args.out)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"Wrote {args.out} ({len(text.splitlines())} lines) at "
          f"{time.strftime('%H:%M:%S')} on {platform.node() or 'this machine'}")


if __name__ == "__main__":
    main()
