"""rlra_tf: training Keras models without backpropagation (rec-LRA, LRA-E, FA, DFA)."""

from rlra_tf import layers, models, rules, schedules

__version__ = "0.1.0"
__all__ = ["layers", "models", "rules", "schedules", "__version__"]
