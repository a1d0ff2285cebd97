"""The trainer's flags, generated from `trainers.presets.Config`: one flag per field.

A flag is named as its field and parses into the field's type: `--epochs=3`,
`--hidden_units=256,256`, `--augment` / `--noaugment`, `--width=none` (an optional field back
to `None`), and for a rule parameter whatever the rule takes (`--beta=0.2`,
`--feedback=skip`, `--clip_norm=1.0`). Every flag is unset by default: only the flags given on
the command line override the preset (`overrides`). Its help is the field's, with its choices
and the value of the default preset. Nothing here names a field: a new field of `Config`, or
a new parameter of a rule, is a new flag.
"""

import ast
import dataclasses
import typing

from absl import flags

from trainers import presets


def _kind(field):
    """`"bool"`, `"int"`, `"float"`, `"str"`, `"ints"` (a tuple) or `"value"` (a literal)."""
    parameter = field.metadata.get("rule_parameter")
    if parameter is not None:
        default = parameter.default
        for kind in (bool, int, float, str):
            if isinstance(default, kind):
                return kind.__name__
        return "value"
    annotation = field.type
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        return "ints"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, "value")


def _literal(text):
    """`"none"` -> None, `"true"`/`"false"` -> bool, a number -> int or float, else the text."""
    lowered = text.strip().lower()
    if lowered in ("none", "true", "false"):
        return {"none": None, "true": True, "false": False}[lowered]
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()
    return value if isinstance(value, (int, float)) else text.strip()


class _FieldParser(flags.ArgumentParser):
    """Parses a flag into its field's type; `none` resets an optional field."""

    def __init__(self, kind, optional):
        self.kind, self.optional = kind, optional

    def parse(self, argument):
        if not isinstance(argument, str):
            return argument
        text = argument.strip()
        if self.optional and text.lower() == "none":
            return None
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
            if self.kind == "ints":
                return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            expected = {"int": "an integer", "float": "a number",
                        "ints": "comma-separated integers"}[self.kind]
            raise ValueError(f"expected {expected}{' or none' if self.optional else ''}, "
                             f"received: {argument!r}") from None
        if self.kind == "value":
            return _literal(text)
        return text

    def flag_type(self):
        return {"ints": "comma-separated ints", "value": "value"}.get(self.kind, self.kind)


def _shown(value):
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(none)"
    return "none" if value is None else str(value)


def _help(field, default_config):
    text = field.metadata.get("help", "").rstrip(".") + "."
    choices = field.metadata.get("choices")
    if choices:
        text += f" One of: {', '.join(str(c) for c in choices)}."
    parameter = field.metadata.get("rule_parameter")
    if parameter is not None:
        text += f" Rules: {', '.join(parameter.rules)}."
    value = getattr(default_config, field.name)
    if parameter is not None and value is None:
        shown = f"the rule's, {_shown(parameter.default)}"
    else:
        shown = _shown(value)
    return text + f" Default: the preset's ({presets.DEFAULT_PRESET}: {shown})."


def define(flag_values=flags.FLAGS):
    """Defines one flag per field of `Config` in `flag_values`, each unset by default."""
    default_config = presets.get(presets.DEFAULT_PRESET)
    for field in dataclasses.fields(presets.Config):
        kind = _kind(field)
        help_text = _help(field, default_config)
        if kind == "bool":
            flags.DEFINE_bool(field.name, None, help_text, flag_values=flag_values)
        else:
            optional = field.default is None or field.metadata.get("rule_parameter") is not None
            flags.DEFINE(_FieldParser(kind, optional), field.name, None, help_text,
                         flag_values=flag_values, serializer=flags.ArgumentSerializer())


def overrides(flag_values=flags.FLAGS):
    """`{field: value}` of the fields whose flag was given on the command line."""
    return {name: flag_values[name].value for name in presets.FIELDS
            if flag_values[name].present}
