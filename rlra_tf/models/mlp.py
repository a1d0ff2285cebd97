"""Multi-layer perceptrons made of `AlignedDense` units, grouped into rec-LRA blocks."""

from rlra_tf.checks import check_positive_int
from rlra_tf.layers import AlignedDense
from rlra_tf.models.aligned_model import AlignedModel
from rlra_tf.models.blocks import UnitStack


def mlp(
    input_shape,
    hidden_units=(256, 256, 256),
    num_classes=10,
    activation="tanh",
    block_size=1,
    kernel_initializer="glorot_uniform",
    feedback_initializer=None,
    skip_initializer=None,
    name="mlp",
    **model_kwargs,
):
    """A built `AlignedModel`: flatten, hidden `AlignedDense` units, a linear head.

    Hidden units are grouped into blocks of `block_size` consecutive units from the input
    side (the last block may be shorter); the head is a block of its own. Under `rec_lra`
    (its default `feedback="adjacent"`) and `lra` every unit takes its target through `F`
    from the unit above, so the blocks do not matter; with `RecLRA(feedback="skip")` each
    block's last unit takes it from the output error through its skip synapse instead. Every
    hidden unit carries a skip synapse, so the same model also trains with `dfa`.

    Args:
        input_shape: shape of one example, e.g. `(28, 28, 1)` or `(784,)`.
        hidden_units: widths of the hidden units.
        num_classes: number of classes.
        activation: hidden activation.
        block_size: hidden units per block (matters with `feedback="skip"` only).
        kernel_initializer, feedback_initializer, skip_initializer: initialisers.
        name: model name.
        **model_kwargs: passed to `AlignedModel` (e.g. `input_mean`, `input_std`).

    Example:
        >>> model = mlp((28, 28, 1), hidden_units=(256, 256, 256), block_size=1)
    """
    num_classes = check_positive_int("num_classes", num_classes)
    block_size = check_positive_int("block_size", block_size)
    hidden_units = tuple(hidden_units)
    for w in hidden_units:
        check_positive_int("hidden_units[i]", w)
    common = dict(
        kernel_initializer=kernel_initializer,
        feedback_initializer=feedback_initializer,
        skip_initializer=skip_initializer,
    )
    units = [
        AlignedDense(w, activation=activation, skip_classes=num_classes, name=f"dense_{i}",
                     **common)
        for i, w in enumerate(hidden_units)
    ]
    blocks = [
        UnitStack(units[i:i + block_size], name=f"block_{i // block_size}")
        for i in range(0, len(units), block_size)
    ]
    head = AlignedDense(num_classes, activation=None, name="head", **common)
    blocks.append(UnitStack([head], name="head_block"))
    model = AlignedModel(
        blocks, num_classes=num_classes, flatten_inputs=len(tuple(input_shape)) > 1, name=name,
        **model_kwargs,
    )
    model.build((None,) + tuple(input_shape))
    return model
