"""Comparison rules of the cross-backend reference (tools/make_backend_fixture.py).

Backend-neutral (numpy only): used by the JAX test against the TF fixture and
by the TF test that checks the fixture is up to date.
"""

import numpy as np

# float32 tolerance: relative to each array's largest magnitude (scores sum to
# 1 over a network, so small entries are compared on the array's scale).
RTOL = 2e-4


def assert_close(actual, expected, key: str, rtol: float = RTOL) -> None:
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=key)


def assert_masks_equal_ties_aside(actual_masks: dict, expected_masks: dict,
                                  expected_scores: dict, keep: str, key: str,
                                  rtol: float = RTOL) -> None:
    """Masks equal except where the expected score is within `rtol` of the cut."""
    names = sorted(expected_masks)
    assert sorted(actual_masks) == names, key
    scores = np.concatenate([np.ravel(expected_scores[n]) for n in names]).astype(np.float64)
    expected = np.concatenate([np.ravel(expected_masks[n]) for n in names])
    actual = np.concatenate([np.ravel(actual_masks[n]) for n in names])
    kept = scores[expected == 1]
    cut = kept.min() if keep == "highest" else kept.max()
    scale = max(float(np.max(np.abs(scores))), 1e-12)
    differ = actual != expected
    near_cut = np.abs(scores - cut) <= rtol * scale
    assert not np.any(differ & ~near_cut), (
        f"{key}: {int(np.sum(differ & ~near_cut))} mask entries differ away from the cut")


def compare(actual: dict, expected: dict) -> list[str]:
    """Asserts every fixture value (masks per scorer case, over all layers)."""
    assert sorted(actual) == sorted(expected), set(actual) ^ set(expected)
    cases = sorted({key.split("/")[1] for key in expected if key.startswith("mask/")})
    for case in cases:
        prefix = f"mask/{case}/"
        names = [key[len(prefix):] for key in expected if key.startswith(prefix)]
        assert_masks_equal_ties_aside(
            {n: actual[prefix + n] for n in names}, {n: expected[prefix + n] for n in names},
            {n: expected[f"score/{case}/{n}"] for n in names},
            "lowest" if case == "grasp" else "highest", prefix)
    for key in sorted(expected):
        if not key.startswith("mask/"):
            assert_close(actual[key], expected[key], key)
    return sorted(expected)
