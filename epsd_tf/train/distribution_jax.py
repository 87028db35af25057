"""JAX engines of `run.distribution` (see `distribution.py`).

* `data_parallel`: `keras.distribution.DataParallel` over every device JAX
  sees (GPUs, TPUs, or host devices such as
  `XLA_FLAGS=--xla_force_host_platform_device_count=2`). Variables are
  replicated, each batch is sharded on its batch axis, and the train step is
  ONE global program (XLA inserts the collectives).
* `tpu`: the same over TPU devices (an error when JAX sees none).
* `multi_worker`: `keras.distribution.initialize` (`jax.distributed`) from
  the environment — Keras' `KERAS_DISTRIBUTION_JOB_ADDRESSES` (coordinator
  `host:port` first), `KERAS_DISTRIBUTION_NUM_PROCESSES`,
  `KERAS_DISTRIBUTION_PROCESS_ID`; else `TF_CONFIG` (the first task's address
  is the coordinator, so one launch recipe serves both backends); else JAX's
  own cluster detection (SLURM, Open MPI, Cloud TPU) — then `DataParallel`
  over all processes' devices. Each process feeds its slice of every global
  batch (`ProcessSlices`; Keras assembles the global array with
  `jax.make_array_from_process_local_data`).

Imports no TensorFlow.
"""

from __future__ import annotations

import os

import jax
import keras
from absl import logging

from epsd_tf.train import distribution

KERAS_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
             "KERAS_DISTRIBUTION_PROCESS_ID")


class ProcessSlices(keras.utils.PyDataset):
    """This process's rows of every batch of `batches` (a multi-process JAX program).

    Batch `i` of process `p` of `n` is rows `p·b/n .. (p+1)·b/n` of global batch
    `i`: together the processes feed exactly the single-process batches.
    """

    def __init__(self, batches: keras.utils.PyDataset, index: int, count: int):
        super().__init__(workers=batches.workers, use_multiprocessing=batches.use_multiprocessing,
                         max_queue_size=batches.max_queue_size)
        self.batches, self.index, self.count = batches, index, count

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        def rows(array):
            share = array.shape[0] // self.count
            return array[self.index * share:(self.index + 1) * share]

        return keras.tree.map_structure(rows, self.batches[index])

    def on_epoch_end(self):
        self.batches.on_epoch_end()


def _local_batches(index: int, count: int):
    def local(batches):
        if count == 1:
            return batches
        if not isinstance(batches, keras.utils.PyDataset):
            raise ValueError(
                f"multi_worker on JAX feeds each process its slice of numpy batches "
                f"(load.pipeline = 'numpy', the default on JAX); got "
                f"{type(batches).__name__}")
        return ProcessSlices(batches, index, count)
    return local


def _data_parallel(name: str) -> distribution.Plan:
    devices = keras.distribution.list_devices()
    if len(devices) < 2 and jax.process_count() == 1:
        logging.warning("run.distribution = %r but JAX sees one device (%s): training on "
                        "it without a distribution", name, ", ".join(devices))
        return distribution.ONE_DEVICE
    # Processes slice their own batches (ProcessSlices), so Keras must not shard.
    layout = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    worker, workers = jax.process_index(), jax.process_count()
    return distribution.Plan(
        name=name, replicas=len(devices), worker=worker, workers=workers,
        describe=(f"{name}: keras.distribution.DataParallel over {len(devices)} devices "
                  f"({', '.join(devices)}), process {worker} of {workers}"),
        scope=layout.scope, local_batches=_local_batches(worker, workers),
        eval_divisor=len(devices))


def _int_env(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def _cluster_arguments() -> tuple:
    """`(coordinator address, processes, process id)` from the environment."""
    if any(name in os.environ for name in KERAS_ENV):
        missing = [name for name in KERAS_ENV if name not in os.environ]
        if missing:
            raise ValueError(f"multi_worker on JAX: {missing} not set (set all of "
                             f"{list(KERAS_ENV)}, or TF_CONFIG)")
        address = os.environ[KERAS_ENV[0]].split(",")[0]
        count, index = _int_env(KERAS_ENV[1]), _int_env(KERAS_ENV[2])
        if count < 1 or not 0 <= index < count or not distribution._is_address(address):
            raise ValueError(f"multi_worker on JAX: need a 'host:port' coordinator and "
                             f"0 <= process id < processes; got {KERAS_ENV[0]}={address!r}, "
                             f"{KERAS_ENV[1]}={count}, {KERAS_ENV[2]}={index}")
        return address, count, index
    cluster = distribution.tf_config_cluster()
    if cluster is not None:
        return cluster.addresses[0], len(cluster.addresses), cluster.index
    return None, None, None  # JAX detects SLURM, Open MPI or Cloud TPU clusters


def _multi_worker() -> distribution.Plan:
    address, count, index = _cluster_arguments()
    if not jax.distributed.is_initialized():
        try:
            keras.distribution.initialize(address, count, index)
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"multi_worker on JAX could not start jax.distributed (coordinator "
                f"{address!r}, {count} processes, process {index}): {error}. Set "
                f"{', '.join(KERAS_ENV)} or TF_CONFIG on every host, or run under a "
                f"cluster JAX detects (SLURM, Open MPI, Cloud TPU)") from None
    return _data_parallel("multi_worker")


def _tpu(address: str | None) -> distribution.Plan:
    if address:
        raise ValueError(f"run.tpu = {address!r} is a TensorFlow TPUClusterResolver "
                         f"address; JAX finds its TPU devices itself: set run.tpu = None")
    platforms = sorted({device.platform for device in jax.devices()})
    if platforms != ["tpu"]:
        raise ValueError(f"run.distribution = 'tpu': JAX sees no TPU, only {platforms} "
                         f"devices (use 'data_parallel' for GPUs)")
    return _data_parallel("tpu")


def plan(name: str, *, tpu: str | None = None) -> distribution.Plan:
    """The JAX engine of `name` (already checked by `distribution.plan`)."""
    if name == "data_parallel":
        return _data_parallel(name)
    if name == "multi_worker":
        return _multi_worker()
    return _tpu(tpu)
