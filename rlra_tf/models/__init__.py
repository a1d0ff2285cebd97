"""The trainable model and the architectures."""

from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import AlignedBlock, UnitStack
from rlra_tf.models.mlp import mlp
from rlra_tf.models.residual_blocks import PooledHead, ResidualBlock, ResNetStem
from rlra_tf.models.resnet import PRESETS as RESNET_PRESETS
from rlra_tf.models.resnet import parameter_counts, parameter_summary, resnet

__all__ = [
    "AlignedBlock", "AlignedModel", "PooledHead", "RESNET_PRESETS", "ResNetStem", "ResidualBlock",
    "UnitStack", "mlp", "parameter_counts", "parameter_summary", "resnet",
]
