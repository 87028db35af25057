"""`score_dtype="float64"` on JAX: x64 is on for scoring only (autodiff.precision)."""

import jax.numpy as jnp
import numpy as np
import pytest

from epsd_tf.pruning import scorers
from tests.jax import helpers


@pytest.mark.parametrize("scorer, settings", [("epsd", {"method": "dlb", "inner_steps": 1}),
                                              ("grasp", {})])
def test_float64_scores_on_jax_are_float64_and_close_to_float32(scorer, settings):
    model = helpers.conv_student()
    images, views, labels = helpers.arrays(8)
    batches = [({"image": images[i:i + 4], "image_view1": views[i:i + 4]}, labels[i:i + 4])
               for i in (0, 4)]
    if scorer == "grasp":
        batches = [(x["image"], y) for x, y in batches]
    single = scorers.score(model, batches, scorer, **settings)
    double = scorers.score(model, batches, scorer, score_dtype="float64", **settings)
    for name, value in double.items():
        assert value.dtype == np.float64, name
        scale = np.abs(value).max()
        np.testing.assert_allclose(value, single[name], atol=1e-5 * scale, rtol=1e-4)
    with pytest.warns(UserWarning, match="float64"):  # x64 is off again after scoring
        assert jnp.ones(1, "float64").dtype == jnp.float32
