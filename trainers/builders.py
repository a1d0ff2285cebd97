"""Models, rules and optimisers by name: the one place that maps a `Config` to builders.

`model_names` lists the models a config may name, `build_model` builds one for a dataset,
`make_rule` the learning rule (refusing parameters the rule does not take, with a `ValueError`
that quotes them), `make_optimizer` the optimiser with its warm-up schedule and
`dtype_policy` the Keras mixed-precision policy the model is built under.
"""

import contextlib

import keras

from rlra_tf import rules, schedules
from rlra_tf.models.mlp import mlp
from rlra_tf.models.resnet import PRESETS as RESNET_PRESETS
from rlra_tf.models.resnet import resnet

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = schedules.DECAYS
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}
# `--mixed_precision` -> the Keras dtype policy (`auto`: bfloat16 on a TPU, float16 on a GPU,
# float32 on a CPU, where neither is faster).
MIXED_PRECISION = {"off": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16",
                   "auto": None}
# Parameters that weight decay leaves alone (biases, BatchNorm scale and offset).
NO_DECAY = ("bias", "gamma", "beta")


KERAS_MODEL = "keras"  # `model` of a run that trains the saved Keras model of `keras_model`


def model_names():
    """`"mlp"`, the ResNet presets of `rlra_tf.models.resnet`, and `"keras"` (the saved Keras
    model named by `keras_model`, converted by `rlra_tf.models.from_keras`)."""
    return ("mlp",) + tuple(sorted(RESNET_PRESETS)) + (KERAS_MODEL,)


def load_keras_model(path):
    """The Keras model saved at `path` (not compiled), and its conversion to an
    `AlignedModel`; a `ValueError` that names the file says what is wrong with it."""
    import os

    from rlra_tf.models import from_keras

    if not path:
        raise ValueError("--model=keras trains a saved Keras model: give its file with "
                         "--keras_model=PATH.keras")
    if not os.path.isfile(path):
        raise ValueError(f"No Keras model file at --keras_model={path!r}")
    try:
        original = keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a file it cannot read
        raise ValueError(f"Keras cannot load --keras_model={path!r} ({type(err).__name__}: "
                         f"{err})") from None
    try:
        return original, from_keras(original)
    except ValueError as err:
        raise ValueError(f"--keras_model={path!r} cannot be trained by rlra_tf: {err}") from None


def build_model(config, ds_info):
    """The built `AlignedModel` of `config.model` for the dataset (call inside the scope)."""
    kwargs = {"noise_seed": config.seed}
    if config.model == KERAS_MODEL:
        from rlra_tf.models import from_keras

        original, _ = load_keras_model(config.keras_model)
        return from_keras(original, num_classes=ds_info.num_classes, **kwargs)
    if config.normalize:
        kwargs.update(input_mean=ds_info.mean, input_std=ds_info.std)
    if config.model == "mlp":
        return mlp(
            ds_info.image_shape,
            hidden_units=config.hidden_units,
            num_classes=ds_info.num_classes,
            activation=config.activation,
            block_size=config.block_size,
            **kwargs,
        )
    return resnet(
        config.model,
        input_shape=ds_info.image_shape,
        num_classes=ds_info.num_classes,
        stem=config.stem,
        width=config.width,
        activation=config.activation,
        **kwargs,
    )


def policy_name(mixed_precision):
    """The Keras dtype policy of a `--mixed_precision` setting (see `MIXED_PRECISION`)."""
    import tensorflow as tf

    policy = MIXED_PRECISION[mixed_precision]
    if policy is not None:
        return policy
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def dtype_policy(name):
    """Build under the global Keras dtype policy `name`, then put the previous one back.

    Layers keep the policy they were built with (and a `.keras` file records it), so only
    the model's construction needs the global setting.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_rule(config):
    """The rule object from `config.rule` and the rule parameters that are set.

    Each rule takes the parameters of its `get_config()` (`rec_lra`/`lra`: all of them;
    `fa`/`wm`: the synapse and mirror ones; `dfa`/`bp`: none); any other is refused.
    """
    params = config.rule_params()
    taken = set(rules.get(config.rule).get_config())
    extra = {k: v for k, v in params.items() if k not in taken}
    if extra:
        allowed = ", ".join(sorted(taken)) if taken else "no parameters"
        raise ValueError(
            f"Rule {config.rule!r} takes {allowed}; received: "
            + ", ".join(f"{k}={v!r}" for k, v in extra.items())
        )
    return rules.get({"name": config.rule, "config": params})


def make_optimizer(config, steps_per_epoch):
    """The optimiser with its warm-up schedule; steps are optimiser steps."""
    lr = schedules.WarmupSchedule(
        config.learning_rate,
        decay=config.schedule,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)),
        boundaries=[e * steps_per_epoch for e in config.step_epochs],
        factor=config.step_factor,
    )
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, weight_decay=wd)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=wd)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer
