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

With `--parallel 1` nothing is changed: the cell sees the machine as the
sweep does (e.g. every GPU, for `run.distribution = 'data_parallel'`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from absl import logging

SHARED_GPU_MEMORY = 0.9  # of each GPU, split between the cells that share it


@dataclasses.dataclass(frozen=True)
class Placement:
    """The environment variables and CPU cores of one slot (None: unchanged)."""
    env: dict
    cores: tuple | None

    def apply(self, environ: dict) -> dict:
        """`environ` with this slot's variables; `XLA_FLAGS` is extended, not replaced."""
        merged = dict(environ)
        for key, value in self.env.items():
            if key == "XLA_FLAGS" and environ.get(key):
                value = f"{environ[key]} {value}"
            merged[key] = value
        return merged

    def describe(self) -> str:
        """One line: the cores and the variables set."""
        cores = "all cores" if self.cores is None else f"cores {list(self.cores)}"
        return ", ".join([cores] + [f"{k}={v}" for k, v in sorted(self.env.items())])

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


def placements(parallel: int, gpus: list[str], cores: list[int]) -> list[Placement]:
    """One `Placement` per slot of a `parallel`-wide pool.

    Args:
        parallel: N, cells at once.
        gpus: the GPU ids (`detect_gpus`); empty on a CPU machine.
        cores: the CPU cores to divide (`available_cores`).

    Raises:
        ValueError: `parallel` < 1, or no cores.
    """
    if parallel < 1:
        raise ValueError(f"--parallel={parallel}: must be >= 1 (cells run at once)")
    if not cores:
        raise ValueError("no CPU core to run cells on")
    if parallel == 1:
        return [Placement({}, None)]
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
        slots.append(Placement(env, share))
    return slots
