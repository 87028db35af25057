"""Fixtures of the export tests (helpers live in tests/export/helpers.py)."""

import keras
import pytest

from tests.export.helpers import synthetic_data, tiny_cnn, train_sparse


@pytest.fixture(scope="session")
def data():
    return {"train": synthetic_data(384, seed=1), "test": synthetic_data(128, seed=2)}


@pytest.fixture(scope="session")
def trained(data):
    """(model, masks): tiny CNN at 90 % random sparsity trained with fixed masks."""
    keras.utils.set_random_seed(0)
    model = tiny_cnn()
    masks = train_sparse(model, *data["train"])
    return model, masks
