"""What the export tests share: the tiny MLP, its shapes, Keras' reference outputs, errors."""

import keras
import numpy as np
import pytest

import rlra_tf
from export import common

SHAPE = (8, 8, 1)
CLASSES = 3
TOL = 1e-5


def train_tiny_mlp():
    keras.utils.set_random_seed(0)
    # With its own input normalisation, which the exported graph must keep.
    model = rlra_tf.models.mlp(SHAPE, hidden_units=(6, 5), num_classes=CLASSES,
                               input_mean=(0.4,), input_std=(0.3,))
    model.compile(optimizer=keras.optimizers.Adam(0.01), rule="rec_lra", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.random((24,) + SHAPE, dtype=np.float32)
    y = rng.integers(0, CLASSES, size=24)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 3 rec-LRA steps
    return model


def keras_reference(model, x):
    """`(logits, probabilities)` of the Keras model in inference mode, softmax in NumPy."""
    logits = np.asarray(model(x, training=False))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return logits, e / e.sum(axis=-1, keepdims=True)


def export_error(fn, *args, **kwargs):
    """The `ExportError` that `fn(*args, **kwargs)` raises."""
    with pytest.raises(common.ExportError) as info:
        fn(*args, **kwargs)
    return info.value
