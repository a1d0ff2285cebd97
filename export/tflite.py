"""`python -m export.tflite --model=PATH.keras --out=FILE.tflite [--tflite_quantize=int8]`.

Writes the float32 TFLite model (signature `serving_default`: `images` -> `logits`,
`probabilities`; dynamic batch), with `--tflite_quantize=int8` also a fully integer model
beside it (`FILE_int8.tflite`: int8 weights, activations, input and outputs, calibrated on
training images), and export_report.json; verifies them against Keras with the TFLite
interpreter (flags: `export/cli.py`).
"""

from absl import flags

from export import cli

flags.adopt_module_key_flags(cli)  # --help lists the exporter's flags

if __name__ == "__main__":
    cli.run("tflite")
