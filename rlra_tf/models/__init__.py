"""The trainable model, its blocks, the architectures, and conversion from Keras models."""

from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import AlignedBlock, ResidualStack, UnitStack
from rlra_tf.models.convert import Conversion, ConversionError, from_keras
from rlra_tf.models.mlp import mlp
from rlra_tf.models.residual_blocks import PooledHead, ResidualBlock, ResNetStem
from rlra_tf.models.resnet import PRESETS as RESNET_PRESETS
from rlra_tf.models.resnet import parameter_counts, parameter_summary, resnet

__all__ = [
    "AlignedBlock", "AlignedModel", "Conversion", "ConversionError", "PooledHead",
    "RESNET_PRESETS", "ResNetStem", "ResidualBlock", "ResidualStack", "UnitStack", "from_keras",
    "mlp", "parameter_counts", "parameter_summary", "resnet",
]
