"""The cross-backend reference is current: TF recomputes it and gets the same values.

tests/jax/test_backend_equivalence.py compares JAX against this fixture; this
test fails when the TensorFlow side changes without re-running
`python -m tools.make_backend_fixture` (repository root).
"""

import keras
import pytest

from tests import backend_compare
from tools import make_backend_fixture

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the reference is TensorFlow's")


def test_fixture_is_current_with_the_tensorflow_code():
    inputs, expected = make_backend_fixture.load()
    backend_compare.compare(make_backend_fixture.compute(inputs), expected)


def test_fixture_inputs_are_the_scripts():
    inputs, _ = make_backend_fixture.load()
    fresh = make_backend_fixture.reference_inputs()
    for key in ("image", "image_view1", "pair_image", "label", "table"):
        backend_compare.assert_close(inputs[key], fresh[key], key, rtol=0)
    for i, (a, b) in enumerate(zip(inputs["weights"], fresh["weights"])):
        backend_compare.assert_close(a, b, f"weight{i}", rtol=0)
