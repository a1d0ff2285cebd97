"""The model side of an export: the `.keras` file in, the inference graph out.

Part of the shared layer of `export/` (with `common` and `verification`). It owns
`load_aligned_model` (a `.keras` file to an rlra_tf `AlignedModel`, or `ExportError`),
`image_shape`, and `ServingModule`: the model's forward pass in inference mode (BatchNorm on its
moving statistics) and nothing else. `ServingModule` traces `model(images, training=False)` once
and tracks exactly the variables that trace reads, so the error synapses (feedback weights), the
optimiser state and the metrics never reach an artefact. Its one signature takes `images`
(float32 in [0, 1], or uint8 in [0, 255] with `raw_uint8_input`) of shape
`(batch,) + image_shape` with a dynamic batch and returns `logits` and `probabilities`.
"""

import json
import os
import zipfile

import keras
import tensorflow as tf

from export.common import EXIT_CONVERSION, EXIT_MODEL, EXIT_USAGE, INPUT_NAME, ExportError
from rlra_tf.models import AlignedModel


def load_aligned_model(path):
    """Loads a `.keras` file and returns the `AlignedModel` in it (without optimiser state).

    Raises `ExportError` (exit code `EXIT_MODEL`) when the file is missing, is not a `.keras`
    archive, cannot be deserialised, or holds a model that is not an rlra_tf `AlignedModel`.
    """
    if not path:
        raise ExportError("Expected the path of a .keras file, received: model=''", EXIT_USAGE)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExportError(f"Model file not found: {path}", EXIT_MODEL)
    if os.path.isdir(path):
        raise ExportError(
            f"Expected a .keras file, received a folder: {path} (a SavedModel cannot be "
            "re-exported: it holds no Keras model)",
            EXIT_MODEL,
        )
    if not path.endswith(".keras"):
        raise ExportError(
            f"Expected a Keras 3 model file ending in .keras, received: {path}", EXIT_MODEL
        )
    corrupt = f"{path} is not a valid .keras archive (corrupt or truncated)"
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{corrupt}: it is not a zip file", EXIT_MODEL)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise ExportError(f"{corrupt}: cannot read its config.json ({e})", EXIT_MODEL) from e
    if not isinstance(config, dict):
        raise ExportError(f"{corrupt}: its config.json is not a model config", EXIT_MODEL)
    class_name = config.get("class_name")
    registered = str(config.get("registered_name") or class_name)
    not_ours = (
        f"{path} holds a Keras model of class {class_name!r} (registered as {registered!r}), "
        "not an rlra_tf AlignedModel: only models built with rlra_tf.models can be exported"
    )
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive or an unknown class.
        if not registered.startswith("rlra_tf>"):
            raise ExportError(f"{not_ours} ({type(e).__name__}: {e})", EXIT_MODEL) from e
        raise ExportError(
            f"{corrupt}: Keras cannot load it ({type(e).__name__}: {e})", EXIT_MODEL
        ) from e
    if not isinstance(model, AlignedModel):
        raise ExportError(not_ours, EXIT_MODEL)
    return model


def image_shape(model):
    """The fixed `(height, width, channels)` (or feature) shape the model was built for."""
    shape = (model.get_build_config() or {}).get("input_shape") if model.built else None
    if shape is None or len(shape) < 2 or any(d is None for d in shape[1:]):
        raise ExportError(
            f"Model {model.name!r} was not built with a fixed example shape (build config "
            f"input_shape={shape!r}); build it with model.build((None, height, width, "
            "channels)) before saving",
            EXIT_MODEL,
        )
    return tuple(int(d) for d in shape[1:])


def variable_key(variable):
    """The identity of the `tf.Variable` behind a Keras variable (or of a tf.Variable)."""
    return id(getattr(variable, "value", variable)) if isinstance(variable, keras.Variable) \
        else id(variable)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def input_convention(shape, raw_uint8_input):
    dims = ", ".join(str(d) for d in shape)
    if raw_uint8_input:
        return (f"{INPUT_NAME}: uint8 (batch, {dims}) channels-last, raw pixel values 0..255; "
                "the graph divides by 255 and applies the model's own normalisation")
    return (f"{INPUT_NAME}: float32 (batch, {dims}) channels-last, pixel values in [0, 1] "
            "(uint8 / 255); the graph applies the model's own normalisation")


class ServingModule(tf.Module):
    """The inference graph of an `AlignedModel`, holding only the variables it reads.

    Attributes:
        serve: `tf.function` `images -> {"logits", "probabilities"}` (float32, inference mode).
        metadata: `tf.function` returning the class names and the input convention as strings.
        forward_variables: the variables `serve` reads (never a feedback weight).

    The Keras model is kept out of the tracked attributes on purpose: `tf.saved_model.save`
    would otherwise save every weight it owns, error synapses included.
    """

    def __init__(self, model, raw_uint8_input=False, class_names=None):
        super().__init__(name="rlra_tf_serving")
        shape = image_shape(model)
        names = list(class_names) if class_names is not None else default_class_names(model)
        self.raw_uint8_input = bool(raw_uint8_input)
        self.image_shape = shape
        self.class_names = tuple(str(n) for n in names)
        self.input_convention = input_convention(shape, raw_uint8_input)
        dtype = tf.uint8 if raw_uint8_input else tf.float32
        spec = tf.TensorSpec((None,) + shape, dtype, name=INPUT_NAME)

        def serve(images):
            x = tf.cast(images, tf.float32)
            if raw_uint8_input:
                x = x / 255.0
            logits = tf.cast(model(x, training=False), tf.float32)  # (batch, num_classes)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

        self.serve = tf.function(serve, input_signature=[spec])
        captured = {id(v): v for v in self.serve.get_concrete_function().variables}
        feedback = {variable_key(w): w.path for w in model.feedback_weights}
        leaked = sorted(feedback[k] for k in captured if k in feedback)
        if leaked:
            raise ExportError(
                f"The inference graph of {model.name!r} reads error-synapse weights "
                f"{leaked}; the model's call() must not use feedback weights",
                EXIT_CONVERSION,
            )
        by_key = {variable_key(w): w for w in model.weights}
        unknown = sorted(v.name for k, v in captured.items() if k not in by_key)
        if unknown:
            raise ExportError(
                f"The inference graph of {model.name!r} reads variables that are not model "
                f"weights: {unknown}",
                EXIT_CONVERSION,
            )
        # Model order, so the SavedModel lists kernel, bias, ... as the model does.
        self.forward_variables = [
            _tf_variable(w) for w in model.weights if variable_key(w) in captured
        ]
        self.forward_paths = [w.path for w in model.weights if variable_key(w) in captured]
        metadata = {
            "class_names": tf.constant(self.class_names, tf.string),
            "input_convention": tf.constant(self.input_convention, tf.string),
        }
        self.metadata = tf.function(lambda: dict(metadata), input_signature=[])


def default_class_names(model):
    return [str(i) for i in range(int(model.num_classes))]

