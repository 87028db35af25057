"""Tests for epsd_tf.models: parameter counts, shapes, conventions, errors, saving."""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from epsd_tf import models


@functools.lru_cache(maxsize=None)
def _built(name, shape, classes, options=()):
    """Builds each configuration once per test session (building is the slow part)."""
    return models.build(name, shape, classes, **dict(options))


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# (name, input shape, classes, options, exact trainable count we build,
#  published count it is compared with, source of the published count).
PARAMETER_COUNTS = [
    # He et al. 2016, Table 6 (CIFAR, option A): 0.27 M / 0.46 M / 0.85 M.
    ("resnet20", (32, 32, 3), 10, (), 272_474, 0.27e6),
    ("resnet32", (32, 32, 3), 10, (), 466_906, 0.46e6),
    ("resnet56", (32, 32, 3), 10, (), 855_770, 0.85e6),
    # CIFAR ResNet-18 (kuangliu/pytorch-cifar, PS-KD code): 11.17 M.
    ("resnet18", (32, 32, 3), 10, (), 11_173_962, 11.17e6),
    # torchvision resnet18 (ImageNet): 11,689,512.
    ("resnet18", (224, 224, 3), 1000, (("stem", "imagenet"),), 11_689_512, 11_689_512),
    # He et al. 2016 / torchvision resnet50: 25.6 M (25,557,032).
    ("resnet50", (224, 224, 3), 1000, (), 25_557_032, 25.6e6),
    # CIFAR VGG-BN with one Linear layer (kuangliu/pytorch-cifar): 14.7 M / 20.0 M.
    ("vgg16_bn", (32, 32, 3), 10, (), 14_724_042, 14.7e6),
    ("vgg19_bn", (32, 32, 3), 10, (), 20_035_018, 20.0e6),
    # Sandler et al. 2018 / torchvision mobilenet_v2: 3.5 M (3,504,872); the 10-class
    # head gives 2.2-2.3 M on CIFAR.
    ("mobilenet_v2", (32, 32, 3), 10, (), 2_236_682, 2.25e6),
    ("mobilenet_v2", (224, 224, 3), 1000, (("stem", "imagenet"),), 3_504_872, 3.5e6),
    # Ours, no published number: pinned so changes are deliberate.
    ("small_cnn", (28, 28, 1), 10, (), 421_738, 421_738),
]


@pytest.mark.parametrize("name,shape,classes,options,exact,published", PARAMETER_COUNTS)
def test_parameter_counts_are_pinned_and_match_published(name, shape, classes, options,
                                                         exact, published):
    model = _built(name, shape, classes, options)
    assert _trainable_params(model) == exact
    assert abs(exact - published) / published < 0.02


def test_every_registered_model_has_a_pinned_count():
    assert {entry[0] for entry in PARAMETER_COUNTS} == set(models.MODELS)

# Every model at 28x28x1 (Fashion-MNIST), 32x32x3 (CIFAR) and 64x64x3 (Tiny-ImageNet),
# with its default (CIFAR) options; resnet50 and the ImageNet stems at 64x64x3.
SHAPE_CASES = [
    (name, shape, ())
    for name in sorted(models.MODELS) if name != "resnet50"
    for shape in [(28, 28, 1), (32, 32, 3), (64, 64, 3)]
] + [
    ("resnet50", (64, 64, 3), ()),
    ("resnet18", (64, 64, 3), (("stem", "imagenet"),)),
    ("mobilenet_v2", (64, 64, 3), (("stem", "imagenet"),)),
    ("mobilenet_v2", (32, 32, 1), (("width_multiplier", 0.5),)),
]


@pytest.mark.parametrize("name,shape,options", SHAPE_CASES)
def test_output_shape_and_dtype(name, shape, options):
    model = _built(name, shape, 7, options)
    assert isinstance(model, keras.Model) and model.built
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None,) + shape


@pytest.mark.parametrize("name", ["small_cnn", "resnet20", "mobilenet_v2"])
def test_forward_pass_on_grey_images_returns_float32_logits(name):
    model = _built(name, (28, 28, 1), 10)
    logits = model(np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32"),
                   training=False)
    assert tuple(logits.shape) == (2, 10)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(logits)))


def test_layer_names_are_stable_and_readable():
    names = {layer.name for layer in _built("resnet20", (32, 32, 3), 10).layers}
    for expected in ["stem_conv", "stage1_block0_conv1", "stage1_block0_bn1",
                     "stage2_block0_shortcut_conv", "stage3_block2_conv2", "pool", "logits"]:
        assert expected in names
    vgg_names = {layer.name for layer in _built("vgg16_bn", (32, 32, 3), 10).layers}
    assert {"block1_conv1", "block5_conv3", "block5_pool", "logits"} <= vgg_names
    mobilenet_names = {layer.name for layer in _built("mobilenet_v2", (32, 32, 3), 10).layers}
    assert {"stage1_block0_depthwise", "stage2_block1_expand_conv", "head_conv"} <= mobilenet_names


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "vgg16_bn", "mobilenet_v2", "small_cnn"])
def test_conventions_he_normal_no_bias_before_bn_no_regularizers(name):
    model = _built(name, (32, 32, 3), 10)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    depthwise = [l for l in model.layers if isinstance(l, keras.layers.DepthwiseConv2D)]
    assert convs
    for layer in convs:
        assert isinstance(layer.kernel_initializer, keras.initializers.HeNormal), layer.name
        assert not layer.use_bias, layer.name
        assert layer.kernel_regularizer is None
    for layer in depthwise:
        assert isinstance(layer.depthwise_initializer, keras.initializers.HeNormal)
    for layer in model.layers:
        assert getattr(layer, "kernel_regularizer", None) is None
        assert getattr(layer, "bias_regularizer", None) is None
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.name == "logits"
    assert last.activation is keras.activations.linear
    assert last.dtype_policy.name == "float32"


def test_mixed_precision_keeps_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build("small_cnn", (28, 28, 1), 10)
        logits = model(np.zeros((2, 28, 28, 1), "float32"))
        assert model.get_layer("block1_conv").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_imagenet_stem_downsamples_more_than_cifar_stem():
    cifar = _built("resnet18", (64, 64, 3), 10)
    imagenet = _built("resnet18", (64, 64, 3), 10, (("stem", "imagenet"),))
    assert cifar.get_layer("stage4_block1_out").output.shape[1:3] == (8, 8)
    assert imagenet.get_layer("stage4_block1_out").output.shape[1:3] == (2, 2)


def test_width_multiplier_shrinks_mobilenet():
    full = _trainable_params(_built("mobilenet_v2", (32, 32, 3), 10))
    half = _trainable_params(models.build("mobilenet_v2", (32, 32, 3), 10, width_multiplier=0.5))
    assert half < full / 2


@pytest.mark.parametrize("call,message", [
    (lambda: models.build("resnet99", (32, 32, 3), 10), "valid names: mobilenet_v2, resnet18"),
    (lambda: models.build("resnet20", (32, 32), 10), "rank 3"),
    (lambda: models.build("resnet20", (1, 32, 32, 3), 10), "rank 3"),
    (lambda: models.build("resnet20", (32, 0, 3), 10), "positive ints"),
    (lambda: models.build("resnet50", (16, 16, 3), 10), "must be >= 17"),
    (lambda: models.build("vgg16_bn", (8, 8, 3), 10), "too small"),
    (lambda: models.build("resnet18", (12, 12, 3), 10, stem="imagenet"), "must be >= 17"),
    (lambda: models.build("resnet20", (32, 32, 3), 1), "num_classes must be an int >= 2, got 1"),
    (lambda: models.build("small_cnn", (28, 28, 1), 10.0), "num_classes"),
    (lambda: models.build("resnet18", (32, 32, 3), 10, stem="tiny"), "'cifar' or 'imagenet'"),
    (lambda: models.build("resnet20", (32, 32, 3), 10, stem="cifar"), "valid options: none"),
    (lambda: models.build("small_cnn", (28, 28, 1), 10, width=2), "valid options: ['filters'"),
    (lambda: models.build("mobilenet_v2", (32, 32, 3), 10, width_multiplier=0), "> 0"),
    (lambda: models.build("small_cnn", (28, 28, 1), 10, dense_units=0), "dense_units"),
])
def test_bad_arguments_raise_value_error_with_message(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_get_config_from_config_round_trip():
    model = models.build("small_cnn", (28, 28, 1), 10)
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_keras_save_and_load(tmp_path):
    model = models.build("resnet20", (16, 16, 1), 4)
    path = str(tmp_path / "resnet20.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.name == "resnet20"
