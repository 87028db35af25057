"""Fixtures of the pruning tests (helpers live in tests/pruning/helpers.py)."""

import pytest

from tests.pruning.helpers import small_cnn, tiny_cnn


@pytest.fixture
def model():
    return small_cnn()


@pytest.fixture
def tiny():
    return tiny_cnn()
