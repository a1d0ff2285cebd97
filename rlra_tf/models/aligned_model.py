"""`AlignedModel`: a Keras model whose `fit` trains with a local learning rule."""

import keras
import numpy as np
import tensorflow as tf

from rlra_tf import rules as rules_lib
from rlra_tf.models import labels as labels_lib
from rlra_tf.models import local_step
from rlra_tf.models.blocks import AlignedBlock
from rlra_tf.trace import Trace


@keras.saving.register_keras_serializable(package="rlra_tf")
class AlignedModel(keras.Model):
    """A classifier made of aligned blocks that `fit` trains with rec-LRA, LRA, FA, DFA or BP.

    The model is a list of blocks (`rlra_tf.models.blocks`), the classifier head last; `call`
    returns logits. `compile(rule=...)` picks the learning rule. For every rule but `"bp"`,
    `train_step` runs the forward pass once with each unit's input held constant, asks the
    rule for `(update, variable)` pairs and hands them to the optimiser: no gradient flows
    between units. `"bp"` differentiates the cross-entropy through the whole model.

    Labels are class ids (shape `(batch,)` or `(batch, 1)`, integer or whole floats) or
    one-hot rows of width `num_classes`; `fit` and `evaluate` refuse anything else with an
    error naming the value and `num_classes` (a class id out of range is caught inside the
    step, except in an XLA-compiled step, which drops assertions). The loss is Keras'
    `CategoricalCrossentropy(from_logits=True)`, so `evaluate` returns and names its results
    as a Keras model compiled with that loss and the same metrics does.

    Sample weights (`fit(..., sample_weight=)` or `class_weight=`, `evaluate(...,
    sample_weight=)`) follow Keras: the loss is `sum(w * loss) / batch size`. Under `"bp"`
    that loss is what is differentiated; under a local rule each example's contribution to
    every unit's update is multiplied by its weight, while the errors carried down from unit
    to unit stay unweighted (docs/ALGORITHM.md#sample-weights). Without BatchNorm, integer
    weights therefore give the update of the batch with each example repeated `w` times,
    scaled by `sum(w) / batch size`; with BatchNorm the batch statistics ignore the weights.
    The weight mirror does not see them.

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
        self._input_shape_built = None
        self._check_label_values = True

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
        input_shape = tuple(input_shape)
        self._input_shape_built = input_shape
        shape = self._preprocessed_shape(input_shape)
        for block in self.blocks:
            if not isinstance(block, AlignedBlock):
                raise ValueError(
                    f"AlignedModel takes blocks (rlra_tf.models.UnitStack, ResidualStack, ...), "
                    f"received {block!r} of class {type(block).__name__}: wrap units and "
                    "transitions in a block, or convert a Keras model with "
                    "rlra_tf.models.from_keras (docs/MODELS.md)"
                )
            if not block.built:
                block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
        self._check_head(shape)
        self.built = True
        if getattr(self, "compiled", False):
            self._build_optimizer()

    def _check_head(self, output_shape):
        """The last unit must give `num_classes` logits: linear, and that wide."""
        head = self.blocks[-1].unit_layers[-1]
        if len(output_shape) != 2 or output_shape[-1] != self.num_classes:
            raise ValueError(
                f"The model's output has shape {output_shape}, but num_classes={self.num_classes}"
                f": its head ({head.name!r}) must give (batch, {self.num_classes}) logits"
            )
        if self.blocks[-1].transition_layers_after_output():
            raise ValueError(
                f"The head block {self.blocks[-1].name!r} runs transitions after its output "
                "unit; the logits must be the head unit's own output"
            )
        if head.activation is not keras.activations.linear:
            name = keras.activations.serialize(head.activation)
            raise ValueError(
                f"The head unit {head.name!r} has activation={name!r}; it must give logits "
                "(activation=None): the softmax is part of the loss (and of the exported "
                "'probabilities' output)"
            )

    def _build_from_data(self, x):
        """Builds an unbuilt model from the example shape of the data passed to fit/evaluate/
        predict (arrays, tensors, a tf.data.Dataset or a keras.utils.PyDataset)."""
        if self.built or x is None:
            return
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, (tuple, list)) else spec
            shape = tuple(spec.shape)
        elif isinstance(x, keras.utils.PyDataset):
            first = x[0]
            shape = tuple(np.shape(first[0] if isinstance(first, (tuple, list)) else first))
        elif hasattr(x, "shape"):
            shape = tuple(x.shape)
        else:
            return  # Keras builds it from the first batch, as for any subclassed model
        self.build((None,) + tuple(shape[1:]))

    def evaluate(self, x=None, *args, **kwargs):
        self._build_from_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._build_from_data(x)
        return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        self._build_from_data(x)
        return super().train_on_batch(x, *args, **kwargs)

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

    def check_inputs(self, x):
        """Raises `ValueError` if the static shape of `x` does not fit the built model."""
        expected = self._input_shape_built
        shape = tf.TensorShape(getattr(x, "shape", None))
        if expected is None or shape.rank is None:
            return
        got = tuple(shape.as_list())
        fits = len(got) == len(expected) and all(
            e is None or g is None or int(e) == int(g) for e, g in zip(expected[1:], got[1:])
        )
        if not fits:
            want = (None,) + tuple(expected[1:])
            raise ValueError(
                f"Expected inputs of shape {want} (batch first) for model {self.name!r}, "
                f"received: inputs of shape {got}"
            )

    def trace(self, x, training=False, local=False):
        """Forward pass that keeps every unit's input, pre-activation and activity."""
        if not self.built:
            self.build(tuple(x.shape))
        self.check_inputs(x)
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
        output error every rule starts from), so `loss` must be left unset: the model
        compiles Keras' `CategoricalCrossentropy(from_logits=True, label_smoothing=...)`
        itself, and `evaluate`, `metrics_names` and the logs name and order the results as
        for any Keras model with that loss (`loss, accuracy = model.evaluate(x, y)`).
        `weighted_metrics` and the other arguments of `keras.Model.compile` work as there.
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
        jit = local_step.resolve_jit_compile(jit_compile)
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
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=self.label_smoothing),
            metrics=metrics,
            jit_compile=jit and not self._inner_jit,
            **kwargs,
        )
        self._jit_request = jit_compile
        self._step_fn = None
        # Assertions cannot run inside XLA (Keras' jit_compile, or any step on a TPU): there
        # the label values go unchecked (the shapes still are).
        self._check_label_values = not (self.jit_compile or local_step.on_tpu(strategy))
        if self.built:
            self._build_optimizer()

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; a `tf.data.Dataset` (as `rlra_tf.data.load` returns) is taken as
        it is, shuffled or not by its own pipeline, without Keras' warning that
        `shuffle=True` (its default) does not apply to it."""
        if isinstance(x, tf.data.Dataset) and "shuffle" not in kwargs and len(args) < 7:
            kwargs["shuffle"] = False
        self._build_from_data(x)
        return super().fit(x, y, *args, **kwargs)

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

    def class_labels(self, y, check_values=True):
        """`rlra_tf.models.labels.class_labels` for this model's `num_classes`: class ids or
        one-hot labels `y` as float32 one-hot rows `(batch, num_classes)`, unsmoothed."""
        return labels_lib.class_labels(y, self.num_classes, check_values=check_values)

    def smooth(self, labels):
        """One-hot `labels` with the compiled `label_smoothing` applied."""
        return labels_lib.smoothed(labels, self.num_classes, self.label_smoothing)

    def one_hot_labels(self, y):
        """Class ids or one-hot labels to float32 one-hot, smoothed if asked (checked as
        `class_labels`): what the rules take as `labels`."""
        return labels_lib.one_hot_labels(y, self.num_classes, self.label_smoothing)

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

    def _per_replica_updates(self, x, labels, iteration, scale_loss=True, sample_weight=None):
        """`(updates, assignments, logits)` for one replica's batch: updates are batch means,
        before replica scaling; assignments are `(value, variable)` pairs (the mirror).

        `sample_weight` (float32, `(batch,)`, or None) weights each example's contribution
        to every update: `sum(w * loss) / n` for backprop, `w * signal / n` at every unit
        for a local rule, whose errors carried down stay unweighted.
        """
        variables = self.trainable_variables
        if self.rule.uses_backprop:
            with tf.GradientTape() as tape:
                logits = self(x, training=True)
                losses = tf.nn.softmax_cross_entropy_with_logits(
                    labels, tf.cast(logits, labels.dtype))
                if sample_weight is None:
                    loss = tf.reduce_mean(losses)
                else:
                    n = tf.cast(tf.shape(losses)[0], losses.dtype)
                    loss = tf.reduce_sum(sample_weight * losses) / n
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

        local_gradients = local_step.local_gradients_fn(tape, variables, sample_weight)
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

    def local_updates(self, x, y, sample_weight=None):
        """The `(update, variable)` pairs one training step hands the optimiser.

        Batch means, before any scaling across replicas, weighted by `sample_weight` as in
        `fit` (see the class docstring). For `"bp"`, the gradients of the mean
        cross-entropy (never loss-scaled, also under `mixed_float16`). Every update is
        float32, whatever the dtype policy. Runs the forward pass in training mode (BatchNorm
        statistics move).
        """
        return self.step_effects(x, y, sample_weight)[0]

    def step_effects(self, x, y, sample_weight=None):
        """`(updates, assignments)` of one training step, without applying either.

        `updates` as `local_updates`; `assignments` the `(new value, variable)` pairs the step
        assigns to error synapses outside the optimiser (the mirror,
        docs/ALGORITHM.md#mirror).
        """
        x = tf.convert_to_tensor(x)
        labels = self.class_labels(y)
        weights = labels_lib.sample_weights(sample_weight, labels, self.unit_layers, self.rule)
        pairs, assigns, _ = self._step_pairs(
            x, self.smooth(labels), self._iteration(), scale_loss=False, sample_weight=weights)
        return pairs, assigns

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels = labels_lib.step_labels(x, y, self.num_classes, self._check_label_values)
        weights = labels_lib.sample_weights(sample_weight, labels, self.unit_layers, self.rule)
        targets = self.smooth(labels)
        iteration = self._iteration()
        if self._inner_jit:
            jit_step = self._jit_step()
            updates, values, logits = jit_step(x, targets, iteration, weights)
            variables, assigned = jit_step.variables, jit_step.assigned
        else:
            pairs, assigns, logits = self._step_pairs(x, targets, iteration,
                                                      sample_weight=weights)
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
        local_step.apply_step(self.optimizer, self.rule.tracked_synapses(self.unit_layers),
                              updates, variables, values, assigned)
        return self._update_metrics(x, y, labels, logits, sample_weight)

    def _step_pairs(self, x, labels, iteration, scale_loss=True, sample_weight=None):
        out, assigns, logits = self._per_replica_updates(x, labels, iteration, scale_loss,
                                                         sample_weight)
        if self.rule.uses_backprop:
            out = list(zip(out, self.trainable_variables))
        return out, assigns, logits

    def _jit_step(self):
        """The per-replica maths as its own XLA program (tensors in, tensors out)."""
        if self._step_fn is None:
            self._step_fn = local_step.JitStep(self._step_pairs)
        return self._step_fn

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss of the compiled cross-entropy; `y` may be class ids or one-hot rows
        (Keras also calls this with the raw labels, to build the loss under a strategy)."""
        if y is not None:
            y = self.class_labels(y, check_values=False)  # the steps check the values
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def _update_metrics(self, x, y, labels, logits, sample_weight):
        """Keras' own loss tracker and compiled metrics, exactly as `keras.Model` updates
        them (`labels`: the unsmoothed one-hot rows; the compiled loss smooths them)."""
        loss = self._compute_loss(x=x, y=labels, y_pred=logits, sample_weight=sample_weight)
        # Keras' loss divides by the replicas (for its gradient); the tracker takes it back.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self._loss_tracker.update_state(loss * tf.cast(replicas, loss.dtype),
                                        sample_weight=tf.shape(logits)[0])
        if tf.TensorShape(getattr(y, "shape", None)).rank is None:
            y = labels  # Keras' metrics need a known rank (a step retraced for another one)
        return self.compute_metrics(x, y, logits, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels = labels_lib.step_labels(x, y, self.num_classes, self._check_label_values)
        # Only checked: the loss and the metrics take `sample_weight` as given.
        labels_lib.sample_weights(sample_weight, labels, self.unit_layers, self.rule)
        logits = self(x, training=False)
        return self._update_metrics(x, y, labels, logits, sample_weight)

    # ----------------------------------------------------------------------------- export

    def to_keras(self, name=None):
        """A plain Keras functional model with this model's forward function (logits out).

        The trained forward weights are copied into standard Keras layers (`Conv2D`, `Dense`,
        `BatchNormalization`, `Add`, `Activation`, pooling, ...); no error synapse is kept. Use
        it to go on with Keras' own tooling (`model.export`, serving, fine-tuning with
        backprop). The input preprocessing (`input_mean`, `input_std`, flattening) is part of it.
        It computes in float32.

        Example:
            >>> plain = model.to_keras()
            >>> plain.predict(x)  # the same logits as model.predict(x)
        """
        if not self.built:
            raise ValueError(f"Model {self.name!r} is not built; call model.build(input_shape)")
        shape = (self.get_build_config() or {}).get("input_shape")
        inputs = keras.Input(tuple(shape[1:]), name="images")
        x = inputs
        if self.input_mean is not None:
            x = keras.layers.Normalization(
                mean=list(self.input_mean), variance=[s * s for s in self.input_std],
                name="input_normalization")(x)
        if self.flatten_inputs:
            x = keras.layers.Flatten(name="input_flatten")(x)
        used = {"images", "input_normalization", "input_flatten"}

        def namer(block, layer_name):
            """The layer's own name while unique in the model, else prefixed by its block's."""
            chosen = layer_name if layer_name not in used else f"{block.name}_{layer_name}"
            k = 1
            while chosen in used:
                chosen, k = f"{block.name}_{layer_name}_{k}", k + 1
            used.add(chosen)
            return chosen

        for block in self.blocks:
            x = block.to_keras(x, namer)
        return keras.Model(inputs, x, name=name or self.name)

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
