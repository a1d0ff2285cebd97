"""Keras layers that carry error synapses (feedback weights)."""

from rlra_tf.layers._unit import AlignedUnit
from rlra_tf.layers.aligned_dense import AlignedDense

__all__ = ["AlignedUnit", "AlignedDense"]
