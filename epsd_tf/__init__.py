"""epsd_tf: EPSD (Early Pruning with Self-Distillation, Chen et al., AAAI 2024) for Keras 3.

The two steps of EPSD, for any built Keras 3 model:

    import epsd_tf
    from epsd_tf.train import optimizers

    splits = epsd_tf.data.load("fashion_mnist")
    model = epsd_tf.models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
    method = epsd_tf.DLB()
    batches = epsd_tf.data.for_method(splits, method)
    pruned, report = epsd_tf.prune_at_init(model, batches, sparsity=0.9,
                                           scorer="epsd", method=method)
    trainer = epsd_tf.SelfDistillationModel(pruned, method, batch_size=128)
    trainer.compile(optimizer=optimizers.make_optimizer(
        learning_rate=0.1, steps_per_epoch=len(batches), epochs=2))
    trainer.fit(batches, epochs=2, validation_data=splits.validation)
    epsd_tf.export.export_all(pruned, "export/", representative_data=splits.train,
                              eval_batch=next(iter(splits.test)))

Packages: `models`, `data`, `pruning`, `distill`, `train`, `analysis`, `export`.
"""

from epsd_tf import analysis
from epsd_tf import data
from epsd_tf import distill
from epsd_tf import export
from epsd_tf import models
from epsd_tf import pruning
from epsd_tf.distill import CSKD, DLB, PSKD, NoDistillation, SelfDistillationModel
from epsd_tf.pruning import (PruneLowMagnitude, get_masks, get_prunable_weights, has_masks,
                             prune_at_init, prune_low_magnitude, set_masks, strip_masks,
                             strip_pruning)

__version__ = "0.1.0"
