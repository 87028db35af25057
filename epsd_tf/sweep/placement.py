"""Where each cell of a `--parallel N` sweep runs: its devices and its CPU cores.

The sweep never imports TensorFlow or JAX: a cell is a `tools/run.py`
process, placed through its environment (and its CPU affinity) before it
starts.

* GPUs (`detect_gpus`: `--gpus`, else `CUDA_VISIBLE_DEVICES`, else the lines
  of `nvidia-smi -L`): slot k of N is pinned to GPU k mod G
  (`CUDA_VISIBLE_DEVICES`). When N > G several cells share a GPU: JAX gets
  `XLA_PYTHON_CLIENT_PREALLOCATE=false` and
  `XLA_PYTHON_CLIENT_MEM_FRACTION` = 0.9·G/N, TensorFlow
  `TF_FORCE_GPU_ALLOW_GROWTH=true` (each backend ignores the other's).
* CPU cores (`os.sched_getaffinity`): slot k gets the k-th of N equal blocks
  (cores are shared round robin when N exceeds them), as its affinity and as
  `OMP_NUM_THREADS`, `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS`.
  XLA's CPU thread pool is sized from the affinity; a one-core cell also
  gets `--xla_cpu_multi_thread_eigen=false` (an XLA flag; XLA has no
  intra-op thread-count flag).

Several sweeps sharing one machine each take their own slots of one division
of it (`--slots=3,4,5/8`, `parse_slots`): a one-slot sweep then gets an eighth
of the cores and of the GPU memory, not all of them.

With `--parallel 1` (and no `--slots`) nothing of this is changed: the cell sees the machine as
the sweep does (e.g. every GPU, for `run.distribution = 'data_parallel'`).

At any `--parallel`, every cell of a sweep shares one JAX persistent
compilation cache, `<root>/.jax_cache` (`compilation_cache`): the cells of a
grid compile the same programs (same network, method and batch; seeds and
masks are data), so every cell after the first loads its training step
instead of compiling it. `JAX_COMPILATION_CACHE_DIR` and
`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` are only defaults: a value in
the sweep's environment wins (`JAX_COMPILATION_CACHE_DIR=` turns the cache
off). TensorFlow ignores both.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from absl import logging

SHARED_GPU_MEMORY = 0.9  # of each GPU, split between the cells that share it
JAX_CACHE = ".jax_cache"  # under the sweep root
# Cache every compiled program: besides the training step (~20-30 s to compile on
# an H200) a cell compiles many small ones (eager ops, scoring, evaluation); JAX's
# default of 1 s would leave those out.
JAX_CACHE_MIN_COMPILE_SECONDS = "0"


def compilation_cache(root: str) -> dict:
    """The environment defaults that give the cells of the sweep in `root` one shared
    JAX persistent compilation cache (`<root>/.jax_cache`, an absolute path)."""
    return {"JAX_COMPILATION_CACHE_DIR": os.path.abspath(os.path.join(root, JAX_CACHE)),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": JAX_CACHE_MIN_COMPILE_SECONDS}


@dataclasses.dataclass(frozen=True)
class Placement:
    """The environment variables and CPU cores of one slot (None: unchanged), and
    the variables set only where the sweep's environment lacks them (`defaults`)."""
    env: dict
    cores: tuple | None
    defaults: dict = dataclasses.field(default_factory=dict)

    def apply(self, environ: dict) -> dict:
        """`environ` with this slot's variables; `XLA_FLAGS` is extended, not replaced;
        a default is set only if `environ` lacks it."""
        merged = {**self.defaults, **environ}
        for key, value in self.env.items():
            if key == "XLA_FLAGS" and environ.get(key):
                value = f"{environ[key]} {value}"
            merged[key] = value
        return merged

    def describe(self) -> str:
        """One line: the cores and the variables set (defaults marked as such)."""
        cores = "all cores" if self.cores is None else f"cores {list(self.cores)}"
        return ", ".join([cores] + [f"{k}={v}" for k, v in sorted(self.env.items())] +
                         [f"{k}={v} (unless set)" for k, v in sorted(self.defaults.items())])

    def preexec(self):
        """A `Popen(preexec_fn=...)` that pins the child to its cores (None if unpinned)."""
        if self.cores is None or not hasattr(os, "sched_setaffinity"):
            return None
        cores = set(self.cores)
        return lambda: os.sched_setaffinity(0, cores)


def _visible_list(value: str) -> list[str]:
    entries = [v.strip() for v in value.split(",") if v.strip()]
    # CUDA stops at the first invalid index ("-1" is the usual "no GPU").
    visible = []
    for entry in entries:
        if entry.lstrip("-").isdigit() and int(entry) < 0:
            break
        visible.append(entry)
    return visible


def detect_gpus(gpus: int | None = None, environ=None) -> list[str]:
    """The GPU ids cells may be pinned to (`CUDA_VISIBLE_DEVICES` values).

    Args:
        gpus: `--gpus`: use this many (0: CPU only); None: detect them from
            `CUDA_VISIBLE_DEVICES` if set, else from `nvidia-smi -L`.
        environ: the environment to read (default `os.environ`).

    Raises:
        ValueError: a negative `gpus`, or more than `CUDA_VISIBLE_DEVICES` lists.
    """
    environ = os.environ if environ is None else environ
    if gpus is not None and gpus < 0:
        raise ValueError(f"--gpus={gpus}: must be >= 0 (0: CPU only), or unset to detect")
    if "CUDA_VISIBLE_DEVICES" in environ:
        visible = _visible_list(environ["CUDA_VISIBLE_DEVICES"])
    else:
        visible = None
    if gpus is not None:
        if visible is not None and gpus > len(visible):
            raise ValueError(f"--gpus={gpus}, but CUDA_VISIBLE_DEVICES="
                             f"{environ['CUDA_VISIBLE_DEVICES']!r} lists {len(visible)}")
        return (visible or [str(i) for i in range(gpus)])[:gpus]
    if visible is not None:
        return visible
    return [str(i) for i in range(_nvidia_smi_count())]


def _nvidia_smi_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        logging.warning("nvidia-smi -L failed (%s); running on CPU", error)
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def available_cores() -> list[int]:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def parse_slots(text: str) -> tuple[list[int], int]:
    """`--slots="3,4,5/8"`: slots 3, 4 and 5 of a machine divided into 8.

    Several sweeps can share one machine (`tools/study.py device` runs one per
    plan sweep): each then takes its own slots of one machine-wide division,
    so no core, and no GPU memory, is given out twice.

    Raises:
        ValueError: not `ids/total`, an id outside `[0, total)`, or a repeat.
    """
    ids_text, sep, total_text = (text or "").partition("/")
    try:
        ids = [int(v) for v in ids_text.split(",")]
        total = int(total_text)
    except ValueError:
        ids, total = [], 0
    if not sep or not ids or total < 1:
        raise ValueError(f"--slots={text!r}: expected ids/total, e.g. '3,4,5/8' (slots 3, 4 "
                         f"and 5 of a machine divided into 8)")
    if any(not 0 <= i < total for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"--slots={text!r}: the ids must be distinct and in [0, {total})")
    return ids, total


def placements(parallel: int, gpus: list[str], cores: list[int],
               root: str | None = None, slots: str | None = None) -> list[Placement]:
    """One `Placement` per slot of a `parallel`-wide pool.

    With `slots` (`parse_slots`: "ids/total") the pool is those slots of a
    `total`-wide division of the machine, and `parallel` must equal their
    number.

    Args:
        parallel: N, cells at once.
        gpus: the GPU ids (`detect_gpus`); empty on a CPU machine.
        cores: the CPU cores to divide (`available_cores`).
        root: the sweep root: every slot gets its shared JAX compilation cache
            (`compilation_cache`) as defaults; None: no cache.

    Raises:
        ValueError: `parallel` < 1, no cores, or bad `slots`.
    """
    if parallel < 1:
        raise ValueError(f"--parallel={parallel}: must be >= 1 (cells run at once)")
    if slots is not None:
        ids, total = parse_slots(slots)
        if len(ids) != parallel:
            raise ValueError(f"--slots={slots!r} names {len(ids)} slots but --parallel="
                             f"{parallel}; give as many")
        if total == 1:
            return placements(1, gpus, cores, root)
        machine = placements(total, gpus, cores, root)
        return [machine[i] for i in ids]
    if not cores:
        raise ValueError("no CPU core to run cells on")
    defaults = compilation_cache(root) if root is not None else {}
    if parallel == 1:
        return [Placement({}, None, defaults)]
    slots = []
    for slot in range(parallel):
        if parallel <= len(cores):
            share = tuple(cores[slot * len(cores) // parallel:
                                (slot + 1) * len(cores) // parallel])
        else:
            share = (cores[slot % len(cores)],)
        threads = str(len(share))
        env = {"OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
               "TF_NUM_INTEROP_THREADS": "1" if len(share) == 1 else "2"}
        if len(share) == 1:
            env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            if parallel > len(gpus):
                fraction = SHARED_GPU_MEMORY * len(gpus) / parallel
                env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false",
                           XLA_PYTHON_CLIENT_MEM_FRACTION=f"{fraction:.3f}",
                           TF_FORCE_GPU_ALLOW_GROWTH="true")
        slots.append(Placement(env, share, defaults))
    return slots
