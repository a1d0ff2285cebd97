"""The tiny MLP the export tests share: trained once per session, saved as `.keras`."""

import keras
import numpy as np
import pytest

import rlra_tf

SHAPE = (8, 8, 1)
CLASSES = 3


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`(model, path)`: a tiny MLP (8x8x1 -> 6 -> 5 -> 3) trained 3 steps with rec_lra, saved
    as .keras. Shared read-only by the export tests."""
    model = train_tiny_mlp()
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    model.save(path)
    return model, path
