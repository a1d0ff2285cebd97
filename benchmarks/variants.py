"""The named rule variants every benchmark and the report use: one name, one spelling.

A variant is a learning rule of `rlra_tf.rules` (by its registered name) with some of its
parameters changed from the library's defaults. The benchmarks take variant names in
`--rules` (`--rules=bp,rec_lra,rec_lra-no_mirror`), write them into their results as the
run's `rule`, and the report orders, labels and compares them by this table. The names are
the rule's own (`bp`, `rec_lra`, ...) or `<rule>-<what changes>`.

To benchmark a new rule or setting, add one entry here (and, for a rule parameter the
trainer does not know yet, the field to `trainers`' `Config`): every benchmark then accepts
its name, and every table of the report shows it in this table's order.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    """A rule of `rlra_tf.rules` with some parameters set.

    Args:
        rule: the rule's registered name (`rlra_tf.rules.get(rule)`).
        params: its parameters that differ from the library's defaults.
        about: what it is, in a few words (the report's tables show it).
        keras_batch_norm: the conv units' BatchNorm on Keras' op-by-op code path instead of
            TensorFlow's fused kernel (`rlra_tf.layers.FusedBatchNormalization`): only
            `benchmarks.speed.step_time` runs these (each in a process of its own).
    """

    rule: str
    params: dict = dataclasses.field(default_factory=dict)
    about: str = ""
    keras_batch_norm: bool = False


# The first reconstruction of the paper in this project: skip synapses from the output error
# to the block outputs, raw errors, nothing through BatchNorm, synapses moved by dF = gamma dW.
FIRST_RECONSTRUCTION = {"feedback": "skip", "error_scale": "raw", "norm_feedback": "skip",
                        "synapse_update": "lra"}
# The day rec_lra's default mirror became tracked, every 4 steps (files measured before it
# ran `rec_lra` with PREVIOUS_MIRROR; the report says so).
DEFAULT_MIRROR_SINCE = "2026-12-04"
# The mirror the library had by default before synapse tracking: every step, no warm start.
PREVIOUS_MIRROR = {"mirror_every": 1, "mirror_track": False, "mirror_warm_start": False,
                   "mirror_first_scale": 1}
# The weight mirror as the `fmnist_resnet20` preset (SGD) set it (on the previous default).
PRESET_MIRROR = {"mirror_batch": 32, "mirror_normalise": "taps", "mirror_warm_start": True}

# In the order of every table: backprop, the other baselines, the weight mirror, rec-LRA's
# default, then rec-LRA with one thing removed or changed.
VARIANTS = {
    "bp": Variant("bp", about="backpropagation"),
    "fa": Variant("fa", about="feedback alignment"),
    "dfa": Variant("dfa", about="direct feedback alignment"),
    "lra": Variant("lra", {"beta": 0.1, "gamma": 1.0}, "LRA-E as published, beta 0.1"),
    "wm": Variant("wm", about="feedback alignment with the weight mirror"),
    "wm-track4": Variant(
        "wm", {"mirror_track": True, "mirror_warm_start": True, "mirror_every": 4,
               "mirror_first_scale": 16},
        "the weight mirror as rec_lra's default runs it: tracked synapses, every 4 steps"),
    "kp": Variant("kp", about="Kolen-Pollack: feedback alignment whose synapses get their "
                  "kernel's step and their own weight decay"),
    "rec_lra": Variant("rec_lra", about="rec-LRA as the library sets it by default"),
    # What each part of the default is worth (the ablation).
    "rec_lra-no_mirror": Variant(
        "rec_lra", {"synapse_update": "lra"},
        "the weight mirror: F follows dF = gamma dW, so it stays as random as it started"),
    "rec_lra-no_through": Variant("rec_lra", {"norm_feedback": "skip"},
                                  "errors through the unit's BatchNorm"),
    "rec_lra-raw_errors": Variant("rec_lra", {"error_scale": "raw"},
                                  "beta-scaled error units (e = z - t)"),
    "rec_lra-skip_synapses": Variant(
        "rec_lra", {"feedback": "skip"},
        "the adjacent path to block outputs: targets from the output error through fixed skip "
        "synapses (feedback=\"skip\")"),
    "rec_lra-first": Variant(
        "rec_lra", FIRST_RECONSTRUCTION,
        "all of it: the first reconstruction (skip synapses, raw errors, nothing through "
        "BatchNorm, dF = gamma dW)"),
    # The mirror's cost.
    "rec_lra-fixed_synapses": Variant("rec_lra", {"synapse_update": "fixed"},
                                      "no mirror at all: fixed random synapses"),
    "rec_lra-mirror_every4": Variant("rec_lra", {**PREVIOUS_MIRROR, "mirror_every": 4},
                                     "the previous default's mirror every 4 steps"),
    "rec_lra-mirror_every1": Variant(
        "rec_lra", PREVIOUS_MIRROR,
        "the previous default's mirror: every step, untracked synapses, no warm start"),
    "rec_lra-track4": Variant(
        "rec_lra", {"mirror_first_scale": 1},
        "the default without the large first estimate (first estimate from 8 noise images)"),
    "rec_lra-mirror_m32": Variant("rec_lra", {**PREVIOUS_MIRROR, "mirror_batch": 32},
                                  "4x the noise images per conv estimate of the mirror"),
    # Mirror settings tried beyond the default.
    "rec_lra-mirror_taps": Variant("rec_lra", {**PREVIOUS_MIRROR, "mirror_normalise": "taps"},
                                   "conv estimates normalised per kernel tap"),
    "rec_lra-mirror_taps_slow": Variant(
        "rec_lra", {**PREVIOUS_MIRROR, "mirror_normalise": "taps", "mirror_rate": 0.02,
                    "mirror_warm_start": True},
        "per-tap estimates, a slower moving average that starts as a running mean"),
    "rec_lra-mirror_taps_warm": Variant(
        "rec_lra", {**PREVIOUS_MIRROR, "mirror_normalise": "taps", "mirror_warm_start": True},
        "per-tap estimates, a running mean first"),
    "rec_lra-mirror_taps_warm_m32": Variant(
        "rec_lra", {**PREVIOUS_MIRROR, **PRESET_MIRROR},
        "the fmnist_resnet20 preset's mirror: per-tap, warm-started, 4x the noise images"),
    "rec_lra-beta0.01": Variant("rec_lra", {**PREVIOUS_MIRROR, "beta": 0.01},
                                "a ten times smaller target displacement"),
    # Where the step time goes: Keras' op-by-op BatchNorm instead of the fused kernel.
    "bp-keras_bn": Variant("bp", about="bp, Keras' op-by-op BatchNorm", keras_batch_norm=True),
    "fa-keras_bn": Variant("fa", about="fa, Keras' op-by-op BatchNorm", keras_batch_norm=True),
    "rec_lra-keras_bn": Variant("rec_lra", about="rec_lra, Keras' op-by-op BatchNorm",
                                keras_batch_norm=True),
}
RULES = ("bp", "fa", "dfa", "lra", "wm", "rec_lra")  # the rules at their defaults


def get(name):
    """The `Variant` of `name`.

    Raises:
        ValueError: for a name that is not in `VARIANTS` (the message lists them).
    """
    if name not in VARIANTS:
        raise ValueError(f"Expected a rule variant among {list(VARIANTS)}, received: {name!r}")
    return VARIANTS[name]


def check(names, allowed=None):
    """`names` (a list of variant names) if each is known (and in `allowed`, if given).

    Raises:
        ValueError: naming the first unknown or not allowed name and the choices.
    """
    choices = list(allowed or VARIANTS)
    for name in names:
        if name not in choices:
            raise ValueError(f"Expected rule variants among {choices}, received: {name!r}")
    return list(names)


def make_rule(name):
    """The `rlra_tf.rules` object of variant `name` (the library's defaults but `params`)."""
    from rlra_tf import rules

    variant = get(name)
    rule = rules.get(variant.rule)
    if not variant.params:
        return rule
    return type(rule)(**{**rule.get_config(), **variant.params})


def config_changes(name, beta=0.1):
    """The trainer-config changes that train variant `name`: every rule parameter back to the
    library's default, `beta` and gamma 1 for rec_lra and lra (as every benchmark sets them),
    then the variant's parameters."""
    variant = get(name)
    changes = {k: None for k in rule_params()}
    changes["rule"] = variant.rule
    if variant.rule in ("rec_lra", "lra"):
        changes.update(beta=beta, gamma=1.0)
    changes.update(variant.params)
    return changes


def rule_params():
    """The names of every rule parameter of `rlra_tf.rules` (the trainer's config fields that
    configure a rule rather than the training run)."""
    from rlra_tf import rules

    names = set()
    for name in rules.NAMES:
        rule = rules.get(name)
        names.update(rule.get_config() if hasattr(rule, "get_config") else ())
    return tuple(sorted(names))


def ordered(names):
    """`names` (without repeats) in the order of `VARIANTS`, then the others as given."""
    names = list(dict.fromkeys(names))
    return [n for n in VARIANTS if n in names] + [n for n in names if n not in VARIANTS]
