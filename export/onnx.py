"""`python -m export.onnx --model=PATH.keras --out=FILE.onnx [--opset=17]`.

Writes the ONNX model (input `images`, outputs `logits` and `probabilities`, class names and
input convention in its metadata) and export_report.json beside it, and verifies it against
Keras with onnxruntime (flags: `export/cli.py`).
"""

from absl import flags

from export import cli

flags.adopt_module_key_flags(cli)  # --help lists the exporter's flags

if __name__ == "__main__":
    cli.run("onnx")
