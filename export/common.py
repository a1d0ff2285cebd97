"""The bottom layer of `export/`: names, exit codes, errors and argument checks.

Every other module of the package imports from here and nothing here imports from them. It
owns `ExportError` and the binaries' exit codes, the artefact and tensor names
(`INPUT_NAME`, `OUTPUT_NAMES`, the file names), the supported ONNX opsets, the TFLite
quantization modes and the defaults, the checks of the user's arguments, the library versions
recorded in a report, and two small helpers (`path_bytes`, `timed`).
"""

import math
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

import rlra_tf

# Exit codes of the binaries (0 is success), as every binary of the project has them
# (`trainers/cli.py`): 2 for bad input, the others the exporter's own.
EXIT_USAGE = 2  # bad input: an argument (opset, formats, batch sizes, tolerance, dataset), a
#                 .keras file that is missing, corrupt or not an rlra_tf model, an output
#                 location that cannot be written or is not empty without --overwrite
EXIT_VERIFY = 5  # an artefact differs from Keras beyond the tolerance or holds feedback weights
EXIT_CONVERSION = 6  # TensorFlow, tf2onnx or the TFLite converter failed to write an artefact

FORMATS = ("savedmodel", "onnx", "tflite")
DEFAULT_FORMATS = ("savedmodel", "onnx")
# tf2onnx 1.17 converts to ONNX opsets 13 to 18 only (it refuses 19 and above).
SUPPORTED_OPSETS = tuple(range(13, 19))
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
DEFAULT_BATCH_SIZES = (1, 7)
REPORT_NAME = "export_report.json"
SAVEDMODEL_NAME = "saved_model"
ONNX_NAME = "model.onnx"
TFLITE_NAME = "model.tflite"
TFLITE_INT8_SUFFIX = "_int8"  # model.tflite -> model_int8.tflite
# What `--tflite_quantize` accepts: "none" (the float32 model.tflite only), or "int8" (also a
# fully integer model: int8 weights and activations, int8 input and outputs).
TFLITE_QUANTIZE = ("none", "int8")
DEFAULT_CALIBRATION_IMAGES = 300  # training images of the representative dataset
MIN_EVAL_IMAGES = 1000  # the int8 model's top-1 agreement is measured on at least this many
DEFAULT_MIN_AGREEMENT = 0.9  # int8 top-1 agreement with Keras below this fails the export
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probabilities")
# What tf.saved_model.save writes into a SavedModel folder.
SAVEDMODEL_ENTRIES = ("saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb")


class ExportError(Exception):
    """An export that cannot go on; `exit_code` is what the binaries exit with."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------- arguments


def check_opset(opset):
    """The opset as an int, or `ExportError` naming the opsets tf2onnx supports."""
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or int(opset) not in SUPPORTED_OPSETS:
        raise ExportError(
            f"Unsupported ONNX opset, received: opset={opset!r}. tf2onnx "
            f"{_version('tf2onnx')} converts to opsets {SUPPORTED_OPSETS[0]} to "
            f"{SUPPORTED_OPSETS[-1]} only (default {DEFAULT_OPSET}).",
            EXIT_USAGE,
        )
    return int(opset)


def check_formats(formats):
    """A tuple of format names from a list or a comma-separated string."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown or len(set(formats)) != len(formats):
        raise ExportError(
            f"Expected one or more of {', '.join(FORMATS)} (comma-separated, no repeats), "
            f"received: formats={','.join(formats)!r}",
            EXIT_USAGE,
        )
    return formats


def check_tflite_quantize(quantize, formats):
    """`"none"` or `"int8"`; int8 needs `tflite` among the formats."""
    if quantize not in TFLITE_QUANTIZE:
        raise ExportError(
            f"Expected one of {', '.join(TFLITE_QUANTIZE)} for the TFLite quantization, "
            f"received: tflite_quantize={quantize!r}",
            EXIT_USAGE,
        )
    if quantize != "none" and "tflite" not in formats:
        raise ExportError(
            f"tflite_quantize={quantize!r} quantizes the TFLite model, but tflite is not among "
            f"the formats, received: formats={','.join(formats)!r}",
            EXIT_USAGE,
        )
    return quantize


def check_image_count(name, value, minimum, zero_means=None):
    """A count of images as an int >= `minimum` (or 0 when `zero_means` says what 0 means)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer)) and (
        value >= minimum or (zero_means is not None and value == 0))
    if not ok:
        allowed = f"an integer >= {minimum}" + (f", or 0 for {zero_means}" if zero_means else "")
        raise ExportError(f"Expected {allowed}, received: {name}={value!r}", EXIT_USAGE)
    return int(value)


def check_fraction(name, value):
    fraction = _as_float(value)
    if isinstance(value, bool) or not 0.0 <= fraction <= 1.0:
        raise ExportError(f"Expected a fraction in [0, 1], received: {name}={value!r}",
                          EXIT_USAGE)
    return fraction


def check_batch_sizes(batch_sizes):
    if isinstance(batch_sizes, str):
        try:
            batch_sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError:
            batch_sizes = [batch_sizes]
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or any(
        isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b <= 0
        for b in batch_sizes
    ):
        raise ExportError(
            "Expected positive integer batch sizes for the verification, received: "
            f"batch_sizes={batch_sizes!r}",
            EXIT_USAGE,
        )
    return tuple(int(b) for b in batch_sizes)


def check_tolerance(tolerance):
    value = _as_float(tolerance)
    if not math.isfinite(value) or value < 0:
        raise ExportError(
            f"Expected a finite tolerance >= 0, received: tolerance={tolerance!r}", EXIT_USAGE
        )
    return value


# --------------------------------------------------------------------------------- helpers


def _as_float(value):
    """`float(value)`, or NaN when it is not a number (so range checks fail)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _version(module_name):
    try:
        module = __import__(module_name)
        return getattr(module, "__version__", "unknown")
    except ImportError:
        return "not installed"


def versions():
    return {
        "python": platform.python_version(),
        "rlra_tf": rlra_tf.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "onnx": _version("onnx"),
        "tf2onnx": _version("tf2onnx"),
        "onnxruntime": _version("onnxruntime"),
    }


def path_bytes(path):
    """Size of a file, or of everything under a folder, in bytes."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - t0, 4)
