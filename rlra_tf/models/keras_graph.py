"""Reading a Keras model's layer graph for `from_keras`: which layers make a unit, a residual
join, a transition or the input preprocessing, and what cannot be converted.

`Graph` indexes the producers and consumers of every tensor of a built Sequential or functional
model; `Parser` walks it from the input and returns `UnitSpec`s (a `Conv2D`/`Dense` with the
`BatchNormalization`, residual `Add` and activation it absorbs), `ResidualSpec`s and transition
layers in order; `fold_preprocessing` folds `Rescaling`/`Normalization` after the input into a
mean and a standard deviation. Anything else raises `ConversionError` naming the layer.
"""

import collections
import dataclasses
from typing import Any, Optional

import keras
import numpy as np

from rlra_tf.layers import Dropout, Flatten, GlobalPooling2D, Pooling2D, ZeroPadding2D

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


def fail(layer, why):
    raise ConversionError(
        f"Cannot convert layer {layer.name!r} ({type(layer).__name__}): {why}. from_keras "
        f"supports {', '.join(SUPPORTED)} (docs/MODELS.md)"
    )


# ------------------------------------------------------------------------------------ graph

class Graph:
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
                fail(op, "it is called more than once (shared layers are not supported)")
            if isinstance(op, keras.Model):
                fail(op, "nested models are not supported; build the model flat")
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


def layer_kind(layer):
    return type(layer).__name__


def _activation_name(layer, fn):
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # a function Keras cannot serialise
        name = None
    if not isinstance(name, str):
        fail(layer, f"its activation {fn!r} is not a named Keras activation")
    return name


def _layer_activation(layer, rank):
    """The activation an Activation/ReLU/Softmax layer applies, as a Keras name."""
    kind = layer_kind(layer)
    if kind == "Softmax":
        if layer.axis not in (-1, None) and layer.axis != rank - 1:
            fail(layer, f"softmax over axis {layer.axis} (only the last axis)")
        return "softmax"
    if kind == "ReLU":
        slope, threshold, cap = float(layer.negative_slope), float(layer.threshold), \
            layer.max_value
        if slope == 0.0 and threshold == 0.0 and cap is None:
            return "relu"
        if slope == 0.0 and threshold == 0.0 and cap is not None and float(cap) == 6.0:
            return "relu6"
        fail(layer, f"ReLU(max_value={cap}, negative_slope={slope}, threshold={threshold}) "
                     "(only the plain ReLU and max_value=6)")
    return _activation_name(layer, layer.activation)


def _check_plain(layer, names):
    config = layer.get_config()
    for key in names:
        if config.get(key) is not None:
            fail(layer, f"{key} is set ({config[key]!r}); regularisers and constraints are not "
                         "converted (use the optimiser's weight_decay instead)")
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        fail(layer, f"data_format={config['data_format']!r} (only channels_last)")


_REGULARISED = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint")


def _check_conv(layer):
    _check_plain(layer, _REGULARISED)
    if tuple(layer.dilation_rate) != (1, 1):
        fail(layer, f"dilation_rate={tuple(layer.dilation_rate)} (only 1)")
    if layer.groups != 1:
        fail(layer, f"groups={layer.groups} (only 1)")
    if layer.padding not in ("same", "valid"):
        fail(layer, f"padding={layer.padding!r} (only 'same' and 'valid')")


def _check_norm(layer, rank):
    _check_plain(layer, ("beta_regularizer", "gamma_regularizer", "beta_constraint",
                         "gamma_constraint"))
    axis = layer.axis
    if axis not in (-1, rank - 1):
        fail(layer, f"axis={axis} (only the channels axis, -1)")
    if not (layer.center and layer.scale):
        fail(layer, f"center={layer.center}, scale={layer.scale} (only both True)")
    if getattr(layer, "renorm", False) or getattr(layer, "synchronized", False):
        fail(layer, "renorm and synchronized BatchNormalization are not converted")


# ------------------------------------------------------------------------------------ parse

@dataclasses.dataclass
class UnitSpec:
    layer: Any                      # the Conv2D or Dense
    norm: Any = None                # the BatchNormalization after it
    activation: str = "linear"
    act_layer: Any = None           # the Activation/ReLU layer absorbed, if any
    projection: Any = None          # (Conv2D, BatchNormalization or None) of a shortcut
    add: Any = None                 # the Add layer, for a residual output unit
    removed_softmax: Optional[str] = None


@dataclasses.dataclass
class ResidualSpec:
    items: list                     # units and transitions of the main path
    name: str


class Parser:
    def __init__(self, graph):
        self.g = graph
        self.notes = []

    # A unit: Conv2D/Dense, then (if it is linear) BatchNormalization, then an activation.
    def unit(self, layer, out, stop=None):
        kind = layer_kind(layer)
        if kind == "Conv2D":
            _check_conv(layer)
        else:
            _check_plain(layer, _REGULARISED)
            if self.g.input_rank(layer) != 2:
                shape = tuple(self.g.node_of[id(layer)].input_tensors[0].shape)
                fail(layer, f"a Dense on an input of shape {shape}; flatten or pool the "
                             "feature map first (Flatten, GlobalAveragePooling2D)")
        spec = UnitSpec(layer=layer, activation=_activation_name(layer, layer.activation))
        if spec.activation != "linear":
            return self._finish_activation(spec, out)
        nxt, nxt_out = self.g.only(out)
        if nxt is not None and layer_kind(nxt) == "BatchNormalization" and out is not stop:
            _check_norm(nxt, self.g.input_rank(nxt))
            spec.norm, out = nxt, nxt_out
            nxt, nxt_out = self.g.only(out)
        if out is stop:
            return spec, out
        if nxt is not None and layer_kind(nxt) in _ACTIVATIONS:
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
                fail(owner, "a softmax before the model's output (only a final softmax, which "
                             "is taken off: the model trains on logits)")
            spec.removed_softmax = (spec.act_layer or spec.layer).name
            spec.activation = "linear"
        nxt, _ = self.g.only(out)
        if nxt is not None and layer_kind(nxt) == "BatchNormalization":
            fail(nxt, "it follows an activation; rlra_tf units normalise before their "
                       "activation (Conv2D/Dense -> BatchNormalization -> activation)")
        return spec, out

    def transition(self, layer):
        kind = layer_kind(layer)
        config = layer.get_config()
        if config.get("data_format", "channels_last") not in (None, "channels_last"):
            fail(layer, f"data_format={config['data_format']!r} (only channels_last)")
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
                fail(layer, f"its output feeds {len(nxt)} layers; only a residual join (two "
                             "branches meeting in an Add) may branch")
            layer, out = nxt[0]
            kind = layer_kind(layer)
            if kind in ("Conv2D", "Dense"):
                spec, t = self.unit(layer, out, stop=stop)
                items.append(spec)
            elif kind in _TRANSITIONS:
                items.append(self.transition(layer))
                t = out
            elif kind in ("Rescaling", "Normalization"):
                fail(layer, "input preprocessing must come first, right after the input")
            elif kind in _ACTIVATIONS:
                if kind != "ReLU" and out is self.g.output and \
                        _layer_activation(layer, self.g.input_rank(layer)) == "softmax":
                    fail(layer, "the softmax must follow the last Conv2D/Dense directly")
                fail(layer, "an activation that does not follow a Conv2D or Dense (and its "
                             "BatchNormalization): each unit applies one activation after its "
                             "linear op")
            elif kind == "BatchNormalization":
                fail(layer, "a BatchNormalization that does not follow a Conv2D or Dense")
            elif kind == "Add":
                fail(layer, "an Add outside a residual join of two branches")
            elif kind in SUPPORTED:
                fail(layer, "this layer cannot stand here")
            else:
                fail(layer, "this layer type is not supported")
        return items

    def _branch(self, layer, out):
        """The layers of one branch from a fork up to (not including) the Add it ends in."""
        path = []
        while layer_kind(layer) != "Add":
            path.append((layer, out))
            nxt = self.g.next(out)
            if len(nxt) != 1:
                fail(layer, "a branch of a residual join forks again (only two branches "
                             "meeting in one Add are supported)")
            layer, out = nxt[0]
        return path, layer, out

    def residual(self, x, consumers):
        (a, a_out), (b, b_out) = consumers
        path_a, add_a, add_out = self._branch(a, a_out)
        path_b, add_b, _ = self._branch(b, b_out)
        if add_a is not add_b:
            fail(add_a, "the two branches from one tensor end in different layers")
        add = add_a
        node = add._inbound_nodes[0]
        if len(node.input_tensors) != 2:
            fail(add, f"an Add of {len(node.input_tensors)} tensors (only two)")
        first_input = node.input_tensors[0]

        def is_projection(path):
            if not path or layer_kind(path[0][0]) != "Conv2D":
                return False
            kinds = [layer_kind(layer) for layer, _ in path]
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
            fail(add, "neither branch is an identity or a projection (a 1x1 Conv2D, with or "
                       "without BatchNormalization)")
        if not main:
            fail(add, "both branches are identities")
        main_end = main[-1][1]
        items = self.chain(x, stop=main_end, first=main[0])
        units = [i for i in items if isinstance(i, UnitSpec)]
        if not units or not isinstance(items[-1], UnitSpec):
            fail(add, "the main branch must end with a Conv2D or Dense (and its "
                       "BatchNormalization) right before the Add")
        out_unit = items[-1]
        if out_unit.activation != "linear":
            fail(out_unit.layer, "the unit before a residual Add must be linear (its activation "
                                  "comes after the Add)")
        if short:
            conv = short[0][0]
            _check_conv(conv)
            norm = short[1][0] if len(short) > 1 else None
            if norm is not None:
                _check_norm(norm, 4)
            if layer_kind(out_unit.layer) != "Conv2D":
                fail(conv, "a projection shortcut into a Dense unit (only into a Conv2D)")
            if (norm is None) != (out_unit.norm is None):
                fail(conv, "the projection has BatchNormalization exactly when the unit it "
                            "joins has one (rlra_tf's projection shares the unit's norm setting)")
            out_unit.projection = (conv, norm)
        out_unit.add = add
        t = add_out
        nxt, nxt_out = self.g.only(t)
        if nxt is not None and layer_kind(nxt) in _ACTIVATIONS:
            out_unit.activation = _layer_activation(nxt, self.g.input_rank(nxt))
            out_unit.act_layer = nxt
            out_unit, t = self._finish_activation(out_unit, nxt_out)
        name = add.name[:-4] if add.name.endswith("_add") else f"{add.name}_block"
        return ResidualSpec(items=items, name=name), t


# ------------------------------------------------------------------------------------ build

def fold_preprocessing(graph):
    """Folds Rescaling/Normalization right after the input into `(x - mean) / std`."""
    t, mean, std, folded = graph.input, np.zeros(()), np.ones(()), []
    while True:
        layer, out = graph.only(t)
        if layer is None or layer_kind(layer) not in ("Rescaling", "Normalization"):
            return t, mean, std, folded
        if layer_kind(layer) == "Rescaling":
            scale = np.asarray(layer.scale, np.float64)
            offset = np.asarray(layer.offset, np.float64)
            if np.any(scale == 0):
                fail(layer, "a zero scale")
            # y = x_prev * s + o with x_prev = (x - mean) / std
            mean, std = mean - offset * std / scale, std / scale
        else:
            if layer.invert:
                fail(layer, "invert=True")
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
            rank = graph.input_rank(layer)
            if tuple(a % rank for a in axis) != (rank - 1,):
                fail(layer, f"axis={layer.axis} (only the last axis)")
            m = np.asarray(layer.mean, np.float64).reshape(-1)
            sd = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1)),
                            keras.config.epsilon())
            mean, std = mean + m * std, std * sd
        folded.append(layer.name)
        t = out
