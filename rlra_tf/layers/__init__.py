"""Keras layers that carry error synapses (units), and the weight-free ops between them
(transitions)."""

from rlra_tf.layers._unit import AlignedUnit
from rlra_tf.layers.aligned_conv2d import AlignedConv2D
from rlra_tf.layers.aligned_dense import AlignedDense
from rlra_tf.layers.fused_batch_norm import FusedBatchNormalization
from rlra_tf.layers.transitions import (
    Dropout,
    Flatten,
    GlobalPooling2D,
    Pooling2D,
    Transition,
    ZeroPadding2D,
)

__all__ = [
    "AlignedConv2D", "AlignedDense", "AlignedUnit", "Dropout", "Flatten",
    "FusedBatchNormalization", "GlobalPooling2D", "Pooling2D", "Transition", "ZeroPadding2D",
]
