"""Export an rlra_tf model to SavedModel and ONNX and verify the artefacts against Keras.

The serving graph is the model's forward pass in inference mode (BatchNorm on its moving
statistics) and nothing else: `ServingModule` traces `model(images, training=False)` once and
tracks exactly the variables that trace reads, so the error synapses (feedback weights), the
optimiser state and the metrics never reach an artefact. Its one signature, `serving_default`,
takes `images` (float32 in [0, 1], or uint8 in [0, 255] with `raw_uint8_input`) of shape
`(batch,) + image_shape` with a dynamic batch and returns `logits` and `probabilities`.

`export_model` is what the binaries (`python -m export`, `python -m export.savedmodel`,
`python -m export.onnx`) call: it checks its arguments and the output location, loads the
`.keras` file, writes the artefacts, reloads them (`tf.saved_model.load`, onnxruntime), runs the
ONNX checker, compares every artefact with Keras on random and (when a dataset is available)
real test images at two batch sizes, writes `export_report.json` and raises `ExportError` (with
an exit code) when anything is wrong.
"""

import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import tempfile
import time
import zipfile

import keras
import numpy as np
import tensorflow as tf

import rlra_tf
from rlra_tf.models import AlignedModel

# Exit codes of the binaries (0 is success).
EXIT_USAGE = 2  # a bad argument (opset, formats, batch sizes, tolerance, dataset)
EXIT_MODEL = 3  # the .keras file is missing, corrupt or not an rlra_tf model
EXIT_OUTPUT = 4  # the output location is not writable, or not empty without overwrite
EXIT_VERIFY = 5  # an artefact differs from Keras beyond the tolerance or holds feedback weights
EXIT_CONVERSION = 6  # TensorFlow or tf2onnx failed to write an artefact

FORMATS = ("savedmodel", "onnx")
# tf2onnx 1.17 converts to ONNX opsets 13 to 18 only (it refuses 19 and above).
SUPPORTED_OPSETS = tuple(range(13, 19))
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
DEFAULT_BATCH_SIZES = (1, 7)
REPORT_NAME = "export_report.json"
SAVEDMODEL_NAME = "saved_model"
ONNX_NAME = "model.onnx"
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
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ExportError(
            f"Expected a finite tolerance >= 0, received: tolerance={tolerance!r}", EXIT_USAGE
        )
    return value


# --------------------------------------------------------------------------------- the model


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


def _variable_key(variable):
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
        feedback = {_variable_key(w): w.path for w in model.feedback_weights}
        leaked = sorted(feedback[k] for k in captured if k in feedback)
        if leaked:
            raise ExportError(
                f"The inference graph of {model.name!r} reads error-synapse weights "
                f"{leaked}; the model's call() must not use feedback weights",
                EXIT_CONVERSION,
            )
        by_key = {_variable_key(w): w for w in model.weights}
        unknown = sorted(v.name for k, v in captured.items() if k not in by_key)
        if unknown:
            raise ExportError(
                f"The inference graph of {model.name!r} reads variables that are not model "
                f"weights: {unknown}",
                EXIT_CONVERSION,
            )
        # Model order, so the SavedModel lists kernel, bias, ... as the model does.
        self.forward_variables = [
            _tf_variable(w) for w in model.weights if _variable_key(w) in captured
        ]
        self.forward_paths = [w.path for w in model.weights if _variable_key(w) in captured]
        metadata = {
            "class_names": tf.constant(self.class_names, tf.string),
            "input_convention": tf.constant(self.input_convention, tf.string),
        }
        self.metadata = tf.function(lambda: dict(metadata), input_signature=[])


def default_class_names(model):
    return [str(i) for i in range(int(model.num_classes))]


# --------------------------------------------------------------------------------- output


@dataclasses.dataclass
class OutputLayout:
    """Where the artefacts go. `folder` is checked and created; `entries` are ours in it."""

    folder: str
    savedmodel: str = None
    onnx: str = None
    report: str = None

    @property
    def entries(self):
        if self.savedmodel is not None and os.path.abspath(self.savedmodel) == \
                os.path.abspath(self.folder):
            own = list(SAVEDMODEL_ENTRIES)
        else:
            own = [os.path.basename(p) for p in (self.savedmodel,) if p is not None]
        own += [os.path.basename(p) for p in (self.onnx, self.report) if p is not None]
        return own


def layout_for(out, formats, mode="combined"):
    """The output layout of a binary.

    `mode="combined"` (`python -m export`): `out` is a folder that receives `saved_model/`,
    `model.onnx` and `export_report.json`. `mode="savedmodel"`: `out` is the SavedModel
    folder itself, with the report inside it. `mode="onnx"`: `out` is the `.onnx` file and
    the report goes beside it.
    """
    if not out:
        raise ExportError("Expected an output path, received: out=''", EXIT_USAGE)
    out = os.fspath(out)
    if mode == "combined":
        return OutputLayout(
            folder=out,
            savedmodel=os.path.join(out, SAVEDMODEL_NAME) if "savedmodel" in formats else None,
            onnx=os.path.join(out, ONNX_NAME) if "onnx" in formats else None,
            report=os.path.join(out, REPORT_NAME),
        )
    if mode == "savedmodel":
        return OutputLayout(folder=out, savedmodel=out, report=os.path.join(out, REPORT_NAME))
    if mode == "onnx":
        if not out.endswith(".onnx"):
            raise ExportError(f"Expected an output file ending in .onnx, received: out={out!r}",
                              EXIT_USAGE)
        folder = os.path.dirname(out) or "."
        return OutputLayout(folder=folder, onnx=out, report=os.path.join(folder, REPORT_NAME))
    raise ExportError(
        f"Expected mode 'combined', 'savedmodel' or 'onnx', received: mode={mode!r}", EXIT_USAGE
    )


def prepare_output(layout, overwrite, mode="combined"):
    """Creates the output folder and checks it is writable and free.

    A folder (combined and SavedModel modes) must be empty unless `overwrite`; the `.onnx`
    mode only refuses to replace its own file and report. With `overwrite` our own entries
    are removed; anything else in the folder is left alone.
    """
    folder = layout.folder
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ExportError(f"Output folder {folder} exists and is not a folder", EXIT_OUTPUT)
    if os.path.isdir(folder):
        present = sorted(os.listdir(folder))
        ours = [e for e in layout.entries if e in present]
        blocking = ours if mode == "onnx" else present
        if blocking and not overwrite:
            shown = ", ".join(blocking[:5]) + (", ..." if len(blocking) > 5 else "")
            what = (f"Output {layout.onnx} or its report already exists" if mode == "onnx"
                    else f"Output folder {folder} is not empty")
            raise ExportError(f"{what} (holds {shown}); pass --overwrite to replace the "
                              "export artefacts", EXIT_OUTPUT)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ExportError(
            f"Output folder {folder} is not writable ({e.strerror or e}): choose another --out",
            EXIT_OUTPUT,
        ) from e
    if overwrite:
        for entry in layout.entries:
            path = os.path.join(folder, entry)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.remove(path)
            except OSError as e:
                raise ExportError(f"Cannot remove the old artefact {path} ({e})",
                                  EXIT_OUTPUT) from e


def path_bytes(path):
    """Size of a file, or of everything under a folder, in bytes."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


# --------------------------------------------------------------------------------- inputs


def real_test_images(model, dataset="auto", count=8, data_dir=None):
    """`(images, note)`: up to `count` float32 test images in [0, 1] of the model's shape.

    `dataset="auto"` tries the datasets of `rlra_tf.data` whose image shape and class count
    match the model, `None`/`"none"` uses none; a named dataset that does not match or is not
    available offline raises `ExportError`. `images` is `None` when none could be had, and
    `note` says why (or which dataset was used).
    """
    if dataset in (None, "", "none"):
        return None, {"skipped": "no dataset requested"}
    try:
        from rlra_tf import data
    except ImportError as e:
        if dataset != "auto":
            raise ExportError(f"Cannot use --dataset={dataset}: rlra_tf.data is not importable "
                              f"({e})", EXIT_USAGE) from e
        return None, {"skipped": f"rlra_tf.data is not importable ({e})"}
    shape = image_shape(model)
    if dataset == "auto":
        candidates = [
            n for n in data.DATASETS
            if tuple(data.info(n).image_shape) == shape
            and data.info(n).num_classes == model.num_classes
        ]
        if not candidates:
            return None, {"skipped": f"no dataset in rlra_tf.data has images of shape {shape} "
                                     f"and {model.num_classes} classes", "candidates": []}
    else:
        if dataset not in data.DATASETS:
            raise ExportError(f"Unknown dataset, received: dataset={dataset!r}; expected one of "
                              f"{', '.join(data.DATASETS)}, 'auto' or 'none'", EXIT_USAGE)
        ds_info = data.info(dataset)
        if tuple(ds_info.image_shape) != shape or ds_info.num_classes != model.num_classes:
            raise ExportError(
                f"Dataset {dataset} has images of shape {tuple(ds_info.image_shape)} and "
                f"{ds_info.num_classes} classes, the model expects {shape} and "
                f"{model.num_classes}", EXIT_USAGE)
        candidates = [dataset]
    reasons = []
    for name in candidates:
        try:
            batch = next(iter(data.load(name, "test", count, limit=count, data_dir=data_dir)))
            return np.asarray(batch[0], np.float32), {
                "dataset": name, "split": "test", "candidates": candidates}
        except data.DatasetUnavailableError as e:
            reasons.append(f"{name}: {str(e).splitlines()[0]}")
    if dataset != "auto":
        raise ExportError(f"Dataset {dataset} is not available: {reasons[0]}", EXIT_USAGE)
    return None, {"skipped": "; ".join(reasons), "candidates": candidates}


def dataset_from_run_config(model_path, dataset):
    """`(dataset, config path)`: for "auto", the `dataset` of a trainer's `config.json`.

    `trainers.train` writes `config.json` (with the dataset name) beside `model.keras`; when
    it is there, "auto" means that dataset. Otherwise `(dataset, None)`.
    """
    if dataset != "auto":
        return dataset, None
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), "config.json")
    try:
        with open(path) as f:
            name = json.load(f).get("dataset")
    except (OSError, ValueError, AttributeError):
        return dataset, None
    return (name, path) if isinstance(name, str) and name else (dataset, None)


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
               if _variable_key(w) not in {_variable_key(f) for f in model.feedback_weights}}
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


# --------------------------------------------------------------------------------- export


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


def _verify(runner, cases, references, tolerance):
    checks, worst = [], {name: 0.0 for name in OUTPUT_NAMES}
    for (label, images), reference in zip(cases, references):
        diffs = compare(reference, runner(images))
        checks.append({"input": label, "batch_size": int(images.shape[0]),
                       "max_abs_diff": diffs})
        worst = {k: max(worst[k], diffs[k]) for k in worst}
    return {"max_abs_diff": worst, "max_abs_diff_all": max(worst.values()),
            "within_tolerance": max(worst.values()) <= tolerance, "checks": checks}


def export_model(
    model_path,
    out,
    formats=FORMATS,
    *,
    mode="combined",
    opset=DEFAULT_OPSET,
    raw_uint8_input=False,
    class_names=None,
    dataset="auto",
    data_dir=None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    tolerance=DEFAULT_TOLERANCE,
    overwrite=False,
    seed=0,
):
    """Exports `model_path` (a `.keras` file) and verifies the artefacts. Returns the report.

    Args:
        model_path: the `.keras` file of an rlra_tf `AlignedModel`.
        out: see `layout_for` (a folder, the SavedModel folder, or the `.onnx` file).
        formats: `"savedmodel"` and/or `"onnx"` (a list or a comma-separated string).
        mode: `"combined"`, `"savedmodel"` or `"onnx"`: the binary's output layout.
        opset: ONNX opset, 13 to 18.
        raw_uint8_input: the graph takes uint8 pixels and divides them by 255 itself.
        class_names: one name per class (default: a dataset's names when `dataset` names one
            or `"auto"` finds exactly one match, else "0".."K-1").
        dataset: a dataset of `rlra_tf.data` for real test images, `"none"`, or `"auto"`:
            the `dataset` of a trainer's `config.json` beside the model if there is one,
            else the datasets that match the model's image shape and class count.
        data_dir: tfds data folder for `dataset`.
        batch_sizes: the batch sizes the artefacts are compared with Keras at.
        tolerance: the largest allowed max abs difference of logits and probabilities.
        overwrite: replace existing artefacts.
        seed: seed of the random verification inputs.

    Raises:
        ExportError: with `exit_code`; on a failed verification the report is written first.
    """
    started = time.perf_counter()
    formats = check_formats(formats)
    if "onnx" in formats:
        opset = check_opset(opset)
    batch_sizes = check_batch_sizes(batch_sizes)
    tolerance = check_tolerance(tolerance)
    layout = layout_for(out, formats, mode)
    prepare_output(layout, overwrite, mode)

    t0 = time.perf_counter()
    model = load_aligned_model(model_path)
    load_seconds = time.perf_counter() - t0
    shape = image_shape(model)
    dataset, config_path = dataset_from_run_config(model_path, dataset)
    try:
        images, real_note = real_test_images(model, dataset, max(batch_sizes), data_dir)
    except ExportError:
        if config_path is None:
            raise
        dataset = "auto"  # the run's dataset does not fit or is unavailable: look for others
        images, real_note = real_test_images(model, dataset, max(batch_sizes), data_dir)
    if config_path is not None:
        real_note["dataset_from"] = config_path
    if class_names is None:
        class_names = _dataset_class_names(model, dataset, real_note)
    class_names = [str(n) for n in class_names]
    if len(class_names) != model.num_classes:
        raise ExportError(
            f"Expected {model.num_classes} class names (one per class), received "
            f"{len(class_names)}: class_names={class_names!r}", EXIT_USAGE)
    module = ServingModule(model, raw_uint8_input=raw_uint8_input, class_names=class_names)
    cases = verification_inputs(shape, raw_uint8_input, batch_sizes, images, seed)
    references = [keras_outputs(model, x, raw_uint8_input) for _, x in cases]
    n_fwd, n_fb = model.count_params_split()

    report = {
        "model": os.path.abspath(model_path),
        "model_bytes": path_bytes(model_path),
        "model_class": type(model).__name__,
        "image_shape": list(shape),
        "num_classes": int(model.num_classes),
        "class_names": class_names,
        "raw_uint8_input": bool(raw_uint8_input),
        "input_convention": module.input_convention,
        "inputs": {INPUT_NAME: "uint8" if raw_uint8_input else "float32"},
        "outputs": list(OUTPUT_NAMES),
        "forward_params": int(n_fwd),
        "feedback_params": int(n_fb),
        "exported_variables": module.forward_paths,
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "real_images": real_note,
        "load_seconds": round(load_seconds, 4),
        "formats": {},
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    failures = []
    if "savedmodel" in formats:
        from export import savedmodel_lib

        entry = savedmodel_lib.export_and_verify(
            module, model, layout.savedmodel, cases, references, tolerance)
        report["formats"]["savedmodel"] = entry
        failures += _failures("SavedModel", entry, tolerance)
    if "onnx" in formats:
        from export import onnx_lib

        entry = onnx_lib.export_and_verify(
            module, model, layout.onnx, opset, cases, references, tolerance,
            source=os.path.basename(os.fspath(model_path)))
        report["formats"]["onnx"] = entry
        failures += _failures("ONNX", entry, tolerance)
    report["max_abs_diff"] = max(e["max_abs_diff_all"] for e in report["formats"].values())
    report["passed"] = not failures
    report["failures"] = failures
    report["total_seconds"] = round(time.perf_counter() - started, 4)
    report["report"] = os.path.abspath(layout.report)
    with open(layout.report, "w") as f:
        json.dump(report, f, indent=2, allow_nan=True)
        f.write("\n")
    if failures:
        raise ExportError("Verification failed: " + "; ".join(failures)
                          + f" (report: {layout.report})", EXIT_VERIFY)
    return report


def _dataset_class_names(model, dataset, real_note):
    """Class names of the dataset named (or the only match "auto" found), else "0".."K-1".

    "auto" uses a dataset's names only when it is the one dataset of that image shape and
    class count (MNIST and Fashion-MNIST, for instance, are indistinguishable by shape).
    """
    name = dataset
    if dataset == "auto":
        candidates = real_note.get("candidates", [])
        name = candidates[0] if len(candidates) == 1 else None
    if name in (None, "", "none", "auto"):
        return default_class_names(model)
    try:
        from rlra_tf import data

        names = list(data.info(name).class_names)
    except (ImportError, ValueError):
        return default_class_names(model)
    return names if len(names) == model.num_classes else default_class_names(model)


def _failures(label, entry, tolerance):
    out = []
    if not entry["within_tolerance"]:
        out.append(f"{label} max abs difference {entry['max_abs_diff_all']:.3g} exceeds the "
                   f"tolerance {tolerance:g}")
    if entry["feedback_weights_found"]:
        out.append(f"{label} holds feedback weights: {entry['feedback_weights_found']}")
    return out


def run_forward(fn, images):
    """Calls a serving function on a NumPy batch and returns NumPy outputs."""
    outputs = fn(**{INPUT_NAME: tf.constant(images)})
    return {k: np.asarray(v) for k, v in outputs.items()}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - t0, 4)
