"""BENCHMARKS.md from the benchmarks' result files: does rec-LRA do what the paper says, and
at what cost?

One section per question (`SECTIONS`, in the report's order), each a module with a `TITLE`,
an `INTRO` and its `PARTS` (functions `(results, out_dir, verdicts) -> Markdown lines`);
`render_section` gives any of them its Markdown and the verdicts of its claims (`claims.Part`);
the claims, their bars and their judges are declared in `benchmarks.report.claims`, the pure
verdict functions in `benchmarks.report.verdicts`, what is computed from the runs in
`benchmarks.report.summaries`, and the result files are read by `benchmarks.report.results`.
"Verdicts at a glance" is built from the sections' verdicts.

    python -m benchmarks.report                       # rewrites BENCHMARKS.md
    python -m benchmarks.report --results=DIR --out=/tmp/B.md
"""

import os

from benchmarks import harness
from benchmarks.report import (
    accuracy,
    alignment,
    claims,
    convergence,
    export,
    frame,
    models,
    peers,
    precision,
    scaling,
    speed,
)
from benchmarks.report.results import Results

SECTIONS = (accuracy, convergence, speed, alignment, scaling, precision, models, peers,
            export)


def render_section(section, results, out_dir):
    """A section's Markdown and the verdicts of its claims (`claims.Part`): its title, intro
    and parts, each part given the verdicts of the section's claims to render beside its
    tables."""
    question = section.__name__.rsplit(".", 1)[1]
    verdicts = {k: claims.judge(k, results) for k in claims.of(question)}
    lines = [f"## {section.TITLE}", "", section.INTRO]
    for part in section.PARTS:
        lines += part(results, out_dir, verdicts)
    return claims.Part("\n".join(lines), verdicts)


def render(results_dir, out):
    """The Markdown of the report on the results under `results_dir`, with its links relative
    to `out` (where it will be written)."""
    results = Results(results_dir)
    out_dir = os.path.dirname(os.path.abspath(out))
    parts = [render_section(section, results, out_dir) for section in SECTIONS]
    verdicts = {k: x for part in parts for k, x in part.verdicts.items()}
    return "\n\n".join([frame.header(results, verdicts), frame.glance(SECTIONS, verdicts)]
                       + [part.markdown for part in parts]
                       + [frame.not_measured(), frame.sources(results)]).rstrip() + "\n"


def write(results_dir=None, out=None):
    """Writes the report (default: `benchmarks/results/` to `BENCHMARKS.md` of the repository);
    returns its path."""
    results_dir = results_dir or os.path.join(harness.ROOT, harness.RESULTS_DIR)
    out = out or os.path.join(harness.ROOT, "BENCHMARKS.md")
    text = render(results_dir, out)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    print(f"Wrote {out} ({len(text.splitlines())} lines)")
    return out
