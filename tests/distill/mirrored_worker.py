"""Runs SD training under MirroredStrategy on two logical CPUs; prints JSON.

Logical devices must be configured before TensorFlow initialises, so
tests/distill/test_distributed.py runs this file in a fresh process.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from epsd_tf.distill.model import SelfDistillationModel  # noqa: E402
from tests.distill import helpers  # noqa: E402


def main() -> None:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": strategy.num_replicas_in_sync}
    n, b = 16, 8  # 4 examples per replica
    images, views, _ = helpers.arrays(n, 12)
    for kind in ("none", "dlb", "cskd", "pskd"):
        with strategy.scope():
            model = SelfDistillationModel(helpers.conv_student(), kind, batch_size=b,
                                          num_examples=n, epochs=2)
            model.compile(optimizer=keras.optimizers.SGD(0.05))
        history = model.fit(helpers.dataset(kind, n, b, 12), epochs=2, verbose=0)
        entry = {"loss": history.history["loss"], "sd_loss": history.history["sd_loss"]}
        step = model.method_step
        if kind == "dlb":
            # Each replica keeps its own shard of the last global batch's view 1.
            copies = [v.numpy() for v in step.carry_variables["images"].value.values]
            entry["dlb_replica_shards_match"] = bool(
                np.array_equal(copies[0], views[n - b:n - b // 2])
                and np.array_equal(copies[1], views[n - b // 2:]))
        if kind == "pskd":
            copies = [v.numpy() for v in step.predictions.value.values]
            entry["pskd_copies_equal"] = bool(np.array_equal(copies[0], copies[1]))
            entry["pskd_rows_sum_to_one"] = bool(
                np.allclose(copies[0].astype("float32").sum(-1), 1.0, atol=1e-2))
            entry["epoch"] = int(step.epoch.numpy())
        results[kind] = entry
    try:
        with strategy.scope():
            SelfDistillationModel(helpers.conv_student(), "dlb", batch_size=7)
        results["odd_batch_error"] = None
    except ValueError as error:
        results["odd_batch_error"] = str(error)
    with strategy.scope():
        model = SelfDistillationModel(helpers.conv_student(), "cskd")
        model.compile(optimizer="sgd")
    try:
        model.fit(helpers.dataset("cskd", 15, 5, 12), epochs=1, verbose=0)
        results["odd_dataset_error"] = None
    except ValueError as error:
        results["odd_dataset_error"] = str(error)
    sys.stdout.write("RESULTS " + json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
