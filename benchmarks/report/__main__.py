"""`python -m benchmarks.report [--results=DIR] [--out=FILE]`: writes BENCHMARKS.md."""

from absl import app, flags

from benchmarks import report

_RESULTS = flags.DEFINE_string("results", None,
                               "The folder of the result JSON (default: benchmarks/results).")
_OUT = flags.DEFINE_string("out", None, "The Markdown file to write (default: BENCHMARKS.md).")


def main(argv):
    del argv
    report.write(_RESULTS.value, _OUT.value)


if __name__ == "__main__":
    app.run(main)
