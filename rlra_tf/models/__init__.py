"""The trainable model and the architectures."""

from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import AlignedBlock, UnitStack
from rlra_tf.models.mlp import mlp

__all__ = ["AlignedBlock", "AlignedModel", "UnitStack", "mlp"]
