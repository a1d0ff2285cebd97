"""`AlignedModel`: a Keras model whose `fit` trains with a local learning rule."""

import keras
import numpy as np
import tensorflow as tf

from rlra_tf import distribute
from rlra_tf import rules as rules_lib
from rlra_tf.models.blocks import AlignedBlock
from rlra_tf.trace import Trace


def checked_class_ids(ids, num_classes, where=None):
    """`ids` (class ids, any shape), asserted to be integers in `[0, num_classes)`.

    The check runs where `ids` are used: eagerly at once, in a graph as an assertion whose
    `InvalidArgumentError` names the first bad value, e.g. "Received a label value of 10
    which is outside the valid range [0, 10) of this model (num_classes=10)". Float ids must
    be whole numbers. `where` (e.g. `"train data"`) is added to the message. The check itself
    is a comparison and a reduction; the message is only built when it fails. XLA drops
    assertions, so inside an XLA-compiled function it checks nothing.
    """
    ids = tf.convert_to_tensor(ids)
    if not (ids.dtype.is_integer or ids.dtype.is_floating):
        raise ValueError(
            f"Expected class ids of an integer or float dtype, received: labels of dtype "
            f"{ids.dtype.name}"
        )
    good = (ids >= 0) & (ids < tf.cast(num_classes, ids.dtype))
    whole = None
    if ids.dtype.is_floating:
        whole = tf.equal(ids, tf.floor(ids))
        good = good & whole
    place = f" ({where})" if where else ""

    def message():
        flat = tf.reshape(good, [-1])
        bad = tf.boolean_mask(tf.reshape(ids, [-1]), tf.logical_not(flat))[0]
        text = tf.strings.format(
            "Received a label value of {}" + place + " which is outside the valid range "
            f"[0, {num_classes}) of this model (num_classes={num_classes})", bad)
        if whole is not None:
            fraction = tf.strings.format(
                "Received a label value of {}" + place + ", which is not a class id: expected "
                f"integers in [0, {num_classes}) (this model has num_classes={num_classes}) or "
                f"one-hot labels of width {num_classes}", bad)
            text = tf.where(tf.equal(bad, tf.floor(bad)), text, fraction)
        return text

    return _checked(ids, tf.reduce_all(good), message)


def _checked(value, good, message):
    """`value`, passed through an assertion of `good` whose `message` (a callable returning a
    string tensor) is only built when it fails.

    The value flows through the assertion's `tf.cond` (a data dependency): Grappler drops a
    control dependency on an `Identity` when it fuses the ops after it, and the unchecked
    value would then reach them first.
    """

    def fail():
        text = message()
        if tf.executing_eagerly():  # the sentence itself, as the graph's assertion gives it
            raise tf.errors.InvalidArgumentError(None, None, text.numpy().decode())
        with tf.control_dependencies([tf.debugging.Assert(False, [text])]):
            return tf.identity(value)

    return tf.cond(good, lambda: tf.identity(value), fail)


def _on_tpu(strategy):
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


class _JitStep:
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
        self._check_label_values = not (self.jit_compile or _on_tpu(strategy))
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
        """Class ids or one-hot labels `y` as float32 one-hot rows `(batch, num_classes)`.

        Class ids: shape `(batch,)` or `(batch, 1)`, integers or whole floats in
        `[0, num_classes)` (asserted with `checked_class_ids` unless `check_values` is
        False). One-hot: shape `(batch, num_classes)`, any numeric dtype. Any other shape is
        a `ValueError` naming it and `num_classes`. No smoothing (`one_hot_labels` smooths).
        """
        y = tf.convert_to_tensor(y)
        k = self.num_classes
        rank, width = y.shape.rank, (y.shape[-1] if y.shape.rank else None)
        if rank is None:  # a step retraced for labels of another rank (Keras relaxes shapes)
            return self._labels_of_unknown_rank(y, check_values)
        if rank == 2 and width is not None and width != 1:
            if width != k:
                raise ValueError(
                    f"Received one-hot labels of width {width} (labels of shape "
                    f"{tuple(y.shape.as_list())}), but this model has num_classes={k}: expected "
                    f"one-hot labels of shape (batch, {k}) or class ids of shape (batch,)"
                )
            return tf.cast(y, tf.float32)
        if rank == 0 or rank > 2 or (rank == 2 and width is None):
            raise ValueError(
                f"Expected class ids of shape (batch,) or one-hot labels of shape (batch, {k}) "
                f"for this model (num_classes={k}), received: labels of shape "
                f"{tuple(y.shape.as_list())}"
            )
        ids = tf.reshape(y, [-1])
        if check_values:
            ids = checked_class_ids(ids, k)
        elif not (ids.dtype.is_integer or ids.dtype.is_floating):
            checked_class_ids(ids, k)  # raises the dtype error
        return tf.one_hot(tf.cast(ids, tf.int32), k, dtype=tf.float32)

    def _labels_of_unknown_rank(self, y, check_values):
        """`class_labels` decided at run time, for labels whose rank is not known."""
        k = self.num_classes
        shape, rank = tf.shape(y), tf.rank(y)
        last = tf.concat([shape, [1]], 0)[tf.maximum(rank - 1, 0)]

        def one_hot():
            labels = tf.cast(y, tf.float32)
            if check_values:
                labels = _checked(labels, tf.equal(last, k), lambda: tf.strings.format(
                    "Received one-hot labels of width {}, but this model has "
                    f"num_classes={k}: expected one-hot labels of shape (batch, {k}) or "
                    "class ids of shape (batch,)", last))
            return tf.reshape(labels, [-1, k])

        def class_ids():
            ids = y
            if check_values:
                good = tf.logical_or(tf.equal(rank, 1), tf.equal(rank, 2))
                ids = _checked(ids, good, lambda: tf.strings.format(
                    "Expected class ids of shape (batch,) or one-hot labels of shape "
                    f"(batch, {k}) for this model (num_classes={k}), received: labels of "
                    "shape {}", shape))
                ids = checked_class_ids(tf.reshape(ids, [-1]), k)
            return tf.one_hot(tf.cast(tf.reshape(ids, [-1]), tf.int32), k, dtype=tf.float32)

        return tf.cond(tf.logical_and(tf.equal(rank, 2), tf.not_equal(last, 1)),
                       one_hot, class_ids)

    def smooth(self, labels):
        """One-hot `labels` with the compiled `label_smoothing` applied."""
        if not self.label_smoothing:
            return labels
        return labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes

    def one_hot_labels(self, y):
        """Class ids or one-hot labels to float32 one-hot, smoothed if asked (checked as
        `class_labels`): what the rules take as `labels`."""
        return self.smooth(self.class_labels(y))

    def _step_labels(self, x, y):
        """`class_labels` for a step: value checks where the step can assert, and the
        batch sizes of `x` and `y` compared."""
        labels = self.class_labels(y, check_values=self._check_label_values)
        nx = tf.TensorShape(getattr(x, "shape", None))
        if nx.rank and nx[0] is not None and labels.shape[0] is not None \
                and nx[0] != labels.shape[0]:
            raise ValueError(
                f"Expected as many labels as inputs, received: {nx[0]} inputs and "
                f"{labels.shape[0]} labels"
            )
        return labels

    def _sample_weights(self, sample_weight, labels):
        """`sample_weight` as float32 of shape `(batch,)`, or None."""
        if sample_weight is None:
            return None
        synchronized = [u.name for u in self.unit_layers if u.synchronized_norm]
        if synchronized and not self.rule.uses_backprop:
            raise ValueError(
                "Sample and class weights are not supported with synchronised BatchNorm "
                f"(norm='sync_batch', units {synchronized[:3]}) under rule "
                f"{self.rule.name!r}; use norm='batch' or train without weights"
            )
        w = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        if w.shape.rank is not None and not (
                w.shape.rank == 1 or (w.shape.rank == 2 and w.shape[-1] == 1)):
            raise ValueError(
                "Expected one sample weight per example, shape (batch,) or (batch, 1), "
                f"received: sample_weight of shape {tuple(w.shape.as_list())}"
            )
        w = tf.reshape(w, [-1])
        n, m = w.shape[0], labels.shape[0]
        if n is not None and m is not None and n != m:
            raise ValueError(
                f"Expected one sample weight per example, received: {n} sample weights "
                f"for {m} examples"
            )
        return w

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
        pairs, assigns, _ = self._step_pairs(
            x, self.smooth(labels), self._iteration(), scale_loss=False,
            sample_weight=self._sample_weights(sample_weight, labels),
        )
        return pairs, assigns

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels = self._step_labels(x, y)
        weights = self._sample_weights(sample_weight, labels)
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
        self._apply_step(updates, variables, values, assigned)
        return self._update_metrics(x, y, labels, logits, sample_weight)

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
        # After every update exists (and every check on the batch passed): nothing is written
        # by a step that fails.
        with tf.control_dependencies(updates + values):
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

    def _step_pairs(self, x, labels, iteration, scale_loss=True, sample_weight=None):
        out, assigns, logits = self._per_replica_updates(x, labels, iteration, scale_loss,
                                                         sample_weight)
        if self.rule.uses_backprop:
            out = list(zip(out, self.trainable_variables))
        return out, assigns, logits

    def _jit_step(self):
        """The per-replica maths as its own XLA program (tensors in, tensors out)."""
        if self._step_fn is None:
            self._step_fn = _JitStep(self._step_pairs)
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
        labels = self._step_labels(x, y)
        self._sample_weights(sample_weight, labels)  # the shape check
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
