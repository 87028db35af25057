"""CUDA MPS for cells that share a GPU (`--mps` of `tools/sweep.py` and `tools/study.py device`).

Without MPS the processes sharing a GPU take turns on it: one small network's
kernels (ResNet-20 at batch 128 fills a fraction of an H200) run alone, and
eight cells at once train no faster than one. The Multi-Process Service
(NVIDIA's `nvidia-cuda-mps-control`) runs the kernels of several processes
side by side: on one H200, eight study cells at once took 3.6-3.9 min per
ResNet-20 cell instead of 6.5-8.5 (README, "The study on the GPU").

`daemon()` starts a private control daemon (its pipe and log directories under
a temporary directory, named to the children through `CUDA_MPS_PIPE_DIRECTORY`
and `CUDA_MPS_LOG_DIRECTORY`), checks that a CUDA client can connect, and quits
it at the end. The GPU's settings (compute mode, MIG) are left as they are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from absl import logging

CONTROL = "nvidia-cuda-mps-control"
# A CUDA client: the JAX of the cells, when it has a GPU (TensorFlow's, else).
_PROBE = ("import jax, jax.numpy as jnp; "
          "assert jax.default_backend() == 'gpu', jax.default_backend(); "
          "print(float(jnp.ones(8).sum()))")


class MpsError(RuntimeError):
    """MPS could not be used: no control program, or the daemon or a client failed."""


def available() -> bool:
    """Whether this machine has the MPS control program."""
    return shutil.which(CONTROL) is not None


@contextlib.contextmanager
def daemon(check: bool = True):
    """Runs an MPS control daemon for the processes started inside the block.

    Args:
        check: start a JAX GPU process first and fail if it cannot run a
            kernel through the daemon.

    Raises:
        MpsError: no `nvidia-cuda-mps-control` on PATH, the daemon did not
            start, or the check failed (the daemon is stopped again and the
            environment restored).
    """
    if not available():
        raise MpsError(f"--mps: {CONTROL} is not on PATH (it comes with the NVIDIA "
                                "driver); run without --mps")
    base = tempfile.mkdtemp(prefix="epsd-mps-")
    names = {"CUDA_MPS_PIPE_DIRECTORY": os.path.join(base, "pipe"),
             "CUDA_MPS_LOG_DIRECTORY": os.path.join(base, "log")}
    before = {key: os.environ.get(key) for key in names}
    for key, path in names.items():
        os.makedirs(path)
        os.environ[key] = path
    try:
        started = subprocess.run([CONTROL, "-d"], capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            raise MpsError(f"--mps: `{CONTROL} -d` failed: {started.stderr.strip()}")
        try:
            if check:
                probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True,
                                       text=True, timeout=180)
                if probe.returncode != 0:
                    raise MpsError("--mps: a GPU process could not run through the MPS "
                                       f"daemon: {probe.stderr.strip()[-1000:]}")
            logging.info("CUDA MPS daemon running (pipe %s)", names["CUDA_MPS_PIPE_DIRECTORY"])
            yield names
        finally:
            subprocess.run([CONTROL], input="quit\n", text=True, capture_output=True,
                           timeout=60)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(base, ignore_errors=True)
