"""Fixtures of the trainer tests."""

import pytest
import tensorflow_datasets as tfds
from trainer_testing import MOCK_EXAMPLES


@pytest.fixture
def mock_fmnist(tmp_path):
    """tfds.testing.mock_data: `fashion_mnist` yields the same 64 random examples for any split."""
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        yield str(tmp_path / "tfds")
