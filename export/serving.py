"""The model side of an export: the `.keras` file in, the inference graph out.

Part of the shared layer of `export/` (with `common` and `verification`). It owns
`load_aligned_model` (a `.keras` file to an rlra_tf `AlignedModel`, or `ExportError`),
`image_shape`, `float32_model` (a copy of a model whose layers carry a mixed-precision or
half-precision dtype policy, computing in float32), and `ServingModule`: the model's forward
pass in inference mode (BatchNorm on its moving statistics), in float32, and nothing else.
`ServingModule` traces `model(images, training=False)` once and tracks exactly the variables
that trace reads, so the error synapses (feedback weights), the optimiser state and the metrics
never reach an artefact. Its one signature takes `images` (float32 in [0, 1], or uint8 in
[0, 255] with `raw_uint8_input`) of shape `(batch,) + image_shape` with a dynamic batch and
returns `logits` and `probabilities`.

The serving graph is always float32: a model saved under `keras.config.set_dtype_policy(
"mixed_bfloat16")` (or `"mixed_float16"`) keeps its variables in float32 and only computes in
half precision, so `float32_model` rebuilds it from its config with every policy set to float32
and copies the weights; `ServingModule` then checks that no op of its graph is half precision.
"""

import json
import os
import zipfile

import keras
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from export.common import EXIT_CONVERSION, EXIT_USAGE, INPUT_NAME, ExportError
from rlra_tf.models import AlignedModel


def load_aligned_model(path):
    """Loads a `.keras` file and returns the `AlignedModel` in it (without optimiser state).

    Raises `ExportError` (exit code `EXIT_USAGE`) when the file is missing, is not a `.keras`
    archive, cannot be deserialised, or holds a model that is not an rlra_tf `AlignedModel`.
    """
    if not path:
        raise ExportError("Expected the path of a .keras file, received: model=''", EXIT_USAGE)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExportError(f"Model file not found: {path}", EXIT_USAGE)
    if os.path.isdir(path):
        raise ExportError(
            f"Expected a .keras file, received a folder: {path} (a SavedModel cannot be "
            "re-exported: it holds no Keras model)",
            EXIT_USAGE,
        )
    if not path.endswith(".keras"):
        raise ExportError(
            f"Expected a Keras 3 model file ending in .keras, received: {path}", EXIT_USAGE
        )
    corrupt = f"{path} is not a valid .keras archive (corrupt or truncated)"
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{corrupt}: it is not a zip file", EXIT_USAGE)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise ExportError(f"{corrupt}: cannot read its config.json ({e})", EXIT_USAGE) from e
    if not isinstance(config, dict):
        raise ExportError(f"{corrupt}: its config.json is not a model config", EXIT_USAGE)
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
            raise ExportError(f"{not_ours} ({type(e).__name__}: {e})", EXIT_USAGE) from e
        raise ExportError(
            f"{corrupt}: Keras cannot load it ({type(e).__name__}: {e})", EXIT_USAGE
        ) from e
    if not isinstance(model, AlignedModel):
        raise ExportError(not_ours, EXIT_USAGE)
    return model


def image_shape(model):
    """The fixed `(height, width, channels)` (or feature) shape the model was built for."""
    shape = (model.get_build_config() or {}).get("input_shape") if model.built else None
    if shape is None or len(shape) < 2 or any(d is None for d in shape[1:]):
        raise ExportError(
            f"Model {model.name!r} was not built with a fixed example shape (build config "
            f"input_shape={shape!r}); build it with model.build((None, height, width, "
            "channels)) before saving",
            EXIT_USAGE,
        )
    return tuple(int(d) for d in shape[1:])


SERVING_DTYPE = "float32"
_HALF_DTYPES = {types_pb2.DT_HALF: "float16", types_pb2.DT_BFLOAT16: "bfloat16"}


def dtype_policies(model):
    """The names of the dtype policies of `model` and its layers that do not compute in float32,
    sorted (empty for a float32 model)."""
    return sorted({layer.dtype_policy.name for layer in model._flatten_layers()
                   if layer.dtype_policy.compute_dtype != SERVING_DTYPE})


def _float32_config(config):
    """`config` (a serialised Keras object) with every `DTypePolicy` set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": SERVING_DTYPE}}
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def float32_model(model):
    """`model` if it computes in float32, else a float32 copy of it with the same weights.

    A model built under a mixed policy (`mixed_bfloat16`, `mixed_float16`) holds float32
    variables and computes in half precision; the copy is rebuilt from the model's config with
    every dtype policy set to float32 (and Keras' global policy set to float32 meanwhile, so
    layers that a model creates itself are float32 too), then given the model's weights. The
    model passed in is left as it is.

    Raises:
        ExportError: when the copy cannot be built or still computes in half precision.
    """
    policies = dtype_policies(model)
    if not policies:
        return model
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # the copy serves; it is never trained
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(SERVING_DTYPE)
    try:
        copy = keras.saving.deserialize_keras_object(_float32_config(config))
        if not copy.built:
            copy.build_from_config(model.get_build_config())
        copy.set_weights(model.get_weights())
    except Exception as e:  # Keras raises many types when a config does not rebuild.
        raise ExportError(
            f"Cannot rebuild {model.name!r} (dtype policies {policies}) in float32 for the "
            f"serving graph ({type(e).__name__}: {e})", EXIT_CONVERSION) from e
    finally:
        keras.config.set_dtype_policy(previous)
    left = dtype_policies(copy)
    if left:
        raise ExportError(f"The float32 copy of {model.name!r} still computes in {left}",
                          EXIT_CONVERSION)
    return copy


def half_precision_ops(concrete_function):
    """`["op name (dtype)"]` of every op of a traced function (nested functions included) that
    has a float16 or bfloat16 input, output or type attribute."""
    graph_def = concrete_function.graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    found = []
    for node in nodes:
        types = set()
        for attr in node.attr.values():
            types.add(attr.type)
            types.update(attr.list.type)
        half = sorted(_HALF_DTYPES[t] for t in types if t in _HALF_DTYPES)
        if half:
            found.append(f"{node.name} ({', '.join(half)})")
    return found


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
        model_dtype_policies: the model's dtype policies that are not float32 (for a mixed
            precision model, `["mixed_bfloat16"]`): `serve` computes in float32 all the same,
            on a float32 copy of the model (`float32_model`).

    The Keras model is kept out of the tracked attributes on purpose: `tf.saved_model.save`
    would otherwise save every weight it owns, error synapses included.
    """

    def __init__(self, model, raw_uint8_input=False, class_names=None):
        super().__init__(name="rlra_tf_serving")
        self.model_dtype_policies = tuple(dtype_policies(model))
        model = float32_model(model)
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
        concrete = self.serve.get_concrete_function()
        half = half_precision_ops(concrete)
        if half:
            raise ExportError(
                f"The serving graph of {model.name!r} computes in half precision, not float32: "
                f"{half[:5]}", EXIT_CONVERSION)
        captured = {id(v): v for v in concrete.variables}
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

