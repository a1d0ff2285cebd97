"""Checking a `Config` before anything is read or written (pure Python).

`validate` raises `TrainerError` for the first setting that cannot work, quoting the value it
received: every field against the type, choices and range its declaration in
`trainers/presets.py` gives, then what involves several fields, then the rule (built from its
parameters, so the rule's own checks apply). `check_dataset` compares the model's fixed image
shape and class count, if set, with the dataset's.
"""

import dataclasses
import math

import numpy as np

from trainers import presets
from trainers.builders import KERAS_MODEL, load_keras_model, make_rule
from trainers.errors import TrainerError, fail


def _choice(name, value, allowed):
    if value not in allowed:
        fail(f"Unknown {name}, received: {name}={value!r}. Expected one of {list(allowed)}")


def _int(name, value, minimum=1, optional=False):
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive" if minimum == 1 else f"an integer >= {minimum}, i.e. a"
        fail(f"Expected {kind} integer for {name}, received: {name}={value!r}")


def _number(name, value, low=0.0, high=None, low_open=False, high_open=True):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        fail(f"Expected a number {lo}{hi} for {name}, received: {name}={value!r}")


def _check_field(field, value):
    """The declared choices and range of one field (`presets.setting`)."""
    optional = field.default is None
    if value is None and optional:
        return
    choices = field.metadata.get("choices")
    if choices is not None:
        _choice(field.name, value, choices)
    check = field.metadata.get("check")
    if check is None:
        return
    kind = check[0]
    if kind == "int":
        _int(field.name, value, check[1])
    elif kind == "ints":
        if not isinstance(value, tuple):
            fail(f"Expected a tuple of integers for {field.name}, received: "
                 f"{field.name}={value!r}")
        for v in value:
            _int(f"{field.name}[i]", v, check[1])
    else:
        _number(field.name, value, *check[1:])


def validate(config):
    """Raises `TrainerError` for the first setting of `config` that cannot work."""
    if not isinstance(config, presets.Config):
        fail(f"Expected a trainers.presets.Config, received: {type(config).__name__}")
    for field in dataclasses.fields(config):
        _check_field(field, getattr(config, field.name))
    _number("warmup_epochs", config.warmup_epochs, 0.0, config.epochs)
    steps = list(config.step_epochs)
    if steps != sorted(set(steps)) or (steps and steps[-1] >= config.epochs):
        fail(
            "Expected increasing step_epochs below epochs, received: "
            f"step_epochs={tuple(steps)}, epochs={config.epochs}"
        )
    if config.schedule == "step" and not steps:
        fail("schedule='step' needs step_epochs (the epochs at which the rate drops)")
    if not config.hidden_units:
        fail(f"Expected at least one hidden layer, received: hidden_units={config.hidden_units!r}")
    if config.image_shape is not None and len(config.image_shape) != 3:
        fail(
            "Expected image_shape=(height, width, channels), received: "
            f"image_shape={config.image_shape!r}"
        )
    if config.train_limit is not None and config.train_limit < config.batch_size:
        fail(
            f"train_limit={config.train_limit} is smaller than batch_size={config.batch_size}: "
            "not one full training batch"
        )
    if config.diagnostics_every and config.steps_per_execution > 1:
        fail("diagnostics_every needs steps_per_execution=1 (probes run between steps)")
    try:
        make_rule(config)
    except (TypeError, ValueError) as err:
        raise TrainerError(str(err)) from None


def check_dataset(config, ds_info):
    """The model's fixed image shape / class count, if set, must be the dataset's; a Keras
    model (`--keras_model`) must load, convert, and fit the dataset's images and classes."""
    if config.model == KERAS_MODEL:
        try:
            original, converted = load_keras_model(config.keras_model)
        except ValueError as err:
            raise TrainerError(str(err)) from None
        shape = tuple(original.inputs[0].shape[1:])
        if shape != tuple(ds_info.image_shape):
            fail(f"--keras_model={config.keras_model!r} takes inputs of shape {shape} but "
                 f"{ds_info.name} has images of shape {tuple(ds_info.image_shape)}")
        if converted.num_classes != ds_info.num_classes:
            fail(f"--keras_model={config.keras_model!r} gives {converted.num_classes} class "
                 f"scores but {ds_info.name} has {ds_info.num_classes} classes")
    if config.num_classes is not None and config.num_classes != ds_info.num_classes:
        fail(
            f"The model has num_classes={config.num_classes} but {ds_info.name} has "
            f"{ds_info.num_classes} classes; use a model for {ds_info.num_classes} classes"
        )
    if config.image_shape is not None and tuple(config.image_shape) != ds_info.image_shape:
        fail(
            f"The model expects images of shape {tuple(config.image_shape)} but {ds_info.name} "
            f"has images of shape {ds_info.image_shape}"
        )
