"""Test set-up: keep libraries out of $HOME, two logical CPUs, quiet TensorFlow logs."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="rlra_tf_tests_")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_HOME"] = os.path.join(_TMP, "keras")
os.environ["XDG_CACHE_HOME"] = os.path.join(_TMP, "cache")
os.environ["TFDS_DATA_DIR"] = os.path.join(_TMP, "tensorflow_datasets")
os.environ["MPLBACKEND"] = "Agg"

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy can be tested on one machine. This must happen
# before TensorFlow initialises its devices, hence at import time of the conftest.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

_MIRRORED = None


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Several MirroredStrategy objects in one process reuse collective instance keys and fail
    with "Shape mismatch in the collective instance" (BUILD_NOTES.md), so tests share one.
    """
    global _MIRRORED
    if _MIRRORED is None:
        _MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return _MIRRORED


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    """A tfds data_dir with Fashion-MNIST prepared from the local files (about 10 to 35 s).

    Shared by the data and trainer tests, so the files are prepared once per session.
    """
    from rlra_tf import data

    # `make test` installs Debian's dataset-fashion-mnist first, so this must work (no skip).
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    data.load("fashion_mnist", "test", 10_000, data_dir=data_dir)
    return data_dir
