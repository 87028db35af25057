"""`SelfDistillationModel`: self-distillation training inside `model.fit`.

Step 2 of EPSD (Chen et al., AAAI 2024; METHOD.md §4): train a (possibly
pruned) student with DLB, CS-KD, PS-KD or plain CE. The wrapper overrides
`train_step` (a `tf.GradientTape`, the TF seam) and `test_step`; the loss math
is `keras.ops` in `methods.py`/`losses.py`, the per-method teacher and state in
`steps.py`. Masks, mixed precision (Keras' `LossScaleOptimizer`), XLA and
`tf.distribute` work through the standard Keras machinery.

Usage:
    trainer = SelfDistillationModel(student, methods.DLB(), batch_size=64)
    trainer.compile(optimizer=epsd_tf.optim.make_recipe_optimizer("dlb", ...))
    trainer.fit(epsd_tf.data.for_method(splits, trainer.method), epochs=240,
                validation_data=splits.validation)
    trainer.student.save("student.keras")

Metrics: training logs `loss` (= `ce_loss + sd_loss` + regularisation),
`ce_loss`, `sd_loss`, `accuracy` and, with more than 10 classes,
`top5_accuracy`; evaluation logs `loss` (= `nll`), `nll`, `accuracy`,
`top5_accuracy` and `ece` (15 bins).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging
from keras import ops

from epsd_tf.distill import distribution
from epsd_tf.distill import losses
from epsd_tf.distill import methods as methods_lib
from epsd_tf.distill import metrics as metrics_lib
from epsd_tf.distill import steps as steps_lib


class EpochCounter(keras.callbacks.Callback):
    """Writes the epoch index into the method state at each epoch start.

    `SelfDistillationModel.fit` attaches it, so PS-KD's `a_t` always follows the
    epoch that Keras runs (also after `BackupAndRestore` resumes mid-run).
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.method_step.epoch.assign(epoch)


class SelfDistillationModel(keras.Model):
    """Trains `student` with a self-distillation method.

    Args:
        student: a built Keras model mapping images `[B, H, W, C]` to logits
            `[B, num_classes]` (masked/pruned models included).
        method: a `methods.SelfDistillationMethod`, a name ("dlb", "cskd",
            "pskd", "none") or None ("none").
        batch_size: global training batch size; required for DLB (its stored
            previous batch has this size divided by the replica count).
        num_examples: training-set size; required for PS-KD (table rows).
        epochs: training length; required for PS-KD (`a_t` schedule).
        image_shape: `(H, W, C)`; default `student.input_shape[1:]`.
        ece_bins: bins of the expected calibration error (default 15).
        **kwargs: passed to `keras.Model`.

    Create it inside `strategy.scope()` when training with a `tf.distribute`
    strategy (as for any Keras model).
    """

    def __init__(self, student: keras.Model, method=None, *, batch_size: int | None = None,
                 num_examples: int | None = None, epochs: int | None = None,
                 image_shape=None, ece_bins: int = 15, **kwargs):
        super().__init__(**kwargs)
        method = methods_lib.get(method)
        if not student.built:
            raise ValueError(f"student {student.name!r} must be built (call it on a batch "
                             f"or give it an Input)")
        num_classes = int(student.output_shape[-1])
        self.student = student
        self.method = method
        self.num_classes = num_classes
        self.method_step = self._make_step(method, batch_size, num_examples, epochs,
                                           image_shape, num_classes)
        self._train_trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            "ce_loss": keras.metrics.Mean(name="ce_loss"),
            "sd_loss": keras.metrics.Mean(name="sd_loss"),
        }
        self._eval_trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            "nll": keras.metrics.Mean(name="nll"),
            "ece": metrics_lib.ExpectedCalibrationError(ece_bins, name="ece"),
        }
        self._accuracy_trackers = {
            "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}
        if num_classes > 10:
            self._accuracy_trackers["top5_accuracy"] = (
                keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
        self.built = True

    def _make_step(self, method, batch_size, num_examples, epochs, image_shape,
                   num_classes) -> steps_lib.MethodStep:
        if isinstance(method, methods_lib.DLB):
            replicas = self.distribute_strategy.num_replicas_in_sync
            if batch_size is None or int(batch_size) <= 0:
                raise ValueError(f"DLB needs batch_size > 0 (its stored previous batch "
                                 f"has that size), got batch_size={batch_size!r}")
            if batch_size % replicas:
                raise ValueError(f"DLB batch_size={batch_size} does not divide over "
                                 f"{replicas} replicas; use a multiple of {replicas}")
            if image_shape is None:
                image_shape = self.student.input_shape[1:]
            image_shape = tuple(image_shape)
            if any(d is None for d in image_shape):
                raise ValueError(f"DLB needs a fully known image_shape, got {image_shape}; "
                                 f"pass image_shape=(H, W, C)")
            return steps_lib.DLBStep(method, batch_size // replicas, image_shape,
                                     num_classes)
        if isinstance(method, methods_lib.PSKD):
            if num_examples is None or int(num_examples) <= 0:
                raise ValueError(f"PS-KD needs num_examples > 0 (rows of its prediction "
                                 f"table, example ids 0..num_examples-1), got "
                                 f"num_examples={num_examples!r}")
            if epochs is None or int(epochs) <= 0:
                raise ValueError(f"PS-KD needs epochs > 0 (its a_t schedule), got "
                                 f"epochs={epochs!r}")
            return steps_lib.PSKDStep(method, num_examples, num_classes, epochs)
        if isinstance(method, methods_lib.CSKD):
            return steps_lib.CSKDStep(method)
        if isinstance(method, methods_lib.NoDistillation):
            return steps_lib.MethodStep(method)
        raise ValueError(f"Unsupported method {method!r}; valid: {sorted(methods_lib.METHODS)}")

    @property
    def epoch(self) -> keras.Variable:
        """The epoch counter the method state uses (int32 variable)."""
        return self.method_step.epoch

    def call(self, inputs, training=False):
        """The student's logits on `inputs` (an image batch or a feature dict)."""
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.student(images, training=training)

    # ------------------------------------------------------------------ compile/fit

    def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` without `loss` (the method defines it).

        `metrics` are extra Keras metrics of `(labels, student logits)`; the
        built-in ones (see module docstring) are always reported.
        """
        if loss is not None:
            raise ValueError(f"SelfDistillationModel computes the loss of its method "
                             f"{self.method.name!r}; compile without loss= (got {loss!r})")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            callbacks=None, **kwargs):
        """`keras.Model.fit` that checks the batches first and keeps state in sync.

        Attaches an `EpochCounter` (unless one is given). Checks, before any
        training, that a `tf.data.Dataset` yields the features the method needs
        with a batch size the method and the replicas can use, and that PS-KD's
        `epochs` covers the run.
        """
        if isinstance(x, tf.data.Dataset):
            self.check_dataset(x)
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself
        elif isinstance(self.method_step, steps_lib.DLBStep):
            raise ValueError(f"DLB needs a tf.data.Dataset of fixed-size batches "
                             f"(epsd_tf.data.for_method), got {type(x).__name__}")
        if isinstance(self.method_step, steps_lib.PSKDStep):
            if epochs > self.method_step.epochs:
                raise ValueError(f"fit(epochs={epochs}) runs past the PS-KD schedule of "
                                 f"epochs={self.method_step.epochs} (a_t would exceed "
                                 f"alpha); build the model with epochs={epochs}")
            if epochs < self.method_step.epochs:
                logging.warning("fit(epochs=%d) stops before the PS-KD schedule's %d "
                                "epochs; a_t will not reach alpha", epochs,
                                self.method_step.epochs)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, EpochCounter) for c in callbacks):
            callbacks.append(EpochCounter())
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           callbacks=callbacks, **kwargs)

    def check_dataset(self, dataset: tf.data.Dataset) -> None:
        """Raises `ValueError` unless `dataset` yields batches this method can train on."""
        spec = dataset.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(f"Training batches must be (features, labels) pairs; got "
                             f"element_spec {spec}")
        features = self.method_step.features(spec[0])
        batch = features["image"].shape[0]
        replicas = self.distribute_strategy.num_replicas_in_sync
        if batch is not None and batch % replicas:
            raise ValueError(f"batch size {batch} does not divide over {replicas} replicas; "
                             f"use a multiple of {replicas}")
        if isinstance(self.method_step, steps_lib.DLBStep):
            expected = self.method_step.batch_size * replicas
            if batch != expected:
                raise ValueError(f"DLB was built with batch_size={expected} but the dataset "
                                 f"yields batches of {batch} (None = not fixed: batch with "
                                 f"drop_remainder=True)")

    # ------------------------------------------------------------------ steps

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("SelfDistillationModel does not support sample weights")
        step = self.method_step
        features = step.features(x)
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        teacher = step.teacher(self.student, features, training=True)
        with tf.GradientTape() as tape:
            logits, ce, sd = step.compute_losses(self.student, features, labels, teacher,
                                                 training=True)
            ce_loss, sd_loss = ops.mean(ce), ops.mean(sd)
            loss = ce_loss + sd_loss
            if self.student.losses:  # e.g. kernel regularisers
                loss = loss + ops.sum(ops.stack(self.student.losses))
            scaled = distribution.scale_loss_for_distribution(loss)
            if self.optimizer is not None:
                scaled = self.optimizer.scale_loss(scaled)  # mixed-precision loss scale
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        step.update_state(features, labels, logits)

        count = ops.shape(labels)[0]
        values = {"loss": loss, "ce_loss": ce_loss, "sd_loss": sd_loss}
        for name, tracker in self._train_trackers.items():
            tracker.update_state(values[name], sample_weight=count)
        return self._results(features, labels, logits, self._train_trackers,
                             self._eval_trackers)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("SelfDistillationModel does not support sample weights")
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        logits = self(x, training=False)
        nll = losses.cross_entropy(labels, logits)
        count = ops.shape(labels)[0]
        self._eval_trackers["loss"].update_state(ops.mean(nll), sample_weight=count)
        self._eval_trackers["nll"].update_state(ops.mean(nll), sample_weight=count)
        self._eval_trackers["ece"].update_state(labels, logits)
        return self._results(x, labels, logits, self._eval_trackers, self._train_trackers)

    def _results(self, x, labels, logits, own: dict, other: dict) -> dict:
        """Updates accuracy and compiled metrics; returns this phase's results."""
        logits = ops.cast(logits, "float32")  # float16 under mixed precision
        for tracker in self._accuracy_trackers.values():
            tracker.update_state(labels, logits)
        results = self.compute_metrics(x, labels, logits)  # compiled extra metrics
        results = {k: v for k, v in results.items() if k not in other or k in own}
        results.update({k: m.result() for k, m in own.items()})
        results.update({k: m.result() for k, m in self._accuracy_trackers.items()})
        return results
