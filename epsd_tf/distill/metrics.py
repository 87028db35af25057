"""Evaluation metrics of self-distillation training.

`ExpectedCalibrationError` follows Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017 (equal-width confidence bins, 15 by default), the
calibration measure the SD papers (CS-KD, PS-KD) report.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="epsd_tf")
class ExpectedCalibrationError(keras.metrics.Metric):
    """`ECE = Σ_b (n_b / N) · |accuracy_b - confidence_b|` over confidence bins.

    Args:
        num_bins: equal-width bins of the top-1 softmax confidence in [0, 1].
        from_logits: whether `update_state` receives logits (else probabilities).
        name: metric name.
    """

    def __init__(self, num_bins: int = 15, from_logits: bool = True,
                 name: str = "ece", **kwargs):
        super().__init__(name=name, **kwargs)
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins!r}")
        self.num_bins = int(num_bins)
        self.from_logits = bool(from_logits)
        # Per-bin sums; "sum" aggregation so replicas add up under tf.distribute.
        self.counts = self.add_variable((self.num_bins,), "zeros", name="counts",
                                        aggregation="sum")
        self.confidence_sums = self.add_variable((self.num_bins,), "zeros",
                                                 name="confidence_sums", aggregation="sum")
        self.correct_sums = self.add_variable((self.num_bins,), "zeros",
                                              name="correct_sums", aggregation="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Args: `y_true` int labels `[batch]`; `y_pred` `[batch, classes]`."""
        if sample_weight is not None:
            raise ValueError("ExpectedCalibrationError does not take sample_weight")
        y_pred = ops.cast(y_pred, "float32")
        probabilities = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        confidence = ops.max(probabilities, axis=-1)                        # [batch]
        predicted = ops.cast(ops.argmax(probabilities, axis=-1), "int32")
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        correct = ops.cast(ops.equal(predicted, labels), "float32")        # [batch]
        # Bin b holds confidences in (b/B, (b+1)/B]; confidence 0 joins bin 0.
        bins = ops.clip(ops.cast(ops.ceil(confidence * self.num_bins), "int32") - 1,
                        0, self.num_bins - 1)
        one_hot = ops.one_hot(bins, self.num_bins)                          # [batch, B]
        self.counts.assign_add(ops.sum(one_hot, axis=0))
        self.confidence_sums.assign_add(ops.sum(one_hot * confidence[:, None], axis=0))
        self.correct_sums.assign_add(ops.sum(one_hot * correct[:, None], axis=0))

    def result(self):
        total = ops.maximum(ops.sum(self.counts), 1.0)
        gaps = ops.abs(self.correct_sums - self.confidence_sums)  # n_b · |acc_b - conf_b|
        return ops.sum(gaps) / total

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_bins": self.num_bins,
                "from_logits": self.from_logits}
