"""The parts of `AlignedModel`'s training step that are not the model: where it compiles (XLA),
the local gradients a rule asks for, and the writing of a step whose rule tracks synapses."""

import tensorflow as tf

from rlra_tf import distribute


def on_tpu(strategy):
    return "TPU" in type(strategy).__name__


def has_accelerator():
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def resolve_jit_compile(jit_compile):
    """`"auto"` means XLA on GPU/TPU and not on CPU (where it makes conv training slower)."""
    if jit_compile in ("auto", None):
        return has_accelerator()
    if isinstance(jit_compile, bool):
        return jit_compile
    raise ValueError(
        f"Expected jit_compile to be True, False or 'auto', received: jit_compile={jit_compile!r}"
    )


class JitStep:
    """Wraps `(x, labels, step) -> (pairs, assignments, logits)` as an XLA function returning
    tensors only.

    The variables the updates and assignments belong to are fixed when the function is
    traced; a plain object (not Keras-tracked) keeps them.
    """

    def __init__(self, step_pairs):
        self.variables = None
        self.assigned = None

        def step(x, labels, iteration, sample_weight):
            pairs, assigns, logits = step_pairs(x, labels, iteration,
                                                sample_weight=sample_weight)
            self.variables = [v for _, v in pairs]
            self.assigned = [v for _, v in assigns]
            return [u for u, _ in pairs], [a for a, _ in assigns], logits

        self.fn = tf.function(step, jit_compile=True)

    def __call__(self, x, labels, iteration, sample_weight=None):
        return self.fn(x, labels, iteration, sample_weight)


def local_gradients_fn(tape, variables, sample_weight):
    """The `local_gradients` that `Rule.updates` receives (its docstring gives the contract),
    differentiating on `tape`, the persistent tape of the forward pass.

    `variables` are the parameters differentiated when a call names none (`parameters=None`).
    `sample_weight` (float32, `(batch,)`, or None) weights each example's signal for the
    parameters' updates; the errors sent down to `sources` stay unweighted.
    """

    def signals_for(pres, signals, weighted):
        # The signals (float32) meet the pre-activations in their compute dtype, as they
        # are: the division by the batch size (and the rule's `scale`) is applied to the
        # parameter-sized results, not to activation-sized tensors. With sample weights
        # each example's signal is weighted for the updates (docs/ALGORITHM.md#sample-weights).
        out = []
        for p, s in zip(pres, signals):
            s = tf.stop_gradient(tf.cast(s, tf.float32))
            if weighted:
                s = s * tf.reshape(sample_weight, [-1] + [1] * (s.shape.rank - 1))
            out.append(tf.cast(s, p.dtype))
        return out

    def local_gradients(pres, signals, sources=(), scale=1.0, parameters=None):
        sources = list(sources)
        params = variables if parameters is None else list(parameters)
        k = len(params)
        weighted = sample_weight is not None
        if not weighted or not sources:
            grads = tape.gradient(pres, params + sources,
                                  output_gradients=signals_for(pres, signals, weighted))
            own, from_sources = grads[:k], grads[k:]
        else:
            # The updates take the weighted signals, the errors a unit sends down (taken
            # at `sources`, in front of its BatchNorm) the unweighted ones.
            own = tape.gradient(pres, params,
                                output_gradients=signals_for(pres, signals, True))
            from_sources = tape.gradient(pres, sources,
                                         output_gradients=signals_for(pres, signals, False))
        # The updates of the float32 variables come out in float32.
        factor = scale / tf.cast(tf.shape(pres[0])[0], tf.float32)
        own = {id(v): (tf.cast(g, tf.float32) * factor, v)
               for g, v in zip(own, params) if g is not None}
        return own, from_sources

    return local_gradients


def apply_step(optimizer, tracked, updates, variables, values, assigned):
    """Writes one step: the assignments (`values` to `assigned`: the mirror), then the
    optimiser's `updates` of `variables`; the synapses the rule tracks (`tracked`, the
    `(F, W)` pairs of `Rule.tracked_synapses`) also receive their kernel's step, plus their
    own decay.

    For a tracked pair `(F, W)`: before the optimiser `F <- k_F * F - k_W * W`, after it
    `F <- F + W`, so `F` gains exactly `W`'s step without `W`'s decay and loses its own:
    `k_v = 1 - learning_rate * weight_decay` when the optimiser's decoupled weight decay
    applies to `v` (its own exclusion rules), else 1. Every value is identical on every
    replica (deterministic noise, replicated weights and steps): assigned locally.
    """
    tracked_ids = {id(f) for f, _ in tracked}
    rest = [(a, v) for a, v in zip(values, assigned) if id(v) not in tracked_ids]
    if rest:
        distribute.assign_replicated([v for _, v in rest], [a for a, _ in rest])
    if tracked:
        pending = {id(v): a for a, v in zip(values, assigned)}
        kept = _decay_kept(optimizer)
        differences = []
        # After every update exists (and every check on the batch passed): nothing is
        # written by a step that fails.
        with tf.control_dependencies(updates + values):
            for f, w in tracked:
                value = pending.get(id(f))
                value = tf.convert_to_tensor(f) if value is None else value
                differences.append(kept(f) * value - kept(w) * tf.convert_to_tensor(w))
        distribute.assign_replicated([f for f, _ in tracked], differences)
    optimizer.apply(updates, variables)
    if tracked:
        distribute.assign_replicated(
            [f for f, _ in tracked],
            [tf.convert_to_tensor(f) + tf.convert_to_tensor(w) for f, w in tracked],
        )


def _decay_kept(optimizer):
    """`v -> 1 - learning_rate * weight_decay` for the variables the `optimizer`'s
    decoupled weight decay applies to at this step, `1.0` for the others."""
    decay = getattr(optimizer, "weight_decay", None)
    if not decay:
        return lambda v: 1.0
    factor = 1.0 - tf.cast(optimizer.learning_rate, tf.float32) * float(decay)
    # Keras' own rule for which variables it decays (`exclude_from_weight_decay`).
    return lambda v: factor if optimizer._use_weight_decay(v) else 1.0
