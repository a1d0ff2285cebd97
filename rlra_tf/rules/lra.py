"""LRA-E and recursive LRA (ALGORITHM.md section 3)."""

import tensorflow as tf

from rlra_tf.rules.base import (
    Rule,
    block_updates,
    check_choice,
    check_nonnegative,
    clip_by_norm,
    output_error,
    propagate,
)


class RecLRA(Rule):
    """Recursive local representation alignment (rec-LRA).

    Every block's output unit gets a target from the output error through its skip synapse
    (`feedback="skip"`), so the blocks are independent; inside a block, plain LRA runs from the
    block's target down to its first unit through the adjacent synapses `F`. Each unit's
    weights move by the outer product of its own input and its own error; no derivative flows
    between units and no activation derivative is taken.

    Args:
        beta: how far a target is displaced from the current activity, `t = phi(h - beta*d)`.
        gamma: scale of the adjacent error-synapse update `dF = gamma * dW`.
        feedback: `"skip"` (block outputs from `e_L`, rec-LRA) or `"adjacent"` (from the block
            above, LRA-E).
        alpha: error unit `alpha * (z - t) + (1 - alpha) * sign(z - t)`; 1.0 is `z - t`.
        clip_norm: per-tensor norm clipping of every update, or `None`.
        skip_update: `"fixed"` (skip synapses never change) or `"hebbian"`
            (`dS = gamma * transpose(e_L) @ e_o / n`).
        input_noise: standard deviation of Gaussian noise added to the inputs in training.

    Example:
        >>> model.compile(optimizer="adam", rule=RecLRA(beta=0.1), metrics=["accuracy"])

    Reference: Ororbia, Mali, Kifer & Giles, arXiv 2002.03911 (2020) and 2206.01820 (2023).
    """

    name = "rec_lra"
    default_feedback = "skip"

    def __init__(
        self,
        beta=0.1,
        gamma=1.0,
        feedback=None,
        alpha=1.0,
        clip_norm=None,
        skip_update="fixed",
        input_noise=0.0,
    ):
        self.beta = check_nonnegative("beta", beta)
        self.gamma = check_nonnegative("gamma", gamma)
        self.feedback = check_choice(
            "feedback", feedback or self.default_feedback, {"skip", "adjacent"}
        )
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

    def error_unit(self, z, t):
        """`err(z, t)` of section 3.3."""
        diff = z - t
        if self.alpha == 1.0:
            return diff
        return self.alpha * diff + (1.0 - self.alpha) * tf.sign(diff)

    def use_skip(self, b, i, block_trace):
        """Whether unit `i` of block `b` takes its displacement from `e_L` (skip synapse)."""
        return self.feedback == "skip" and i == len(block_trace.units) - 1  # output unit

    def signals(self, trace, labels, after_block=None):
        """The error units `e_u` of every unit (head: `e_L`) and which synapses carried them.

        `after_block` is passed to `propagate` (block-by-block updates).
        """
        e_out = output_error(tf.stop_gradient(trace.logits), labels)

        def target_error(ut, d):
            h, z = tf.stop_gradient(ut.pre), tf.stop_gradient(ut.outputs)
            target = ut.unit.activation(h - self.beta * d)
            return self.error_unit(z, target)

        return e_out, propagate(trace, e_out, target_error, self.use_skip, after_block)

    def updates(self, trace, labels, local_gradients):
        grads, hebbian = {}, []
        weight_updates = block_updates(trace, local_gradients, grads)
        head = len(trace.blocks) - 1
        e_out = []

        def after_block(b, signals):
            done = weight_updates(b, signals)
            if b == head:
                e_out.append(signals[0])
            elif self.gamma > 0.0 and self.skip_update == "hebbian":
                bt = trace.blocks[b]
                for i, ut in enumerate(bt.units):
                    if self.use_skip(b, i, bt):
                        d_skip = ut.unit.skip_hebbian_update(e_out[0], signals[i])
                        hebbian.append((self.gamma * d_skip, ut.unit.skip_feedback))
                        done.append(d_skip)
            return done

        _, sig = self.signals(trace, labels, after_block)
        pairs = list(grads.values())
        if self.gamma > 0.0:
            for feedback, kernel in sig.feedback_used:
                pairs.append((self.gamma * grads[id(kernel)][0], feedback))
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
        }


class LRA(RecLRA):
    """LRA-E (Ororbia & Mali, AAAI 2019): `RecLRA` with adjacent feedback everywhere.

    Each unit's target comes from the error of the unit above through that unit's `F`, so the
    chain of targets runs the whole depth of the network. With only `beta` and `gamma` set, this
    is exactly ALGORITHM.md section 3 with blocks of one unit: no clipping, no input noise,
    plain `z - t` errors.

    Args: as `RecLRA`; `feedback` defaults to `"adjacent"`.

    Example:
        >>> model.compile(optimizer="adam", rule=LRA(beta=0.1, gamma=1.0))
    """

    name = "lra"
    default_feedback = "adjacent"
