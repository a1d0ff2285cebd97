"""LRA-E and recursive LRA (docs/ALGORITHM.md#step)."""

import keras
import tensorflow as tf

from rlra_tf.checks import check_choice, check_nonnegative
from rlra_tf.rules.base import (
    MirrorOptions,
    Rule,
    UnitUpdates,
    clip_by_norm,
    output_error,
    propagate,
)

ERROR_SCALES = {"beta", "raw"}
NORM_FEEDBACK = {"through", "skip"}
SYNAPSE_UPDATES = {"mirror", "kp", "lra", "fixed"}


def activation_difference(activation, h, shift, z=None):
    """`z - t = phi(h) - phi(h - shift)`, exactly where `phi` is piecewise linear.

    Computed as written, `h - shift` rounds away the digits of `shift` below the float32
    resolution of `h` (a unit whose displacement is 1e-7 of its pre-activation gets no error at
    all). For the linear and ReLU activations the difference is formed from `shift` itself on
    each linear piece, which is the same value without that rounding; other activations use
    the formula. `z` is `phi(h)` when already at hand.
    """
    name = getattr(activation, "__name__", None)
    if name == "linear":
        return tf.broadcast_to(shift, tf.shape(h))
    if name == "relu" and activation is keras.activations.relu:
        # h > 0: the shift, or all of h once the shift passes it; h <= 0: what the shift takes
        # below -|h| (then |shift| > |h|: no digits lost), else nothing.
        return tf.where(h > 0, tf.minimum(shift, h), tf.minimum(shift - h, 0.0))
    z = activation(h) if z is None else z
    return z - activation(h - shift)


class RecLRA(MirrorOptions, Rule):
    """Recursive local representation alignment (rec-LRA), as docs/ALGORITHM.md#step says.

    Every unit gets a target `t = phi(h - beta * d)` from a displacement `d` that error
    synapses carry to it, and its weights move by the outer product of its own input and its
    own error unit `err(z, t)`; no derivative flows between units and no activation derivative
    is taken. The defaults are the ones that train ResNets (docs/ALGORITHM.md#defaults): targets
    passed down through the adjacent synapses `F` (in a residual block, the shortcut plus the
    first unit's synapse), errors carried back through the unit's own BatchNorm before they
    leave it, error units scaled by `1 / beta`, and `F` aligned to `W` by the local weight
    mirror. The first reconstruction (block outputs from the output error through fixed skip
    synapses, raw errors, nothing through BatchNorm, `dF = gamma * dW`) is
    `RecLRA(feedback="skip", error_scale="raw", norm_feedback="skip", synapse_update="lra")`.

    Args:
        beta: how far a target is displaced from the current activity, `t = phi(h - beta*d)`.
        gamma: scale of the synapse updates of `synapse_update="lra"` (`dF = gamma * dW`) and
            of Hebbian skip synapses.
        feedback: `"adjacent"` (block outputs from the block above through `F`) or `"skip"`
            (block outputs from the output error through the skip synapses `S`, so blocks are
            independent).
        alpha: error unit `alpha * (z - t) + (1 - alpha) * sign(z - t)`; 1.0 is `z - t`.
        clip_norm: per-tensor norm clipping of every update, or `None`.
        skip_update: `"fixed"` (skip synapses never change) or `"hebbian"`
            (`dS = gamma * transpose(e_L) @ e_o / n`).
        input_noise: standard deviation of Gaussian noise added to the inputs in training.
        error_scale: `"beta"` (`err = (z - t) / beta`, so the signal keeps its scale along a
            chain of units) or `"raw"` (`z - t`, LRA-E as published).
        norm_feedback: `"through"` (an error leaves its unit through `F` after the transpose
            of the unit's own BatchNorm, docs/ALGORITHM.md#norm-transpose) or `"skip"` (as it is).
        synapse_update: how the adjacent synapses `F` (and the projections') learn:
            `"mirror"` (every `mirror_every` steps, `F <- (1 - mirror_rate) F + mirror_rate C`
            with `C` the correlation of noise with the unit's linear response, an assignment
            outside the optimiser), `"kp"` (Kolen-Pollack: `F` gets its kernel's optimiser
            step and its own weight decay), `"lra"` (`dF = gamma * dW` through the optimiser)
            or `"fixed"`.
        mirror_rate: `lambda` of the mirror, in [0, 1].
        mirror_batch: noise examples per estimate; `None`: 256 rows for dense units, 8 images
            for conv units.
        mirror_every: run the mirror every this many steps (1: every step).
        mirror_normalise: `"positions"` (a conv estimate divided by the noise examples times
            the output positions) or `"taps"` (by the positions each kernel tap saw: no
            shrinking of border taps under "same" padding; see `MirrorOptions`).
        mirror_warm_start: start with a running mean of the estimates (rate `1 / (k + 1)`)
            until it falls to `mirror_rate`.
        mirror_first_scale: the first estimate (step 0) draws this many times `mirror_batch`
            noise examples, so the synapses are aligned from the first step.
        mirror_track: every mirrored synapse also receives its kernel's optimiser step (and
            its own weight decay), so between estimates `F - W` changes only by weight decay.

    Example:
        >>> model.compile(optimizer="adam", rule=RecLRA(beta=0.1), metrics=["accuracy"])

    Reference: Ororbia, Mali, Kifer & Giles, arXiv 2002.03911 (2020) and 2206.01820 (2023);
    the mirror: Akrout, Wilson, Humphreys, Lillicrap & Tweed, NeurIPS 2019.
    """

    name = "rec_lra"
    defaults = dict(
        feedback="adjacent", error_scale="beta", norm_feedback="through",
        synapse_update="mirror",
    )

    def __init__(
        self,
        beta=0.1,
        gamma=1.0,
        feedback=None,
        alpha=1.0,
        clip_norm=None,
        skip_update="fixed",
        input_noise=0.0,
        error_scale=None,
        norm_feedback=None,
        synapse_update=None,
        mirror_rate=0.1,
        mirror_batch=None,
        mirror_every=4,
        mirror_normalise="positions",
        mirror_warm_start=True,
        mirror_first_scale=16,
        mirror_track=True,
    ):
        d = self.defaults
        self.beta = check_nonnegative("beta", beta)
        self.gamma = check_nonnegative("gamma", gamma)
        self.feedback = check_choice("feedback", feedback or d["feedback"], {"skip", "adjacent"})
        self.alpha = check_nonnegative("alpha", alpha)
        if self.alpha > 1.0:
            raise ValueError(f"Expected alpha in [0, 1], received: alpha={alpha!r}")
        self.clip_norm = check_nonnegative("clip_norm", clip_norm, allow_none=True)
        if self.clip_norm == 0.0:
            raise ValueError(
                f"Expected a positive clip_norm or None, received: clip_norm={clip_norm!r}"
            )
        self.skip_update = check_choice("skip_update", skip_update, {"fixed", "hebbian"})
        self.input_noise = check_nonnegative("input_noise", input_noise)
        self.error_scale = check_choice(
            "error_scale", error_scale or d["error_scale"], ERROR_SCALES
        )
        if self.error_scale == "beta" and self.beta == 0.0:
            raise ValueError(
                "error_scale='beta' divides the error units by beta, so beta must be positive "
                "(or use error_scale='raw'), received: beta=0.0"
            )
        self.norm_feedback = check_choice(
            "norm_feedback", norm_feedback or d["norm_feedback"], NORM_FEEDBACK
        )
        self.synapse_update = check_choice(
            "synapse_update", synapse_update or d["synapse_update"], SYNAPSE_UPDATES
        )
        self._init_mirror(mirror_rate, mirror_batch, mirror_every, mirror_normalise,
                          mirror_warm_start, mirror_first_scale, mirror_track)

    def error_unit(self, z, t):
        """`err(z, t)` of docs/ALGORITHM.md#targets (divided by `beta` with
        `error_scale="beta"`)."""
        return self._carried_error(z - t) / self._carry

    @property
    def _carry(self):
        """The scale at which errors are carried down: `beta` (1 when `beta` is 0).

        The walk carries `s = beta * err(z, t)` rather than `err(z, t)`: a synapse applied to
        `s` gives `beta * d` directly, which is what the target `phi(h - beta * d)` takes, and
        with `error_scale="beta"` the carried error is simply `z - t`. So no activation-sized
        tensor is multiplied or divided by `beta`; the updates are divided by `beta` once, on
        the parameter-sized results. The arithmetic is docs/ALGORITHM.md#targets'.
        """
        return self.beta if self.beta > 0.0 else 1.0

    def _carried_error(self, diff):
        """`carry * err(z, t)`, from the difference `diff = z - t`."""
        if self.alpha != 1.0:
            diff = self.alpha * diff + (1.0 - self.alpha) * tf.sign(diff)
        if self.error_scale == "raw" and self._carry != 1.0:
            diff = self._carry * diff
        return diff

    def use_skip(self, b, i, block_trace):
        """Whether unit `i` of block `b` takes its displacement from `e_L` (skip synapse)."""
        return self.feedback == "skip" and i == len(block_trace.units) - 1  # output unit

    def _walk(self, trace, labels, on_unit=None):
        """`propagate` over the carried errors `s_u = carry * e_u` (see `_carry`): returns
        `(s_L, Signals)`, the head's `s_L = carry * e_L` and every unit's `s_u`."""
        e_out = output_error(tf.stop_gradient(trace.logits), labels)
        carry = self._carry
        s_out = e_out * carry if carry != 1.0 else e_out
        shift = self.beta / carry  # 1, or 0 when beta is 0

        def target_error(ut, d):
            # `d` is `carry * d_u`. Targets and errors in float32 whatever the compute dtype:
            # `z - t` cancels most of its digits (it is of order beta), which bfloat16 cannot
            # afford. So the activity is recomputed from h in float32 too: phi(h) rounded to
            # bfloat16 is off by ~0.4% of z, a large part of z - t (measured on the tanh
            # MLP: 87.7% instead of ~89.5%).
            # h recomputed from what the trace keeps anyway rather than kept from the
            # forward pass (the same kernel, not always the same last bit: so z is phi of
            # it too, and z - t is exactly 0 where the target is the activity).
            h = ut.unit.recompute_pre(ut)
            if h is not None:
                h = tf.stop_gradient(h)
                z = None
            else:
                h = tf.cast(tf.stop_gradient(ut.pre), tf.float32)
                z = tf.stop_gradient(ut.outputs)
                z = None if z.dtype != tf.float32 else z
            d = tf.cast(d, tf.float32)
            shifted = d if shift == 1.0 else shift * d
            return self._carried_error(
                activation_difference(ut.unit.activation, h, shifted, z))

        return s_out, propagate(
            trace, s_out, target_error, self.use_skip, on_unit,
            through=self.norm_feedback == "through",
        )

    def signals(self, trace, labels):
        """The error units `e_u` of every unit (head: `e_L`) and which synapses carried them."""
        s_out, sig = self._walk(trace, labels)
        inv = 1.0 / self._carry
        sig.per_unit = [s * inv for s in sig.per_unit]
        return s_out * inv, sig

    def updates(self, trace, labels, local_gradients):
        hebbian = []
        inv = 1.0 / self._carry
        weight_updates = UnitUpdates(local_gradients, self.norm_feedback == "through",
                                     scale=inv)
        head = len(trace.blocks) - 1
        s_out = []

        def on_unit(b, i, ut, signal):
            leaving, done = weight_updates(b, i, ut, signal)
            if b == head:
                s_out.append(signal)
            elif (self.gamma > 0.0 and self.skip_update == "hebbian"
                  and self.use_skip(b, i, trace.blocks[b])):
                # `e_L^T e_o / n` from the carried errors, each `carry` times its error.
                d_skip = ut.unit.skip_hebbian_update(s_out[0], signal) * (inv * inv)
                hebbian.append((self.gamma * d_skip, ut.unit.skip_feedback))
                done.append(d_skip)
            return leaving, done

        _, sig = self._walk(trace, labels, on_unit)
        grads = weight_updates.grads
        pairs = list(grads.values())
        if self.gamma > 0.0 and self.synapse_update == "lra":
            for feedback, kernel in sig.feedback_used:
                pairs.append((self.gamma * grads[id(kernel)][0], feedback))
        if self.gamma > 0.0:
            pairs += hebbian
        return [(clip_by_norm(u, self.clip_norm), v) for u, v in pairs]

    def get_config(self):
        return {
            "beta": self.beta,
            "gamma": self.gamma,
            "feedback": self.feedback,
            "alpha": self.alpha,
            "clip_norm": self.clip_norm,
            "skip_update": self.skip_update,
            "input_noise": self.input_noise,
            "error_scale": self.error_scale,
            "norm_feedback": self.norm_feedback,
            "synapse_update": self.synapse_update,
            **self.mirror_config(),
        }


class LRA(RecLRA):
    """LRA-E (Ororbia & Mali, AAAI 2019) as published: `RecLRA` with adjacent feedback.

    Each unit's target comes from the error of the unit above through that unit's `F`, so the
    chain of targets runs the whole depth of the network. Its defaults are the published rule:
    raw errors `z - t`, nothing carried through BatchNorm, `dF = gamma * dW` (which, under SGD
    and Adam alike, gives `F` the same step as `W`, so `F - W` never changes:
    docs/ALGORITHM.md#options). With only `beta` and `gamma` set this is exactly
    docs/ALGORITHM.md#step with blocks of one unit: no clipping, no input noise.

    Args: as `RecLRA`; defaults `feedback="adjacent"`, `error_scale="raw"`,
    `norm_feedback="skip"`, `synapse_update="lra"`.

    Example:
        >>> model.compile(optimizer="adam", rule=LRA(beta=0.1, gamma=1.0))
    """

    name = "lra"
    defaults = dict(
        feedback="adjacent", error_scale="raw", norm_feedback="skip", synapse_update="lra",
    )
