"""Learning rules as plain tensor maths over a trace of the forward pass.

Built in: `"rec_lra"` (`RecLRA`), `"lra"` (`LRA`), `"fa"` (`FA`), `"wm"` (`WM`), `"kp"`
(`KP`), `"dfa"` (`DFA`), `"bp"` (`BP`). A rule of your own is a `Rule` subclass registered
with `register`, so that a model trained with it saves and reloads (docs/RULES.md).
"""

from rlra_tf.rules.base import (
    MirrorOptions,
    Rule,
    Signals,
    UnitUpdates,
    clip_by_norm,
    leaving_errors,
    mirror_assignments,
    output_error,
    propagate,
)
from rlra_tf.rules.feedback_alignment import BP, DFA, FA, KP, WM
from rlra_tf.rules.lra import LRA, RecLRA

BUILTIN = (RecLRA, LRA, FA, WM, KP, DFA, BP)
RULES = {cls.name: cls for cls in BUILTIN}
NAMES = tuple(RULES)  # the built-in names; `names()` includes registered rules


def names():
    """The names `get` accepts: the built-in rules, then those registered, in order."""
    return tuple(RULES)


def register(rule_class):
    """Registers a `Rule` subclass under its `name`, so `compile(rule=name)` and reloading a
    saved model find it. Usable as a class decorator; returns the class.

    Registering the same class again is a no-op; another class under a taken name is an error.
    Import the module that registers the rule before loading a model saved with it (as Keras
    needs custom layers registered before loading).

    Example:
        >>> @rlra_tf.rules.register
        ... class MyRule(rlra_tf.rules.Rule):
        ...     name = "my_rule"
        ...     def updates(self, trace, labels, local_gradients): ...
    """
    if not (isinstance(rule_class, type) and issubclass(rule_class, Rule)):
        raise ValueError(
            f"Expected a subclass of rlra_tf.rules.Rule, received: rule_class={rule_class!r}"
        )
    name = getattr(rule_class, "name", None)
    if not isinstance(name, str) or not name or name == Rule.name:
        raise ValueError(
            f"A rule class needs a class attribute `name` (a non-empty string of its own), "
            f"received: {rule_class.__name__}.name={name!r}"
        )
    known = RULES.get(name)
    if known is not None and known is not rule_class:
        same = f"{known.__module__}.{known.__qualname__}" == \
            f"{rule_class.__module__}.{rule_class.__qualname__}"
        if not same:  # the same class defined again (a re-run notebook cell) replaces it
            raise ValueError(
                f"A rule named {name!r} is already registered ({known.__module__}."
                f"{known.__qualname__}); choose another name for {rule_class.__qualname__}"
            )
    RULES[name] = rule_class
    return rule_class


def get(rule):
    """A rule object from a name, a config dict (`{"name": ..., "config": {...}}`) or a rule."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, dict):
        name, config = rule.get("name"), rule.get("config", {})
    else:
        name, config = rule, {}
    if name not in RULES:
        raise ValueError(
            f"Unknown rule {rule!r}; expected one of {list(RULES)} or a Rule object. A rule of "
            "your own must be registered with rlra_tf.rules.register before it is used or a "
            "model trained with it is loaded (docs/RULES.md)."
        )
    return RULES[name].from_config(config)


def serialize(rule):
    """`{"name": ..., "config": ...}` of a rule (what a saved model's compile config holds)."""
    rule = get(rule)
    return {"name": rule.name, "config": rule.get_config()}


__all__ = [
    "BP", "BUILTIN", "DFA", "FA", "KP", "LRA", "MirrorOptions", "NAMES", "RULES", "RecLRA",
    "Rule",
    "Signals", "UnitUpdates", "WM", "clip_by_norm", "get", "leaving_errors",
    "mirror_assignments", "names", "output_error", "propagate", "register", "serialize",
]
