"""One process of the deterministic-resume test: `run` a tiny DLB experiment.

    python determinism_worker.py WORKDIR [KILL_EPOCH KILL_BATCH]

Op determinism on (`keras.utils.set_random_seed` +
`tf.config.experimental.enable_op_determinism` on TensorFlow; XLA on JAX's CPU
is deterministic as it is; tests/jax/test_determinism_jax.py runs it there). With a kill point, a callback
raises after that training batch (a crash mid-epoch); the backup every 2 steps
is what a re-run resumes from.
"""

import sys

import keras

from epsd_tf import data, models, pruning
from epsd_tf.train import callbacks as callbacks_lib
from epsd_tf.train import experiment


class Kill(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.point, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.point:
            raise RuntimeError(f"killed after epoch {self.epoch} batch {batch}")


def main(workdir, kill=None):
    keras.utils.set_random_seed(0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if kill:
        standard = callbacks_lib.standard_callbacks
        callbacks_lib.standard_callbacks = lambda *a, **k: standard(*a, **k) + [Kill(*kill)]
    experiment.run(
        workdir,
        load_data=lambda: data.load("synthetic", source="synthetic", batch_size=16, seed=0),
        build_model=lambda input_shape, num_classes: models.build(
            "small_cnn", input_shape, num_classes),
        make_optimizer=lambda **_: keras.optimizers.SGD(0.02, momentum=0.9),
        method="dlb",  # DLB carries the previous batch's soft labels across steps
        prune=lambda model, batches, method, seed: pruning.prune_at_init(
            model, None, 0.8, scorer="magnitude", seed=seed),
        epochs=3, backup_every_steps=2, seed=0, verbose=0)


if __name__ == "__main__":
    main(sys.argv[1], tuple(int(v) for v in sys.argv[2:4]) if len(sys.argv) > 2 else None)
