"""`SelfDistillationModel`: self-distillation training inside `model.fit`.

Step 2 of EPSD (Chen et al., AAAI 2024; METHOD.md §4): train a (possibly
pruned) student with DLB, CS-KD, PS-KD or plain CE. The wrapper overrides
`train_step` and `test_step`; the loss is the method's `objective`
(`methods.py`, `keras.ops`, the same function the EPSD scorer differentiates),
and where its carry lives between steps is `steps.py`. Everything here is
`keras.ops` on variables; the differentiation is the backend seam:
`train_step_tf.py` (`tf.GradientTape`, Keras' TF trainer calls
`train_step(data)`) and `train_step_jax.py` (`jax.value_and_grad` over the
stateless state, Keras' JAX trainer calls `train_step(state, data)`). Masks,
mixed precision (Keras' `LossScaleOptimizer`), XLA and `tf.distribute` work
through the standard Keras machinery.

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

import sys

import keras
from keras import ops

from epsd_tf.distill import batch_kinds, distribution, losses
from epsd_tf.distill import methods as methods_lib
from epsd_tf.distill import metrics as metrics_lib
from epsd_tf.distill import steps as steps_lib

if keras.backend.backend() == "jax":
    from epsd_tf.distill import train_step_jax as backend_step
else:
    from epsd_tf.distill import train_step_tf as backend_step


def _is_tf_dataset(x) -> bool:
    """Whether `x` is a `tf.data.Dataset` (without importing TensorFlow)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.data.Dataset)


def _image_shape(student: keras.Model):
    """`student`'s per-example input shape, or None when it has no fixed inputs."""
    try:
        return tuple(student.input_shape[1:])
    except (AttributeError, ValueError):
        return None


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
        # Replicas of the strategy the model is built in (tf.distribute; 1 on JAX).
        self.replicas = distribution.num_replicas()
        self.method_step = steps_lib.make_step(
            method, num_classes=num_classes, batch_size=batch_size,
            num_examples=num_examples, epochs=epochs,
            image_shape=_image_shape(student) if image_shape is None else image_shape,
            replicas=self.replicas)
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
        training, that a `tf.data.Dataset` or `keras.utils.PyDataset` (the
        TF-free input path) yields the features the method needs with a batch
        size the method and the replicas can use, and that PS-KD's `epochs`
        covers the run.
        """
        batch = examples_per_epoch = None
        is_dataset = _is_tf_dataset(x) or isinstance(x, keras.utils.PyDataset)
        if _is_tf_dataset(x):
            batch, examples_per_epoch = self.check_dataset(x)
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself
        elif isinstance(x, keras.utils.PyDataset):
            batch, examples_per_epoch = self.check_py_dataset(x)
            kwargs.setdefault("shuffle", False)  # it orders its own batches
        self.method_step.check_fit(
            x, epochs, is_dataset=is_dataset, batch=batch,
            examples_per_epoch=examples_per_epoch, replicas=self.replicas)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, EpochCounter) for c in callbacks):
            callbacks.append(EpochCounter())
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           callbacks=callbacks, **kwargs)

    def _check_batch_size(self, batch) -> None:
        replicas = self.replicas
        if batch is not None and batch % replicas:
            raise ValueError(f"batch size {batch} does not divide over {replicas} replicas; "
                             f"use a multiple of {replicas}")

    def check_dataset(self, dataset) -> tuple[int | None, int | None]:
        """Raises `ValueError` unless a `tf.data.Dataset` yields trainable batches.

        Returns `(batch size, examples per epoch)`, each None when not static.
        """
        spec = dataset.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(f"Training batches must be (features, labels) pairs; got "
                             f"element_spec {spec}")
        features = batch_kinds.features(self.method, spec[0])
        batch = features["image"].shape[0]
        self._check_batch_size(batch)
        batches = int(dataset.cardinality())
        return batch, (batch * batches if batch is not None and batches >= 0 else None)

    def check_py_dataset(self, dataset: keras.utils.PyDataset) -> tuple[int, int | None]:
        """Like `check_dataset` for a `keras.utils.PyDataset` (reads its first batch).

        Returns `(batch size, examples per epoch)`; the latter None for an
        infinite dataset.
        """
        first = dataset[0]
        if not isinstance(first, tuple) or len(first) != 2:
            raise ValueError(f"Training batches must be (features, labels) pairs; got "
                             f"{type(first).__name__}")
        features = batch_kinds.features(self.method, first[0])
        # In a multi-process JAX program each process feeds its share of the batch.
        batch = int(features["image"].shape[0]) * distribution.input_processes()
        self._check_batch_size(batch)
        batches = dataset.num_batches
        return batch, (batch * batches if batches is not None else None)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' TF-trainer build hook (see `train_step_tf.maybe_symbolic_build`)."""
        return backend_step.maybe_symbolic_build(self, iterator, data_batch)

    # ------------------------------------------------------------------ steps

    def train_step(self, *args):
        """One SD step: `train_step(data)` on TF, `train_step(state, data)` on JAX.

        The backend seam (`train_step_tf.py` / `train_step_jax.py`) differentiates
        `sd_loss` and applies the update; everything else is here.
        """
        return backend_step.train_step(self, *args)

    def test_step(self, *args):
        """Evaluation: `test_step(data)` on TF, `test_step(state, data)` on JAX."""
        return backend_step.test_step(self, *args)

    def unpack_batch(self, data) -> tuple[dict, object]:
        """`(features, int32 labels [b])` of a training batch, checked for the method."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("SelfDistillationModel does not support sample weights")
        features = batch_kinds.features(self.method, x)
        self.method_step.check_batch(features)
        return features, ops.cast(ops.reshape(y, (-1,)), "int32")

    def sd_loss(self, features: dict, labels):
        """The method's loss on a batch, reading the carry from the method state.

        Runs the student in training mode (stateful: BatchNorm statistics are
        assigned as usual). Returns `(scaled, parts)`: `scaled` is the loss to
        differentiate (divided over replicas, times the mixed-precision loss
        scale); `parts = (loss, ce_loss, sd_loss, logits, new_carry)`, where
        `new_carry` goes to `method_step.write_carry` after the update.
        """
        carry = self.method_step.read_carry(features)
        forward = backend_step.training_forward(self.student)  # JAX: with a paired call
        ce, sd, logits, new_carry = self.method.objective(forward, features, labels, carry)
        ce_loss, sd_loss = ops.mean(ce), ops.mean(sd)
        loss = ce_loss + sd_loss
        if self.student.losses:  # e.g. kernel regularisers
            loss = loss + ops.sum(ops.stack(self.student.losses))
        scaled = distribution.scale_loss_for_distribution(loss)
        if self.optimizer is not None:
            scaled = self.optimizer.scale_loss(scaled)  # mixed-precision loss scale
        return scaled, (loss, ce_loss, sd_loss, logits, new_carry)

    def finish_train_step(self, features: dict, labels, parts) -> dict:
        """After the update: stores the new carry, updates the metrics, returns logs."""
        loss, ce_loss, sd_loss, logits, new_carry = parts
        self.method_step.write_carry(features, new_carry)
        count = ops.shape(labels)[0]
        values = {"loss": loss, "ce_loss": ce_loss, "sd_loss": sd_loss}
        for name, tracker in self._train_trackers.items():
            tracker.update_state(values[name], sample_weight=count)
        return self._results(features, labels, logits, self._train_trackers,
                             self._eval_trackers)

    def evaluate_batch(self, data) -> dict:
        """The (stateful, backend-neutral) body of `test_step`."""
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
