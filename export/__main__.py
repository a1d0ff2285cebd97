"""`python -m export --model=PATH.keras --formats=savedmodel,onnx --out=DIR`.

Writes DIR/saved_model/, DIR/model.onnx and DIR/export_report.json, verifies both artefacts
against Keras and exits non-zero on any problem (see `export/cli.py` for the flags and exit
codes).
"""

from export import cli

if __name__ == "__main__":
    cli.run("combined")
