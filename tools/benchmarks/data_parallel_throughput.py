"""Training images/s of `data_parallel` over n devices (batch B·n) against one device (B).

Issue 16's scaling figure, measured in one process on Keras-JAX (the driver,
`data_parallel.py`, runs this module in its own subprocess so that the driver
itself never holds a device):

1. The run's gin config (the same files and bindings as the `tools/run.py`
   runs of the driver) gives the data (`load`), the network (`build`, seeded
   as `run` seeds it), DLB and the optimizer.
2. EPSD scores and prunes ONCE, outside any distribution (EPSD, Chen et al.,
   AAAI 2024, step 1); both sides train copies of that one pruned network.
3. One device: a `SelfDistillationModel` (DLB, step 2) placed on device 0,
   fed batches of B already on that device. Data parallel: a copy built,
   compiled and fit inside `keras.distribution.DataParallel` over every
   visible device (what `run.distribution = 'data_parallel'` builds), fed
   batches of B·n already sharded over the devices on their batch axis.
   The batches are the library's own DLB batches (`data.for_method`: real
   augmented images, two views), a few of them cycled, so the figure is the
   training step's scaling, not the host input path's (README "GPU users":
   the numpy input path tops out near 20 000 DLB images/s on an H200, which
   the `tools/run.py` runs of the driver report from their own epochs).
4. Each side first fits twice untimed (XLA compilation), then the two sides
   fit `steps` steps each, `rounds` times, alternating which goes first; the
   figure is the median of the per-round ratios (tools/bench.py's rule).

Images/s count both DLB views, as `train_log.csv`'s `images_per_second`.
"""

from __future__ import annotations

import os
import sys
import time

import gin
import jax
import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu  # noqa: E402  (tools/benchmarks/gpu.py: the paired timing helpers)

from epsd_tf import analysis, data  # noqa: E402
from epsd_tf.distill.model import SelfDistillationModel  # noqa: E402
from epsd_tf.train import config as config_lib  # noqa: E402

RESIDENT_BATCHES = 4  # distinct batches cycled on the device(s)
WARMUP_FITS = 2  # untimed fits per side before the timed rounds


def _configured(name: str):
    return gin.get_configurable(name)


def _resident(splits, method, batch_size: int, seed: int, put, steps: int):
    """`steps` batches cycling over the first `RESIDENT_BATCHES` DLB batches of
    `batch_size`, placed on the device(s) by `put` (`gpu.DeviceBatches`)."""
    batches = data.for_method(splits, method, batch_size=batch_size, seed=seed)
    if len(batches) < RESIDENT_BATCHES:
        raise ValueError(f"batch size {batch_size} leaves {len(batches)} training batches; "
                         f"the measurement cycles {RESIDENT_BATCHES} (lower the batch size "
                         f"or use more training examples)")
    return gpu.DeviceBatches([batches[i] for i in range(RESIDENT_BATCHES)], steps, put)


def _trainer(pruned: keras.Model, method, batch_size: int, num_train: int, steps: int,
             copy: bool) -> SelfDistillationModel:
    student = pruned
    if copy:  # built in the current (distribution) scope, as experiment._in_scope does
        student = keras.models.clone_model(pruned)
        student.set_weights(pruned.get_weights())
    trainer = SelfDistillationModel(student, method, batch_size=batch_size,
                                    num_examples=num_train, epochs=1)
    trainer.compile(optimizer=_configured("make_optimizer")(steps_per_epoch=steps, epochs=1),
                    jit_compile=True)
    return trainer


def measure(gin_files, gin_bindings, *, batch_size: int, steps: int, rounds: int,
            seed: int = 0) -> dict:
    """Runs the paired measurement; returns the JSON-ready result.

    Args:
        gin_files, gin_bindings: the run's config (`tools/run.py --gin_file ...`):
            data, network, DLB, optimizer and `prune_at_init`.
        batch_size: B, the per-device batch (one device: B; n devices: B·n).
        steps: training steps per timed fit.
        rounds: timed fits per side (order alternating).
        seed: `run.seed` (weights, scoring batches, data order).

    Raises:
        ValueError: fewer than 2 devices, or steps/rounds/batch below 1 (before
            any work).
    """
    devices = jax.devices()
    if len(devices) < 2:
        raise ValueError(f"data_parallel throughput needs >= 2 devices, JAX sees "
                         f"{len(devices)} ({devices}); on CPU set XLA_FLAGS="
                         f"--xla_force_host_platform_device_count=2")
    if min(batch_size, steps, rounds) < 1:
        raise ValueError(f"batch_size={batch_size}, steps={steps}, rounds={rounds}: "
                         f"each must be >= 1")
    n = len(devices)
    config_lib.parse(gin_files, list(gin_bindings) + [f"load.batch_size = {batch_size}"])
    keras.utils.set_random_seed(seed)
    splits = _configured("load")()
    info = splits.info
    model = _configured("build")(input_shape=info.image_shape, num_classes=info.num_classes)
    method = _configured("DLB")()
    start = time.perf_counter()
    pruned, report = _configured("prune_at_init")(model, splits, method=method, seed=seed)
    scoring_seconds = time.perf_counter() - start

    single = _trainer(pruned, method, batch_size, info.num_train, steps, copy=False)
    one_batches = _resident(splits, method, batch_size, seed,
                            lambda x: jax.device_put(x, devices[0]), steps)
    layout = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    with layout.scope():
        parallel = _trainer(pruned, method, batch_size * n, info.num_train, steps, copy=True)

    def shard(x):
        return jax.device_put(x, layout.get_data_layout(x.shape).backend_layout)

    many_batches = _resident(splits, method, batch_size * n, seed, shard, steps)

    def fit_one():
        return gpu._fit_seconds(single, one_batches)

    def fit_many():
        with layout.scope():
            return gpu._fit_seconds(parallel, many_batches)

    # Untimed: the first fit compiles; on one device the second recompiles once
    # more (the state comes back from the first committed to device 0).
    compile_seconds = {"one_device": [fit_one() for _ in range(WARMUP_FITS)],
                       "data_parallel": [fit_many() for _ in range(WARMUP_FITS)]}
    one, many = gpu._paired(fit_one, fit_many, rounds)
    passes = analysis.passes_per_step(method)
    one_rate = [steps * batch_size * passes / s for s in one]
    many_rate = [steps * batch_size * n * passes / s for s in many]
    ratio = gpu._median_ratio(many_rate, one_rate)
    return {
        "ratio": ratio,
        "efficiency": ratio / n,
        "images_per_second": {"one_device": float(np.median(one_rate)),
                              "data_parallel": float(np.median(many_rate))},
        "per_round": {"one_device": one_rate, "data_parallel": many_rate},
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "replicas": n,
        "batch": {"one_device": batch_size, "data_parallel": batch_size * n},
        "steps": steps, "rounds": rounds, "seed": seed,
        "model": model.name, "dataset": info.name, "method": method.name,
        "sparsity": report["totals"]["masked_sparsity"],
        "scoring_seconds": scoring_seconds,
        "warmup_fit_seconds": compile_seconds,
        "jax": jax.__version__, "keras": keras.__version__,
    }
