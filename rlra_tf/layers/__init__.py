"""Keras layers that carry error synapses (feedback weights)."""

from rlra_tf.layers._unit import AlignedUnit
from rlra_tf.layers.aligned_conv2d import AlignedConv2D
from rlra_tf.layers.aligned_dense import AlignedDense
from rlra_tf.layers.fused_batch_norm import FusedBatchNormalization

__all__ = ["AlignedUnit", "AlignedConv2D", "AlignedDense", "FusedBatchNormalization"]
