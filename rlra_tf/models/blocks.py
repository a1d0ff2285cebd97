"""Blocks: runs of units that the rules treat as one (ALGORITHM.md section 2)."""

import keras
import tensorflow as tf

from rlra_tf.rules.trace import BlockTrace, UnitTrace


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


class AlignedBlock(keras.layers.Layer):
    """Base class of blocks. A block owns its units (`unit_layers`), output unit last.

    Subclasses implement `trace(inputs, training, local)` and
    `input_displacement(block_trace, leaving)`, where `leaving` holds, per unit, the
    `(main, shortcut)` errors the unit sends down (`rlra_tf.rules.base.leaving_errors`).
    """

    @property
    def output_unit(self):
        return self.unit_layers[-1]

    def call(self, inputs, training=None):
        return self.trace(inputs, training=training, local=False).outputs


@keras.saving.register_keras_serializable(package="rlra_tf")
class UnitStack(AlignedBlock):
    """A plain chain of units with no residual path (MLP blocks and the MLP head).

    Args:
        unit_layers: a list of `AlignedUnit` layers, applied in order.

    Example:
        >>> block = UnitStack([AlignedDense(16, "tanh"), AlignedDense(16, "tanh")])
    """

    def __init__(self, unit_layers, **kwargs):
        super().__init__(**kwargs)
        if not unit_layers:
            raise ValueError(f"Expected at least one unit, received: unit_layers={unit_layers!r}")
        self.unit_layers = list(unit_layers)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.unit_layers:
            if not unit.built:
                unit.build(shape)
            shape = unit.compute_output_shape(shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.unit_layers:
            shape = unit.compute_output_shape(shape)
        return shape

    def trace(self, inputs, training=None, local=False):
        z, units = inputs, []
        for unit in self.unit_layers:
            units.append(trace_unit(unit, isolate(z, local), training=training))
            z = units[-1].outputs
        return BlockTrace(block=self, inputs=inputs, units=units)

    def input_displacement(self, block_trace, leaving):
        """The first unit's feedback carries the error it sends down to the block input."""
        first = self.unit_layers[0]
        return first.feedback_input(leaving[0][0]), [(first.feedback, first.kernel)]

    def get_config(self):
        config = super().get_config()
        config["unit_layers"] = [keras.saving.serialize_keras_object(u) for u in self.unit_layers]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["unit_layers"] = [
            keras.saving.deserialize_keras_object(u) for u in config["unit_layers"]
        ]
        return cls(**config)
