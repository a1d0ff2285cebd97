"""Converting a `ServingModule` to ONNX with tf2onnx, and checking the result against Keras.

The ONNX format layer of `export/`: it imports the shared layer (`common`, `verification`) and
is called by `export_lib.export_model`. It owns the conversion, the graph's naming (a `batch`
dimension, initializers named after the Keras weights), the metadata, the ONNX checker, and the
comparison of onnxruntime's outputs with Keras'.
"""

import json
import logging
import os
import time

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper

import rlra_tf
from export.common import (
    EXIT_CONVERSION,
    EXIT_VERIFY,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportError,
    check_opset,
)
from export.verification import feedback_matches, verify

BATCH_DIM = "batch"


def convert(module, opset):
    """The ONNX `ModelProto` of `module.serve` (tf2onnx freezes the variables it reads)."""
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    check_opset(opset)
    try:
        proto, _ = tf2onnx.convert.from_function(
            module.serve, input_signature=module.serve.input_signature, opset=opset
        )
    except Exception as e:  # tf2onnx raises many types on unsupported graphs.
        raise ExportError(f"tf2onnx could not convert the model to opset {opset} "
                          f"({type(e).__name__}: {e})", EXIT_CONVERSION) from e
    return proto


def name_batch_dimension(proto):
    """Calls the dynamic first dimension of the inputs and outputs `batch`."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def name_initializers(proto, model, paths):
    """Renames each initializer that holds a forward weight's values after its Keras path.

    tf2onnx names them after TensorFlow ops (`mlp_1/Cast/ReadVariableOp:0`). Values are
    compared sorted, so a transposed kernel is found too; folded ones (BatchNorm into a
    convolution) keep their names.
    """
    by_size = {}
    for w in model.weights:
        if w.path in paths:
            values = np.sort(np.asarray(w, np.float32).ravel())
            by_size.setdefault(values.size, []).append((w.path, values))
    taken = {t for node in proto.graph.node for t in list(node.input) + list(node.output)}
    taken |= {i.name for i in proto.graph.initializer} | {i.name for i in proto.graph.input}
    renames = {}
    for init in proto.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        candidates = by_size.get(int(np.prod(init.dims)), [])
        if not candidates:
            continue
        values = np.sort(numpy_helper.to_array(init).ravel())
        for path, v in candidates:
            if path not in taken and path not in renames.values() and np.array_equal(values, v):
                renames[init.name] = path
                break
    for init in proto.graph.initializer:
        if init.name in renames:
            init.name = renames[init.name]
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    return renames


def add_metadata(proto, module, source):
    """Records the class names and the input convention in `metadata_props`."""
    props = {
        "class_names": json.dumps(list(module.class_names)),
        "num_classes": str(len(module.class_names)),
        "input_convention": module.input_convention,
        "input_name": INPUT_NAME,
        "input_dtype": "uint8" if module.raw_uint8_input else "float32",
        "input_shape": json.dumps([BATCH_DIM] + list(module.image_shape)),
        "input_layout": "NHWC" if len(module.image_shape) == 3 else "NC",
        "output_names": json.dumps(list(OUTPUT_NAMES)),
        "source_model": source,
        "exported_by": f"rlra_tf {rlra_tf.__version__} export",
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"rlra_tf classifier ({len(module.class_names)} classes), inference "
                        f"only. {module.input_convention}.")


def initializer_arrays(proto):
    """`{name: array}` of every initializer and every Constant node's tensor."""
    arrays = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    arrays[node.output[0]] = numpy_helper.to_array(attr.t)
    return arrays


def save(proto, path):
    try:
        onnx.save(proto, path)
    except (OSError, ValueError) as e:
        raise ExportError(f"Writing {path} failed ({e})", EXIT_CONVERSION) from e


def session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def export_and_verify(module, model, path, opset, cases, references, tolerance, source=""):
    """Converts, checks, reloads and compares with Keras; returns the report entry."""
    t0 = time.perf_counter()
    proto = convert(module, opset)
    name_batch_dimension(proto)
    renamed = name_initializers(proto, model, set(module.forward_paths))
    add_metadata(proto, module, source)
    save(proto, path)
    export_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        onnx.checker.check_model(path, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"The ONNX checker rejects {path}: {e}", EXIT_VERIFY) from e
    loaded = onnx.load(path)
    sess = session(path)
    output_names = [o.name for o in sess.get_outputs()]

    def run(images):
        return dict(zip(output_names, sess.run(None, {INPUT_NAME: images})))

    result = verify(run, cases, references, tolerance)
    arrays = initializer_arrays(loaded)
    feedback_paths = {w.path for w in model.feedback_weights}
    found = [n for n in arrays if n in feedback_paths]
    found += feedback_matches(model, arrays)
    verify_seconds = time.perf_counter() - t0
    return {
        "path": os.path.abspath(path),
        "bytes": os.path.getsize(path),
        "opset": int(opset),
        "ir_version": int(loaded.ir_version),
        "checker": "passed",
        "inputs": [{"name": i.name, "dtype": i.type, "shape": i.shape} for i in sess.get_inputs()],
        "outputs": output_names,
        "metadata_props": {p.key: p.value for p in loaded.metadata_props},
        "initializers": [
            {"name": i.name, "shape": list(i.dims)} for i in loaded.graph.initializer
        ],
        "renamed_initializers": len(renamed),
        "num_values": int(sum(np.size(a) for a in arrays.values())),
        "feedback_weights_found": found,
        "export_seconds": round(export_seconds, 4),
        "verify_seconds": round(verify_seconds, 4),
        **result,
    }
