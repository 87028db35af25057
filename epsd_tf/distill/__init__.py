"""epsd_tf.distill: self-distillation losses, methods and training (METHOD.md §4).

`losses` and `methods` are light (keras.ops only) and shared with the EPSD
scorer; `SelfDistillationModel` trains a student with a method in `model.fit`.
"""

from epsd_tf.distill.methods import CSKD, DLB, PSKD, NoDistillation, get
from epsd_tf.distill.metrics import ExpectedCalibrationError
from epsd_tf.distill.model import EpochCounter, SelfDistillationModel
