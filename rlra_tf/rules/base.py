"""What the rules share: the output error, top-down propagation and update conditioning."""

import abc
import contextlib
import dataclasses
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from rlra_tf.checks import check_choice, check_nonnegative


def output_error(logits, labels):
    """`e_L = softmax(h_L) - y` with `y` one-hot (or smoothed) float labels
    (docs/ALGORITHM.md#output-error).

    Always float32, whatever the compute dtype of the logits (mixed precision).
    """
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1) - tf.cast(labels, tf.float32)


@dataclasses.dataclass
class Signals:
    """The result of propagating the output error down a trace.

    Attributes:
        per_unit: one signal tensor per unit of the trace, in trace order (`e_u` for LRA,
            `delta_u` for FA/DFA), each of the shape of that unit's pre-activation.
        feedback_used: `(feedback variable, forward kernel)` pairs of the adjacent synapses
            that carried a signal (these are the ones LRA's `dF = gamma * dW` updates).
        skip_used: indices (in trace order) of the units whose skip synapse carried `e_L`.
    """

    per_unit: List[tf.Tensor]
    feedback_used: list
    skip_used: List[int]


def leaving_errors(unit_trace, error, through):
    """`(main, shortcut)`: the error as it leaves a unit through `F` and through its
    projection's synapse, worked out from the formula (docs/ALGORITHM.md#norm-transpose).

    Without `through`, or for a path without a normalisation, the error as it is.
    """
    if not through:
        return error, error
    unit = unit_trace.unit
    return unit.norm_transpose(error, unit_trace), unit.shortcut_norm_transpose(error, unit_trace)


def propagate(
    trace, output_err, signal_fn: Callable, use_skip: Callable,
    on_unit: Optional[Callable] = None, through: bool = False,
) -> Signals:
    """Walk the blocks from the head down and form every unit's signal.

    Args:
        trace: a `Trace`.
        output_err: `e_L`, shape (batch, K).
        signal_fn: `(unit_trace, displacement) -> signal` for a hidden unit.
        use_skip: `(block_index, unit_index, block_trace) -> bool`, whether a unit takes its
            displacement straight from `e_L` through its skip synapse.
        on_unit: optional `(block_index, unit_index, unit_trace, signal) -> (leaving, deps)`,
            called as soon as a unit's signal is formed (the head first, with `e_L`). It
            typically computes that unit's weight updates (`UnitUpdates`) and returns the
            `(main, shortcut)` errors the unit sends down (`leaving_errors`) and the update
            tensors. A block's signals are computed only after the updates of the block
            above (control dependencies), so a step holds one block's error temporaries at
            a time beyond the forward trace, freed block by block from the top as in
            backprop. Without it, the leaving errors come from `leaving_errors`.
        through: carry every signal back through the normalisation of the unit it leaves
            before an adjacent synapse takes it down (docs/ALGORITHM.md#norm-transpose,
            `norm_feedback`).

    A displacement is only computed where it is used, so with skip synapses the blocks are
    independent of each other (in a traced graph, nothing links them but `e_L` and, with
    `on_unit`, the execution order).
    """
    blocks = trace.blocks
    head = len(blocks) - 1
    offsets = [0]
    for bt in blocks:
        offsets.append(offsets[-1] + len(bt.units))
    walk = _Walk(blocks, output_err, signal_fn, use_skip, on_unit, through, offsets)
    per_block: Dict[int, List[tf.Tensor]] = {head: [output_err]}
    done = walk.formed(head, 0, output_err)
    for b in range(head - 1, -1, -1):
        with tf.control_dependencies(done) if done else contextlib.nullcontext():
            per_block[b], done = walk.block(b)
    per_unit = [s for b in range(len(blocks)) for s in per_block[b]]
    return Signals(per_unit=per_unit, feedback_used=walk.feedback_used,
                   skip_used=walk.skip_used)


class _Walk:
    """The state of one top-down pass of `propagate`: the errors each unit sent down."""

    def __init__(self, blocks, output_err, signal_fn, use_skip, on_unit, through, offsets):
        self.blocks, self.output_err = blocks, output_err
        self.signal_fn, self.use_skip, self.on_unit = signal_fn, use_skip, on_unit
        self.through, self.offsets = through, offsets
        self.leaving = {}  # (block, unit) -> (main, shortcut) errors the unit sends down
        self.feedback_used, self.skip_used = [], []

    def formed(self, b, i, signal):
        """Unit `i` of block `b` has its signal: its updates, and what it sends down."""
        ut = self.blocks[b].units[i]
        if self.on_unit is None:
            self.leaving[(b, i)] = leaving_errors(ut, signal, self.through)
            return []
        self.leaving[(b, i)], deps = self.on_unit(b, i, ut, signal)
        return deps

    def block(self, b):
        """The signals of block `b`'s units, output unit first, and their update tensors."""
        bt = self.blocks[b]
        sig: List[tf.Tensor] = [None] * len(bt.units)
        deps = []
        for i in range(len(bt.units) - 1, -1, -1):
            ut = bt.units[i]
            if self.use_skip(b, i, bt):
                d = ut.unit.skip_displacement(self.output_err)
                self.skip_used.append(self.offsets[b] + i)
            elif i == len(bt.units) - 1:
                above = self.blocks[b + 1]
                leaving = [self.leaving[(b + 1, j)] for j in range(len(above.units))]
                d, used = above.block.input_displacement(above, leaving)
                self.feedback_used.extend(used)
                # Back through what the block runs after its output unit (e.g. a max-pool).
                d = bt.block.output_displacement(bt, d)
            else:
                d, used = bt.block.inner_displacement(bt, i, self.leaving[(b, i + 1)])
                self.feedback_used.extend(used)
            sig[i] = self.signal_fn(ut, d)  # d broadcasts against ut.pre
            deps += self.formed(b, i, sig[i])
        return sig, deps


class UnitUpdates:
    """An `on_unit` for `propagate` that computes each unit's local updates into `grads`.

    One backward pass through the unit (`local_gradients`) gives its parameters' updates and,
    with `through`, the errors it sends down: the gradient of `sum(s * h)` with respect to the
    linear responses in front of its BatchNorms is `N'^T s`, the same transpose the unit's own
    kernel update goes through, so it is computed once (docs/ALGORITHM.md#norm-transpose), by
    the kernel that differentiates the BatchNorm (`FusedBatchNormGradV3`).

    Args:
        local_gradients: as `Rule.updates` receives it.
        through: whether the errors leave the unit through its normalisation.
        scale: the parameter updates are `scale` times the derivatives of `sum(s * h) / n`
            (a rule that carries its signals scaled, as `RecLRA` carries `beta * e`, undoes
            the scale here, on parameter-sized tensors).
        at: `"pre"`: the signal is paired with the pre-activation `h` (LRA); `"outputs"`: with
            the activity `z`, so the backward pass goes through the activation too (FA: the
            signal is the displacement `d`, and `delta = d * phi'(h)` is formed by the
            activation's own gradient kernel, from `z`).

    Attributes:
        grads: `{id(variable): (update, variable)}` of every unit seen so far.
    """

    def __init__(self, local_gradients, through, scale=1.0, at="pre"):
        self.local_gradients = local_gradients
        self.through = through
        self.scale = scale
        self.at = check_choice("at", at, ("pre", "outputs"))
        self.grads = {}

    def __call__(self, b, i, ut, signal):
        if ut.unit.synchronized_norm:
            return self._split(ut, signal)
        sources = []
        if self.through:
            sources = [t for t in (ut.linear, ut.shortcut_linear) if t is not None]
        paired = ut.pre
        if self.at == "outputs":
            # The signal at the pre-activation (`delta`) is what leaves a path without a
            # normalisation to carry it through.
            paired = ut.outputs
            sources.append(ut.pre)
        unit_grads, source_grads = self.local_gradients(
            [paired], [signal], sources, scale=self.scale)
        self.grads.update(unit_grads)
        got = [tf.cast(g, tf.float32) for g in source_grads]
        at_pre = got.pop() if self.at == "outputs" else signal
        main = shortcut = at_pre
        if self.through:
            got = iter(got)
            if ut.linear is not None:
                main = next(got)
            if ut.shortcut_linear is not None:
                shortcut = next(got)
        return (main, shortcut), [u for u, _ in unit_grads.values()]

    def _split(self, ut, signal):
        """A unit whose BatchNorms all-reduce their statistics (`synchronized_norm`): the
        errors through the normalisations and their parameters' updates by formula
        (`synchronized_norm_backward`), the other parameters' from those errors. Nothing
        differentiates an all-reduce, so every replica runs its all-reduces in program order.
        """
        unit = ut.unit
        if self.at == "outputs":  # delta = d * phi'(h), by the activation's own gradient
            pre = tf.stop_gradient(ut.pre)
            with tf.GradientTape() as tape:
                tape.watch(pre)
                z = unit.activation(pre)
            signal = tf.cast(tape.gradient(z, pre, output_gradients=tf.cast(signal, z.dtype)),
                             tf.float32)
        main, shortcut, norm_grads = unit.synchronized_norm_backward(signal, ut)
        factor = self.scale / tf.cast(tf.shape(signal)[0], tf.float32)
        norm_grads = {k: (g * factor, v) for k, (g, v) in norm_grads.items()}
        pres, errors = [ut.linear], [main]
        if ut.shortcut_linear is not None:
            pres.append(ut.shortcut_linear)
            errors.append(shortcut)
        norm_ids = {id(v) for v in unit.norm_variables}
        others = [v for v in unit.trainable_variables if id(v) not in norm_ids]
        linear_grads, _ = self.local_gradients(pres, errors, scale=self.scale,
                                               parameters=others)
        self.grads.update(norm_grads)
        self.grads.update(linear_grads)
        if not self.through:
            main = shortcut = signal
        updates = [u for u, _ in norm_grads.values()] + [u for u, _ in linear_grads.values()]
        return (main, shortcut), updates


# Noise examples per mirror estimate when `mirror_batch` is not given (docs/ALGORITHM.md#mirror):
# dense units take rows of their input width, conv units whole noise images.
MIRROR_BATCH = {"dense": 256, "conv": 8}
_MIRROR_SEED = 0x5EED  # keeps the mirror's noise streams apart from the input noise's


def rademacher(shape, seed):
    """Zero-mean, unit-variance noise: random signs +-1 (float32) from a stateless seed.

    Signs rather than Gaussian draws: TensorFlow's stateless normal (and uniform float)
    kernels give other numbers under XLA than without it when the seed is a run-time tensor,
    while the raw Philox bits agree, so signs are the same with and without `jit_compile` and
    on every device. For the mirror they are also the better noise: `transpose(x) @ x / m` has
    an exact unit diagonal.
    """
    bits = tf.random.stateless_uniform(
        shape, seed, minval=None, maxval=None, dtype=tf.int32, alg="philox"
    )
    return tf.cast(tf.bitwise.bitwise_and(bits, 1), tf.float32) * 2.0 - 1.0


MIRROR_NORMALISE = ("positions", "taps")


def mirror_assignments(trace, step, rate, batch=None, every=1, seed=0, normalise="positions",
                       warm_start=False, first_scale=1):
    """The weight-mirror update of every adjacent error synapse (docs/ALGORITHM.md#mirror).

    For each synapse `F` of each unit in `trace` (the projections' too): noise `x` shaped like
    the unit's input (random signs, `rademacher`), `C = corr(x, A(x; W))`
    (`unit.mirror_synapses`; `normalise` says how a conv estimate is divided, see
    `AlignedConv2D.mirror_estimate`), and the new value `(1 - rate_k) * F + rate_k * C`, with
    `rate_k = rate` or, with `warm_start`, `max(rate, 1 / (first_scale + k))` at the `k`-th
    estimate after the first (`1` at the first): a running mean of the estimates, the first
    weighted by its noise examples, until its rate falls to `rate`, then the moving average.
    The first estimate (at step 0) draws `first_scale` times the noise examples of the
    others. The noise is stateless, seeded by `(seed, synapse index)` and `step`, so every
    replica computes the same values and the synapses stay identical across replicas without
    communication. With `every > 1` the estimate is formed only at steps that divide by
    `every`; at the others the value is `F` unchanged.

    Returns `(new value, feedback variable)` pairs: assignments, not optimiser updates.
    """
    synapses, kernels = [], []
    for ut in trace.units:
        paired = {id(f): w for f, w in ut.unit.feedback_pairs}
        for synapse in ut.unit.mirror_synapses(ut):
            synapses.append(synapse)
            kernels.append(paired[id(synapse[0])])
    if not synapses:
        return []
    # Every variable is read here, outside any branch or control dependency: a read inside a
    # `tf.cond` branch (or under `tf.control_dependencies`) of a replica function was not
    # always ordered before the step's writes under a MirroredStrategy (BUILD_NOTES.md).
    f_now = [tf.convert_to_tensor(f) for f, _, _ in synapses]
    w_now = [tf.convert_to_tensor(w) for w in kernels]
    step = tf.cast(step, tf.int64)
    lam = tf.constant(rate, tf.float32)
    if warm_start:
        k = tf.cast(step // every, tf.float32)  # estimates made before this one
        # The noise examples behind the running mean, in estimates: the first counts
        # `first_scale`, so the k-th later one gets weight 1 / (first_scale + k).
        weight = tf.where(k > 0.0, first_scale + k, 1.0)
        lam = tf.maximum(lam, 1.0 / weight)

    def estimate(scale):
        values = []
        for k, ((feedback, shape, estimate_fn), f, w) in enumerate(zip(synapses, f_now, w_now)):
            rank = len(shape) if isinstance(shape, tuple) else int(shape.shape[0])
            m = (batch or MIRROR_BATCH["dense" if rank == 1 else "conv"]) * scale
            noise_seed = tf.stack([tf.constant(_MIRROR_SEED * 1_000_003 + 1009 * seed + k,
                                               tf.int64), step])
            noise_shape = tf.concat([[m], tf.cast(shape, tf.int32)], axis=0)
            # One synapse at a time: its noise after the previous estimate, so that a step
            # holds one synapse's noise and responses, not all of them at once.
            with tf.control_dependencies(values[-1:]):
                noise = rademacher(noise_shape, noise_seed)
            c = tf.cast(estimate_fn(noise, normalise, kernel=w), f.dtype)
            values.append((1.0 - lam) * f + lam * c)
        return values

    def compute():
        if first_scale == 1:
            return estimate(1)
        return tf.cond(tf.equal(step, 0), lambda: estimate(first_scale), lambda: estimate(1))

    if every == 1:
        values = compute()
    else:
        values = tf.cond(
            tf.equal(step % every, 0),
            compute,
            lambda: [tf.identity(f) for f in f_now],
        )
    return [(v, f) for v, (f, _, _) in zip(values, synapses)]


class MirrorOptions:
    """The error synapses' settings shared by the rules that can align them (`RecLRA`,
    `FA`/`WM`/`KP`): validation, config, the mirror's assignments of a step and the synapses
    that track their kernels.

    Attributes (also `get_config` keys): `mirror_rate` (`lambda`, in [0, 1]), `mirror_batch`
    (noise examples per estimate, `None`: 256 rows for dense units, 8 images for conv units),
    `mirror_every` (steps between estimates), `mirror_normalise` (`"positions"`: a conv
    estimate divided by `m` times the output positions, as the spec states it;
    `"taps"`: by `m` times the positions each kernel tap actually saw, so that border taps
    under `"same"` padding are not shrunk and the expectation is exactly `W`),
    `mirror_warm_start` (a running mean of the estimates until its rate falls to
    `mirror_rate`), `mirror_first_scale` (the first estimate, at step 0, draws this many times
    the noise examples), `mirror_track` (every mirrored synapse also receives its kernel's
    optimiser step, as under `synapse_update="kp"`, so between estimates `F - W` changes only
    by weight decay).
    """

    synapse_update = "fixed"

    def _init_mirror(self, rate, batch, every, normalise, warm_start, first_scale=1,
                     track=False):
        rate = check_nonnegative("mirror_rate", rate)
        if rate > 1.0:
            raise ValueError(f"Expected mirror_rate in [0, 1], received: mirror_rate={rate!r}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                                  or batch < 1):
            raise ValueError(
                "Expected a positive integer or None (256 noise rows for dense units, 8 noise "
                f"images for conv units) for mirror_batch, received: mirror_batch={batch!r}"
            )
        for name, value in (("mirror_every", every), ("mirror_first_scale", first_scale)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Expected a positive integer for {name}, received: {name}={value!r}"
                )
        for name, value in (("mirror_warm_start", warm_start), ("mirror_track", track)):
            if not isinstance(value, bool):
                raise ValueError(
                    f"Expected True or False for {name}, received: {name}={value!r}"
                )
        self.mirror_rate, self.mirror_batch, self.mirror_every = float(rate), batch, every
        self.mirror_normalise = check_choice("mirror_normalise", normalise, MIRROR_NORMALISE)
        self.mirror_warm_start = warm_start
        self.mirror_first_scale = first_scale
        self.mirror_track = track

    def mirror_config(self):
        return {
            "mirror_rate": self.mirror_rate,
            "mirror_batch": self.mirror_batch,
            "mirror_every": self.mirror_every,
            "mirror_normalise": self.mirror_normalise,
            "mirror_warm_start": self.mirror_warm_start,
            "mirror_first_scale": self.mirror_first_scale,
            "mirror_track": self.mirror_track,
        }

    def synapse_assignments(self, trace, step, seed=0):
        if self.synapse_update != "mirror" or self.mirror_rate == 0.0:
            return []
        return mirror_assignments(
            trace, step, self.mirror_rate, self.mirror_batch, self.mirror_every, seed,
            self.mirror_normalise, self.mirror_warm_start, self.mirror_first_scale,
        )

    def tracked_synapses(self, units):
        """`(feedback, kernel)` pairs of the synapses that receive their kernel's optimiser
        step (`synapse_update="kp"`, or the mirror with `mirror_track`)."""
        if self.synapse_update == "kp" or (self.synapse_update == "mirror"
                                           and self.mirror_track):
            return [pair for unit in units for pair in unit.feedback_pairs]
        return []


def clip_by_norm(update, clip_norm):
    """`D * min(1, c / ||D||)` (docs/ALGORITHM.md#conditioning); `None` leaves the update as
    it is."""
    if clip_norm is None:
        return update
    return tf.clip_by_norm(update, clip_norm)


class Rule(abc.ABC):
    """Base class of the learning rules.

    A rule is plain maths: given a `Trace` of the forward pass, float labels and a function
    that turns per-unit signals into the local weight updates, it returns the
    `(update, variable)` pairs to hand the optimiser. It never touches Keras state.
    """

    name = "rule"
    uses_backprop = False
    input_noise = 0.0

    @abc.abstractmethod
    def updates(self, trace, labels, local_gradients):
        """Returns `(update, variable)` pairs.

        Args:
            trace: the `Trace` of the forward pass (training mode).
            labels: float one-hot (or smoothed) labels, shape (batch, K).
            local_gradients: `(pres, signals, sources=(), scale=1.0) -> (grads,
                source_grads)`: for every unit given (`pres`: its pre-activation, or any
                tensor of the unit computed from its parameters, such as its activity), the
                derivative of `scale * sum(signal * pre) / n` with respect to that unit's
                own parameters, its input held constant, as
                `{id(variable): (update, variable)}`, and the derivatives of
                `sum(signal * pre)` (not scaled, not divided by `n`) with respect to the
                given `sources` (tensors inside those units). It may be called several
                times, for disjoint sets of units (unit by unit: `UnitUpdates`).
        """

    def synapse_assignments(self, trace, step, seed=0):
        """`(new value, variable)` pairs the model assigns after the step's updates.

        For error-synapse rules that are assignments rather than optimiser updates (the
        mirror, docs/ALGORITHM.md#mirror). `step` is the optimiser's step counter (it seeds
        the noise) and `seed` the model's. Default: none.
        """
        return []

    def tracked_synapses(self, units):
        """`(feedback, kernel)` pairs of the error synapses that also receive their kernel's
        optimiser step (Kolen-Pollack, docs/ALGORITHM.md#mirror); the model applies it around the
        optimiser (`AlignedModel`). Default: none."""
        return []

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
