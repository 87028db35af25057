"""Fixtures of the data tests (helpers live in tests/data/helpers.py)."""

import numpy as np
import pytest

from tests.data.helpers import id_images


@pytest.fixture
def id_npz(tmp_path):
    """An .npz whose train image i has value i + 1 and label i % 3 (60 examples)."""
    path = str(tmp_path / "ids.npz")
    np.savez(path, x_train=id_images(60), y_train=np.arange(60) % 3,
             x_test=id_images(12), y_test=np.arange(12) % 3)
    return path
