"""Alignment diagnostics (docs/ALGORITHM.md#diagnostics) and the update-chain measurement.

Pure functions:
- `angle_degrees(a, b)`: the angle between two tensors seen as flat vectors.
- `probe(model, x, y)`: per unit, the angle between the rule's kernel update and backprop's
  gradient of the mean cross-entropy on the same weights and batch, the norms of the error
  unit, of the update, of the gradient and of the weights, and the angle between the feedback
  kernel `F` and the forward kernel `W` (and between a projection's synapse and kernel): with the
  mirror (docs/ALGORITHM.md#mirror) these fall from about 90 degrees as `F` aligns. Model
  state (BatchNorm moving statistics, seeds) is left exactly as it was.
- `update_chain(model, input_shape)`: the length of the longest chain of dependent operations
  between the logits and the last weight update in the traced per-replica update computation.

And a Keras callback, `AlignmentDiagnostics`, that runs `probe` every N steps, writes
TensorBoard scalars and keeps a JSON-ready history for `metrics.json`.
"""

import collections
import dataclasses
import math
from typing import Dict, List, Tuple

import keras
import numpy as np
import tensorflow as tf

from rlra_tf.checks import check_positive_int

# Metrics of one unit, in the order they are logged.
UNIT_METRICS = (
    "angle",  # degrees between the rule's kernel update and backprop's kernel gradient
    "bias_angle",  # the same for the bias (units with a bias)
    "error_norm",  # RMS over the batch of the per-example L2 norm of the unit's error signal
    "update_norm",  # Frobenius norm of the rule's kernel update
    "bp_norm",  # Frobenius norm of backprop's kernel gradient
    "weight_norm",  # Frobenius norm of the kernel W
    "feedback_angle",  # degrees between the adjacent feedback kernel F and W (same shape)
    "shortcut_feedback_angle",  # the same for a projection shortcut's synapse and kernel
)


def angle_degrees(a, b):
    """The angle in degrees between `a` and `b` flattened to vectors (NaN if either is zero).

    Uses `2 * atan2(|u - v|, |u + v|)` on the unit vectors `u`, `v`, which stays accurate near 0
    and 180 degrees where `acos` of the cosine loses half the float32 digits.
    """
    a = tf.reshape(tf.cast(a, tf.float32), [-1])
    b = tf.reshape(tf.cast(b, tf.float32), [-1])
    u = a / tf.norm(a)
    v = b / tf.norm(b)
    rad = 2.0 * tf.atan2(tf.norm(u - v), tf.norm(u + v))
    return rad * (180.0 / math.pi)


def unit_names(model):
    """One key per unit of `model.unit_layers`: the unit's name, block-qualified if ambiguous."""
    plain = [u.name for u in model.unit_layers]
    if len(set(plain)) == len(plain):
        return plain
    names = [f"{b.name}/{u.name}" for b in model.blocks for u in b.unit_layers]
    if len(set(names)) != len(names):  # still ambiguous: number them
        names = [f"{i:02d}_{n}" for i, n in enumerate(names)]
    return names


def _state_to_restore(model):
    """Non-trainable variables a training-mode forward pass may move (not the error synapses)."""
    feedback = {id(w) for w in model.feedback_weights}
    return [v for v in model.non_trainable_variables if id(v) not in feedback]


def _rms_example_norm(e):
    e = tf.cast(e, tf.float32)
    n = tf.cast(tf.shape(e)[0], tf.float32)
    return tf.sqrt(tf.reduce_sum(tf.square(e)) / n)


def probe(model, x, y):
    """Diagnostics of the compiled rule of `model` on one batch, as tensors.

    Wrap it in `tf.function(..., autograph=False)` to run it often: there is no data-dependent
    control flow, and AutoGraph's source conversion alone takes seconds per trace.

    Args:
        model: a built, compiled `AlignedModel` (its `rule` is the one compared with backprop).
        x: a batch of inputs.
        y: integer class ids or one-hot labels.

    Returns:
        `{"loss": scalar, "units": {unit_name: {metric: scalar}}}` with the metrics of
        `UNIT_METRICS` (`bias_angle` only for units with a bias; `feedback_angle` only where `F` has
        the kernel's shape; `shortcut_feedback_angle` only for units with a projection). The error
        signal is the rule's own: `e_u` for LRA and rec-LRA, `delta_u` for FA and DFA, `n * dL/dh_u`
        for backprop (all equal `softmax - y` at the head). Both forward passes run in training
        mode; every non-trainable variable they may move (BatchNorm moving statistics) is put back
        afterwards. Only each unit's main `kernel` (and `bias`) is compared; other parameters of a
        unit (BatchNorm, projection shortcut) are not. With `input_noise > 0` the rule's update sees
        noisy inputs and backprop's gradient the clean ones.
    """
    x = tf.convert_to_tensor(x)
    state = _state_to_restore(model)
    saved = [tf.identity(v.value) for v in state]

    units = model.unit_layers
    names = unit_names(model)
    rule = model.rule

    pairs = model.local_updates(x, y)
    rule_update = {id(v): u for u, v in pairs}

    labels = model.one_hot_labels(y)
    kernels = [u.kernel for u in units]
    biases = [u.bias for u in units]
    with tf.GradientTape() as tape:
        trace = model.trace(x, training=True)
        logits = tf.cast(trace.logits, labels.dtype)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
    pres = [ut.pre for ut in trace.units]
    with_bias = [b for b in biases if b is not None]
    grads = tape.gradient(loss, kernels + with_bias + pres)
    k, nb = len(kernels), len(with_bias)
    bp_kernel, bp_pre = grads[:k], grads[k + nb:]
    bp_bias = {id(b): g for b, g in zip(with_bias, grads[k:k + nb])}

    if rule.uses_backprop:
        n = tf.cast(tf.shape(pres[0])[0], pres[0].dtype)
        errors = [g * n for g in bp_pre]
    elif hasattr(rule, "signals"):
        _, sig = rule.signals(trace, labels)
        errors = sig.per_unit
    else:
        errors = [None] * len(units)

    out = {}
    for name, unit, kernel, bias, g_kernel, error in zip(
        names, units, kernels, biases, bp_kernel, errors
    ):
        metrics = {}
        update = rule_update.get(id(kernel))
        if update is not None:
            metrics["angle"] = angle_degrees(update, g_kernel)
            metrics["update_norm"] = tf.norm(tf.cast(update, tf.float32))
        if bias is not None and id(bias) in rule_update:
            metrics["bias_angle"] = angle_degrees(rule_update[id(bias)], bp_bias[id(bias)])
        if error is not None:
            metrics["error_norm"] = _rms_example_norm(error)
        metrics["bp_norm"] = tf.norm(tf.cast(g_kernel, tf.float32))
        metrics["weight_norm"] = tf.norm(tf.cast(kernel, tf.float32))
        synapses = unit.feedback_pairs  # F first, then a projection's synapse
        metrics["feedback_angle"] = angle_degrees(*synapses[0])
        if len(synapses) > 1:
            metrics["shortcut_feedback_angle"] = angle_degrees(*synapses[1])
        out[name] = {k: metrics[k] for k in UNIT_METRICS if k in metrics}

    for v, s in zip(state, saved):  # after the forward passes: automatic control dependencies
        v.assign(s)
    return {"loss": loss, "units": out}


def _to_python(tree):
    """Tensors to floats; NaN/inf to None (strict JSON)."""

    def convert(t):
        value = float(np.asarray(t))
        return value if math.isfinite(value) else None

    return tf.nest.map_structure(convert, tree)


def write_scalar(tag, value, step):
    """A TensorBoard scalar in the default summary writer, without needing `tensorboard`.

    `tf.summary.scalar` raises when the `tensorboard` package is absent (it is not a dependency
    of tensorflow-cpu); this writes the same record: a float32 tensor tagged for the scalars
    plugin.
    """
    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    return tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


class AlignmentDiagnostics(keras.callbacks.Callback):
    """Every `every_n_steps` training steps, probe the rule's alignment with backprop.

    On a fixed probe batch, per unit: the angle between the rule's kernel update and backprop's
    gradient, the norms of the error unit, of the update, of backprop's gradient and of the
    weights, and the angle between `F` and `W` (see `probe`). The probe is a compiled
    `tf.function` (traced again if the model is recompiled with another rule); it costs about
    two training steps on the probe batch and leaves the model's state untouched.

    Results go to TensorBoard scalars `diagnostics/<unit>/<metric>` (and `diagnostics/loss`)
    when `log_dir` is given, and always to `history`, a list of
    `{"step": int, "loss": float, "units": {unit: {metric: float or None}}}` (None where a
    value is undefined, e.g. the angle of a zero update). `as_dict()` is what a trainer writes
    to `metrics.json["diagnostics"]`. A probe runs at the start of training, whenever
    `every_n_steps` steps (the optimiser's iterations) have passed since the last one, and at
    the end of training.

    Args:
        probe_x: the probe inputs (a fixed batch, e.g. 256 validation examples).
        probe_y: their integer class ids (or one-hot labels).
        every_n_steps: positive integer, the probe interval in training steps.
        log_dir: a directory for TensorBoard event files, or `None`.

    Example:
        >>> diag = AlignmentDiagnostics(x_val[:256], y_val[:256], every_n_steps=100)
        >>> model.fit(x, y, epochs=3, callbacks=[diag])
        >>> diag.history[-1]["units"]["dense_0"]["angle"]
    """

    def __init__(self, probe_x, probe_y, every_n_steps=100, log_dir=None):
        super().__init__()
        self.probe_x = np.asarray(probe_x)
        self.probe_y = np.asarray(probe_y)
        if self.probe_x.shape[0] != self.probe_y.shape[0] or self.probe_x.shape[0] == 0:
            raise ValueError(
                "Expected probe_x and probe_y with the same positive batch size, received: "
                f"probe_x.shape={self.probe_x.shape}, probe_y.shape={self.probe_y.shape}"
            )
        self.every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        self.log_dir = None if log_dir is None else str(log_dir)
        self.history = []
        self._writer = None
        self._fn = None
        self._fn_key = None
        self._last_step = None

    def _probe_fn(self):
        key = (id(self.model), id(self.model.rule))
        if self._fn is None or self._fn_key != key:
            model = self.model
            self._fn = tf.function(lambda x, y: probe(model, x, y), autograph=False)
            self._fn_key = key
        return self._fn

    def _step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(optimizer.iterations.numpy())

    def run_probe(self, step=None):
        """Probe now and append the record to `history` (and TensorBoard); returns the record."""
        step = self._step() if step is None else int(step)
        result = _to_python(self._probe_fn()(self.probe_x, self.probe_y))
        record = {"step": step, "loss": result["loss"], "units": result["units"]}
        self.history.append(record)
        self._last_step = step
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=step):
                if record["loss"] is not None:
                    write_scalar("diagnostics/loss", record["loss"], step)
                for unit, metrics in record["units"].items():
                    for metric, value in metrics.items():
                        if value is not None:
                            write_scalar(f"diagnostics/{unit}/{metric}", value, step)
        return record

    def on_train_begin(self, logs=None):
        step = self._step()
        if self._last_step != step:
            self.run_probe(step)

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if self._last_step is None or step - self._last_step >= self.every_n_steps:
            self.run_probe(step)

    def on_train_end(self, logs=None):
        step = self._step()
        if self._last_step != step:
            self.run_probe(step)
        if self._writer is not None:
            self._writer.flush()

    def as_dict(self):
        """JSON-ready: the rule, the settings, the unit names and `history`."""
        rule = getattr(getattr(self, "_model", None), "rule", None)
        return {
            "rule": getattr(rule, "name", None),
            "every_n_steps": self.every_n_steps,
            "probe_size": int(self.probe_x.shape[0]),
            "units": list(self.history[-1]["units"]) if self.history else [],
            "history": self.history,
        }


# --------------------------------------------------------------------------- update chain

# Op types that only move, name, reshape or read data: they get weight 0 in `compute_ops`.
BOOKKEEPING_OPS = frozenset(
    {
        "Identity", "IdentityN", "NoOp", "Const", "Placeholder", "StopGradient",
        "ReadVariableOp", "Shape", "ShapeN", "Size", "Rank", "Reshape", "ExpandDims", "Squeeze",
        "BroadcastGradientArgs", "Pack", "Unpack", "StridedSlice", "Cast", "ZerosLike",
        "OnesLike", "Fill", "PreventGradient", "EnsureShape", "CheckNumerics",
    }
)


@dataclasses.dataclass
class UpdateChain:
    """The longest chain of dependent ops from the logits to a weight update.

    Attributes:
        ops: number of ops on the longest path (all op types), not counting the logits' op.
        compute_ops: the largest number of non-bookkeeping ops (`BOOKKEEPING_OPS` excluded)
            on any such path; this is the number `update_chain` reports as the chain length.
        path: the op types along the path that gives `compute_ops`, bookkeeping ops omitted.
        num_ops: the number of ops in the whole traced graph.
    """

    ops: int
    compute_ops: int
    path: List[str]
    num_ops: int


def _producer(t):
    """The op that really computes `t`, looking through Identity wrappers."""
    op = t.op
    while op.type in ("Identity", "IdentityN") and op.inputs:
        index = t.value_index if op.type == "IdentityN" else 0
        t = op.inputs[index]
        op = t.op
    return op


def longest_chain(graph, source_op, target_ops, weight=None) -> Tuple[int, List]:
    """Longest weighted data-dependency path from `source_op` (excluded) to any target op.

    Only data edges count (an op's output feeding another op's input); control edges only
    order stateful ops and are ignored. Returns `(length, ops on the path)`; `(-1, [])` if no
    target depends on the source.
    """
    weight = weight or (lambda op: 1)
    targets = {op.name for op in target_ops}
    # The ops that depend on the source, in topological order (Kahn over the reachable part).
    reach, stack = {source_op.name: source_op}, [source_op]
    while stack:
        op = stack.pop()
        for out in op.outputs:
            for c in out.consumers():
                if c.name not in reach:
                    reach[c.name] = c
                    stack.append(c)
    indegree = collections.Counter()
    for op in reach.values():
        for inp in op.inputs:
            if inp.op.name in reach:
                indegree[op.name] += 1
    order, ready = [], [source_op]
    while ready:
        op = ready.pop()
        order.append(op)
        for out in op.outputs:
            for c in out.consumers():
                indegree[c.name] -= 1
                if indegree[c.name] == 0:
                    ready.append(c)
    # best[op] = the longest weighted path from op (included) to a target; None if no target.
    best: Dict[str, Tuple[int, object]] = {}
    for op in reversed(order):
        tail = (0, None) if op.name in targets else None
        for out in op.outputs:
            for c in out.consumers():
                cand = best.get(c.name)
                if cand is not None and (tail is None or cand[0] > tail[0]):
                    tail = (cand[0], c)
        if tail is not None:
            best[op.name] = (tail[0] + (0 if op is source_op else weight(op)), tail[1])
    if source_op.name not in best:
        return -1, []
    path, nxt = [], best[source_op.name][1]
    while nxt is not None:
        path.append(nxt)
        nxt = best[nxt.name][1]
    return best[source_op.name][0], path


def update_graph(model, input_shape, batch_size=2):
    """Trace the per-replica update computation of `model`'s compiled rule.

    Returns `(graph, logits_op, update_ops)` of the concrete function
    `(x, y) -> (updates, logits)` that `train_step` runs on one replica (for `"bp"`, the
    gradients of the mean cross-entropy).
    """
    spec_x = tf.TensorSpec((batch_size,) + tuple(input_shape), tf.float32)
    spec_y = tf.TensorSpec((batch_size,), tf.int32)

    def step(x, y):
        pairs, _, logits = model._step_pairs(x, model.one_hot_labels(y), model._iteration())
        return {"updates": [u for u, _ in pairs], "logits": logits}

    concrete = tf.function(step, autograph=False).get_concrete_function(spec_x, spec_y)
    outputs = concrete.structured_outputs
    return (
        concrete.graph,
        _producer(outputs["logits"]),
        [_producer(u) for u in outputs["updates"]],
    )


def update_chain(model, input_shape, batch_size=2):
    """The longest chain of dependent ops from the logits to the last weight update.

    Reads the graph of the traced per-replica update computation of `model`'s compiled rule
    (see `update_graph`), starts at the op that produces the logits (for every rule the output
    error and, for backprop, the loss are computed from it) and finds the longest path along
    data edges to any op that produces an update handed to the optimiser. Since every op on
    such a path needs the result of the one before it, this is the sequential depth of the
    update computation after the forward pass. `compute_ops` counts the ops on that path
    except `BOOKKEEPING_OPS` (identities, constants, variable reads, shape manipulation);
    `ops` counts all of them.

    Backprop's chain runs back through every layer, so it grows with depth. So does rec-LRA's
    with its default `feedback="adjacent"` (targets pass down unit by unit); with
    `feedback="skip"` it runs from the output error through one skip synapse and one block,
    whatever the depth.

    Args:
        model: a built, compiled `AlignedModel`.
        input_shape: the shape of one example.
        batch_size: the static batch size to trace with.

    Returns:
        An `UpdateChain`.
    """
    graph, logits_op, update_ops = update_graph(model, input_shape, batch_size)
    compute, path = longest_chain(
        graph, logits_op, update_ops, weight=lambda op: int(op.type not in BOOKKEEPING_OPS)
    )
    everything, _ = longest_chain(graph, logits_op, update_ops)
    return UpdateChain(
        ops=everything,
        compute_ops=compute,
        path=[op.type for op in path if op.type not in BOOKKEEPING_OPS],
        num_ops=len(graph.get_operations()),
    )
