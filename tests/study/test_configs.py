"""The study's gin configs parse for every family, on either backend."""

import gin
import pytest

from epsd_tf.study import plan
from epsd_tf.train import config

pytestmark = pytest.mark.jax


@pytest.mark.parametrize("fam", plan.FAMILIES, ids=lambda f: f.name)
def test_every_family_parses_to_the_full_length_study(fam):
    config.parse(fam.gin_files, fam.bindings)
    assert gin.query_parameter("load.max_train_examples") is None  # all 54 000 images
    assert gin.query_parameter("load.validation_fraction") == 0.1
    assert gin.query_parameter("load.pipeline") == "auto"  # numpy batches on JAX
    assert gin.query_parameter("run.epochs") == plan.EPOCHS
    assert gin.query_parameter("prune_at_init.score_dtype") == "float64"
    assert gin.query_parameter("run.mean_jsv_examples") > 0
    landscape = gin.query_parameter("run.landscape")
    assert (landscape is not None) == ("gin/study_landscape.gin" in fam.gin_files)
    assert gin.query_parameter("build.name") == ("vgg16_bn" if fam is plan.VGG16 else "resnet20")


def test_the_second_network_takes_fashion_mnist_unpadded():
    from epsd_tf import models
    model = models.build("vgg16_bn", (28, 28, 1), 10)
    assert model.output_shape == (None, 10)
