"""`python -m export --model=PATH.keras --formats=savedmodel,onnx[,tflite] --out=DIR`.

Writes DIR/saved_model/, DIR/model.onnx, DIR/model.tflite (with `--tflite_quantize=int8` also
DIR/model_int8.tflite) and DIR/export_report.json, verifies every artefact against Keras and
exits non-zero on any problem (see `export/cli.py` for the flags and exit codes).
"""

from absl import flags

from export import cli

flags.adopt_module_key_flags(cli)  # --help lists the exporter's flags

if __name__ == "__main__":
    cli.run("combined")
