"""`from_keras`: a Keras `Sequential` or functional classifier as an `AlignedModel`.

The converter reads the model's layer graph, groups each `Conv2D`/`Dense` with the
`BatchNormalization`, residual `Add` and activation after it into one unit, turns the
weight-free layers between units into transitions, each residual join into a `ResidualStack`
and each other unit into a `UnitStack`, then copies the forward weights. The result computes the
same function (the same logits, in inference and in training mode) and trains under every rule.
Anything it cannot represent is refused with a `ValueError` before anything is built.
docs/MODELS.md says what is supported and how a model is cut into blocks.
"""

import dataclasses
from typing import List

import keras
import numpy as np

from rlra_tf.checks import check_positive_int
from rlra_tf.layers import AlignedConv2D, AlignedDense, Dropout
from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import ResidualStack, UnitStack
from rlra_tf.models.keras_graph import (
    ConversionError,
    Graph,
    Parser,
    ResidualSpec,
    UnitSpec,
    fail,
    fold_preprocessing,
    layer_kind,
)


@dataclasses.dataclass
class Conversion:
    """What `from_keras` did, kept on the returned model as `model.conversion`.

    Attributes:
        source: the Keras model's name.
        notes: what a user should know (e.g. that a final softmax was taken off).
        layer_map: `{Keras layer name: "block/layer"}`: where each Keras layer went (folded
            preprocessing and removed softmaxes map to `"input preprocessing"` / `"removed"`).
        weight_pairs: `(converted variable, Keras variable)` for every forward weight copied.
    """

    source: str
    notes: List[str]
    layer_map: dict
    weight_pairs: list

    def summary(self):
        lines = [f"Converted from Keras model {self.source!r}:"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  {k} -> {v}" for k, v in self.layer_map.items()]
        return "\n".join(lines)


def _unit_layer(spec, skip_classes, fold):
    layer = spec.layer
    use_bias = layer.use_bias and not (fold and spec.norm is not None)
    norm = dict(norm_momentum=float(spec.norm.momentum), norm_epsilon=float(spec.norm.epsilon)) \
        if spec.norm is not None else {}
    if layer_kind(layer) == "Dense":
        return AlignedDense(layer.units, activation=spec.activation, use_bias=use_bias,
                            skip_classes=skip_classes,
                            norm="batch" if spec.norm is not None else None, name=layer.name,
                            **norm)
    projection = {}
    if spec.projection is not None:
        conv, conv_norm = spec.projection
        projection = dict(shortcut="projection", shortcut_strides=tuple(conv.strides),
                          shortcut_use_bias=conv.use_bias and not (fold and conv_norm is not None))
    return AlignedConv2D(
        layer.filters, tuple(layer.kernel_size), strides=tuple(layer.strides),
        padding=layer.padding, use_bias=use_bias,
        norm="batch" if spec.norm is not None else None, activation=spec.activation,
        skip_classes=skip_classes, name=layer.name, **projection, **norm,
    )


def _copy_norm(unit_norm, keras_norm, folded_bias):
    """Copies a BatchNorm's weights; a conv bias folded away shifts the moving mean by it
    (`(x + b) - m` is `x - (m - b)`; in training the batch mean absorbs `b` exactly)."""
    pairs = []
    for n in ("gamma", "beta", "moving_mean", "moving_variance"):
        ours, theirs = getattr(unit_norm, n), getattr(keras_norm, n)
        value = keras.ops.convert_to_numpy(theirs)
        if n == "moving_mean" and folded_bias is not None:
            value = value - keras.ops.convert_to_numpy(folded_bias)
        ours.assign(value)
        pairs.append((ours, theirs))
    return pairs


def _copy_linear(kernel, bias, norm, layer, keras_norm):
    """Copies a Keras Conv2D/Dense (and the BatchNorm after it) into a unit's `kernel`, `bias`
    and `norm`; a bias the unit does not have is folded into the BatchNorm's moving mean."""
    pairs = [(kernel, layer.kernel)] + ([(bias, layer.bias)] if bias is not None else [])
    for ours, theirs in pairs:
        ours.assign(keras.ops.convert_to_numpy(theirs))
    folded = layer.bias if layer.use_bias and bias is None else None
    if keras_norm is not None:
        pairs += _copy_norm(norm, keras_norm, folded)
    return pairs


def _copy_weights(unit, spec):
    """Copies the Keras layers' forward weights into `unit`; returns the `(ours, theirs)`."""
    pairs = _copy_linear(unit.kernel, unit.bias, unit.norm_layer, spec.layer, spec.norm)
    if spec.projection is not None:
        conv, norm = spec.projection
        pairs += _copy_linear(unit.shortcut_kernel, unit.shortcut_bias, unit.shortcut_norm,
                              conv, norm)
    return pairs


def from_keras(model, num_classes=None, name=None, fold_batchnorm_bias=False, **model_kwargs):
    """Converts a Keras `Sequential` or functional classifier into an `AlignedModel`.

    The returned model computes the same logits as `model` (before its final softmax, which is
    taken off: the model trains on logits, and `model.conversion.notes` says so), in inference
    and in training mode. Its forward weights are copies of `model`'s; its error synapses are
    new, initialised as in the library's own models, and every hidden unit gets a skip synapse
    (so `dfa` and `rec_lra(feedback="skip")` can train it too). It is built, not compiled.

    How the model is cut: each `Conv2D`/`Dense` with the `BatchNormalization` and activation
    after it is one unit; two branches from one tensor that meet in an `Add` are a
    `ResidualStack` (the shortcut: the identity, or a 1x1 `Conv2D` with or without
    `BatchNormalization`, which becomes the output unit's projection); every other unit is a
    `UnitStack` of its own; `ZeroPadding2D`, pooling, `Flatten` and `Dropout` become
    transitions after the unit before them; `Rescaling`/`Normalization` right after the input
    become the model's input preprocessing.

    Args:
        model: a built `keras.Sequential` or functional model with one image or vector input
            of fixed shape and one output: the class scores (logits or softmax).
        num_classes: the number of classes, if you want it checked against the model's last
            layer (`None`: that layer's width).
        name: the new model's name (default: the Keras model's).
        fold_batchnorm_bias: drop the bias of a `Conv2D`/`Dense` that a BatchNormalization
            follows, shifting the BatchNorm's moving mean by it instead: the same function
            (in training the batch mean absorbs a bias exactly, so it never learns either)
            with fewer parameters, as torchvision's and rlra_tf's ResNets have it.
        **model_kwargs: passed to `AlignedModel` (e.g. `noise_seed`).

    Returns:
        An `AlignedModel`, with `model.conversion` (a `Conversion`: notes, where each layer
        went, and the pairs of weights copied).

    Raises:
        ValueError (`ConversionError`): a layer or a structure that cannot be converted; the
            message names the layer, its class and the supported layers. Nothing is built then.

    Example:
        >>> keras_model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
        ...                                           classes=10)
        >>> model = rlra_tf.models.from_keras(keras_model)
        >>> model.compile(optimizer="adam", rule="rec_lra", metrics=["accuracy"])
    """
    graph = Graph(model)
    shape = tuple(graph.input.shape[1:])
    if not shape or any(d is None for d in shape):
        raise ConversionError(
            f"Model {model.name!r} has input shape {tuple(graph.input.shape)}; from_keras "
            "needs a fixed example shape (e.g. keras.Input((28, 28, 1)))"
        )
    start, mean, std, folded = fold_preprocessing(graph)
    parser = Parser(graph)
    items = parser.chain(start)

    # Check the head before building anything.
    if not items or not isinstance(items[-1], UnitSpec):
        raise ConversionError(
            f"Model {model.name!r} must end with a Dense or Conv2D that gives the class scores "
            "(optionally followed by a softmax); its last layers are "
            f"{[type(i).__name__ for i in items[-3:]]}"
        )
    head = items[-1]
    if head.activation != "linear":
        fail(head.act_layer or head.layer,
              f"the last layer's activation is {head.activation!r}; rlra_tf trains softmax "
              "classifiers (the output must be logits or a softmax)")
    if layer_kind(head.layer) != "Dense":
        fail(head.layer, "the class scores must come from a Dense layer")
    classes = int(head.layer.units)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
        if num_classes != classes:
            raise ConversionError(
                f"num_classes={num_classes}, but the model's last layer {head.layer.name!r} "
                f"gives {classes} class scores"
            )
    structural = [i for i, item in enumerate(items)
                  if isinstance(item, (UnitSpec, ResidualSpec))]
    if isinstance(items[structural[0]], ResidualSpec) and structural[0] > 0:
        raise ConversionError(
            "Transitions (padding, pooling, ...) between the input and a first residual join "
            f"are not supported ({[t.name for t in items[:structural[0]]]}): the join's shortcut "
            "would need them too"
        )

    notes, layer_map, units = [], {n: "input preprocessing" for n in folded}, []
    blocks, leading = [], []

    def unit_of(spec, block_name):
        unit = _unit_layer(spec, None if spec is head else classes, fold_batchnorm_bias)
        units.append((unit, spec))
        for layer in (spec.layer, spec.norm, spec.act_layer, spec.add,
                      *(spec.projection or ())):
            if layer is not None:
                layer_map[layer.name] = f"{block_name}/{unit.name}"
        if spec.removed_softmax:
            layer_map[spec.removed_softmax] = "removed"
            notes.append(
                f"the final softmax ({spec.removed_softmax!r}) was taken off: the model outputs "
                "logits and trains on the softmax cross-entropy of them"
            )
        return unit

    def transition_of(t, block_name):
        layer_map[t.name] = f"{block_name}/{t.name}"
        return t

    for item in items:
        if isinstance(item, UnitSpec):
            bname = f"{item.layer.name}_block"
            layers = [transition_of(t, bname) for t in leading] + [unit_of(item, bname)]
            blocks.append((UnitStack, bname, layers))
            leading = []
        elif isinstance(item, ResidualSpec):
            layers = [unit_of(i, item.name) if isinstance(i, UnitSpec)
                      else transition_of(i, item.name) for i in item.items]
            blocks.append((ResidualStack, item.name, layers))
        elif blocks:  # a transition after a block belongs to that block's output
            cls, bname, layers = blocks[-1]
            layers.append(transition_of(item, bname))
        else:
            leading.append(item)

    built = [cls(layers, name=bname) for cls, bname, layers in blocks]
    kwargs = {}
    if folded:
        channels = shape[-1]
        kwargs = dict(input_mean=tuple(np.broadcast_to(mean, (channels,)).tolist()),
                      input_std=tuple(np.broadcast_to(std, (channels,)).tolist()))
        notes.append(f"{', '.join(folded)} folded into the model's input preprocessing "
                     "(input_mean, input_std)")
    aligned = AlignedModel(built, num_classes=classes, name=name or model.name, **kwargs,
                           **model_kwargs)
    aligned.build((None,) + shape)
    weight_pairs = []
    for unit, spec in units:
        weight_pairs += _copy_weights(unit, spec)
    for block in built:
        for t in block.transition_layers:
            source = model.get_layer(t.name) if isinstance(t, Dropout) else None
            if source is not None:
                t.seed_generator.state.assign(keras.ops.convert_to_numpy(
                    source.seed_generator.state))
    aligned.conversion = Conversion(source=model.name, notes=notes, layer_map=layer_map,
                                    weight_pairs=weight_pairs)
    return aligned
