"""What an exported artefact is checked against, and how.

Part of the shared layer of `export/`; the format modules (`savedmodel_lib`, `onnx_lib`) call
it on the artefacts they reload. It owns the verification inputs (random and real images at
every batch size, in the serving dtype), Keras' reference outputs for them, the comparison
(`compare`, `verify`: max abs differences against a tolerance), `feedback_matches` (is any
feedback weight's content in an artefact, however it was renamed or transposed) and
`run_forward` (a serving function on a NumPy batch).
"""

import keras
import numpy as np
import tensorflow as tf

from export.common import INPUT_NAME, OUTPUT_NAMES
from export.serving import variable_key


def verification_inputs(shape, raw_uint8_input, batch_sizes, real_images=None, seed=0):
    """`[(label, images)]`: random and real images at every batch size, in the serving dtype.

    Real images are float in [0, 1]; for a uint8 graph they are quantised to 0..255.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for b in batch_sizes:
        if raw_uint8_input:
            x = rng.integers(0, 256, size=(b,) + shape, dtype=np.uint8)
        else:
            x = rng.random((b,) + shape, dtype=np.float32)
        cases.append((f"random_batch{b}", x))
    if real_images is not None and len(real_images):
        for b in batch_sizes:
            x = np.resize(real_images, (b,) + shape)  # repeats images when b > available
            if raw_uint8_input:
                x = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
            cases.append((f"real_batch{b}", x.astype(np.uint8 if raw_uint8_input else np.float32)))
    return cases


def keras_outputs(model, images, raw_uint8_input):
    """What the Keras model computes for serving inputs: `{"logits", "probabilities"}`."""
    x = images.astype(np.float32)
    if raw_uint8_input:
        x = x / np.float32(255.0)
    logits = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float32)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    return {"logits": logits, "probabilities": probs}


def compare(reference, outputs):
    """`{output name: max abs difference}`; a missing or wrongly shaped output is infinite."""
    diffs = {}
    for name in OUTPUT_NAMES:
        got = outputs.get(name)
        if got is None or np.shape(got) != np.shape(reference[name]):
            diffs[name] = float("inf")
        else:
            diffs[name] = float(np.max(np.abs(np.asarray(got, np.float64) - reference[name])))
    return diffs


def _sorted_values(array):
    return np.sort(np.asarray(array, np.float32).ravel())


def feedback_matches(model, arrays):
    """Names in `arrays` (`{name: array}`) whose values are those of a feedback weight.

    Values are compared sorted, so a transposed or reshaped copy is found too. A feedback
    weight that happens to equal a forward weight is ignored (the forward one is allowed).
    """
    forward = {_sorted_values(w).tobytes() for w in model.weights
               if variable_key(w) not in {variable_key(f) for f in model.feedback_weights}}
    feedback = {}
    for w in model.feedback_weights:
        values = _sorted_values(w)
        if values.tobytes() not in forward:
            feedback.setdefault(values.size, []).append((w.path, values))
    found = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.floating):
            continue
        candidates = feedback.get(array.size, [])
        if candidates:
            values = _sorted_values(array)
            found += [f"{name} (= {path})" for path, v in candidates if np.array_equal(values, v)]
    return found


def verify(runner, cases, references, tolerance):
    """Runs `runner` on every case and compares it with its reference: the report entry's
    `max_abs_diff`, `max_abs_diff_all`, `within_tolerance` and per-case `checks`."""
    checks, worst = [], {name: 0.0 for name in OUTPUT_NAMES}
    for (label, images), reference in zip(cases, references):
        diffs = compare(reference, runner(images))
        checks.append({"input": label, "batch_size": int(images.shape[0]),
                       "max_abs_diff": diffs})
        worst = {k: max(worst[k], diffs[k]) for k in worst}
    return {"max_abs_diff": worst, "max_abs_diff_all": max(worst.values()),
            "within_tolerance": max(worst.values()) <= tolerance, "checks": checks}


def run_forward(fn, images):
    """Calls a serving function on a NumPy batch and returns NumPy outputs."""
    outputs = fn(**{INPUT_NAME: tf.constant(images)})
    return {k: np.asarray(v) for k, v in outputs.items()}

