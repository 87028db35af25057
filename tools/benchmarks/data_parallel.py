"""Issue 16 in one command: `data_parallel` on n devices against one, within a wall budget.

On Keras-JAX, ResNet-20 on all of Fashion-MNIST, DLB, EPSD-pruned at 90 %
(gin/quickstart.gin on 54 000 images at a global batch of 256), three phases,
most important first, each skipped when the budget left cannot hold it:

1. `throughput`: training images/s of `data_parallel` over every visible
   device at batch B·n against one device at B (B = 256), side by side in one
   subprocess, order-alternating rounds, median of the per-round ratios
   (`data_parallel_throughput.py`).
2. `one_device`: `tools/run.py` without a distribution on one device, for
   each of `--seeds` seeds at once (one GPU each; seed 0 is the reference,
   the others give the seed-to-seed spread).
3. `data_parallel`: the same `tools/run.py` command (seed 0, the same global
   batch, hence the same scoring batches, mask and schedule) with
   `--distribution=data_parallel` over every device, killed (SIGKILL) once a
   mid-epoch backup of its second epoch exists, then re-run: it must resume
   there (`data_parallel_checks.check_resume`) and finish. Its mask must be
   bit-identical to the one-device run's (`compare_masks`), its test accuracy
   equal within noise (`compare_accuracy`: `NOISE_FLOOR` there says what
   that means). Exact resume is tested on one device already
   (tests/jax/test_determinism_jax.py), so the resumed run stands for an
   uninterrupted one here and saves the device time of a fourth run.

Everything goes into `--out`: `data_parallel.json` (rewritten after each
phase, so a cut run keeps what finished), `summary.txt` (also printed) and
`logs.txt` (the tail of every subprocess's log). Workdirs go to `--scratch`.

  # two GPUs (README "Scale out"): sized for 480 s on 2 H200s (an estimate)
  python tools/benchmarks/data_parallel.py --out=runs/dp --budget_s=480
  # CPU check, two forced host devices (tests/jax/test_data_parallel_bench.py)
  XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
      python tools/benchmarks/data_parallel.py --smoke --out=/tmp/dp
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import data_parallel_checks as checks  # noqa: E402

from epsd_tf import files  # noqa: E402
from epsd_tf.sweep import placement  # noqa: E402

# float64 scores (as gin/study_resnet20.gin): float32 round-off moves weights
# across the score threshold (issue 14), and on a GPU two processes may compile
# the scoring with other kernels; the mask check is about the distribution.
# Ten epochs: the cosine schedule decays to 0 over the run's epochs, so each run
# ends settled for its length and two runs differ by training noise, not by
# where they stopped; 10 x 210 steps also give the kill a whole epoch of
# mid-epoch backups. Short enough for 8 minutes on 2 H200s (estimate): a DLB
# epoch of 54 000 images took 4.5 s on one H200 (README "GPU users"), bound by
# the numpy input path; scoring and compilation cost about a minute per
# process, less with the shared JAX compilation cache.
FULL = {"gin": ["gin/quickstart.gin"],
        "bindings": ["load.max_train_examples = None", "load.batch_size = 256",
                     "run.epochs = 10", "run.mean_jsv_examples = 0", "run.verbose = 2",
                     "run.backup_every_steps = 50", "prune_at_init.score_dtype = 'float64'"],
        "epochs": 10, "throughput": {"batch_size": 256, "steps": 200, "rounds": 5},
        "min_seconds": {"throughput": 60, "one_device": 90, "data_parallel": 90}}
SMOKE = {"gin": ["gin/smoke.gin"],
         "bindings": ["load.num_examples = 520", "run.epochs = 3", "run.verbose = 2",
                      "run.backup_every_steps = 2"],
         "epochs": 3, "throughput": {"batch_size": 8, "steps": 3, "rounds": 2},
         "min_seconds": {"throughput": 0, "one_device": 0, "data_parallel": 0}}
KILL_EPOCH = 1  # killed once a backup inside this epoch (0-based) or later exists
LOG_TAIL_LINES = 60
_GPU_PLACEMENT = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
                  "XLA_PYTHON_CLIENT_MEM_FRACTION")
_HOST_DEVICES = re.compile(r"--xla_force_host_platform_device_count=\d+")

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "all", ["all", "throughput"], "all: the three phases; "
                  "throughput: phase 1 in this process (the driver's subprocess).")
flags.DEFINE_string("out", "runs/data_parallel", "all: the output directory (3 files).")
flags.DEFINE_float("budget_s", 480.0, "all: wall-clock budget in seconds.")
flags.DEFINE_bool("smoke", False, "gin/smoke.gin sizes: a CPU check in about a minute.")
flags.DEFINE_integer("seeds", 2, "all: one-device runs (seeds 0 .. N-1; N >= 1).",
                     lower_bound=1)
flags.DEFINE_string("scratch", None, "all: where the workdirs go (default: a new "
                    "temporary directory, kept).")
flags.DEFINE_integer("host_devices", 2, "all, without GPUs: XLA host devices of the "
                     "data-parallel side.", lower_bound=2)
flags.DEFINE_string("output", None, "throughput: the JSON written.")
flags.DEFINE_multi_string("gin_bindings", [], "Bindings appended to the runs' (and the "
                          "throughput's) config, e.g. 'run.epochs = 8'.")
flags.DEFINE_integer("steps", None, "Throughput: steps per timed fit (default: the "
                     "config's).", lower_bound=1)
flags.DEFINE_integer("rounds", None, "Throughput: timed fits per side (default: the "
                     "config's).", lower_bound=1)
_EPOCHS = re.compile(r"^\s*run\.epochs\s*=\s*(\d+)\s*$")


def setting_from_flags() -> dict:
    """FULL or SMOKE with `--gin_bindings`, `--steps` and `--rounds` applied."""
    base = SMOKE if FLAGS.smoke else FULL
    bindings = list(base["bindings"]) + list(FLAGS.gin_bindings)
    epochs = [int(m.group(1)) for m in map(_EPOCHS.match, bindings) if m]
    throughput = dict(base["throughput"])
    throughput.update({k: v for k, v in (("steps", FLAGS.steps), ("rounds", FLAGS.rounds))
                       if v is not None})
    return dict(base, bindings=bindings, epochs=epochs[-1] if epochs else base["epochs"],
                throughput=throughput)


def passed_flags() -> list:
    """The command-line flags that shape the setting, for the throughput subprocess."""
    return ((["--smoke"] if FLAGS.smoke else [])
            + [f"--gin_bindings={b}" for b in FLAGS.gin_bindings]
            + [f"--{name}={getattr(FLAGS, name)}" for name in ("steps", "rounds")
               if getattr(FLAGS, name) is not None])


class Driver:
    """Runs the phases under one deadline and records them in `data_parallel.json`."""

    def __init__(self, out: str, budget_s: float, setting: dict, seeds: int,
                 scratch: str, host_devices: int):
        self.out, self.setting, self.scratch = out, setting, scratch
        self.deadline = time.monotonic() + budget_s
        self.seeds = list(range(seeds))
        self.gpus = placement.detect_gpus()
        self.devices = len(self.gpus) or host_devices
        self.base_env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"),
                             PYTHONPATH=os.pathsep.join(
                                 [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                             TF_CPP_MIN_LOG_LEVEL="2")
        for key, value in placement.compilation_cache(scratch).items():  # as a sweep's cells
            self.base_env.setdefault(key, value)
        self.logs, self.processes = [], []
        self.result = {"config": {"gin": setting["gin"], "bindings": setting["bindings"],
                                  "throughput": setting["throughput"], "seeds": self.seeds,
                                  "budget_s": budget_s},
                       "gpus": self.gpus, "devices": self.devices, "phases": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def env(self, devices: int, extra: dict | None = None) -> dict:
        """The environment of a process that sees `devices` devices (CPU: host devices)."""
        env = dict(self.base_env, **(extra or {}))
        flags_text = _HOST_DEVICES.sub("", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = (f"{flags_text} --xla_force_host_platform_device_count="
                            f"{1 if self.gpus else devices}").strip()
        return env

    def start(self, name: str, command: list, env: dict) -> subprocess.Popen:
        log = os.path.join(self.scratch, f"{name}.log")
        self.logs.append((name, log))
        with open(log, "w") as handle:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def wait(self, process: subprocess.Popen) -> int | None:
        """The exit code, or None when the budget ran out (the process group is killed)."""
        try:
            return process.wait(timeout=max(self.left(), 1.0))
        except subprocess.TimeoutExpired:
            _kill(process)
            return None

    def run_command(self, workdir: str, seed: int, *extra: str) -> list:
        bindings = self.setting["bindings"] + [f"run.seed = {seed}"]
        return ([sys.executable, os.path.join(REPO, "tools", "run.py")]
                + [f"--gin_file={g}" for g in self.setting["gin"]]
                + [f"--gin_bindings={b}" for b in bindings]
                + [f"--workdir={workdir}", *extra])

    def phase(self, name: str, body) -> None:
        need = self.setting["min_seconds"][name]
        if self.left() < need:
            self.result["phases"][name] = {"status": "skipped", "why": (
                f"{self.left():.0f} s of the budget left, the phase needs about {need} s")}
        else:
            start = time.monotonic()
            try:
                self.result["phases"][name] = {"status": "done", **body()}
            except Exception as error:  # recorded; the later phases still run
                self.result["phases"][name] = {"status": "failed",
                                               "why": f"{type(error).__name__}: {error}"}
            self.result["phases"][name]["seconds"] = time.monotonic() - start
        self.write()

    # --- the phases -------------------------------------------------------
    def throughput(self) -> dict:
        output = os.path.join(self.scratch, "throughput.json")
        command = [sys.executable, os.path.abspath(__file__), "--mode=throughput",
                   f"--output={output}", *passed_flags()]
        code = self.wait(self.start("throughput", command, self.env(self.devices)))
        if code != 0:
            raise RuntimeError(f"the throughput process ended with {code} (None: out of "
                               f"budget); see logs.txt")
        return files.read_json(output)

    def one_device(self) -> dict:
        """The one-device runs, at once: GPU i mod G each (sharing memory when
        seeds > GPUs, as `sweep/placement.py` places cells), but NOT pinned to
        cores: the reference must see the CPUs the data-parallel run sees, since
        the mask of a CPU-scored run depends on the core count (XLA's CPU thread
        pool; observed on this project's 2-core machine)."""
        slots = placement.placements(len(self.seeds), self.gpus, placement.available_cores())
        processes = {}
        for seed, slot in zip(self.seeds, slots):
            env = self.env(1, {k: v for k, v in slot.env.items() if k in _GPU_PLACEMENT})
            if self.gpus and len(self.seeds) == 1:  # one slot: placements pins nothing
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[0]
            if not self.gpus:  # none detected (no nvidia-smi?): never preallocate twice
                env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
            workdir = os.path.join(self.scratch, f"one_device_seed{seed}")
            processes[seed] = (workdir, self.start(
                f"one_device_seed{seed}", self.run_command(workdir, seed), env))
        runs = {}
        for seed, (workdir, process) in processes.items():
            code = self.wait(process)
            runs[seed] = {"workdir": workdir, "exit": code}
            if code == 0:
                runs[seed].update(accuracy=checks.accuracy_of(workdir),
                                  epoch_images_per_second=checks.epoch_images_per_second(
                                      workdir))
        return {"runs": runs}

    def data_parallel(self) -> dict:
        reference = self.result["phases"].get("one_device", {}).get("runs", {}).get(0, {})
        workdir = os.path.join(self.scratch, "data_parallel_seed0")
        command = self.run_command(workdir, 0, "--distribution=data_parallel")
        env = self.env(self.devices)
        first = self.start("data_parallel_killed", command, env)
        killed_at = _kill_mid_epoch(first, os.path.join(workdir, "backup", "position.json"),
                                    self.left)
        if killed_at is None and self.left() <= 1.0:
            raise RuntimeError("the budget ran out before the data-parallel run had a "
                               "mid-epoch backup to resume from")
        if killed_at is None and first.returncode != 0:
            raise RuntimeError(f"the data-parallel run ended with {first.returncode} before "
                               f"it could be killed; see logs.txt")
        relaunch = os.path.join(self.scratch, "data_parallel_resumed.log")
        code = self.wait(self.start("data_parallel_resumed", command, env))
        with open(relaunch) as f:
            resume = checks.check_resume(workdir, killed_at, f.read(), self.setting["epochs"])
        result = {"workdir": workdir, "exit": code, "resume": resume}
        if code != 0:
            return result
        result["accuracy"] = checks.accuracy_of(workdir)
        result["epoch_images_per_second"] = checks.epoch_images_per_second(workdir)
        if reference.get("exit") == 0:
            result["masks"] = checks.compare_masks(
                os.path.join(workdir, checks.PRUNED_INIT),
                os.path.join(reference["workdir"], checks.PRUNED_INIT))
            one = self.result["phases"]["one_device"]["runs"]
            result["accuracy_check"] = checks.compare_accuracy(
                result["accuracy"], [one[s]["accuracy"] for s in self.seeds
                                     if one.get(s, {}).get("exit") == 0])
        return result

    def write(self) -> None:
        files.write_json(os.path.join(self.out, "data_parallel.json"), self.result,
                         sort_keys=False)

    def finish(self) -> str:
        for process in self.processes:  # the budget or a signal cut a phase
            _kill(process)
        self.write()
        text = summary(self.result)
        files.write_text(os.path.join(self.out, "summary.txt"), text)
        tails = []
        for name, log in self.logs:
            lines = open(log, errors="replace").read().splitlines() if os.path.exists(
                log) else []
            tails.append(f"==== {name} ({len(lines)} lines; last {LOG_TAIL_LINES})\n"
                         + "\n".join(lines[-LOG_TAIL_LINES:]))
        files.write_text(os.path.join(self.out, "logs.txt"), "\n".join(tails) + "\n")
        return text


def _kill(process: subprocess.Popen) -> None:
    """Kills the process group the driver started for `process`, and reaps it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def _kill_mid_epoch(process: subprocess.Popen, position: str, left) -> dict | None:
    """SIGKILLs `process` once its backup is inside epoch >= KILL_EPOCH, mid-epoch.

    Returns the backup position read after the kill (what a re-run resumes
    from), or None when the run ended (or the budget did) before that; then
    `process.returncode` tells which.
    """
    while process.poll() is None and left() > 1.0:
        try:
            state = files.read_json(position)
        except (OSError, ValueError):
            state = None
        if state and state["epoch"] >= KILL_EPOCH and state["batches_done"] > 0:
            _kill(process)
            return files.read_json(position)
        time.sleep(0.05)
    _kill(process)
    return None


def _interrupt(signum, frame):
    """SIGTERM (`timeout`, the device's limit) ends the run like Ctrl-C: results kept."""
    raise KeyboardInterrupt


def summary(result: dict) -> str:
    """The short text the lead reads: one line per figure and check."""
    phases, lines = result["phases"], [f"devices: {result['devices']} ({result['gpus'] or 'CPU'})"]
    for name in ("throughput", "one_device", "data_parallel"):
        phase = phases.get(name, {"status": "not reached"})
        head = f"{name}: {phase['status']}"
        if phase["status"] != "done":
            lines.append(f"{head} {phase.get('why', '')}".rstrip())
            continue
        if name == "throughput":
            rate = phase["images_per_second"]
            lines.append(f"{head}: {phase['ratio']:.2f}x ({rate['data_parallel']:.0f} images/s "
                         f"at batch {phase['batch']['data_parallel']} on {phase['replicas']} "
                         f"devices vs {rate['one_device']:.0f} at {phase['batch']['one_device']}"
                         f" on 1; {phase['devices'][0]})")
        elif name == "one_device":
            lines.append(f"{head}: " + ", ".join(
                f"seed {s} {r.get('accuracy', float('nan')):.2f} %" if r["exit"] == 0
                else f"seed {s} exit {r['exit']}" for s, r in phase["runs"].items()))
        else:
            resume = phase["resume"]
            lines.append(f"{head}: resume {'passed' if resume['passed'] else 'FAILED'} "
                         f"(killed at {resume['killed_at']}){'; ' if resume['problems'] else ''}"
                         + "; ".join(resume["problems"]))
            if "masks" in phase:
                masks = phase["masks"]
                state = ("bit-identical" if masks["identical"] else
                         f"DIFFER in {masks['differing_entries']} entries")
                lines.append(f"  masks {state} ({masks['masks']} masks, {masks['kept']} "
                             f"weights kept)")
            one = phases.get("one_device", {}).get("runs", {})
            reference = one.get(0, one.get("0", {})).get("epoch_images_per_second")
            if phase.get("epoch_images_per_second") and reference:
                lines.append(f"  tools/run.py epochs (numpy input path included), same global "
                             f"batch: {phase['epoch_images_per_second']:.0f} images/s data "
                             f"parallel vs {reference:.0f} on one device")
            if "accuracy_check" in phase:
                acc = phase["accuracy_check"]
                spread = "n/a" if acc["seed_spread"] is None else f"{acc['seed_spread']:.2f}"
                lines.append(f"  accuracy {acc['data_parallel']:.2f} % vs {acc['one_device'][0]:.2f}"
                             f" % (difference {acc['difference']:+.2f} pt; seed spread {spread} "
                             f"pt; bound {acc['bound']:.2f} pt): "
                             f"{'within noise' if acc['within_noise'] else 'OUTSIDE noise'}")
    return "\n".join(lines) + "\n"


def _throughput_main(setting: dict) -> None:
    import data_parallel_throughput  # pylint: disable=g-import-not-at-top  (imports JAX)
    if not FLAGS.output:
        raise app.UsageError("--mode=throughput needs --output")
    result = data_parallel_throughput.measure(setting["gin"], setting["bindings"],
                                              **setting["throughput"])
    files.write_json(FLAGS.output, result, sort_keys=False)


def main(argv):
    del argv
    setting = setting_from_flags()
    if FLAGS.mode == "throughput":
        _throughput_main(setting)
        return
    scratch = FLAGS.scratch or tempfile.mkdtemp(prefix="data_parallel.")
    os.makedirs(FLAGS.out, exist_ok=True)
    os.makedirs(scratch, exist_ok=True)
    driver = Driver(FLAGS.out, FLAGS.budget_s, setting, FLAGS.seeds, scratch,
                    FLAGS.host_devices)
    if driver.devices < 2:
        raise app.UsageError(f"data_parallel needs >= 2 devices; found GPUs {driver.gpus}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        driver.phase("throughput", driver.throughput)
        driver.phase("one_device", driver.one_device)
        driver.phase("data_parallel", driver.data_parallel)
    except KeyboardInterrupt:
        driver.result["interrupted"] = True
    finally:
        sys.stdout.write(driver.finish())
        sys.stdout.write(f"wrote {FLAGS.out}/data_parallel.json, summary.txt, logs.txt; "
                         f"workdirs in {scratch}\n")


if __name__ == "__main__":
    app.run(main)
