"""Labels and sample weights as `AlignedModel` takes them: class ids or one-hot rows, checked
against the model's `num_classes`, and one weight per example."""

import tensorflow as tf


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


def class_labels(y, num_classes, check_values=True):
    """Class ids or one-hot labels `y` as float32 one-hot rows `(batch, num_classes)`.

    Class ids: shape `(batch,)` or `(batch, 1)`, integers or whole floats in
    `[0, num_classes)` (asserted with `checked_class_ids` unless `check_values` is
    False). One-hot: shape `(batch, num_classes)`, any numeric dtype. Any other shape is
    a `ValueError` naming it and `num_classes`. No smoothing (`one_hot_labels` smooths).
    """
    y = tf.convert_to_tensor(y)
    k = num_classes
    rank, width = y.shape.rank, (y.shape[-1] if y.shape.rank else None)
    if rank is None:  # a step retraced for labels of another rank (Keras relaxes shapes)
        return _labels_of_unknown_rank(y, k, check_values)
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


def _labels_of_unknown_rank(y, num_classes, check_values):
    """`class_labels` decided at run time, for labels whose rank is not known."""
    k = num_classes
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


def smoothed(labels, num_classes, label_smoothing):
    """One-hot `labels` with `label_smoothing` applied (unchanged when it is 0)."""
    if not label_smoothing:
        return labels
    return labels * (1.0 - label_smoothing) + label_smoothing / num_classes


def one_hot_labels(y, num_classes, label_smoothing=0.0):
    """Class ids or one-hot labels to float32 one-hot, smoothed if asked (checked as
    `class_labels`): what the rules take as `labels`."""
    return smoothed(class_labels(y, num_classes), num_classes, label_smoothing)


def step_labels(x, y, num_classes, check_values):
    """`class_labels` for a step: value checks where the step can assert (`check_values`),
    and the batch sizes of `x` and `y` compared."""
    labels = class_labels(y, num_classes, check_values=check_values)
    nx = tf.TensorShape(getattr(x, "shape", None))
    if nx.rank and nx[0] is not None and labels.shape[0] is not None \
            and nx[0] != labels.shape[0]:
        raise ValueError(
            f"Expected as many labels as inputs, received: {nx[0]} inputs and "
            f"{labels.shape[0]} labels"
        )
    return labels


def sample_weights(sample_weight, labels, units, rule):
    """`sample_weight` as float32 of shape `(batch,)`, or None.

    `units` (the model's units) and `rule` (its learning rule): sample weights are refused
    with synchronised BatchNorm under a local rule.
    """
    if sample_weight is None:
        return None
    synchronized = [u.name for u in units if u.synchronized_norm]
    if synchronized and not rule.uses_backprop:
        raise ValueError(
            "Sample and class weights are not supported with synchronised BatchNorm "
            f"(norm='sync_batch', units {synchronized[:3]}) under rule "
            f"{rule.name!r}; use norm='batch' or train without weights"
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
