"""`python -m export.savedmodel --model=PATH.keras --out=DIR`.

Writes the SavedModel (signature `serving_default`: `images` -> `logits`, `probabilities`)
into DIR, with DIR/export_report.json, and verifies it against Keras (flags: `export/cli.py`).
"""

from absl import flags

from export import cli

flags.adopt_module_key_flags(cli)  # --help lists the exporter's flags

if __name__ == "__main__":
    cli.run("savedmodel")
