"""A `tf.distribute` strategy from a name: the one place that knows how strategies are made.

The library never builds a strategy itself; a binary calls `get_strategy(name)` first thing
(multi-worker and TPU strategies must exist before other TensorFlow work starts), builds and
compiles the model inside `strategy.scope()`, and checks its global batch size with
`per_replica_batch_size`. `AlignedModel` divides every per-replica update by
`num_replicas_in_sync`, so the optimiser's sum across replicas is the global-batch mean for
every rule.

| name           | strategy                                                                  |
|----------------|---------------------------------------------------------------------------|
| `auto`         | `tpu` if a TPU address is given, `multi_worker` if `TF_CONFIG` names more than |
|                | one task, `mirrored` over all GPUs if there are several, else `one_device` |
| `one_device`   | `OneDeviceStrategy` on the first GPU, or the CPU                          |
| `mirrored`     | `MirroredStrategy` over every local GPU (or the CPU when there is none)   |
| `multi_worker` | `MultiWorkerMirroredStrategy`; the cluster and this task come from `TF_CONFIG` |
| `tpu`          | `TPUClusterResolver(tpu_address or "local")` -> `TPUStrategy`             |
"""

import functools
import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def get_strategy(name="auto", tpu_address=None):
    """Returns the `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    Args:
        name: `"auto"`, `"one_device"`, `"mirrored"`, `"multi_worker"` or `"tpu"`.
        tpu_address: for `"tpu"` (and `"auto"`): the TPU name or `grpc://host:port` address;
            `None` or `"local"` means the TPU of this TPU VM.

    Raises:
        ValueError: for an unknown `name`, or `"multi_worker"` without a usable `TF_CONFIG`.

    Example:
        >>> strategy = get_strategy("mirrored")
        >>> with strategy.scope():
        ...     model = rlra_tf.models.mlp((28, 28, 1))
        ...     model.compile(optimizer="adam", rule="rec_lra")
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy, received: strategy={name!r}. Expected one of {list(STRATEGIES)}"
        )
    install_keras_fixes()
    if name == "auto":
        name = _auto_name(tpu_address)
    strategy = _make_strategy(name, tpu_address)
    precompute_saving_skipsets()  # after the strategy exists, outside its scope
    return strategy


def _make_strategy(name, tpu_address):
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus] or None)
    if name == "multi_worker":
        cluster = tf_config_cluster()  # raises with a message when TF_CONFIG is unusable
        if cluster is None:
            raise ValueError(
                "strategy='multi_worker' reads the cluster from the TF_CONFIG environment "
                "variable, which is not set. Set it on every worker, e.g. "
                'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' (index 1 on the second host).'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy(tpu_address)


def _auto_name(tpu_address):
    if tpu_address:
        return "tpu"
    cluster = tf_config_cluster()
    if cluster is not None and sum(len(tasks) for tasks in cluster.values()) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def _tpu_strategy(tpu_address):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "local")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def tf_config_cluster():
    """The `cluster` of the `TF_CONFIG` environment variable, or `None` when it is not set.

    Raises:
        ValueError: if `TF_CONFIG` is set but is not JSON with a `cluster` dict and a `task`.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}), received: TF_CONFIG={raw!r}")
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("cluster"), dict)
        or not isinstance(config.get("task"), dict)
    ):
        raise ValueError(
            "TF_CONFIG must be a JSON object with a 'cluster' dict (task type -> list of "
            "host:port) and a 'task' dict ({'type': ..., 'index': ...}), received: "
            f"TF_CONFIG={raw!r}"
        )
    return config["cluster"]


def per_replica_batch_size(global_batch_size, strategy):
    """`global_batch_size // num_replicas_in_sync`, checking that it divides evenly.

    Every replica must see the same number of examples, or the mean of the per-replica means
    is not the mean over the global batch.

    Raises:
        ValueError: if the global batch is not a positive multiple of the replica count.
    """
    replicas = strategy.num_replicas_in_sync
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) \
            or global_batch_size <= 0:
        raise ValueError(
            "Expected a positive integer for the global batch size, received: "
            f"batch_size={global_batch_size!r}"
        )
    if global_batch_size % replicas:
        raise ValueError(
            f"The global batch size must divide by the number of replicas in sync "
            f"({replicas}), received: batch_size={global_batch_size}. Use a multiple of "
            f"{replicas}, e.g. batch_size={max(replicas, global_batch_size // replicas * replicas)}"
            "."
        )
    return global_batch_size // replicas


def is_chief(strategy):
    """Whether this process is the one that writes summaries, checkpoints and results.

    True except for the non-chief workers of a multi-worker strategy (the chief is the task of
    type "chief", or worker 0 when there is none).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def task_id(strategy):
    """`(task_type, task_id)` of this process in a multi-worker cluster, else `(None, 0)`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, 0
    return resolver.task_type, resolver.task_id or 0


# ---------------------------------------------------------------------------------------------
# Three fixes to Keras 3 (checked with 3.15) that `model.fit` under a strategy needs.

# The object types whose attribute skip-sets Keras' saving computes (`saving_lib`).
_SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


@functools.cache
def precompute_saving_skipsets():
    """Computes Keras' saving skip-sets once, here, outside any strategy scope.

    See fix 3 of `install_keras_fixes`: called by `get_strategy` after the strategy is created
    (a multi-worker strategy must come before other TensorFlow work) and before its scope is
    entered.
    """
    from keras.src.saving import saving_lib

    install_keras_fixes()
    for obj_type in _SAVEABLE_TYPES:
        saving_lib.get_attr_skipset(obj_type)
    return True


@functools.cache
def install_keras_fixes():
    """Patches three places of Keras; idempotent, called by `get_strategy`.

    1. Under `MultiWorkerMirroredStrategy`, Keras reduces every scalar log with
       `strategy.reduce("MEAN", value, axis=0)`, which fails ("Invalid reduction dimension 0 for
       input with 0 dimensions", tensorflow/tensorflow#72388): `fit` cannot run at all. Scalars
       are reduced over replicas (`axis=None`) instead; anything else is left to Keras.
    2. Before training, a model created under a strategy pulls one real batch from the
       training data only to learn the input shapes ("symbolic build"). Under
       `MultiWorkerMirroredStrategy` that eager reduction of the batch fails too, and
       everywhere it creates an extra iterator over the dataset, which advances a
       `reshuffle_each_iteration` shuffle: the order of the data then depends on how many
       times `fit` was called, and a resumed run would see other batches than an uninterrupted
       one. The shapes are taken from the dataset's `element_spec` instead (no data is read).
    3. Every `model.save`/`save_weights` builds a throw-away `Optimizer(1.0)` to learn which
       attributes to skip (`saving_lib.get_attr_skipset`; its cache never hits in 3.15: it
       reads the key `saving_attr_skiplist_*` but writes `saving_attr_skipset_*`). Inside a
       strategy's scope (as in `fit`'s callbacks) that creates a distributed variable, which
       under `MultiWorkerMirroredStrategy` broadcasts from the chief: a save that only the
       chief makes (ModelCheckpoint) desynchronises the workers' collectives ("Collective
       instance ... expected type 1 and data_type 9 but got type 0") and training dies. The
       skip-sets are cached per type here and computed once outside any scope
       (`precompute_saving_skipsets`).
    """
    from keras.src import backend, tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def mean(v):
                if getattr(v.shape, "rank", None) == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original_reduce(v, strategy, reduction)

            return tree.map_structure(mean, values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        adapter = getattr(iterator, "data_adapter", None)
        if iterator is not None and data_batch is None and hasattr(adapter, "get_tf_dataset"):
            spec = adapter.get_tf_dataset().element_spec
            data_batch = tree.map_structure(
                lambda s: backend.KerasTensor(tuple(s.shape), s.dtype.name), spec
            )
            iterator = None
        return original_build(self, iterator=iterator, data_batch=data_batch)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build

    from keras.src.saving import saving_lib

    original_skipset = saving_lib.get_attr_skipset
    skipsets = {}

    def get_attr_skipset(obj_type):
        if obj_type not in skipsets:
            skipsets[obj_type] = original_skipset(obj_type)
        return skipsets[obj_type]

    saving_lib.get_attr_skipset = get_attr_skipset
    return True


def assign_replicated(variables, values):
    """Assign `values[i]` to `variables[i]` on every replica, without communication.

    For values that every replica computes identically (the mirror's estimates come from
    deterministic noise and replicated weights): in a replica context each replica's own
    value goes to its own copy of the variable, as the Keras optimiser applies its updates
    (`merge_call` + `extended.update`); with no strategy it is a plain assignment.
    """

    def assign(var, value):
        return var.assign(value)

    def merge_fn(strategy, variables, values):
        for var, value in zip(variables, values):
            strategy.extended.update(var, assign, args=(value,), group=False)

    tf_variables = [getattr(v, "value", v) if hasattr(v, "path") else v for v in variables]
    tf.__internal__.distribute.interim.maybe_merge_call(
        merge_fn, tf.distribute.get_strategy(), tf_variables, values
    )
