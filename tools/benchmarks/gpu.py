"""GPU suite (issue 11): epsd_tf on Keras-JAX against its own yardsticks.

Every figure is a ratio of two things timed side by side in one process:
rounds alternate which side runs first and the figure is the median of the
per-round ratios, so drifting load affects both sides alike (tools/bench.py).
ResNet-20, 28x28x1, 10 classes, batch B = 128, float32, unless noted.

  sd_vs_fit[m]      images/s of `SelfDistillationModel` (method m) / stock
                    Keras `fit` pushing the same images through the network
                    per step (none, pskd: B; dlb: 2B in two forwards vs one
                    batch of 2B; cskd: B + B forward-only partners vs 2B),
                    both on batches already on the device (target >= 0.9)
  scoring           EPSD-DLB scoring seconds (3 inner steps, full second
                    order, compiled) / one stock training step (<= 15)
  input_path        DLB training fed by the TF-free input path
                    (`epsd_tf.data.load(...)` + `for_method`: numpy
                    augmentation of both views in worker threads) / the same
                    training on batches already on the device (>= 0.85)
  callbacks         a run's callbacks (`callbacks.standard_callbacks`, no
                    per-step hook, so Keras dispatches steps asynchronously)
                    over study-length epochs (422 DLB steps): their seconds
                    per epoch and per fit (paired fits of 1 and 2 epochs
                    against none), and the images/s they leave a 30-epoch
                    run / none (target >= 0.95); and per_step: those
                    callbacks / those plus one no-op per-step hook (what every
                    run had before session 7: Keras then reads each step's
                    logs back, waiting for the device), with its ms per step
  torch_dlb         epsd_tf DLB images/s / PyTorch eager DLB images/s of the
                    same ResNet-20 (`torch_dlb.py`; >= 1.5); skipped without
                    PyTorch
  memory            peak device memory of full second-order EPSD-DLB scoring
                    of ResNet-18 at 32x32x3, batch 128 (measured first, in a
                    fresh process state; `memory_stats()` of the device)

Run: `KERAS_BACKEND=jax python tools/bench.py --suite=gpu` (the lead's H200
figures are in README.md), or, from the repository root without installing,
`KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/gpu.py [--smoke]`;
`--smoke` runs every part with tiny sizes on CPU (a test does, on JAX).
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share with PyTorch

import keras  # noqa: E402
import numpy as np  # noqa: E402

from epsd_tf import models, pruning  # noqa: E402
from epsd_tf.distill.model import SelfDistillationModel  # noqa: E402

METHODS = ("none", "dlb", "cskd", "pskd")
TARGETS = {"sd_vs_fit": 0.9, "scoring": 15.0, "input_path": 0.85, "torch_dlb": 1.5,
           "callbacks": 0.95}
FULL = {"model": "resnet20", "image_shape": (28, 28, 1), "num_classes": 10, "batch": 128,
        "steps": 100,
        "rounds": 5, "memory_shape": (32, 32, 3), "memory_model": "resnet18",
        "memory_batch": 128, "input_examples": 128 * 100,
        # One epoch of the study (54 000 training images, batch 128) and its length
        # in epochs: `callbacks`.
        "epoch_steps": 422, "study_epochs": 30}
SMOKE = {"model": "small_cnn", "image_shape": (8, 8, 1), "num_classes": 10, "batch": 4,
         "steps": 2, "rounds": 2, "memory_shape": (8, 8, 3), "memory_model": "small_cnn",
         "memory_batch": 4, "input_examples": 4 * 2, "epoch_steps": 2,
         "study_epochs": 30}


class DeviceBatches(keras.utils.PyDataset):
    """`steps` batches per epoch cycling over a few batches placed on the device.

    `put` places one array (default: `keras.ops.convert_to_tensor`, the default
    device; a data-parallel measurement passes a sharding `jax.device_put`).
    """

    def __init__(self, batches: list, steps: int, put=keras.ops.convert_to_tensor):
        super().__init__()
        self.batches = [keras.tree.map_structure(put, b) for b in batches]
        self.steps = steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.batches[index % len(self.batches)]


def _arrays(count: int, shape, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, *shape)).astype("float32")
    return images, rng.normal(size=images.shape).astype("float32"), (
        np.arange(count) % num_classes).astype("int32")


def _method_batches(method: str, cfg: dict, count: int = 4) -> list:
    b = cfg["batch"]
    images, views, labels = _arrays(b * count, cfg["image_shape"], cfg["num_classes"])
    batches = []
    for i in range(count):
        rows = slice(i * b, (i + 1) * b)
        x = {"none": {"image": images[rows]},
             "dlb": {"image": images[rows], "image_view1": views[rows]},
             "cskd": {"image": images[rows], "pair_image": views[rows]},
             "pskd": {"image": images[rows],
                      "example_id": np.arange(i * b, (i + 1) * b, dtype="int32")}}[method]
        batches.append((x if method != "none" else x["image"], labels[rows]))
    return batches


def _stock_batches(images_per_step: int, cfg: dict, count: int = 4) -> list:
    images, _, labels = _arrays(images_per_step * count, cfg["image_shape"],
                                cfg["num_classes"])
    return [(images[i * images_per_step:(i + 1) * images_per_step],
             labels[i * images_per_step:(i + 1) * images_per_step]) for i in range(count)]


def _optimizer():
    return keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4)


def _sd_model(method: str, cfg: dict, num_examples: int) -> SelfDistillationModel:
    student = models.build(cfg["model"], cfg["image_shape"], cfg["num_classes"])
    # epochs=1: every timed `fit` is one epoch (PS-KD's a_t stays 0; the table
    # is still read and written each step).
    model = SelfDistillationModel(student, method, batch_size=cfg["batch"],
                                  num_examples=num_examples, epochs=1)
    model.compile(optimizer=_optimizer())
    return model


def _stock_model(cfg: dict) -> keras.Model:
    model = models.build(cfg["model"], cfg["image_shape"], cfg["num_classes"])
    model.compile(optimizer=_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit_seconds(model, data, callbacks=(), epochs: int = 1) -> float:
    start = time.perf_counter()
    # The epoch's logs are read back at its end: the steps are done.
    model.fit(data, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return time.perf_counter() - start


def _paired(first, second, rounds: int) -> tuple[list, list]:
    """Times `first()` and `second()` `rounds` times each, alternating the order."""
    a, b = [], []
    for r in range(rounds):
        if r % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a, b


def _median_ratio(numerators, denominators) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def sd_vs_fit(cfg: dict) -> dict:
    """Each SD method's images/s against stock `fit` with the same images per step."""
    out = {}
    for method in cfg.get("methods", METHODS):
        per_step = cfg["batch"] * (2 if method in ("dlb", "cskd") else 1)
        sd = _sd_model(method, cfg, num_examples=cfg["steps"] * cfg["batch"])
        sd_data = DeviceBatches(_method_batches(method, cfg), cfg["steps"])
        stock = _stock_model(cfg)
        stock_data = DeviceBatches(_stock_batches(per_step, cfg), cfg["steps"])
        _fit_seconds(sd, sd_data), _fit_seconds(stock, stock_data)  # compile
        sd_times, stock_times = _paired(lambda: _fit_seconds(sd, sd_data),
                                        lambda: _fit_seconds(stock, stock_data),
                                        cfg["rounds"])
        out[method] = {
            "ratio": _median_ratio(stock_times, sd_times),  # throughput ratio
            "images_per_second": per_step * cfg["steps"] / statistics.median(sd_times),
            "stock_images_per_second": (per_step * cfg["steps"]
                                        / statistics.median(stock_times)),
            "target": TARGETS["sd_vs_fit"]}
    return out


def scoring(cfg: dict) -> dict:
    """EPSD-DLB scoring (3 inner steps, full second order) / one stock train step."""
    model = models.build(cfg["model"], cfg["image_shape"], cfg["num_classes"])
    scorer = pruning.make_scorer(model, _method_batches("dlb", cfg), "epsd", method="dlb",
                                 inner_steps=3, first_order=False)
    start = time.perf_counter()
    scorer()
    first_call = time.perf_counter() - start
    stock = _stock_model(cfg)
    stock_data = DeviceBatches(_stock_batches(cfg["batch"], cfg), cfg["steps"])
    _fit_seconds(stock, stock_data)

    def score_seconds():
        start = time.perf_counter()
        scorer()  # returns numpy scores: synchronous
        return time.perf_counter() - start

    score_times, fit_times = _paired(
        score_seconds, lambda: _fit_seconds(stock, stock_data) / cfg["steps"],
        cfg["rounds"])
    return {"ratio": _median_ratio(score_times, fit_times),
            "scoring_seconds": statistics.median(score_times),
            "train_step_seconds": statistics.median(fit_times),
            "first_call_seconds_incl_compile": first_call, "target": TARGETS["scoring"]}


def input_path(cfg: dict) -> dict:
    """DLB fed by `epsd_tf.data` (TF-free on JAX) / DLB on batches on the device."""
    try:
        from epsd_tf import data  # noqa: PLC0415  (the input path is what is measured)

        splits = data.load("synthetic", source="synthetic", batch_size=cfg["batch"],
                           validation_fraction=0.0, num_examples=cfg["input_examples"],
                           num_test=cfg["batch"], image_shape=cfg["image_shape"],
                           num_classes=cfg["num_classes"], workers=cfg.get("input_workers"))
    except (ImportError, TypeError, ValueError) as error:  # no TF-free input path
        return {"skipped": f"epsd_tf.data.load(synthetic) failed: {error}"}
    fed = data.for_method(splits, "two_views")
    steps = len(fed) if hasattr(fed, "__len__") else cfg["steps"]
    model = _sd_model("dlb", cfg, num_examples=cfg["input_examples"])
    device = DeviceBatches(_method_batches("dlb", cfg), steps)
    _fit_seconds(model, fed), _fit_seconds(model, device)
    fed_times, device_times = _paired(lambda: _fit_seconds(model, fed),
                                      lambda: _fit_seconds(model, device), cfg["rounds"])
    return {"ratio": _median_ratio(device_times, fed_times), "steps": steps,
            "fed_images_per_second": cfg["batch"] * steps / statistics.median(fed_times),
            "device_images_per_second": (cfg["batch"] * steps
                                         / statistics.median(device_times)),
            "input": type(fed).__name__, "workers": getattr(fed, "workers", None),
            "target": TARGETS["input_path"]}


class _PerStepHook(keras.callbacks.Callback):
    """A no-op per-step hook: Keras then reads every step's logs back (a device wait)."""

    def on_train_batch_end(self, batch, logs=None):
        pass


def callbacks(cfg: dict) -> dict:
    """DLB epochs of the study's length: what a run's callbacks cost per fit and per epoch.

    Over `cfg["epoch_steps"]` steps per epoch (one study epoch): fits of 1 and
    of 2 epochs with a run's fresh callbacks against none, paired, give their
    cost per epoch (the backup, the CSV row: the 2-epoch extra minus the
    1-epoch extra) and per fit (set-up, the first backup); `ratio` is what
    those make of a `study_epochs`-epoch run's images/s (a cost that reads
    below zero, noise, counts as none). Then a run's
    callbacks with a no-op per-step hook against without (`per_step`;
    `per_step_hook_ms` is what each step pays when Keras reads its logs back:
    what the run's callbacks save by having no per-step hook).
    """
    import tempfile  # noqa: PLC0415

    from epsd_tf.train import callbacks as callbacks_lib  # noqa: PLC0415

    steps, epochs = cfg["epoch_steps"], cfg["study_epochs"]
    model = _sd_model("dlb", cfg, num_examples=steps * cfg["batch"])
    device = DeviceBatches(_method_batches("dlb", cfg), steps)
    with tempfile.TemporaryDirectory() as scratch:
        def run_callbacks():
            # A fresh set and workdir per fit, as a run's first `fit` gets: with the last
            # fit's backup there, each timed fit would also restore it.
            return callbacks_lib.standard_callbacks(tempfile.mkdtemp(dir=scratch),
                                                    2 * cfg["batch"])

        def bare(epochs):
            return lambda: _fit_seconds(model, device, epochs=epochs)

        def with_run(epochs, hook=False):
            return lambda: _fit_seconds(model, device, run_callbacks()
                                        + ([_PerStepHook()] if hook else []), epochs=epochs)

        with_run(1, hook=True)()  # compile
        bare_1, run_1 = _paired(bare(1), with_run(1), cfg["rounds"])
        bare_2, run_2 = _paired(bare(2), with_run(2), cfg["rounds"])
        run_1b, hooked = _paired(with_run(1), with_run(1, hook=True), cfg["rounds"])
    extra_1 = statistics.median(r - b for r, b in zip(run_1, bare_1))
    extra_2 = statistics.median(r - b for r, b in zip(run_2, bare_2))
    bare_epoch = statistics.median(bare_1)
    per_epoch = extra_2 - extra_1
    per_fit = extra_1 - per_epoch
    images = 2 * cfg["batch"] * steps
    # A cost below zero is timing noise (callbacks add work): the ratio reads it as
    # none, so a run's callbacks read at most 1 and never below 0, however noisy.
    run_extra = epochs * max(per_epoch, 0.0) + max(per_fit, 0.0)
    return {"ratio": epochs * bare_epoch / (epochs * bare_epoch + run_extra),
            "per_epoch_seconds": per_epoch, "per_fit_seconds": per_fit,
            "steps": steps, "study_epochs": epochs,
            "per_step": _median_ratio(run_1b, hooked),
            "per_step_hook_ms": 1e3 * statistics.median(
                (h - r) / steps for h, r in zip(hooked, run_1b)),
            "bare_images_per_second": images / bare_epoch,
            "one_epoch_images_per_second": images / statistics.median(run_1 + run_1b),
            "hooked_images_per_second": images / statistics.median(hooked),
            "target": TARGETS["callbacks"]}


def torch_dlb(cfg: dict) -> dict:
    """epsd_tf DLB images/s / PyTorch eager DLB images/s (same ResNet-20, batch)."""
    # `benchmarks.torch_dlb` under tools/bench.py; `torch_dlb` beside a script run.
    name = f"{__package__}.torch_dlb" if __package__ else "torch_dlb"
    try:
        reference = importlib.import_module(name)  # PyTorch: GPU machine only
    except ImportError as error:
        return {"skipped": f"PyTorch not importable: {error}"}
    trainer = reference.make_trainer(cfg["batch"], cfg["image_shape"], cfg["num_classes"])
    model = _sd_model("dlb", cfg, num_examples=4 * cfg["batch"])
    ours = DeviceBatches(_method_batches("dlb", cfg), cfg["steps"])
    _fit_seconds(model, ours)
    our_times, torch_times = _paired(lambda: _fit_seconds(model, ours),
                                     lambda: trainer.run(cfg["steps"]), cfg["rounds"])
    return {"ratio": _median_ratio(torch_times, our_times),
            "epsd_tf_images_per_second": cfg["batch"] * cfg["steps"]
            / statistics.median(our_times),
            "torch_images_per_second": cfg["batch"] * cfg["steps"]
            / statistics.median(torch_times),
            "torch_device": trainer.device, "target": TARGETS["torch_dlb"]}


def _device_memory() -> dict | None:
    if keras.backend.backend() != "jax":
        return None
    import jax  # noqa: PLC0415

    return jax.local_devices()[0].memory_stats()


def memory(cfg: dict) -> dict:
    """Peak device memory of full second-order EPSD-DLB scoring (run first)."""
    before = _device_memory()
    cfg = {**cfg, "image_shape": cfg["memory_shape"], "batch": cfg["memory_batch"]}
    model = models.build(cfg["memory_model"], cfg["image_shape"], cfg["num_classes"])
    scorer = pruning.make_scorer(model, _method_batches("dlb", cfg), "epsd", method="dlb",
                                 inner_steps=3, first_order=False)
    start = time.perf_counter()
    scorer()
    seconds = time.perf_counter() - start
    after = _device_memory()
    result = {"model": cfg["memory_model"], "image_shape": list(cfg["image_shape"]),
              "batch": cfg["batch"], "first_call_seconds_incl_compile": seconds}
    if not after or "peak_bytes_in_use" not in after:
        result["peak_bytes"] = None  # CPU: no allocator statistics
        return result
    result["peak_bytes"] = int(after["peak_bytes_in_use"])
    result["bytes_in_use_before"] = int((before or {}).get("bytes_in_use", 0))
    result["peak_gib"] = result["peak_bytes"] / 2**30
    return result


PARTS = ("memory", "sd_vs_fit", "scoring", "input_path", "callbacks", "torch_dlb")


def run(quick: bool = False, smoke: bool = False, parts=PARTS, methods=METHODS,
        input_workers: int | None = None) -> dict:
    """The GPU figures (`smoke`: tiny sizes for CPU; `quick`: fewer steps).

    Args:
        quick: 30 steps x 3 rounds instead of 100 x 5 (`callbacks` keeps its
            study-length epoch, with 3 rounds).
        smoke: tiny model and batches (checks that every part runs, on CPU).
        parts: which of `PARTS` to run (memory first: its peak is process-wide).
        methods: the SD methods of `sd_vs_fit`.
        input_workers: worker threads of the input path (None: the library's
            default, CPU count up to 8).
    """
    unknown = sorted(set(parts) - set(PARTS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown parts/methods {unknown}; parts: {PARTS}, methods: "
                         f"{METHODS}")
    cfg = dict(SMOKE if smoke else FULL, methods=tuple(methods), input_workers=input_workers)
    if quick and not smoke:
        cfg.update(steps=30, rounds=3)
    keras.utils.set_random_seed(0)
    result = {"backend": keras.backend.backend(), "targets": TARGETS, "config": {
        k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    if keras.backend.backend() == "jax":
        import jax  # noqa: PLC0415

        result["device"] = str(jax.local_devices()[0].device_kind)
    functions = {"memory": memory, "sd_vs_fit": sd_vs_fit, "scoring": scoring,
                 "input_path": input_path, "callbacks": callbacks, "torch_dlb": torch_dlb}
    for name in [p for p in PARTS if p in parts]:
        part = functions[name]
        start = time.perf_counter()
        result[name] = part(cfg)
        result[name]["part_seconds"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    import json
    if [a for a in sys.argv[1:] if a not in ("--quick", "--smoke")]:
        sys.exit(f"unknown arguments {sys.argv[1:]}: this script takes --quick and --smoke")

    sys.stdout.write(json.dumps(run(quick="--quick" in sys.argv, smoke="--smoke" in sys.argv),
                                indent=2) + "\n")
