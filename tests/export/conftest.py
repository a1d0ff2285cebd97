"""The tiny MLP the export tests share: trained once per session, saved as `.keras`."""

import pytest
from export_testing import train_tiny_mlp


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`(model, path)`: a tiny MLP (8x8x1 -> 6 -> 5 -> 3) trained 3 steps with rec_lra, saved
    as .keras. Shared read-only by the export tests."""
    model = train_tiny_mlp()
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    model.save(path)
    return model, path
