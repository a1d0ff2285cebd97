"""The result files the report reads: one `Source` per benchmark of `benchmarks.registry`.

`Results(folder)` reads `<folder>/<name>.json` of every registered benchmark (the full suite's)
and, where the full suite has not written one, `<folder>/quick/<name>.json` (the quick
suite's); each `Source` says which suite, date and machine its numbers come from. A file that
no benchmark names (`archive/`) is not read.
"""

import dataclasses
import json
import os

from benchmarks import harness, registry, variants
from benchmarks.report.markdown import budget_text, image


@dataclasses.dataclass
class Source:
    """A result file: its benchmark's `name`, the JSON `data`, its `path` and `suite`."""

    name: str
    data: dict
    path: str
    suite: str  # "full" or "quick"
    shown_path: str  # as the report names it: benchmarks/results/...

    @property
    def date(self):
        return self.data["date"]

    @property
    def machine(self):
        return self.data["machine"]

    def label(self):
        """`Source: `benchmarks/results/x.json`; full suite; <date>; <machine>; <versions>.`,
        and, for a file whose `rec_lra` was measured before the default mirror changed, that
        its `rec_lra` is the previous default."""
        parts = [f"`{self.shown_path}`", f"{self.suite} suite", self.date or "date not recorded",
                 machine_text(self.machine),
                 ", ".join(f"{k} {v}" for k, v in self.data["versions"].items())]
        text = "Source: " + "; ".join(parts) + "."
        if self.previous_default():
            text += (" Measured before rec_lra's default mirror changed "
                     f"({variants.DEFAULT_MIRROR_SINCE}): its `rec_lra` is the previous default "
                     "(`rec_lra-mirror_every1`: the mirror every step, untracked synapses).")
        return text

    def previous_default(self):
        """Whether this file's `rec_lra` (a run's rule, or a key of its `rules`) was measured
        before `variants.DEFAULT_MIRROR_SINCE`."""
        if not self.date or self.date[:10] >= variants.DEFAULT_MIRROR_SINCE:
            return False

        def mentions(o):
            if isinstance(o, dict):
                rules = o.get("rules")
                if o.get("rule") == "rec_lra" or (isinstance(rules, dict) and "rec_lra" in rules):
                    return True
                # (A run's trainer config names the base rule of every rec_lra variant.)
                return any(mentions(v) for k, v in o.items() if k not in ("config", "key"))
            if isinstance(o, list):
                return any(mentions(v) for v in o)
            return False
        return mentions(self.data)

    def intro(self, budget=False):
        """Lines that open a subsection on this file: its label, its `notes` (what a reader
        must know about its runs) and, with `budget`, its budget."""
        lines = ["", self.label()]
        if self.data.get("notes"):
            lines += ["", f"*{self.data['notes']}*"]
        if budget:
            lines += ["", f"Budget: {budget_text(self.data['budget'])}."]
        return lines

    def figure(self, out_dir):
        """`["", image link]` to the PNG beside the file, `[]` if there is none."""
        link = image(harness.png_path(self.path), out_dir)
        return ["", link] if link else []


def machine_text(machine):
    return f"{machine['platform']}, {machine['cpus']} CPUs"


def load_text(load_average):
    """`"6.9, 6.1, 5.7"` from a `load_average` list, "n/a" where it was not recorded."""
    return "n/a" if not load_average else ", ".join(f"{x:.1f}" for x in load_average)


class Results:
    """The registered benchmarks' result files under `folder` (see the module docstring)."""

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        self.sources = {}
        self.suite_runs = {}
        for suite in ("full", "quick"):
            log = os.path.join(harness.results_dir(suite, self.folder), "suite_run.json")
            if os.path.exists(log):
                self.suite_runs[suite] = _read(log)
        for benchmark in registry.BENCHMARKS:
            for suite in ("full", "quick"):
                path = os.path.join(harness.results_dir(suite, self.folder),
                                    benchmark.name + ".json")
                if os.path.exists(path):
                    shown = os.path.join(harness.RESULTS_DIR, os.path.relpath(path, self.folder))
                    self.sources[benchmark.name] = Source(benchmark.name, _read(path), path,
                                                          suite, shown)
                    break

    @classmethod
    def from_data(cls, data_by_name, folder="benchmarks/results"):
        """`Results` holding `{name: JSON}` as the full suite's files under `folder` (for the
        scripts that print the report's tables, and for tests)."""
        results = cls.__new__(cls)
        results.folder = os.path.abspath(folder)
        results.suite_runs = {}
        results.sources = {}
        for name, data in data_by_name.items():
            registry.get(name)
            path = os.path.join(results.folder, name + ".json")
            results.sources[name] = Source(name, data, path, "full",
                                           os.path.join(harness.RESULTS_DIR, name + ".json"))
        return results

    def get(self, name):
        """The `Source` of benchmark `name`, or None if neither suite has written it."""
        registry.get(name)  # a name the registry does not know is a bug, not "not run"
        return self.sources.get(name)

    def all(self):
        """Every `Source` there, in the registry's order."""
        return [self.sources[b.name] for b in registry.BENCHMARKS if b.name in self.sources]


def subsection(results, name, title, budget=False):
    """`(lines, source)` that open the subsection `title` on benchmark `name`: its heading and
    the file's `Source.intro`, or, when the file is missing, the line that says how to write
    it and None."""
    source = results.get(name)
    lines = ["", f"### {title}"]
    if source is None:
        return lines + ["", not_run(name)], None
    return lines + source.intro(budget), source


def not_run(name):
    """The line a section shows for a benchmark without results: the commands that write it."""
    commands = registry.get(name).commands()
    return f"*Not run yet* ({' then '.join(f'`{c}`' for c in commands)})."


def _read(path):
    with open(path) as f:
        return json.load(f)
