"""Learning-rate schedules with a linear warm-up (serializable, so saved models reload)."""

import math

import keras
from keras import ops

DECAYS = ("constant", "cosine", "step")


@keras.saving.register_keras_serializable(package="rlra_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `learning_rate`, then constant, cosine or step decay.

    Steps are optimiser steps (`optimizer.iterations`), so a resumed run continues the same
    curve. During warm-up (`step < warmup_steps`) the rate is
    `learning_rate * (step + 1) / warmup_steps`. After it:
    - `"constant"`: `learning_rate`;
    - `"cosine"`: `learning_rate * (alpha + (1 - alpha) * (1 + cos(pi * p)) / 2)` with
      `p = (step - warmup_steps) / (total_steps - warmup_steps)` clipped to [0, 1];
    - `"step"`: `learning_rate * factor ** k`, `k` = number of `boundaries` `<= step`.

    Args:
        learning_rate: positive peak rate.
        decay: one of `DECAYS`.
        total_steps: steps of the whole run (cosine reaches its end there).
        warmup_steps: steps of the linear warm-up (0 for none).
        boundaries: increasing steps at which the step schedule multiplies by `factor`.
        factor: the step schedule's multiplier.
        alpha: the cosine schedule's final fraction of `learning_rate`.

    Example:
        >>> lr = WarmupSchedule(0.1, "cosine", total_steps=78_000, warmup_steps=390)
        >>> optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    """

    def __init__(
        self,
        learning_rate,
        decay="constant",
        total_steps=1,
        warmup_steps=0,
        boundaries=(),
        factor=0.1,
        alpha=0.0,
    ):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) \
                or not learning_rate > 0:
            raise ValueError(
                f"Expected a positive learning_rate, received: learning_rate={learning_rate!r}"
            )
        if decay not in DECAYS:
            raise ValueError(f"Expected decay to be one of {DECAYS}, received: decay={decay!r}")
        if int(total_steps) < 1 or int(warmup_steps) < 0:
            raise ValueError(
                "Expected total_steps >= 1 and warmup_steps >= 0, received: "
                f"total_steps={total_steps!r}, warmup_steps={warmup_steps!r}"
            )
        boundaries = tuple(int(b) for b in boundaries)
        if list(boundaries) != sorted(boundaries):
            raise ValueError(
                f"Expected increasing boundaries, received: boundaries={boundaries!r}"
            )
        self.learning_rate = float(learning_rate)
        self.decay = decay
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = boundaries
        self.factor = float(factor)
        self.alpha = float(alpha)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = self.learning_rate
        if self.decay == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            p = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = lr * (self.alpha + (1.0 - self.alpha) * 0.5 * (1.0 + ops.cos(math.pi * p)))
        elif self.decay == "step":
            k = sum(ops.cast(step >= b, "float32") for b in self.boundaries) \
                if self.boundaries else 0.0
            rate = lr * ops.power(self.factor, k) * ops.ones_like(step)
        else:
            rate = lr * ops.ones_like(step)
        if self.warmup_steps > 0:
            warm = lr * (step + 1.0) / self.warmup_steps
            rate = ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "decay": self.decay,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "alpha": self.alpha,
        }
