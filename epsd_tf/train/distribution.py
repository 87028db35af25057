"""Where a run's distribution is decided: the one place (issue 15).

`run.distribution` (gin) or `epsd-run --distribution/--tpu` names how a run
spreads over devices and hosts, with backend-neutral names:

* None: one device (the default).
* `"data_parallel"`: every local accelerator, the global batch split over them
  (TensorFlow `MirroredStrategy`; JAX `keras.distribution.DataParallel`).
* `"multi_worker"`: several processes/hosts, one command per host (TensorFlow
  `MultiWorkerMirroredStrategy` from `TF_CONFIG`; JAX `jax.distributed`
  through `keras.distribution.initialize`, then `DataParallel` over every
  process's devices).
* `"tpu"`: TensorFlow `TPUStrategy` through `TPUClusterResolver(run.tpu)`; on
  JAX, TPU devices are simply `data_parallel`.

`plan(name, tpu=)` checks the name and the environment, creates the engine
(strategies and `jax.distributed` must exist before other work) and returns a
`Plan`: the scope in which `run` builds, compiles, fits and evaluates the
trainer, the replica count, and whether this process is the chief (the only
one that writes the workdir). Each backend's engine is in its own file,
picked once at import like the other seams (DESIGN.md "Backend seams"):
`distribution_tf.py` and `distribution_jax.py`. This file holds the parts
both share: the names, `TF_CONFIG` parsing and the batch checks.

The batch size of a config is the GLOBAL batch (all replicas together), so the
same config trains the same optimisation problem on one device or on many.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Callable, ContextManager

import keras

NAMES = ("data_parallel", "multi_worker", "tpu")
TF_CONFIG = "TF_CONFIG"
# Cluster jobs of TF_CONFIG that train (MultiWorkerMirroredStrategy's).
_TRAINING_JOBS = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A multi-worker cluster as `TF_CONFIG` describes it.

    Attributes:
        addresses: `host:port` of every training task, the chief (if any) first,
            then the workers by index: the process order of both backends.
        index: this process's position in `addresses` (0 = the chief).
    """

    addresses: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def parse_tf_config(text: str | None) -> Cluster:
    """Parses and checks a `TF_CONFIG` JSON string.

    `{"cluster": {"chief": [...], "worker": ["host:port", ...]}, "task":
    {"type": "worker", "index": i}}` (TensorFlow's multi-worker format). The
    chief is task `chief` 0 when the cluster has one, else `worker` 0 (as in
    `MultiWorkerMirroredStrategy`).

    Raises:
        ValueError: missing, not JSON, or not a valid training cluster; the
            message names the bad part.
    """
    if not text:
        raise ValueError(f"run.distribution = 'multi_worker' needs the {TF_CONFIG} "
                         f"environment variable (one per host), e.g. {TF_CONFIG}="
                         '\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                         '"task": {"type": "worker", "index": 0}}\'')
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{TF_CONFIG} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) \
            or not isinstance(config.get("task"), dict):
        raise ValueError(f"{TF_CONFIG} must be a JSON object with 'cluster' and 'task' "
                         f"objects, got {text!r}")
    cluster, task = config["cluster"], config["task"]
    unknown = sorted(set(cluster) - set(_TRAINING_JOBS))
    if unknown:
        raise ValueError(f"{TF_CONFIG} cluster jobs {unknown} are not supported; "
                         f"multi_worker trains with jobs {list(_TRAINING_JOBS)}")
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(
                isinstance(h, str) and _is_address(h) for h in hosts):
            raise ValueError(f"{TF_CONFIG} cluster[{job!r}] must be a non-empty list of "
                             f"'host:port' strings, got {hosts!r}")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"{TF_CONFIG} may name one chief, got {cluster['chief']!r}")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster:
        raise ValueError(f"{TF_CONFIG} task type {kind!r} is not a job of the cluster "
                         f"{sorted(cluster)}")
    if isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"{TF_CONFIG} task index {index!r} is outside 0 .. "
                         f"{len(cluster[kind]) - 1} of job {kind!r}")
    addresses = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
    offset = 0 if kind == "chief" else len(cluster.get("chief", []))
    return Cluster(addresses, offset + index)


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this process trains: the scope, the replicas, its role.

    Attributes:
        name: the distribution name (None: one device).
        replicas: replicas in sync over all processes (devices the global batch
            is split over).
        worker: this process's index (0 = the chief).
        workers: number of processes.
        describe: one line for the log.
        scope: `() -> context manager` in which the trainer is built, compiled,
            fit and evaluated (strategy or Keras distribution scope).
        local_batches: maps global batches (a `tf.data.Dataset` or
            `keras.utils.PyDataset`) to what this process feeds `fit`
            (identity except in a multi-process JAX program, where each process
            feeds its slice of every global batch).
        eval_divisor: every evaluation batch must divide over this many devices
            (JAX shards each batch evenly; tf.distribute splits any batch).
        sync_batchnorm: train with BatchNormalization over the global batch
            (`synchronized=True`: tf.distribute replicas would otherwise each
            normalise their own shard; a JAX program is global anyway).
    """

    name: str | None = None
    replicas: int = 1
    worker: int = 0
    workers: int = 1
    describe: str = "one device"
    scope: Callable[[], ContextManager] = contextlib.nullcontext
    local_batches: Callable = lambda batches: batches
    eval_divisor: int = 1
    sync_batchnorm: bool = False

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the workdir (TF: chief or worker 0; JAX: process 0)."""
        return self.worker == 0

    def check_batches(self, batch_size: int, eval_batch_size: int | None = None,
                      eval_sizes=()) -> None:
        """Raises ValueError unless the batches split evenly over the replicas.

        Args:
            batch_size: the global training batch (`load.batch_size`).
            eval_batch_size: the evaluation batch size.
            eval_sizes: examples in each evaluation split (its last batch is partial).
        """
        if batch_size % self.replicas:
            raise ValueError(
                f"the global batch size {batch_size} (load.batch_size) does not divide over "
                f"the {self.replicas} replicas of distribution {self.name!r}; use a multiple "
                f"of {self.replicas}")
        if self.eval_divisor == 1 or not eval_batch_size:
            return
        for size in (eval_batch_size, *(n % eval_batch_size for n in eval_sizes)):
            if size % self.eval_divisor:
                raise ValueError(
                    f"an evaluation batch of {size} examples (load.eval_batch_size = "
                    f"{eval_batch_size}; validation/test sizes {list(eval_sizes)}) does not "
                    f"divide over the {self.eval_divisor} devices of distribution "
                    f"{self.name!r} (JAX shards every batch evenly); choose an "
                    f"eval_batch_size that leaves last batches divisible by "
                    f"{self.eval_divisor}")


ONE_DEVICE = Plan()


def plan(name: str | None = None, *, tpu: str | None = None) -> Plan:
    """Checks `name` and the environment and sets up the distribution engine.

    Call it at the start of a run, before data or models: TensorFlow's
    multi-worker strategy and `jax.distributed` must be created before other
    work, and every bad setting is refused before anything is written.

    Args:
        name: None, "data_parallel", "multi_worker" or "tpu".
        tpu: the TPU for `"tpu"` on TensorFlow (`TPUClusterResolver(tpu=)`: a
            name, `grpc://host:port`, or "local" on a TPU VM); None reads
            `TPU_NAME`, else "local".

    Raises:
        ValueError: an unknown name (the valid ones are listed), a malformed
            `TF_CONFIG`, `tpu` with another distribution, or no TPU at `tpu`.
    """
    if name in (None, "", "none"):
        if tpu:
            raise ValueError(f"run.tpu = {tpu!r} is set but run.distribution is "
                             f"{name!r}; set run.distribution = 'tpu' (or pass --tpu)")
        return ONE_DEVICE
    if name not in NAMES:
        raise ValueError(f"unknown run.distribution {name!r}; valid: None, "
                         f"{', '.join(repr(n) for n in NAMES)}")
    if tpu and name != "tpu":
        raise ValueError(f"run.tpu = {tpu!r} only applies to run.distribution = 'tpu', "
                         f"got {name!r}")
    if keras.backend.backend() == "jax":
        from epsd_tf.train import distribution_jax as engine
    elif keras.backend.backend() == "tensorflow":
        from epsd_tf.train import distribution_tf as engine
    else:
        raise ValueError(f"run.distribution = {name!r} needs Keras' TensorFlow or JAX "
                         f"backend, not {keras.backend.backend()!r}")
    return engine.plan(name, tpu=tpu)


def tf_config_cluster() -> Cluster | None:
    """The `TF_CONFIG` cluster of this process, or None when it is not set."""
    text = os.environ.get(TF_CONFIG)
    return parse_tf_config(text) if text else None
