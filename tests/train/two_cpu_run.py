"""`tools/run.py` with TensorFlow's CPU split into two logical devices.

Logical devices must be configured before TensorFlow initialises, so
tests/train/test_distribution_run.py runs this file in a fresh process:
`python tests/train/two_cpu_run.py <tools/run.py flags>`.
"""

import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "tools", "run.py")

if __name__ == "__main__":
    sys.argv = [RUN, *sys.argv[1:]]
    runpy.run_path(RUN, run_name="__main__")
