"""epsd_tf.models: plain Keras 3 image classifiers (no masks, no gin).

`build(name, input_shape, num_classes, **options)` returns a built Functional
model that outputs float32 logits; `MODELS` maps names to builders. Shared
conventions (He-normal conv init, bias-free convs before BN, PyTorch BN
momentum/epsilon, no weight decay in the model) are in `blocks.py`.
"""

from epsd_tf.models.mobilenet import mobilenet_v2
from epsd_tf.models.registry import MODELS, build
from epsd_tf.models.resnet import resnet18, resnet20, resnet32, resnet50, resnet56
from epsd_tf.models.small_cnn import small_cnn
from epsd_tf.models.vgg import vgg16_bn, vgg19_bn

__all__ = [
    "MODELS",
    "build",
    "mobilenet_v2",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet50",
    "resnet56",
    "small_cnn",
    "vgg16_bn",
    "vgg19_bn",
]
