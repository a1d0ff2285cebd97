"""`from_keras`: a Keras `Sequential` or functional classifier as an `AlignedModel`.

The converter reads the model's layer graph, groups each `Conv2D`/`Dense` with the
`BatchNormalization`, residual `Add` and activation after it into one unit, turns the
weight-free layers between units into transitions, each residual join into a `ResidualStack`
and each other unit into a `UnitStack`, then copies the forward weights. The result computes the
same function (the same logits, in inference and in training mode) and trains under every rule.
Anything it cannot represent is refused with a `ValueError` before anything is built.
docs/MODELS.md says what is supported and how a model is cut into blocks.
"""

import collections
import dataclasses
from typing import Any, List, Optional

import keras
import numpy as np

from rlra_tf.layers import (
    AlignedConv2D,
    AlignedDense,
    Dropout,
    Flatten,
    GlobalPooling2D,
    Pooling2D,
    ZeroPadding2D,
)
from rlra_tf.layers._unit import check_positive_int
from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import ResidualStack, UnitStack

SUPPORTED = (
    "InputLayer", "Rescaling", "Normalization", "Conv2D", "Dense", "BatchNormalization",
    "Activation", "ReLU", "Softmax", "Add", "ZeroPadding2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dropout",
)
_TRANSITIONS = ("ZeroPadding2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D", "Flatten", "Dropout")
_ACTIVATIONS = ("Activation", "ReLU", "Softmax")


class ConversionError(ValueError):
    """A Keras model that `from_keras` cannot convert; the message names the layer."""


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


def _fail(layer, why):
    raise ConversionError(
        f"Cannot convert layer {layer.name!r} ({type(layer).__name__}): {why}. from_keras "
        f"supports {', '.join(SUPPORTED)} (docs/MODELS.md)"
    )


# ------------------------------------------------------------------------------------ graph

class _Graph:
    """The model's layer graph: who produces and who consumes each tensor."""

    def __init__(self, model):
        if not isinstance(model, keras.Model):
            raise ConversionError(
                f"Expected a keras.Model (Sequential or functional), received: {model!r}"
            )
        if not model.built or not getattr(model, "inputs", None) or not getattr(
                model, "outputs", None):
            raise ConversionError(
                f"Model {model.name!r} has no symbolic inputs and outputs: from_keras takes a "
                "built Sequential (with keras.Input or an input_shape) or functional model; a "
                "subclassed keras.Model cannot be read as a graph"
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ConversionError(
                f"Expected a model with one input and one output, received {len(model.inputs)} "
                f"inputs and {len(model.outputs)} outputs"
            )
        self.input, self.output = model.inputs[0], model.outputs[0]
        self.producer = {}
        self.node_of = {}
        self.consumers = collections.defaultdict(list)
        uses = collections.Counter()
        stack, seen = [self.output], set()
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            op, node_index, _ = t._keras_history
            node = op._inbound_nodes[node_index]
            self.producer[id(t)] = op
            self.node_of[id(op)] = node
            if type(op).__name__ == "InputLayer":
                continue
            uses[id(op)] += 1
            if uses[id(op)] > 1:
                _fail(op, "it is called more than once (shared layers are not supported)")
            if isinstance(op, keras.Model):
                _fail(op, "nested models are not supported; build the model flat")
            inputs = [x for x in node.input_tensors]
            for x in inputs:
                self.consumers[id(x)].append((op, node))
                stack.append(x)
        if id(self.input) not in seen:
            raise ConversionError("The model's output does not depend on its input")

    def input_rank(self, layer):
        return len(self.node_of[id(layer)].input_tensors[0].shape)

    def next(self, tensor):
        """`[(layer, its output tensor)]` of the layers that consume `tensor`."""
        return [(op, node.output_tensors[0]) for op, node in self.consumers.get(id(tensor), [])]

    def only(self, tensor):
        """`(layer, output)` if exactly one layer consumes `tensor`, else `(None, None)`."""
        nxt = self.next(tensor)
        return nxt[0] if len(nxt) == 1 else (None, None)


def _kind(layer):
    return type(layer).__name__


def _activation_name(layer, fn):
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # a function Keras cannot serialise
        name = None
    if not isinstance(name, str):
        _fail(layer, f"its activation {fn!r} is not a named Keras activation")
    return name


def _layer_activation(layer, rank):
    """The activation an Activation/ReLU/Softmax layer applies, as a Keras name."""
    kind = _kind(layer)
    if kind == "Softmax":
        if layer.axis not in (-1, None) and layer.axis != rank - 1:
            _fail(layer, f"softmax over axis {layer.axis} (only the last axis)")
        return "softmax"
    if kind == "ReLU":
        slope, threshold, cap = float(layer.negative_slope), float(layer.threshold), \
            layer.max_value
        if slope == 0.0 and threshold == 0.0 and cap is None:
            return "relu"
        if slope == 0.0 and threshold == 0.0 and cap is not None and float(cap) == 6.0:
            return "relu6"
        _fail(layer, f"ReLU(max_value={cap}, negative_slope={slope}, threshold={threshold}) "
                     "(only the plain ReLU and max_value=6)")
    return _activation_name(layer, layer.activation)


def _check_plain(layer, names):
    config = layer.get_config()
    for key in names:
        if config.get(key) is not None:
            _fail(layer, f"{key} is set ({config[key]!r}); regularisers and constraints are not "
                         "converted (use the optimiser's weight_decay instead)")
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        _fail(layer, f"data_format={config['data_format']!r} (only channels_last)")


_REGULARISED = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint")


def _check_conv(layer):
    _check_plain(layer, _REGULARISED)
    if tuple(layer.dilation_rate) != (1, 1):
        _fail(layer, f"dilation_rate={tuple(layer.dilation_rate)} (only 1)")
    if layer.groups != 1:
        _fail(layer, f"groups={layer.groups} (only 1)")
    if layer.padding not in ("same", "valid"):
        _fail(layer, f"padding={layer.padding!r} (only 'same' and 'valid')")


def _check_norm(layer, rank):
    _check_plain(layer, ("beta_regularizer", "gamma_regularizer", "beta_constraint",
                         "gamma_constraint"))
    axis = layer.axis
    if axis not in (-1, rank - 1):
        _fail(layer, f"axis={axis} (only the channels axis, -1)")
    if not (layer.center and layer.scale):
        _fail(layer, f"center={layer.center}, scale={layer.scale} (only both True)")
    if getattr(layer, "renorm", False) or getattr(layer, "synchronized", False):
        _fail(layer, "renorm and synchronized BatchNormalization are not converted")


# ------------------------------------------------------------------------------------ parse

@dataclasses.dataclass
class _UnitSpec:
    layer: Any                      # the Conv2D or Dense
    norm: Any = None                # the BatchNormalization after it
    activation: str = "linear"
    act_layer: Any = None           # the Activation/ReLU layer absorbed, if any
    projection: Any = None          # (Conv2D, BatchNormalization or None) of a shortcut
    add: Any = None                 # the Add layer, for a residual output unit
    removed_softmax: Optional[str] = None


@dataclasses.dataclass
class _ResidualSpec:
    items: list                     # units and transitions of the main path
    name: str


class _Parser:
    def __init__(self, graph):
        self.g = graph
        self.notes = []

    # A unit: Conv2D/Dense, then (if it is linear) BatchNormalization, then an activation.
    def unit(self, layer, out, stop=None):
        kind = _kind(layer)
        if kind == "Conv2D":
            _check_conv(layer)
        else:
            _check_plain(layer, _REGULARISED)
            if self.g.input_rank(layer) != 2:
                shape = tuple(self.g.node_of[id(layer)].input_tensors[0].shape)
                _fail(layer, f"a Dense on an input of shape {shape}; flatten or pool the "
                             "feature map first (Flatten, GlobalAveragePooling2D)")
        spec = _UnitSpec(layer=layer, activation=_activation_name(layer, layer.activation))
        if spec.activation != "linear":
            return self._finish_activation(spec, out)
        nxt, nxt_out = self.g.only(out)
        if nxt is not None and _kind(nxt) == "BatchNormalization" and out is not stop:
            _check_norm(nxt, self.g.input_rank(nxt))
            spec.norm, out = nxt, nxt_out
            nxt, nxt_out = self.g.only(out)
        if out is stop:
            return spec, out
        if nxt is not None and _kind(nxt) in _ACTIVATIONS:
            spec.activation = _layer_activation(nxt, self.g.input_rank(nxt))
            spec.act_layer, out = nxt, nxt_out
            return self._finish_activation(spec, out)
        return spec, out

    def _finish_activation(self, spec, out):
        """A softmax is taken off the model's last unit (it trains on logits); after an
        activation no BatchNormalization may follow."""
        if spec.activation == "softmax":
            if out is not self.g.output:
                owner = spec.act_layer or spec.layer
                _fail(owner, "a softmax before the model's output (only a final softmax, which "
                             "is taken off: the model trains on logits)")
            spec.removed_softmax = (spec.act_layer or spec.layer).name
            spec.activation = "linear"
        nxt, _ = self.g.only(out)
        if nxt is not None and _kind(nxt) == "BatchNormalization":
            _fail(nxt, "it follows an activation; rlra_tf units normalise before their "
                       "activation (Conv2D/Dense -> BatchNormalization -> activation)")
        return spec, out

    def transition(self, layer):
        kind = _kind(layer)
        config = layer.get_config()
        if config.get("data_format", "channels_last") not in (None, "channels_last"):
            _fail(layer, f"data_format={config['data_format']!r} (only channels_last)")
        name = layer.name
        if kind == "Flatten":
            return Flatten(name=name)
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            return Pooling2D(tuple(layer.pool_size), strides=tuple(layer.strides),
                             padding=layer.padding, mode="max" if kind[0] == "M" else "avg",
                             name=name)
        if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            return GlobalPooling2D(mode="avg" if "Average" in kind else "max",
                                   keepdims=bool(layer.keepdims), name=name)
        if kind == "ZeroPadding2D":
            return ZeroPadding2D(tuple(tuple(int(v) for v in p) for p in layer.padding),
                                 name=name)
        return Dropout(float(layer.rate), noise_shape=layer.noise_shape, seed=layer.seed,
                       name=name)

    def chain(self, t, stop=None, first=None):
        """Units, residual blocks and transitions from tensor `t` to `stop` (or the output);
        `first`: the `(layer, output)` to take first (a branch of a fork at `t`)."""
        items = []
        end = self.g.output if stop is None else stop
        while t is not end:
            nxt = [first] if first is not None else self.g.next(t)
            first = None
            if len(nxt) == 2 and stop is None:
                res, t = self.residual(t, nxt)
                items.append(res)
                continue
            if len(nxt) != 1:
                layer = self.g.producer[id(t)]
                _fail(layer, f"its output feeds {len(nxt)} layers; only a residual join (two "
                             "branches meeting in an Add) may branch")
            layer, out = nxt[0]
            kind = _kind(layer)
            if kind in ("Conv2D", "Dense"):
                spec, t = self.unit(layer, out, stop=stop)
                items.append(spec)
            elif kind in _TRANSITIONS:
                items.append(self.transition(layer))
                t = out
            elif kind in ("Rescaling", "Normalization"):
                _fail(layer, "input preprocessing must come first, right after the input")
            elif kind in _ACTIVATIONS:
                if kind != "ReLU" and out is self.g.output and \
                        _layer_activation(layer, self.g.input_rank(layer)) == "softmax":
                    _fail(layer, "the softmax must follow the last Conv2D/Dense directly")
                _fail(layer, "an activation that does not follow a Conv2D or Dense (and its "
                             "BatchNormalization): each unit applies one activation after its "
                             "linear op")
            elif kind == "BatchNormalization":
                _fail(layer, "a BatchNormalization that does not follow a Conv2D or Dense")
            elif kind == "Add":
                _fail(layer, "an Add outside a residual join of two branches")
            elif kind in SUPPORTED:
                _fail(layer, "this layer cannot stand here")
            else:
                _fail(layer, "this layer type is not supported")
        return items

    def _branch(self, layer, out):
        """The layers of one branch from a fork up to (not including) the Add it ends in."""
        path = []
        while _kind(layer) != "Add":
            path.append((layer, out))
            nxt = self.g.next(out)
            if len(nxt) != 1:
                _fail(layer, "a branch of a residual join forks again (only two branches "
                             "meeting in one Add are supported)")
            layer, out = nxt[0]
        return path, layer, out

    def residual(self, x, consumers):
        (a, a_out), (b, b_out) = consumers
        path_a, add_a, add_out = self._branch(a, a_out)
        path_b, add_b, _ = self._branch(b, b_out)
        if add_a is not add_b:
            _fail(add_a, "the two branches from one tensor end in different layers")
        add = add_a
        node = add._inbound_nodes[0]
        if len(node.input_tensors) != 2:
            _fail(add, f"an Add of {len(node.input_tensors)} tensors (only two)")
        first_input = node.input_tensors[0]

        def is_projection(path):
            if not path or _kind(path[0][0]) != "Conv2D":
                return False
            kinds = [_kind(layer) for layer, _ in path]
            conv = path[0][0]
            linear = _activation_name(conv, conv.activation) == "linear"
            return linear and tuple(conv.kernel_size) == (1, 1) and kinds in (
                ["Conv2D"], ["Conv2D", "BatchNormalization"])

        # The shortcut: the empty branch (identity), else a 1x1 conv (+ BN) branch; when both
        # branches could be one, Keras' habit decides (the shortcut is the Add's first input).
        if not path_a or not path_b:
            short, main = (path_a, path_b) if not path_a else (path_b, path_a)
        elif is_projection(path_a) and (not is_projection(path_b)
                                        or path_a[-1][1] is first_input):
            short, main = path_a, path_b
        elif is_projection(path_b):
            short, main = path_b, path_a
        else:
            _fail(add, "neither branch is an identity or a projection (a 1x1 Conv2D, with or "
                       "without BatchNormalization)")
        if not main:
            _fail(add, "both branches are identities")
        main_end = main[-1][1]
        items = self.chain(x, stop=main_end, first=main[0])
        units = [i for i in items if isinstance(i, _UnitSpec)]
        if not units or not isinstance(items[-1], _UnitSpec):
            _fail(add, "the main branch must end with a Conv2D or Dense (and its "
                       "BatchNormalization) right before the Add")
        out_unit = items[-1]
        if out_unit.activation != "linear":
            _fail(out_unit.layer, "the unit before a residual Add must be linear (its activation "
                                  "comes after the Add)")
        if short:
            conv = short[0][0]
            _check_conv(conv)
            norm = short[1][0] if len(short) > 1 else None
            if norm is not None:
                _check_norm(norm, 4)
            if _kind(out_unit.layer) != "Conv2D":
                _fail(conv, "a projection shortcut into a Dense unit (only into a Conv2D)")
            if (norm is None) != (out_unit.norm is None):
                _fail(conv, "the projection has BatchNormalization exactly when the unit it "
                            "joins has one (rlra_tf's projection shares the unit's norm setting)")
            out_unit.projection = (conv, norm)
        out_unit.add = add
        t = add_out
        nxt, nxt_out = self.g.only(t)
        if nxt is not None and _kind(nxt) in _ACTIVATIONS:
            out_unit.activation = _layer_activation(nxt, self.g.input_rank(nxt))
            out_unit.act_layer = nxt
            out_unit, t = self._finish_activation(out_unit, nxt_out)
        name = add.name[:-4] if add.name.endswith("_add") else f"{add.name}_block"
        return _ResidualSpec(items=items, name=name), t


# ------------------------------------------------------------------------------------ build

def _preprocessing(graph):
    """Folds Rescaling/Normalization right after the input into `(x - mean) / std`."""
    t, mean, std, folded = graph.input, np.zeros(()), np.ones(()), []
    while True:
        layer, out = graph.only(t)
        if layer is None or _kind(layer) not in ("Rescaling", "Normalization"):
            return t, mean, std, folded
        if _kind(layer) == "Rescaling":
            scale = np.asarray(layer.scale, np.float64)
            offset = np.asarray(layer.offset, np.float64)
            if np.any(scale == 0):
                _fail(layer, "a zero scale")
            # y = x_prev * s + o with x_prev = (x - mean) / std
            mean, std = mean - offset * std / scale, std / scale
        else:
            if layer.invert:
                _fail(layer, "invert=True")
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
            rank = graph.input_rank(layer)
            if tuple(a % rank for a in axis) != (rank - 1,):
                _fail(layer, f"axis={layer.axis} (only the last axis)")
            m = np.asarray(layer.mean, np.float64).reshape(-1)
            sd = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1)),
                            keras.config.epsilon())
            mean, std = mean + m * std, std * sd
        folded.append(layer.name)
        t = out


def _unit_layer(spec, skip_classes, fold):
    layer = spec.layer
    use_bias = layer.use_bias and not (fold and spec.norm is not None)
    norm = dict(norm_momentum=float(spec.norm.momentum), norm_epsilon=float(spec.norm.epsilon)) \
        if spec.norm is not None else {}
    if _kind(layer) == "Dense":
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


def _copy_weights(unit, spec):
    """Copies the Keras layers' forward weights into `unit`; returns the `(ours, theirs)`."""
    layer = spec.layer
    pairs, folded = [(unit.kernel, layer.kernel)], None
    if layer.use_bias and unit.bias is not None:
        pairs.append((unit.bias, layer.bias))
    elif layer.use_bias:
        folded = layer.bias
    for ours, theirs in pairs:
        ours.assign(keras.ops.convert_to_numpy(theirs))
    if spec.norm is not None:
        pairs += _copy_norm(unit.norm_layer, spec.norm, folded)
    if spec.projection is not None:
        conv, norm = spec.projection
        own = [(unit.shortcut_kernel, conv.kernel)]
        folded = None
        if conv.use_bias and unit.shortcut_bias is not None:
            own.append((unit.shortcut_bias, conv.bias))
        elif conv.use_bias:
            folded = conv.bias
        for ours, theirs in own:
            ours.assign(keras.ops.convert_to_numpy(theirs))
        pairs += own
        if norm is not None:
            pairs += _copy_norm(unit.shortcut_norm, norm, folded)
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
    graph = _Graph(model)
    shape = tuple(graph.input.shape[1:])
    if not shape or any(d is None for d in shape):
        raise ConversionError(
            f"Model {model.name!r} has input shape {tuple(graph.input.shape)}; from_keras "
            "needs a fixed example shape (e.g. keras.Input((28, 28, 1)))"
        )
    start, mean, std, folded = _preprocessing(graph)
    parser = _Parser(graph)
    items = parser.chain(start)

    # Check the head before building anything.
    if not items or not isinstance(items[-1], _UnitSpec):
        raise ConversionError(
            f"Model {model.name!r} must end with a Dense or Conv2D that gives the class scores "
            "(optionally followed by a softmax); its last layers are "
            f"{[type(i).__name__ for i in items[-3:]]}"
        )
    head = items[-1]
    if head.activation != "linear":
        _fail(head.act_layer or head.layer,
              f"the last layer's activation is {head.activation!r}; rlra_tf trains softmax "
              "classifiers (the output must be logits or a softmax)")
    if _kind(head.layer) != "Dense":
        _fail(head.layer, "the class scores must come from a Dense layer")
    classes = int(head.layer.units)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
        if num_classes != classes:
            raise ConversionError(
                f"num_classes={num_classes}, but the model's last layer {head.layer.name!r} "
                f"gives {classes} class scores"
            )
    structural = [i for i, item in enumerate(items)
                  if isinstance(item, (_UnitSpec, _ResidualSpec))]
    if isinstance(items[structural[0]], _ResidualSpec) and structural[0] > 0:
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
        if isinstance(item, _UnitSpec):
            bname = f"{item.layer.name}_block"
            layers = [transition_of(t, bname) for t in leading] + [unit_of(item, bname)]
            blocks.append((UnitStack, bname, layers))
            leading = []
        elif isinstance(item, _ResidualSpec):
            layers = [unit_of(i, item.name) if isinstance(i, _UnitSpec)
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
