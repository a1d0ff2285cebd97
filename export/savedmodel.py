"""`python -m export.savedmodel --model=PATH.keras --out=DIR`.

Writes the SavedModel (signature `serving_default`: `images` -> `logits`, `probabilities`)
into DIR, with DIR/export_report.json, and verifies it against Keras (flags: `export/cli.py`).
"""

from export import cli

if __name__ == "__main__":
    cli.run("savedmodel")
