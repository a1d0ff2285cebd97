"""`AlignedModel`: a Keras model whose `fit` trains with a local learning rule."""

import keras
import tensorflow as tf

from rlra_tf import distribute
from rlra_tf import rules as rules_lib
from rlra_tf.rules.trace import Trace


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


class _JitStep:
    """Wraps `(x, labels, step) -> (pairs, assignments, logits)` as an XLA function returning
    tensors only.

    The variables the updates and assignments belong to are fixed when the function is
    traced; a plain object (not Keras-tracked) keeps them.
    """

    def __init__(self, step_pairs):
        self.variables = None
        self.assigned = None

        def step(x, labels, iteration):
            pairs, assigns, logits = step_pairs(x, labels, iteration)
            self.variables = [v for _, v in pairs]
            self.assigned = [v for _, v in assigns]
            return [u for u, _ in pairs], [a for a, _ in assigns], logits

        self.fn = tf.function(step, jit_compile=True)

    def __call__(self, x, labels, iteration):
        return self.fn(x, labels, iteration)


@keras.saving.register_keras_serializable(package="rlra_tf")
class AlignedModel(keras.Model):
    """A classifier made of aligned blocks that `fit` trains with rec-LRA, LRA, FA, DFA or BP.

    The model is a list of blocks (`rlra_tf.models.blocks`), the classifier head last; `call`
    returns logits. `compile(rule=...)` picks the learning rule. For every rule but `"bp"`,
    `train_step` runs the forward pass once with each unit's input held constant, asks the
    rule for `(update, variable)` pairs and hands them to the optimiser: no gradient flows
    between units. `"bp"` differentiates the cross-entropy through the whole model.

    Args:
        blocks: list of `AlignedBlock` layers; the last one is the head (logits).
        num_classes: number of classes `K`.
        flatten_inputs: flatten each example before the first block (MLPs on images).
        input_mean, input_std: optional per-channel normalisation applied inside the model
            (inputs are expected in [0, 1]).
        noise_seed: seed of the training input noise (rules with `input_noise > 0`).

    Example:
        >>> model = rlra_tf.models.mlp((28, 28, 1), hidden_units=(256, 256))
        >>> model.compile(optimizer="adam", rule="rec_lra", metrics=["accuracy"])
        >>> model.fit(x, y, epochs=1)
    """

    def __init__(
        self,
        blocks,
        num_classes,
        flatten_inputs=False,
        input_mean=None,
        input_std=None,
        noise_seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not blocks:
            raise ValueError(f"Expected at least one block, received: blocks={blocks!r}")
        self.blocks = list(blocks)
        self.num_classes = num_classes
        self.flatten_inputs = bool(flatten_inputs)
        self.input_mean = None if input_mean is None else tuple(float(m) for m in input_mean)
        self.input_std = None if input_std is None else tuple(float(s) for s in input_std)
        self.noise_seed = int(noise_seed)
        self.rule = rules_lib.get("rec_lra")
        self.label_smoothing = 0.0
        self.loss_tracker = keras.metrics.Mean(name="loss")

    # ----------------------------------------------------------------------------- structure

    @property
    def unit_layers(self):
        """Every unit, in forward order."""
        return [u for b in self.blocks for u in b.unit_layers]

    @property
    def feedback_weights(self):
        """The error synapses (never exported, only changed by the rules)."""
        return [w for u in self.unit_layers for w in u.feedback_weights]

    def count_params_split(self):
        """`(forward parameters, feedback parameters)`."""
        fb = {id(w) for w in self.feedback_weights}
        n_fb = sum(int(tf.size(w)) for w in self.weights if id(w) in fb)
        n_fwd = sum(int(tf.size(w)) for w in self.weights if id(w) not in fb)
        return n_fwd, n_fb

    def build(self, input_shape):
        shape = self._preprocessed_shape(tuple(input_shape))
        for block in self.blocks:
            if not block.built:
                block.build(shape)
            shape = block.compute_output_shape(shape)
        self.built = True
        if getattr(self, "compiled", False):
            self._build_optimizer()

    def _preprocessed_shape(self, shape):
        if self.flatten_inputs:
            size = 1
            for s in shape[1:]:
                size *= s
            return (shape[0], size)
        return shape

    def preprocess(self, x):
        x = tf.cast(x, self.compute_dtype)
        if self.input_mean is not None:
            x = (x - tf.constant(self.input_mean, x.dtype)) / tf.constant(self.input_std, x.dtype)
        if self.flatten_inputs:
            x = tf.reshape(x, (tf.shape(x)[0], -1))
        return x

    def trace(self, x, training=False, local=False):
        """Forward pass that keeps every unit's input, pre-activation and activity."""
        z = self.preprocess(x)
        block_traces = []
        for block in self.blocks:
            bt = block.trace(z, training=training, local=local)
            block_traces.append(bt)
            z = bt.outputs
        return Trace(inputs=x, blocks=block_traces)

    def call(self, x, training=False):
        # Logits in float32 under a mixed-precision policy too (the softmax and the loss).
        return tf.cast(self.trace(x, training=training).logits, tf.float32)

    # ----------------------------------------------------------------------------- compile

    def compile(
        self,
        optimizer="adam",
        rule="rec_lra",
        metrics=None,
        label_smoothing=0.0,
        jit_compile="auto",
        loss=None,
        **kwargs,
    ):
        """Like `keras.Model.compile`, plus `rule=` (a name in `rlra_tf.rules.NAMES` or a rule).

        The loss is always the softmax cross-entropy (its derivative `softmax - y` is the
        output error every rule starts from), so `loss` must be left unset.
        """
        if loss is not None:
            raise ValueError(
                "AlignedModel always trains on the softmax cross-entropy; leave loss unset "
                f"(use label_smoothing= to smooth it), received: loss={loss!r}"
            )
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(
                f"Expected label_smoothing in [0, 1), received: label_smoothing={label_smoothing!r}"
            )
        self.rule = rules_lib.get(rule)
        self.label_smoothing = float(label_smoothing)
        jit = resolve_jit_compile(jit_compile)
        strategy = tf.distribute.get_strategy()
        # Under a multi-replica strategy Keras' own XLA wrapper fails (resource on another
        # device); the per-replica maths is compiled on its own instead (BUILD_NOTES.md).
        self._inner_jit = jit and strategy.num_replicas_in_sync > 1
        # Keras wraps the optimiser in a LossScaleOptimizer under mixed_float16; only backprop
        # differentiates a loss, so only backprop gets loss scaling (a local rule's updates
        # would be divided by the scale).
        kwargs.setdefault("auto_scale_loss", self.rule.uses_backprop)
        super().compile(
            optimizer=optimizer,
            metrics=metrics,
            jit_compile=jit and not self._inner_jit,
            **kwargs,
        )
        self._jit_request = jit_compile
        self._step_fn = None
        if self.built:
            self._build_optimizer()

    def _build_optimizer(self):
        """Build the optimiser for the trainable weights *and* the error synapses.

        Keras would build it for the trainable weights only; LRA also hands it updates of the
        (non-trainable) feedback weights.
        """
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables + self.feedback_weights)

    def compile_from_config(self, config):
        config = dict(config)
        rule = config.pop("rule", "rec_lra")
        config = keras.saving.deserialize_keras_object(config)
        self.compile(rule=rule, **config)

    def get_compile_config(self):
        if not self.compiled:
            return None  # as in Keras: an uncompiled model saves no compile config
        config = super().get_compile_config() or {}
        config = dict(config)
        config["rule"] = rules_lib.serialize(self.rule)
        config["label_smoothing"] = self.label_smoothing
        config["jit_compile"] = self._jit_request
        config.pop("loss", None)
        return config

    # ----------------------------------------------------------------------------- labels

    def one_hot_labels(self, y):
        """Integer class ids or one-hot labels to float32 one-hot, smoothed if asked."""
        y = tf.convert_to_tensor(y)
        if y.shape.rank is not None and y.shape.rank >= 1 and y.shape[-1] == self.num_classes \
                and y.dtype.is_floating:
            labels = tf.cast(y, tf.float32)
        else:
            labels = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), self.num_classes,
                                dtype=tf.float32)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return labels

    # ----------------------------------------------------------------------------- the step

    def _noisy(self, x, iteration):
        sigma = self.rule.input_noise
        if not sigma:
            return x
        x = tf.cast(x, self.compute_dtype)
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        step = tf.cast(iteration, tf.int32)
        seed = tf.stack([tf.cast(self.noise_seed, tf.int32) * 1000 + tf.cast(replica, tf.int32),
                         step])
        # Gaussian draws from a run-time seed differ with and without XLA (BUILD_NOTES.md);
        # each setting is deterministic on its own.
        noise = tf.random.stateless_normal(tf.shape(x), seed, dtype=x.dtype, alg="philox")
        return x + sigma * noise

    def _per_replica_updates(self, x, labels, iteration, scale_loss=True):
        """`(updates, assignments, logits)` for one replica's batch: updates are batch means,
        before replica scaling; assignments are `(value, variable)` pairs (the mirror)."""
        variables = self.trainable_variables
        if self.rule.uses_backprop:
            with tf.GradientTape() as tape:
                logits = self(x, training=True)
                loss = tf.reduce_mean(
                    tf.nn.softmax_cross_entropy_with_logits(labels, tf.cast(logits, labels.dtype))
                )
                # Under mixed_float16 the optimiser is a LossScaleOptimizer: it scales the loss
                # here and unscales (and checks) the gradients in apply. Otherwise a no-op.
                if scale_loss and self.optimizer is not None:
                    loss = self.optimizer.scale_loss(loss)
            grads = tape.gradient(loss, variables)
            return [g for g in grads], [], logits
        # Persistent: the rule asks for the local gradients block by block (in a traced step
        # this costs nothing at run time; the tape only builds the graph, and a tensor lives
        # until the last op that reads it has run, as in backprop).
        with tf.GradientTape(persistent=True) as tape:
            trace = self.trace(self._noisy(x, iteration), training=True, local=True)

        def local_gradients(pres, signals, sources=(), scale=1.0, parameters=None):
            # The signals (float32) meet the pre-activations in their compute dtype, as they
            # are: the division by the batch size (and the rule's `scale`) is applied to the
            # parameter-sized results, not to activation-sized tensors. The updates of the
            # float32 variables come out in float32.
            sources = list(sources)
            params = variables if parameters is None else list(parameters)
            grads = tape.gradient(
                pres, params + sources,
                output_gradients=[
                    tf.cast(tf.stop_gradient(tf.cast(s, tf.float32)), p.dtype)
                    for p, s in zip(pres, signals)
                ],
            )
            n = tf.cast(tf.shape(pres[0])[0], tf.float32)
            factor = scale / n
            k = len(params)
            own = {id(v): (tf.cast(g, tf.float32) * factor, v)
                   for g, v in zip(grads[:k], params) if g is not None}
            return own, grads[k:]

        pairs = self.rule.updates(trace, labels, local_gradients)
        # The mirror's noise (seeded by the step) after every update: it only needs the
        # weights, so nothing else would stop it from running during the forward pass and
        # adding its tensors to the step's peak memory.
        with tf.control_dependencies([u for u, _ in pairs]):
            after_updates = tf.identity(iteration)
        assigns = self.rule.synapse_assignments(trace, after_updates, seed=self.noise_seed)
        return pairs, assigns, trace.logits

    def _iteration(self):
        """The optimiser's step counter (0 before the optimiser exists)."""
        if self.optimizer is None:
            return tf.constant(0, tf.int64)
        return tf.cast(self.optimizer.iterations, tf.int64)

    def local_updates(self, x, y):
        """The `(update, variable)` pairs one training step hands the optimiser.

        Batch means, before any scaling across replicas. For `"bp"`, the gradients of the
        mean cross-entropy (never loss-scaled, also under `mixed_float16`). Every update is
        float32, whatever the dtype policy. Runs the forward pass in training mode (BatchNorm
        statistics move).
        """
        return self.step_effects(x, y)[0]

    def step_effects(self, x, y):
        """`(updates, assignments)` of one training step, without applying either.

        `updates` as `local_updates`; `assignments` the `(new value, variable)` pairs the step
        assigns to error synapses outside the optimiser (the mirror, ALGORITHM.md 3.7).
        """
        pairs, assigns, _ = self._step_pairs(
            tf.convert_to_tensor(x), self.one_hot_labels(y), self._iteration(), scale_loss=False
        )
        return pairs, assigns

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("AlignedModel does not support sample_weight in fit().")
        labels = self.one_hot_labels(y)
        iteration = self._iteration()
        if self._inner_jit:
            jit_step = self._jit_step()
            updates, values, logits = jit_step(x, labels, iteration)
            variables, assigned = jit_step.variables, jit_step.assigned
        else:
            pairs, assigns, logits = self._step_pairs(x, labels, iteration)
            updates, variables = [u for u, _ in pairs], [v for _, v in pairs]
            values, assigned = [a for a, _ in assigns], [v for _, v in assigns]
        # Every update and assigned value first, then any write: the rules read error
        # synapses (`F`, `S`) and forward weights that the same step also changes, and a read
        # must see the value before the step. (Without this, nothing orders a read that only
        # feeds another unit's update before that variable's own assignment.)
        with tf.control_dependencies(updates + values):
            updates = [tf.identity(u) for u in updates]
            values = [tf.identity(a) for a in values]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            # The optimiser sums across replicas; the updates are per-replica batch means.
            updates = [u / replicas for u in updates]
        self._apply_step(updates, variables, values, assigned)
        return self._update_metrics(y, labels, logits)

    def _apply_step(self, updates, variables, values, assigned):
        """Writes one step: the assignments (`values` to `assigned`: the mirror), then the
        optimiser's updates; the synapses the rule tracks (`Rule.tracked_synapses`) also
        receive their kernel's step, plus their own decay.

        For a tracked pair `(F, W)`: before the optimiser `F <- k_F * F - k_W * W`, after it
        `F <- F + W`, so `F` gains exactly `W`'s step without `W`'s decay and loses its own:
        `k_v = 1 - learning_rate * weight_decay` when the optimiser's decoupled weight decay
        applies to `v` (its own exclusion rules), else 1. Every value is identical on every
        replica (deterministic noise, replicated weights and steps): assigned locally.
        """
        tracked = self.rule.tracked_synapses(self.unit_layers)
        if not tracked:
            if values:
                distribute.assign_replicated(assigned, values)
            self.optimizer.apply(updates, variables)
            return
        pending = {id(v): a for a, v in zip(values, assigned)}
        tracked_ids = {id(f) for f, _ in tracked}
        rest = [(a, v) for a, v in zip(values, assigned) if id(v) not in tracked_ids]
        if rest:
            distribute.assign_replicated([v for _, v in rest], [a for a, _ in rest])
        kept = self._decay_kept()
        differences = []
        for f, w in tracked:
            value = pending.get(id(f))
            value = tf.convert_to_tensor(f) if value is None else value
            differences.append(kept(f) * value - kept(w) * tf.convert_to_tensor(w))
        distribute.assign_replicated([f for f, _ in tracked], differences)
        self.optimizer.apply(updates, variables)
        distribute.assign_replicated(
            [f for f, _ in tracked],
            [tf.convert_to_tensor(f) + tf.convert_to_tensor(w) for f, w in tracked],
        )

    def _decay_kept(self):
        """`v -> 1 - learning_rate * weight_decay` for the variables the optimiser's
        decoupled weight decay applies to at this step, `1.0` for the others."""
        optimizer = self.optimizer
        decay = getattr(optimizer, "weight_decay", None)
        if not decay:
            return lambda v: 1.0
        factor = 1.0 - tf.cast(optimizer.learning_rate, tf.float32) * float(decay)
        # Keras' own rule for which variables it decays (`exclude_from_weight_decay`).
        return lambda v: factor if optimizer._use_weight_decay(v) else 1.0

    def _step_pairs(self, x, labels, iteration, scale_loss=True):
        out, assigns, logits = self._per_replica_updates(x, labels, iteration, scale_loss)
        if self.rule.uses_backprop:
            out = list(zip(out, self.trainable_variables))
        return out, assigns, logits

    def _jit_step(self):
        """The per-replica maths as its own XLA program (tensors in, tensors out)."""
        if self._step_fn is None:
            self._step_fn = _JitStep(self._step_pairs)
        return self._step_fn

    def _update_metrics(self, y, labels, logits):
        loss = tf.nn.softmax_cross_entropy_with_logits(labels, tf.cast(logits, labels.dtype))
        self.loss_tracker.update_state(loss)
        return self.compute_metrics(None, y, logits, sample_weight=None)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        return self._update_metrics(y, self.one_hot_labels(y), logits)

    # ----------------------------------------------------------------------------- config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "blocks": [keras.saving.serialize_keras_object(b) for b in self.blocks],
                "num_classes": self.num_classes,
                "flatten_inputs": self.flatten_inputs,
                "input_mean": self.input_mean,
                "input_std": self.input_std,
                "noise_seed": self.noise_seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["blocks"] = [keras.saving.deserialize_keras_object(b) for b in config["blocks"]]
        return cls(**config)
