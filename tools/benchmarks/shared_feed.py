"""Are the study's cells held back by their input when they share a GPU?

The study runs 8 cells on one H200 under CUDA MPS; each reaches about 14 700
DLB images/s (their `train_log.csv`), close to what one process's numpy input
path delivers (17 000–23 000, `tools/bench.py --suite=gpu --only=input_path`),
and far below DLB on batches already on the device (62 000 for one process).
This measures the question directly. N worker processes at once, placed as a
sweep places N cells (`sweep/placement.py`: their share of the cores and of
the GPU memory), each train DLB on ResNet-20 (batch 128, two views):

  device: on batches already on the device (`gpu.DeviceBatches`): no input work;
  fed:    fed by the TF-free numpy input path (`epsd_tf.data.load` +
          `for_method`, augmentation in worker threads), as a study cell is.

Each side is a wave of N fresh processes; they compile, wait for each other
(a file barrier), then time `fits` one-epoch fits of `steps` steps. A wave's
figure is the sum of its processes' images/s (each the median of its fits).
The two sides alternate their order per round, and `fed_over_device` is the
median of the per-round ratios: near 1, the cells are bound by the GPU; well
below, each is held back by its own host work, and moving the augmentation
onto the device (inside the compiled step) would speed the study up by about
its inverse.

  KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/shared_feed.py \\
      --parallel=1,8 --mps --rounds=2 --output=$OUT/shared_feed.json   # ~4 min

(`--parallel=8` alone took 110 s on one H200: fed / device 0.98.)

`--smoke`: the small CNN on 8×8 images, for a CPU check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

SIDES = ("device", "fed")
BARRIER_POLL = 0.05
BARRIER_TIMEOUT = 600.0


def _barrier(directory: str, parties: int, me: int) -> None:
    """Waits until `parties` processes have written their ready file in `directory`."""
    open(os.path.join(directory, f"ready-{me}"), "w").close()
    end = time.monotonic() + BARRIER_TIMEOUT
    while len([n for n in os.listdir(directory) if n.startswith("ready-")]) < parties:
        if time.monotonic() > end:
            raise TimeoutError(f"only some of {parties} workers became ready in {directory}")
        time.sleep(BARRIER_POLL)


def worker(side: str, steps: int, fits: int, smoke: bool, barrier: str, parties: int,
           me: int) -> dict:
    """One process of a wave: compile, wait for the others, time `fits` fits."""
    import gpu  # noqa: PLC0415  (tools/benchmarks, beside this script)

    from epsd_tf import data  # noqa: PLC0415

    cfg = dict(gpu.SMOKE if smoke else gpu.FULL, methods=("dlb",), input_workers=None)
    examples = steps * cfg["batch"]
    if side == "device":
        batches = gpu.DeviceBatches(gpu._method_batches("dlb", cfg), steps)
    else:
        splits = data.load("synthetic", source="synthetic", batch_size=cfg["batch"],
                           validation_fraction=0.0, num_examples=examples,
                           num_test=cfg["batch"], image_shape=cfg["image_shape"],
                           num_classes=cfg["num_classes"])
        batches = data.for_method(splits, "two_views")
    model = gpu._sd_model("dlb", cfg, num_examples=examples)
    gpu._fit_seconds(model, batches)  # compile
    _barrier(barrier, parties, me)
    seconds = [gpu._fit_seconds(model, batches) for _ in range(fits)]
    images = 2 * cfg["batch"] * len(batches)
    return {"side": side, "images_per_second": images / statistics.median(seconds),
            "fit_seconds": seconds}


def wave(side: str, parallel: int, steps: int, fits: int, smoke: bool, scratch: str,
         gpus: int | None) -> dict:
    """`parallel` workers of one side at once; their images/s and its sum."""
    from epsd_tf.sweep import placement  # noqa: PLC0415

    slots = placement.placements(parallel, placement.detect_gpus(gpus),
                                 placement.available_cores(), root=scratch)
    barrier = tempfile.mkdtemp(prefix=f"{side}{parallel}.", dir=scratch)
    processes = []
    for me, slot in enumerate(slots):
        argv = [sys.executable, os.path.abspath(__file__), f"--worker={side}",
                f"--steps={steps}", f"--fits={fits}", f"--barrier={barrier}",
                f"--parties={parallel}", f"--me={me}"] + (["--smoke"] if smoke else [])
        processes.append(subprocess.Popen(argv, env=slot.apply(dict(os.environ)),
                                          preexec_fn=slot.preexec(), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    results = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"a {side} worker failed (exit {process.returncode}):\n"
                               f"{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    rates = [r["images_per_second"] for r in results]
    return {"side": side, "parallel": parallel, "images_per_second": sum(rates),
            "per_process": rates}


def run(parallel=(1, 8), rounds: int = 2, steps: int = 100, fits: int = 3,
        smoke: bool = False, mps: bool = False, gpus: int | None = None,
        wave_fn=None) -> dict:
    """Every N, both sides, `rounds` rounds in alternating order (module doc).

    Raises:
        ValueError: an N, `rounds`, `steps` or `fits` below 1 (before any work).
    """
    parallel = tuple(parallel)
    if not parallel or min(parallel) < 1 or min(rounds, steps, fits) < 1:
        raise ValueError(f"parallel={parallel}, rounds={rounds}, steps={steps}, "
                         f"fits={fits}: each must be >= 1")
    from epsd_tf.sweep import mps as mps_lib  # noqa: PLC0415

    wave_fn = wave_fn or wave
    scratch = tempfile.mkdtemp(prefix="shared_feed.")
    waves = {(n, side): [] for n in parallel for side in SIDES}
    try:
        with mps_lib.daemon() if mps else contextlib.nullcontext():
            for round_index in range(rounds):
                sides = SIDES if round_index % 2 == 0 else SIDES[::-1]
                for n in parallel:
                    for side in sides:
                        waves[(n, side)].append(
                            wave_fn(side, n, steps, fits, smoke, scratch, gpus))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = []
    for n in parallel:
        device, fed = waves[(n, "device")], waves[(n, "fed")]
        results.append({
            "parallel": n,
            "device_images_per_second": statistics.median(w["images_per_second"]
                                                          for w in device),
            "fed_images_per_second": statistics.median(w["images_per_second"] for w in fed),
            "fed_over_device": statistics.median(f["images_per_second"] / d["images_per_second"]
                                                 for d, f in zip(device, fed)),
            "waves": device + fed})
    return {"smoke": smoke, "mps": mps, "steps": steps, "fits": fits, "rounds": rounds,
            "results": results}


FLAGS = flags.FLAGS


def _define_flags() -> None:
    # Defined only when run as a script: importing this module (its tests do, beside
    # the other benchmarks' tests in one process) must not claim absl flag names.
    flags.DEFINE_list("parallel", ["1", "8"], "The N (processes at once) to measure.")
    flags.DEFINE_integer("rounds", 2, "Rounds (the sides' order alternates); medians.",
                         lower_bound=1)
    flags.DEFINE_integer("steps", 100, "Steps per timed fit.", lower_bound=1)
    flags.DEFINE_integer("fits", 3, "Timed fits per process (its median).", lower_bound=1)
    flags.DEFINE_bool("smoke", False, "The small CNN on 8×8 images (a CPU check).")
    flags.DEFINE_bool("mps", False, "Run the waves under CUDA MPS, as the study does.")
    flags.DEFINE_integer("gpus", None, "As tools/sweep.py --gpus (default: detected).",
                         lower_bound=0)
    flags.DEFINE_string("output", "runs/shared_feed.json", "The JSON written.")
    flags.DEFINE_enum("worker", None, list(SIDES), "(internal) run one worker of this side.")
    flags.DEFINE_string("barrier", None, "(internal) the wave's barrier directory.")
    flags.DEFINE_integer("parties", 1, "(internal) processes in the wave.")
    flags.DEFINE_integer("me", 0, "(internal) this worker's number.")


def main(argv):
    del argv
    if FLAGS.worker:
        result = worker(FLAGS.worker, FLAGS.steps, FLAGS.fits, FLAGS.smoke, FLAGS.barrier,
                        FLAGS.parties, FLAGS.me)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    report = run([int(n) for n in FLAGS.parallel], FLAGS.rounds, FLAGS.steps, FLAGS.fits,
                 FLAGS.smoke, FLAGS.mps, FLAGS.gpus)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(report, f, indent=1)
    for result in report["results"]:
        sys.stdout.write(
            f"{result['parallel']} at once: device {result['device_images_per_second']:.0f}, "
            f"fed {result['fed_images_per_second']:.0f} DLB images/s in all; fed / device "
            f"{result['fed_over_device']:.2f} (median of per-round ratios)\n")
    sys.stdout.write(f"wrote {FLAGS.output}\n")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
