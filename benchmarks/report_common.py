"""What every part of `benchmarks/report.py` shares: the result files and the formatting.

It owns the list of benchmarks and the commands that write them, where their JSON files are
(`RESULTS_DIR`, the `QUICK` suite's folder) and `load_results`, which reads them into `Source`s
(a result with its suite, date and machine); the published figures quoted by the report; the
order of the rules in every table (`RULE_ORDER`, `ordered`); and the Markdown helpers every
section uses (tables, percentages, mean and spread over seeds, image links, the commands of a
benchmark and the "not run yet" line).
"""

import dataclasses
import json
import math
import os

RESULTS_DIR = os.path.join("benchmarks", "results")
QUICK = "quick"
BENCHMARKS = (
    "accuracy_mlp", "mlp_sweep", "mlp_sweep_session1", "resnet_accuracy", "resnet_ablation",
    "resnet_sgd", "resnet32_accuracy", "resnet56_accuracy", "resnet_full", "step_time",
    "chain_length", "alignment", "alignment_resnet20", "resnet_accuracy_bf16",
    "accuracy_mlp_bf16", "mixed_precision", "export_bench", "diagnostics_overhead", "peers",
    "resnet_sgd_mirror", "resnet_mirror_options", "step_time_bn", "resnet_accuracy_fused",
)


def _depth(model):
    """The two invocations of the depth study at `model` into one file: bp and rec_lra over two
    seeds, then wm and fa over one (the second keeps the first's runs: it resumes)."""
    out = f"--out=benchmarks/results/{model}_accuracy.json"
    return (f"benchmarks/resnet_accuracy.py --model={model} --seeds=0,1 --rules=bp,rec_lra {out}",
            f"benchmarks/resnet_accuracy.py --model={model} --seeds=0 --rules=wm,fa {out}")


# name -> the script (and its arguments) that writes `<name>.json`, or a tuple of such
# invocations run one after the other into the same file; `not_run` turns it into the commands
# to run. The full suite (`benchmarks/run.py`) runs these (tests/test_benchmarks_report.py
# checks that they agree).
SCRIPTS = {
    "accuracy_mlp": "benchmarks/accuracy.py --seeds=0,1,2",
    "mlp_sweep": "benchmarks/accuracy.py --sweep",
    "mlp_sweep_session1": "the session-1 sweep script (of record, not in the repository)",
    "resnet_accuracy": "benchmarks/resnet_accuracy.py --seeds=0,1,2",
    "resnet_ablation": "benchmarks/resnet_accuracy.py --seeds=0 --rules=rec_lra,"
                       "rec_lra-no_mirror,rec_lra-no_through,rec_lra-raw_errors,"
                       "rec_lra-skip_synapses,rec_lra-first "
                       "--out=benchmarks/results/resnet_ablation.json",
    "resnet_sgd": "benchmarks/resnet_accuracy.py --seeds=0,1 --rules=bp,rec_lra --optimizer=sgd "
                  "--learning_rate=0.05 --weight_decay=5e-4 "
                  "--out=benchmarks/results/resnet_sgd.json",
    "resnet32_accuracy": _depth("resnet32"),
    "resnet56_accuracy": _depth("resnet56"),
    "resnet_depth": "benchmarks/depth_plot.py",  # the plot of the depth study (no benchmark)
    "resnet_full": "benchmarks/resnet_accuracy.py --train_limit=0 --epochs=5 --optimizer=sgd "
                   "--learning_rate=0.05 --weight_decay=5e-4 --warmup_epochs=1 --augment "
                   "--seeds=0,1 --rules=bp,rec_lra,rec_lra-mirror_taps_warm_m32 "
                   "--out=benchmarks/results/resnet_full.json",
    "step_time": "benchmarks/step_time.py --models=resnet18 --jit=off "
                 "--rules=bp,fa,wm,rec_lra,rec_lra_every4,rec_lra_nomirror,rec_lra_m32 "
                 "--steps=4",
    "step_time_bn": "benchmarks/step_time.py --models=resnet20 --jit=off "
                    "--rules=bp,fa,rec_lra,bp_keras_bn,fa_keras_bn,rec_lra_keras_bn --steps=4 "
                    "--out=benchmarks/results/step_time_bn.json",
    # A one-off check of record (not in the suites): seed 0 of the ResNet-20 benchmark again
    # after the conv units' BatchNorm moved to the fused kernel.
    "resnet_accuracy_fused": "benchmarks/resnet_accuracy.py --seeds=0 --rules=bp,rec_lra "
                             "--noresume --out=benchmarks/results/resnet_accuracy_fused.json",
    "chain_length": "benchmarks/chain_length.py",
    "alignment": "benchmarks/alignment.py",
    "alignment_resnet20": "benchmarks/alignment.py --model=resnet20 --rules=rec_lra,wm,fa "
                          "--every=10 --out=benchmarks/results/alignment_resnet20.json",
    "resnet_accuracy_bf16": "benchmarks/resnet_accuracy.py --seeds=0 --rules=bp,rec_lra "
                            "--mixed_precision=bfloat16 "
                            "--out=benchmarks/results/resnet_accuracy_bf16.json",
    "accuracy_mlp_bf16": "benchmarks/accuracy.py --seeds=0 --variants=bp,rec_lra "
                         "--mixed_precision=bfloat16 "
                         "--out=benchmarks/results/accuracy_mlp_bf16.json",
    "mixed_precision": "benchmarks/mixed_precision.py",
    "peers": "benchmarks/peers.py",
    "resnet_sgd_mirror": tuple(
        "benchmarks/resnet_accuracy.py --optimizer=sgd --learning_rate=0.05 --weight_decay=5e-4 "
        f"{runs} --out=benchmarks/results/resnet_sgd_mirror.json" for runs in (
            "--seeds=0 --rules=rec_lra-mirror_taps_slow,rec_lra-mirror_taps_warm,"
            "rec_lra-mirror_taps_warm_m32,rec_lra-beta0.01",
            "--seeds=0,1 --rules=rec_lra-mirror_taps_warm_m32")),
    "resnet_mirror_options": "benchmarks/resnet_accuracy.py --seeds=0 "
                             "--rules=rec_lra-mirror_taps_warm_m32 "
                             "--out=benchmarks/results/resnet_mirror_options.json",
    "export_bench": "benchmarks/export_bench.py",
    "diagnostics_overhead": "benchmarks/diagnostics_overhead.py",
}

# Published figures, quoted from docs/ALGORITHM.md section 8 (percent test accuracy).
PUBLISHED = {
    "fmnist_rec_lra": 88.13,  # rec-LRA, Fashion-MNIST, as quoted by later papers
    "mnist_rec_lra": 98.18,
    "cifar10_rec_lra": 93.58,  # one paper quotes 93.88
    "fmnist_bp_resnet": 93.8,  # backprop ResNet-18, Fashion-MNIST (about)
    "cifar10_bp_resnet18": 94.0,  # backprop ResNet-18, CIFAR-10 with augmentation (about)
    # BioTorch, CIFAR-10 ResNet-20, SGD: top-1 error -> accuracy
    "cifar10_resnet20_error": {"bp": 8.63, "fa": 32.16, "dfa": 45.94},
}
PUBLISHED_SOURCE = "docs/ALGORITHM.md section 8"
# The order of the rules in every table: backprop, the other baselines, the weight mirror,
# rec-LRA's default, then its variants (the benchmarks' names for them).
RULE_ORDER = (
    "bp", "fa", "dfa", "lra", "wm", "rec_lra",
    "rec_lra_skip", "rec_lra_every4", "rec_lra_nomirror",  # one option changed
    "rec_lra-no_mirror", "rec_lra-no_through", "rec_lra-raw_errors",  # the ResNet ablation
    "rec_lra-skip_synapses",
    "rec_lra-first", "rec_lra_first",  # the first reconstruction (ResNet, MLP benchmark)
    "rec_lra_b1",  # the MLP benchmark before revision 2: blocks of one unit
)


@dataclasses.dataclass
class Source:
    name: str
    data: dict
    path: str
    suite: str  # "full" or "quick"

    def label(self, root):
        d = self.data
        machine = d.get("machine") or {}
        versions = d.get("versions") or {}
        suite = self.suite + (" suite" if self.suite in ("full", "quick") else "")
        parts = [f"`{os.path.relpath(self.path, root)}`", suite,
                 d.get("date") or "date not recorded"]
        if machine:
            parts.append(f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs")
        if versions:
            parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
        return "Source: " + "; ".join(parts) + "."


def load_results(results_dir):
    """`{name: Source or None}`: the full suite's JSON if present, else the quick suite's."""
    out = {}
    for name in BENCHMARKS:
        out[name] = None
        for suite, folder in (("full", results_dir), ("quick", os.path.join(results_dir, QUICK))):
            path = os.path.join(folder, name + ".json")
            if os.path.exists(path):
                try:
                    with open(path) as f:
                        data = json.load(f)
                    out[name] = Source(name, data, os.path.abspath(path),
                                       str(data.get("suite") or suite))
                except (OSError, json.JSONDecodeError) as err:
                    print(f"Skipping unreadable {path}: {err}")
                    continue
                break
    return out


def ordered(names):
    """`names` (without repeats) in `RULE_ORDER`, then the others in the order given."""
    names = list(dict.fromkeys(names))
    return [n for n in RULE_ORDER if n in names] + [n for n in names if n not in RULE_ORDER]


def pct(x, digits=2):
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def mean_spread(s, unit=""):
    """`89.12 ± 0.15 [88.95, 89.30] (3 seeds)` from a summary entry (std over seeds, min-max);
    `unit` goes after the mean."""
    m = s.get("final_test_accuracy_mean")
    if m is None:
        return "n/a"
    n = len(s.get("seeds") or [])
    std = s.get("final_test_accuracy_std")
    text = pct(m) + unit + (f" ± {100 * std:.2f}" if std is not None else "")
    if n > 1:
        text += (f" [{pct(s.get('final_test_accuracy_min'))}, "
                 f"{pct(s.get('final_test_accuracy_max'))}]")
    return text + f" ({n} seed{'s' if n != 1 else ''})"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x, fmt="{:.2f}"):
    """`x` formatted by `fmt`, or "n/a" for None and non-finite floats."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def png_link(source, root, out_dir, name=None):
    """A Markdown image link to the PNG beside `source`'s JSON (relative to BENCHMARKS.md)."""
    path = os.path.splitext(source.path)[0] + ".png" if name is None else name
    if not os.path.exists(path):
        return ""
    return f"![{os.path.basename(path)}]({os.path.relpath(path, out_dir)})"


def invocations(name):
    """`SCRIPTS[name]` as a list of invocations (`"benchmarks/x.py --flag"` strings)."""
    scripts = SCRIPTS[name]
    return [scripts] if isinstance(scripts, str) else list(scripts)


def command_lines(name):
    """The commands that write `<name>.json`: `["python -m benchmarks.x --flag", ...]`."""
    lines = []
    for invocation in invocations(name):
        script, _, args = invocation.partition(" ")
        module = script.removesuffix(".py").replace("/", ".")
        lines.append(f"python -m {module}{' ' + args if args else ''}")
    return lines


def not_run(name):
    """The line a section shows for a benchmark without results: the commands that run it."""
    return f"*Not run yet* ({' then '.join(f'`{c}`' for c in command_lines(name))})."


def budget_text(budget):
    """A benchmark's `budget` (a dict of settings, or text) as one line."""
    if isinstance(budget, dict):
        return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in budget.items()
                         if v is not None and not isinstance(v, (dict, list)))
    return str(budget)
