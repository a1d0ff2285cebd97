"""rlra_tf: training Keras models without backpropagation (rec-LRA, LRA-E, FA, DFA)."""

from rlra_tf import layers, models, rules

__version__ = "0.1.0"
__all__ = ["layers", "models", "rules", "__version__"]
