"""TensorFlow engines of `run.distribution` (see `distribution.py`).

* `data_parallel`: `tf.distribute.MirroredStrategy` over the local GPUs, or,
  without GPUs, over the logical CPU devices (one, unless configured with
  `tf.config.set_logical_device_configuration`, as the tests do).
* `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, which reads
  `TF_CONFIG` (checked first by `distribution.parse_tf_config`).
* `tpu`: `TPUStrategy` through `TPUClusterResolver`.

Keras' TF trainer takes the strategy a model was built under
(`tf.distribute.get_strategy()` at construction) and distributes the
`tf.data` input itself (each replica gets `global batch / replicas`).
"""

from __future__ import annotations

import os
import socket

import tensorflow as tf
from absl import logging

from epsd_tf.train import distribution

# How long a `grpc://host:port` TPU address may take to accept a connection.
TPU_CONNECT_SECONDS = 10.0


def _plan(name: str, strategy, worker: int = 0, workers: int = 1) -> distribution.Plan:
    replicas = int(strategy.num_replicas_in_sync)
    devices = ", ".join(getattr(strategy.extended, "worker_devices", ()) or ())
    describe = (f"{name}: {type(strategy).__name__}, {replicas} replicas"
                f"{f' ({devices})' if devices else ''}, worker {worker} of {workers}")
    return distribution.Plan(name=name, replicas=replicas, worker=worker, workers=workers,
                             describe=describe, scope=strategy.scope,
                             sync_batchnorm=replicas > 1)


def _data_parallel() -> distribution.Plan:
    devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
               or [d.name for d in tf.config.list_logical_devices("CPU")])
    if len(devices) < 2:
        logging.warning("run.distribution = 'data_parallel' but TensorFlow sees one device "
                        "(%s): training on it without a strategy", ", ".join(devices))
        return distribution.ONE_DEVICE
    return _plan("data_parallel", tf.distribute.MirroredStrategy(devices))


def _multi_worker() -> distribution.Plan:
    cluster = distribution.parse_tf_config(os.environ.get(distribution.TF_CONFIG))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return _plan("multi_worker", strategy, cluster.index, len(cluster.addresses))


def _check_reachable(address: str) -> None:
    """Fails fast when nothing listens at a `grpc://host:port` TPU address.

    TensorFlow would otherwise retry the connection for a long time.
    """
    if not address.startswith("grpc://"):
        return
    host, _, port = address[len("grpc://"):].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=TPU_CONNECT_SECONDS):
            pass
    except (OSError, ValueError) as error:
        raise ValueError(f"run.distribution = 'tpu': no TPU at {address!r} (run.tpu / "
                         f"--tpu): cannot connect ({error})") from None


def _tpu(address: str | None) -> distribution.Plan:
    address = address or os.environ.get("TPU_NAME") or "local"
    _check_reachable(address)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # TF raises ValueError, URLError, NotFoundError, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"run.distribution = 'tpu': no TPU found at {address!r} (run.tpu / --tpu; None "
            f"means $TPU_NAME, else 'local' on a TPU VM): {type(error).__name__}: "
            f"{first_line[:300]}") from None
    return _plan("tpu", tf.distribute.TPUStrategy(resolver))


def plan(name: str, *, tpu: str | None = None) -> distribution.Plan:
    """The TensorFlow engine of `name` (already checked by `distribution.plan`)."""
    if name == "data_parallel":
        return _data_parallel()
    if name == "multi_worker":
        return _multi_worker()
    return _tpu(tpu)
