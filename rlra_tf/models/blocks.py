"""Blocks: runs of units (and the transitions between them) that the rules treat as one.

`AlignedBlock` declares what a block type provides to `AlignedModel` and the rules
(docs/ALGORITHM.md#words; docs/MODELS.md#the-contract-a-new-layer-type-meets). `UnitStack` (a
plain chain) and `ResidualStack` (a chain whose output unit adds the block input) take any units
and transitions in order; the ResNet blocks in `residual_blocks.py` are built from them.
"""

import keras
import tensorflow as tf

from rlra_tf.layers import AlignedUnit, Transition
from rlra_tf.trace import BlockTrace, UnitTrace


def isolate(x, local):
    """Hold a unit's input constant for the local rules: no derivative crosses units."""
    return tf.stop_gradient(x) if local else x


def trace_unit(unit, z_in, residual=None, training=None):
    """Run one unit and keep what the rules read: a `UnitTrace`."""
    h, linear, shortcut_linear = unit.pre_activation_parts(
        z_in, residual=residual, training=training
    )
    return UnitTrace(
        unit=unit, inputs=z_in, pre=h, outputs=unit.activation(h), linear=linear,
        residual=residual, shortcut_linear=shortcut_linear,
    )


def transpose_through(transitions, displacement):
    """Carry a displacement back through `TransitionTrace`s (given in forward order)."""
    for tt in reversed(transitions):
        displacement = tt.layer.transpose(displacement, tt)
    return displacement


class AlignedBlock(keras.layers.Layer):
    """Base class of blocks. A block owns its units (`unit_layers`, output unit last).

    A block type implements `trace(inputs, training, local)` (a `BlockTrace`, every unit's
    input held constant when `local`), `input_displacement(block_trace, leaving)` and
    `compute_output_shape`; `leaving[i]` holds the `(main, shortcut)` errors unit `i` sends
    down (`rlra_tf.rules.base.leaving_errors`). Hooks with defaults: `inner_displacement`
    (between two units of the block: the upper unit's `F`) and `output_displacement` (after
    the output unit: nothing to carry), and `to_keras` (plain Keras layers of the forward
    function).
    """

    @property
    def output_unit(self):
        return self.unit_layers[-1]

    def trace(self, inputs, training=None, local=False):
        raise NotImplementedError(f"{type(self).__name__} does not define trace()")

    def input_displacement(self, block_trace, leaving):
        """`(displacement at the block input, [(feedback, kernel) pairs used])`."""
        raise NotImplementedError(f"{type(self).__name__} does not define input_displacement()")

    def inner_displacement(self, block_trace, i, leaving_above):
        """`(displacement at unit i's activity, pairs used)`, from what unit `i + 1` sends down
        (`leaving_above`: its `(main, shortcut)` errors)."""
        above = block_trace.units[i + 1]
        d = above.unit.feedback_input(leaving_above[0], input_shape=tf.shape(above.inputs))
        d = transpose_through(block_trace.transitions_before(i + 1), d)
        return d, [(above.unit.feedback, above.unit.kernel)]

    def output_displacement(self, block_trace, displacement):
        """A displacement at the block output carried back to the output unit's activity."""
        return transpose_through(block_trace.transitions_before(len(block_trace.units)),
                                 displacement)

    def transition_layers_after_output(self):
        """The transitions the block runs after its output unit (none by default)."""
        return []

    def to_keras(self, x, namer):
        """Applies plain Keras layers computing this block's forward function to tensor `x`.

        `namer(block, name)` gives each new Keras layer a name unique in the model.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define to_keras()")

    def call(self, inputs, training=None):
        return self.trace(inputs, training=training, local=False).outputs


def _check_layers(layers, cls_name):
    layers = list(layers or [])
    for layer in layers:
        if not isinstance(layer, (AlignedUnit, Transition)):
            raise ValueError(
                f"{cls_name} takes units (rlra_tf.layers.AlignedDense, AlignedConv2D, ...) and "
                "transitions (rlra_tf.layers.Flatten, Pooling2D, GlobalPooling2D, ZeroPadding2D, "
                f"Dropout); received {layer!r} of class {type(layer).__name__}"
            )
    if not any(isinstance(layer, AlignedUnit) for layer in layers):
        raise ValueError(f"Expected at least one unit in {cls_name}, received: layers={layers!r}")
    return layers


class _Stack(AlignedBlock):
    """Units and transitions in order; what `UnitStack` and `ResidualStack` share.

    `layers` keeps the order; `unit_layers` and `transition_layers` the two kinds (as attributes
    of their own, so saved weights are found under the same names whatever the order).
    """

    residual = False

    def __init__(self, layers=None, unit_layers=None, **kwargs):
        super().__init__(**kwargs)
        if layers is None:  # configs of rlra_tf 0.1 name the list unit_layers
            layers = unit_layers
        if layers is not None or not getattr(self, "_builds_own_layers", False):
            self._set_layers(layers)

    def _set_layers(self, layers):
        self._order = []
        self.unit_layers, self.transition_layers = [], []
        for layer in _check_layers(layers, type(self).__name__):
            is_unit = isinstance(layer, AlignedUnit)
            kind = self.unit_layers if is_unit else self.transition_layers
            self._order.append(("unit" if is_unit else "transition", len(kind)))
            kind.append(layer)

    def transition_layers_after_output(self):
        last = max(i for i, (kind, _) in enumerate(self._order) if kind == "unit")
        return [self.transition_layers[j] for kind, j in self._order[last + 1:]]

    @property
    def layers_in_order(self):
        return [(self.unit_layers if k == "unit" else self.transition_layers)[i]
                for k, i in self._order]

    def build(self, input_shape):
        shape, block_input = tuple(input_shape), tuple(input_shape)
        last = self.unit_layers[-1]
        for layer in self.layers_in_order:
            if not layer.built:
                if layer is last and self.residual and last.has_projection:
                    layer.build(shape, residual_shape=block_input)
                else:
                    layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers_in_order:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def trace(self, inputs, training=None, local=False):
        x = isolate(inputs, local)
        z, units, transitions, pending = x, [], [], []
        last = self.unit_layers[-1]
        for layer in self.layers_in_order:
            if isinstance(layer, Transition):
                pending.append(layer.trace(z, training=training))
                z = pending[-1].outputs
                continue
            residual = x if (self.residual and layer is last) else None
            units.append(trace_unit(layer, isolate(z, local), residual=residual,
                                    training=training))
            transitions.append(pending)
            pending = []
            z = units[-1].outputs
        transitions.append(pending)
        has_any = any(transitions)
        return BlockTrace(block=self, inputs=inputs, units=units,
                          transitions=transitions if has_any else None)

    def _first_unit_displacement(self, block_trace, leaving):
        first = block_trace.units[0]
        d = first.unit.feedback_input(leaving[0][0], input_shape=tf.shape(first.inputs))
        return transpose_through(block_trace.transitions_before(0), d), [
            (first.unit.feedback, first.unit.kernel)]

    def input_displacement(self, block_trace, leaving):
        """The first unit's `F` carries its error to its input, then back through the
        transitions in front of it."""
        return self._first_unit_displacement(block_trace, leaving)

    def to_keras(self, x, namer):
        block_input, last = x, self.unit_layers[-1]
        for layer in self.layers_in_order:
            if isinstance(layer, Transition):
                x = layer.keras_layer(namer(self, layer.name))(x)
                continue
            main, norm = layer.keras_layers(namer(self, layer.name))
            x = main(x)
            if norm is not None:
                x = norm(x)
            if self.residual and layer is last:
                shortcut = block_input
                if layer.has_projection:
                    conv, snorm = layer.keras_shortcut_layers(
                        namer(self, f"{layer.name}_shortcut"))
                    shortcut = conv(shortcut)
                    if snorm is not None:
                        shortcut = snorm(shortcut)
                x = keras.layers.Add(name=namer(self, f"{layer.name}_add"))([x, shortcut])
            x = keras.layers.Activation(layer.activation,
                                        name=namer(self, f"{layer.name}_act"))(x)
        return x

    def get_config(self):
        config = super().get_config()
        config["layers"] = [keras.saving.serialize_keras_object(layer)
                            for layer in self.layers_in_order]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("layers", "unit_layers"):
            if key in config:
                config[key] = [keras.saving.deserialize_keras_object(c) for c in config[key]]
        return cls(**config)


@keras.saving.register_keras_serializable(package="rlra_tf")
class UnitStack(_Stack):
    """A plain chain of units, with transitions between them, and no residual path (MLP
    blocks, a CNN's conv units, classifier heads).

    Args:
        layers: units (`rlra_tf.layers.AlignedDense`, `AlignedConv2D`, ...) and transitions
            (`rlra_tf.layers.Flatten`, `Pooling2D`, `GlobalPooling2D`, `ZeroPadding2D`,
            `Dropout`), applied in order; at least one unit. The last unit is the block's
            output unit; transitions after it belong to the block's output.

    Example:
        >>> block = UnitStack([AlignedDense(16, "tanh"), AlignedDense(16, "tanh")])
        >>> head = UnitStack([GlobalPooling2D(), AlignedDense(10)])
    """


@keras.saving.register_keras_serializable(package="rlra_tf")
class ResidualStack(_Stack):
    """A chain of units whose output unit adds the block input before its activation:
    `z = phi(N(A(.)) + r)` with `r` the block input (identity shortcut) or, when the output unit
    has `shortcut="projection"`, its projection (a 1x1 convolution plus BatchNorm owned by that
    unit and updated from its error).

    The displacement at the block input is the sum of the two paths the forward signal took:
    the first unit's `F` (then back through any transitions in front of it) and the shortcut
    (the output unit's error itself, or through the projection's synapse).

    Args:
        layers: as `UnitStack`; transitions may sit in front of any unit of the main path and
            after the output unit (they then belong to the block's output), not between the
            output unit and the addition.

    Example:
        >>> block = ResidualStack([
        ...     AlignedConv2D(16, 3, norm="batch", activation="relu"),
        ...     AlignedConv2D(16, 3, norm="batch", activation="relu")])
    """

    residual = True

    def build(self, input_shape):
        super().build(input_shape)
        last = self.unit_layers[-1]
        before_add = tuple(input_shape)
        for layer in self.layers_in_order:
            before_add = tuple(layer.compute_output_shape(before_add))
            if layer is last:
                break
        if not last.has_projection and tuple(before_add[1:]) != tuple(input_shape[1:]):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: an identity shortcut needs the output "
                f"unit's output to have the shape of the block input; use a projection "
                f"(shortcut='projection' on the output unit). Received: input_shape="
                f"{tuple(input_shape)}, output shape={before_add}"
            )

    def input_displacement(self, block_trace, leaving):
        """First unit's `F` (and the transitions in front of it) plus the shortcut path.

        `leaving` holds the errors as each unit sends them down: with `norm_feedback="through"`
        the first unit's after its BatchNorm's transpose, and the output unit's shortcut error
        after the projection's BatchNorm (an identity shortcut has none).
        """
        d, used = self._first_unit_displacement(block_trace, leaving)
        out = self.unit_layers[-1]
        d = d + out.shortcut_feedback_input(leaving[-1][1],
                                            input_shape=tf.shape(block_trace.inputs))
        return d, used + out.shortcut_feedback_pairs
