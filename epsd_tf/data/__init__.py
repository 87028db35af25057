"""epsd_tf.data: input pipelines for EPSD (DESIGN.md, `epsd_tf.data`).

`load(dataset, source=...)` reads TFDS, IDX, .npz, image-folder or synthetic
data into a frozen `DataSplits`, with the classes the source declares
(classes.py); `for_method(splits, method)` gives the training batches
a self-distillation method needs; `measure_throughput` times a pipeline.
Two pipelines: tf.data on TensorFlow, numpy `keras.utils.PyDataset` batches
without it (JAX); `batch_info` reads the batches of either. Importing this
package imports no TensorFlow.
"""

from epsd_tf.data import batch_info
from epsd_tf.data.epoch_clock import EpochClock
from epsd_tf.data.known import KNOWN_DATASETS
from epsd_tf.data.method_batches import BATCH_KINDS, for_method
from epsd_tf.data.pipeline import PIPELINES, SOURCES, load
from epsd_tf.data.splits import DatasetInfo, DataSplits
from epsd_tf.data.throughput import measure_throughput

__all__ = ["BATCH_KINDS", "DataSplits", "DatasetInfo", "EpochClock", "KNOWN_DATASETS",
           "PIPELINES", "SOURCES", "batch_info", "for_method", "load", "measure_throughput"]
