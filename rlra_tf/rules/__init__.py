"""Learning rules as plain tensor maths over a trace of the forward pass.

Names: `"rec_lra"` (`RecLRA`), `"lra"` (`LRA`), `"fa"` (`FA`), `"wm"` (`WM`), `"kp"` (`KP`),
`"dfa"` (`DFA`), `"bp"` (`BP`).
"""

from rlra_tf.rules.base import Rule, Signals, output_error, propagate
from rlra_tf.rules.feedback_alignment import BP, DFA, FA, KP, WM
from rlra_tf.rules.lra import LRA, RecLRA
from rlra_tf.rules.trace import BlockTrace, Trace, UnitTrace

RULES = {cls.name: cls for cls in (RecLRA, LRA, FA, WM, KP, DFA, BP)}
NAMES = tuple(RULES)


def get(rule):
    """A rule object from a name, a config dict (`{"name": ..., "config": {...}}`) or a rule."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, dict):
        name, config = rule.get("name"), rule.get("config", {})
    else:
        name, config = rule, {}
    if name not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; expected one of {list(NAMES)} or a Rule object.")
    return RULES[name].from_config(config)


def serialize(rule):
    rule = get(rule)
    return {"name": rule.name, "config": rule.get_config()}


__all__ = [
    "BP", "DFA", "FA", "KP", "LRA", "NAMES", "RULES", "RecLRA", "Rule", "Signals", "BlockTrace",
    "Trace", "UnitTrace", "WM", "get", "output_error", "propagate", "serialize",
]
