"""JAX against TensorFlow: same weights and batches, same scores, masks and steps.

The TF side is `tests/fixtures/backend_reference.npz`, written by
`tools/make_backend_fixture.py` (kept current by tests/test_backend_fixture.py).
Every scorer (SNIP, GraSP, SynFlow, ProsPr and EPSD with DLB/CS-KD/PS-KD, full
second order and first order) agrees within float32 tolerance and gives the
same masks (ties at the cut aside); two training steps of every SD method on a
pruned network give the same losses and weights.
"""

from tests import backend_compare
from tools import make_backend_fixture


def test_jax_matches_tensorflow_reference():
    inputs, expected = make_backend_fixture.load()
    actual = make_backend_fixture.compute(inputs)
    compared = backend_compare.compare(actual, expected)
    assert any(k.startswith("score/epsd_dlb/") for k in compared)
    assert any(k.startswith("train/pskd/") for k in compared)
