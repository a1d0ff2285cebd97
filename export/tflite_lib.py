"""Converting a `ServingModule` to TensorFlow Lite, float32 and int8, and checking the result.

The TFLite format layer of `export/`: it imports the shared layer (`common`, `serving`,
`verification`) and is called by `export_lib.export_model`, which hands it the images it
verifies on. It owns the conversions, the reading back of the models' tensors, and the
comparison of the TFLite interpreter's outputs with Keras'.

- `model.tflite` (float32) is converted from the same concrete function as the SavedModel and
  ONNX (`ServingModule.serve`: forward pass only, inference mode, float32, no feedback
  weights), with TFLite's builtin ops only. Its one signature, `serving_default`, takes
  `images` and returns `logits` and `probabilities`. The batch is dynamic: the input's shape
  signature is `(-1,) + image_shape`; an interpreter allocates batch 1, and
  `resize_tensor_input` + `allocate_tensors` (which the signature runner does by itself) set
  any other. It is checked against Keras to the same tolerance as the other formats.
- `model_int8.tflite` (with `tflite_quantize="int8"`) is fully integer, for microcontrollers
  and integer-only accelerators: int8 weights (per channel) and activations, int32 biases,
  int8 `images` (uint8 with `raw_uint8_input`) and int8 `logits` and `probabilities`, with the
  scales and zero points in the model and in `export_report.json`
  (`real = scale * (q - zero_point)`). The converter is held to the int8 builtin ops, so it
  fails rather than leave a float op in. Activation ranges are calibrated on a representative
  dataset (a few hundred training images); the model is checked by the top-1 agreement of its
  predictions with Keras' on at least 1,000 test images and by its accuracy on the test split.
"""

import contextlib
import itertools
import os
import time
import warnings

import numpy as np
import tensorflow as tf

from export.common import (
    EXIT_CONVERSION,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportError,
    timed,
)
from export.serving import ServingModule
from export.verification import feedback_matches, keras_outputs, verify

SIGNATURE = "serving_default"
EVAL_BATCH = 500  # images per interpreter call in the int8 evaluation
INTERPRETER = f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


def _converter(module):
    concrete = module.serve.get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)


@contextlib.contextmanager
def _no_interpreter_warning():
    """TensorFlow 2.21 still ships `tf.lite.Interpreter` but warns, at every construction (the
    int8 converter's calibration builds one too), that it moves to the `ai_edge_litert`
    package, which is not a dependency here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        yield


def _convert(converter, what):
    try:
        with _no_interpreter_warning():
            return converter.convert()
    except Exception as e:  # the converter raises many types on unsupported graphs
        raise ExportError(f"The TFLite converter could not convert the model to {what} "
                          f"({type(e).__name__}: {str(e).strip()[:2000]})",
                          EXIT_CONVERSION) from e


def convert_float(module):
    """The float32 TFLite flatbuffer of `module.serve`."""
    converter = _converter(module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _convert(converter, "float32")


def convert_int8(module, calibration_images, input_dtype=tf.int8):
    """The fully integer TFLite flatbuffer of `module.serve` (a float32-input module).

    `calibration_images`: float32 images in [0, 1], fed one at a time as the representative
    dataset. `input_dtype`: `tf.int8`, or `tf.uint8` for a model that takes raw pixels.
    """
    if module.raw_uint8_input:
        raise ValueError("convert_int8 needs a module with float32 input, received one with "
                         "raw_uint8_input=True")

    def representative_dataset():
        for image in calibration_images:
            yield {INPUT_NAME: image[np.newaxis].astype(np.float32)}

    converter = _converter(module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = input_dtype
    converter.inference_output_type = tf.int8
    return _convert(converter, "int8")


def write(content, path):
    try:
        with open(path, "wb") as f:
            f.write(content)
    except OSError as e:
        raise ExportError(f"Writing {path} failed ({e})", EXIT_CONVERSION) from e


def interpreter(path):
    """A `tf.lite.Interpreter` of the file."""
    with _no_interpreter_warning():
        return tf.lite.Interpreter(model_path=path)


def constant_tensors(path):
    """`{"index:name": (array, quantization parameters)}` of every constant tensor of a model.

    Read from a fresh interpreter before `allocate_tensors`: then only the tensors backed by a
    buffer of the file (weights, biases, constants) hold data.
    """
    interp = interpreter(path)
    constants = {}
    for detail in interp.get_tensor_details():
        try:
            array = interp.get_tensor(detail["index"])
        except ValueError:  # "Tensor data is null": an activation
            continue
        constants[f"{detail['index']}:{detail['name']}"] = (
            array, detail["quantization_parameters"])
    return constants


def _io(detail):
    """Name-free description of an input or output tensor: dtype, shape (-1: dynamic),
    quantization."""
    scale, zero_point = detail["quantization"]
    entry = {"dtype": np.dtype(detail["dtype"]).name,
             "shape": [int(d) for d in detail["shape_signature"]]}
    if scale:
        entry.update(scale=float(scale), zero_point=int(zero_point))
    return entry


def _description(runner):
    """The report's `input`, `outputs` and `dynamic_batch` of a signature runner."""
    inp = {"name": INPUT_NAME, **_io(runner.get_input_details()[INPUT_NAME])}
    return {"input": inp,
            "outputs": {n: _io(d) for n, d in runner.get_output_details().items()},
            "dynamic_batch": inp["shape"][0] == -1}


def _signature(interp, path):
    signatures = interp.get_signature_list()
    expected = {"inputs": [INPUT_NAME], "outputs": sorted(OUTPUT_NAMES)}
    got = signatures.get(SIGNATURE, {})
    if {k: sorted(v) for k, v in got.items()} != expected:
        raise ExportError(f"{path} has signatures {signatures}, expected {SIGNATURE!r} with "
                          f"{expected}", EXIT_CONVERSION)
    return interp.get_signature_runner(SIGNATURE)


def _names_with_feedback(constants):
    return [name for name in constants if "feedback" in name.lower()]


def export_and_verify(module, model, path, cases, references, tolerance):
    """Converts to float32, reloads and compares with Keras; returns the report entry."""
    content, export_seconds = timed(convert_float, module)
    write(content, path)
    t0 = time.perf_counter()
    interp = interpreter(path)
    runner = _signature(interp, path)

    def run(images):
        return {k: np.asarray(v) for k, v in runner(**{INPUT_NAME: images}).items()}

    result = verify(run, cases, references, tolerance)
    constants = constant_tensors(path)
    found = _names_with_feedback(constants)
    found += feedback_matches(model, {n: a for n, (a, _) in constants.items()})
    verify_seconds = time.perf_counter() - t0
    return {
        "path": os.path.abspath(path),
        "bytes": os.path.getsize(path),
        "dtype": "float32",
        "signature": SIGNATURE,
        **_description(runner),
        "interpreter": INTERPRETER,
        "num_values": int(sum(np.size(a) for a, _ in constants.values())),
        "feedback_weights_found": found,
        "export_seconds": export_seconds,
        "verify_seconds": round(verify_seconds, 4),
        **result,
    }


# ------------------------------------------------------------------------------------- int8


def quantize(images, detail):
    """Float images in [0, 1] as the int8 model's input: `round(x / scale) + zero_point`."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(np.asarray(images, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def dequantize(values, detail):
    scale, zero_point = detail["quantization"]
    return ((np.asarray(values, np.float64) - zero_point) * scale).astype(np.float32)


def _dequantized_constant(array, params):
    """`(values, half a quantization step)` of a quantized constant, or None if not quantized."""
    scales = np.asarray(params["scales"], np.float64)
    if scales.size == 0 or not np.issubdtype(array.dtype, np.integer):
        return None
    shape = [1] * array.ndim
    if scales.size > 1:
        shape[params["quantized_dimension"]] = -1
    zero_points = np.asarray(params["zero_points"], np.float64)
    zero_points = zero_points.reshape(shape) if zero_points.size > 1 else zero_points.ravel()[0]
    scales = scales.reshape(shape) if scales.size > 1 else scales.ravel()[0]
    values = (array.astype(np.float64) - zero_points) * scales
    return values, np.broadcast_to(0.5 * scales, values.shape)


def _layouts(weight, shape):
    """`weight` laid out as `shape`: every transposition of it with that shape, and a plain
    reshape (a bias of shape (n,) stored as (1, n), say)."""
    w = np.asarray(weight, np.float64)
    if w.size != int(np.prod(shape)):
        return
    if w.ndim <= 4:
        for axes in itertools.permutations(range(w.ndim)):
            if tuple(w.shape[a] for a in axes) == tuple(shape):
                yield np.transpose(w, axes)
    if w.ndim != len(shape):
        yield w.reshape(shape)


def quantized_matches(weights, constants):
    """`(constant name, weight path)` pairs: quantized constants of a TFLite model whose
    dequantized values are a weight's, element by element, to half a quantization step, in
    some axis order (TFLite stores a Dense kernel transposed, a convolution's as
    (out, height, width, in)). Weights whose values are all equal carry no information and are
    skipped. `feedback_matches` compares sorted values for equality; quantized values are only
    within half a step, and sorted values within a step would also match another matrix that
    shares most of its value distribution, so this compares element by element.
    """
    weights = [(path, np.asarray(w, np.float64)) for path, w in weights]
    weights = [(p, w) for p, w in weights if w.size and np.ptp(w) > 0]
    found = []
    for name, (array, params) in constants.items():
        dequantized = _dequantized_constant(array, params)
        if dequantized is None:
            continue
        values, half_step = dequantized
        tolerance = half_step * (1 + 1e-4) + 1e-9
        for path, w in weights:
            if any(np.all(np.abs(values - t) <= tolerance) for t in _layouts(w, values.shape)):
                found.append((name, path))
    return found


def _top1(fn, images, batch=EVAL_BATCH):
    """Top-1 classes of `fn` (a batch of [0, 1] images -> `{"logits": ...}`) on `images`."""
    return np.concatenate([fn(images[i:i + batch])["logits"].argmax(-1)
                           for i in range(0, len(images), batch)])


def _float_input_module(module, model):
    """`module`, or one like it that takes float32 images in [0, 1] (the int8 conversion
    quantizes that input; for raw pixels it then takes uint8 instead of int8)."""
    if not module.raw_uint8_input:
        return module
    return ServingModule(model, raw_uint8_input=False, class_names=module.class_names)


def export_and_verify_int8(module, model, path, calibration, evaluation, cases, references,
                           min_agreement):
    """Converts to int8, reloads, checks it is integer only and measures it against Keras.

    Args:
        module, model: the `ServingModule` and the (float32) Keras model it serves.
        path: the `.tflite` file to write.
        calibration: `(images, note)`: float32 images in [0, 1] of the representative
            dataset, and where they come from.
        evaluation: `(batches, note)`: `(images, labels)` batches, float32 images in
            [0, 1] for the top-1 agreement with Keras and their labels for the accuracy
            (None: not measured), and where they come from (`note["real"]`: test images, so
            the agreement is held to `min_agreement`; else random images, reported only).
        cases, references: the verification inputs (serving dtype) and Keras' outputs; the
            dequantized outputs' differences are reported, and the shapes checked.
        min_agreement: the least top-1 agreement on real test images.

    Returns the report entry; `export_lib` turns its `failures` into the export's.
    """
    t0 = time.perf_counter()
    input_dtype = tf.uint8 if module.raw_uint8_input else tf.int8
    content = convert_int8(_float_input_module(module, model), calibration[0], input_dtype)
    write(content, path)
    export_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    interp = interpreter(path)
    runner = _signature(interp, path)
    input_detail = runner.get_input_details()[INPUT_NAME]
    output_details = runner.get_output_details()

    def run_unit_range(images):  # float [0, 1] -> dequantized outputs
        outputs = runner(**{INPUT_NAME: quantize(images, input_detail)})
        return {k: dequantize(v, output_details[k]) for k, v in outputs.items()}

    def run(images):  # serving dtype (uint8 0..255 with raw_uint8_input)
        x = images.astype(np.float32)
        return run_unit_range(x / np.float32(255.0) if module.raw_uint8_input else x)

    result = verify(run, cases, references, tolerance=np.inf)
    tensors = interp.get_tensor_details()
    dtypes = {}
    for detail in tensors:
        name = np.dtype(detail["dtype"]).name
        dtypes[name] = dtypes.get(name, 0) + 1
    float_tensors = [d["name"] for d in tensors if np.issubdtype(d["dtype"], np.floating)]

    batches, note = evaluation
    count = agreeing = int8_correct = keras_correct = 0
    labelled = True
    for images, labels in batches:
        keras_top1 = _top1(lambda x: keras_outputs(model, x, False), images)
        int8_top1 = _top1(run_unit_range, images)
        count += len(images)
        agreeing += int(np.sum(keras_top1 == int8_top1))
        labelled = labelled and labels is not None
        if labelled:
            int8_correct += int(np.sum(int8_top1 == labels))
            keras_correct += int(np.sum(keras_top1 == labels))
    measured = {
        **note,
        "images": count,
        "top1_agreement": agreeing / count,
        "agreeing": agreeing,
        "min_agreement": min_agreement if note.get("real") else None,
    }
    if labelled:
        measured["accuracy"] = int8_correct / count
        measured["keras_accuracy"] = keras_correct / count

    constants = constant_tensors(path)
    feedback_ids = {id(w) for w in model.feedback_weights}
    forward = [(w.path, w) for w in model.weights if id(w) not in feedback_ids]
    found = _names_with_feedback(constants)
    found += [f"{n} (= {p})" for n, p in quantized_matches(
        [(w.path, w) for w in model.feedback_weights], constants)]
    forward_found = sorted({p for _, p in quantized_matches(forward, constants)})
    verify_seconds = time.perf_counter() - t0

    failures = []
    if float_tensors:
        failures.append(f"holds float tensors {float_tensors[:5]}, not integer only")
    if not np.isfinite(result["max_abs_diff_all"]):
        failures.append("gives outputs of the wrong shape at some batch size")
    if note.get("real") and measured["top1_agreement"] < min_agreement:
        failures.append(f"top-1 agreement with Keras {measured['top1_agreement']:.4f} on "
                        f"{count} test images is below {min_agreement:g}")
    return {
        "path": os.path.abspath(path),
        "bytes": os.path.getsize(path),
        "dtype": "int8",
        "signature": SIGNATURE,
        **_description(runner),
        "interpreter": INTERPRETER,
        "integer_only": not float_tensors,
        "float_tensors": float_tensors,
        "tensor_dtypes": dtypes,
        "calibration": {**calibration[1], "images": int(len(calibration[0]))},
        "evaluation": measured,
        "dequantized_max_abs_diff": result["max_abs_diff"],
        "checks": result["checks"],
        "forward_weights_found": forward_found,
        "feedback_weights_found": found,
        "export_seconds": round(export_seconds, 4),
        "verify_seconds": round(verify_seconds, 4),
        "failures": failures,
    }
