"""Writing a `ServingModule` as a SavedModel, and checking the result against Keras.

The SavedModel format layer of `export/`: it imports the shared layer (`common`,
`verification`) and is called by `export_lib.export_model`. It owns the saving (one signature,
`serving_default`), the reading back of the stored variables, and the comparison of the
reloaded signature's outputs with Keras'.
"""

import os
import time

import numpy as np
import tensorflow as tf

from export.common import EXIT_CONVERSION, INPUT_NAME, ExportError, path_bytes, timed
from export.verification import feedback_matches, run_forward, verify


def save(module, path):
    """Writes `module` with its one signature, `serving_default`."""
    try:
        tf.saved_model.save(
            module, path, signatures={"serving_default": module.serve.get_concrete_function()}
        )
    except Exception as e:  # TensorFlow raises many types when saving fails.
        raise ExportError(f"Writing the SavedModel {path} failed ({type(e).__name__}: {e})",
                          EXIT_CONVERSION) from e


def checkpoint_arrays(path):
    """`{checkpoint key: array}` of every variable stored in the SavedModel at `path`."""
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def export_and_verify(module, model, path, cases, references, tolerance):
    """Saves, reloads and compares with Keras; returns the report entry of the SavedModel."""
    _, export_seconds = timed(save, module, path)
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    result = verify(lambda x: run_forward(serve, x), cases, references, tolerance)
    variables = [
        {"name": v.name.split(":")[0], "shape": list(v.shape), "dtype": v.dtype.name}
        for v in loaded.forward_variables
    ]
    feedback_paths = {w.path for w in model.feedback_weights}
    found = [v["name"] for v in variables if v["name"] in feedback_paths
             or any(v["name"].endswith("/" + p) for p in feedback_paths)]
    arrays = checkpoint_arrays(path)
    found += feedback_matches(model, arrays)
    input_spec = serve.structured_input_signature[1][INPUT_NAME]
    verify_seconds = time.perf_counter() - t0
    return {
        "path": os.path.abspath(path),
        "bytes": path_bytes(path),
        "signature": "serving_default",
        "input": {"name": INPUT_NAME, "dtype": input_spec.dtype.name,
                  "shape": [d if d is not None else -1 for d in input_spec.shape.as_list()]},
        "variables": variables,
        "num_variables": len(arrays),
        "num_values": int(sum(np.size(a) for a in arrays.values())),
        "feedback_weights_found": found,
        "export_seconds": export_seconds,
        "verify_seconds": round(verify_seconds, 4),
        **result,
    }
