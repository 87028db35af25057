"""Helpers of the distributed-run tests: smoke runs over devices and processes.

`two_cpu_run.py` runs `tools/run.py` with TensorFlow's CPU split into two
logical devices; `multi_worker` starts one `tools/run.py` per worker on
127.0.0.1 with a `TF_CONFIG` naming free loopback ports (one launch recipe for
both backends: JAX takes its coordinator from the same variable).
"""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWO_CPU_RUN = os.path.join(REPO, "tests", "train", "two_cpu_run.py")
RUN = os.path.join(REPO, "tools", "run.py")


def env(**extra) -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, **extra)


def smoke_args(workdir, *bindings) -> list:
    return ["--gin_file=gin/smoke.gin", f"--workdir={workdir}",
            *[f"--gin_bindings={b}" for b in bindings]]


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_workers(command, workdir, *args, workers=2, extra_env=None,
                  output=subprocess.PIPE) -> list:
    """Starts `command + smoke args` once per worker; returns their Popen-s.

    `output`: where their stdout and stderr go (DEVNULL for processes nobody reads).
    """
    ports = free_ports(workers)
    return [subprocess.Popen(
        [*command, *smoke_args(workdir), "--distribution=multi_worker", *args],
        cwd=REPO, stdout=output, stderr=output, text=True,
        env=env(TF_CONFIG=tf_config(ports, i), **(extra_env or {})))
        for i in range(workers)]


def multi_worker(command, workdir, *args, workers=2, extra_env=None, timeout=600):
    """Runs `command + smoke args` once per worker; returns their CompletedProcess-es."""
    processes = start_workers(command, workdir, *args, workers=workers, extra_env=extra_env)
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def losses(workdir) -> np.ndarray:
    """`(loss, ce_loss, sd_loss)` per epoch from `train_log.csv`."""
    with open(os.path.join(workdir, "train_log.csv")) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r[k]) for k in ("loss", "ce_loss", "sd_loss")] for r in rows])


def weights(path) -> list:
    """The weights (masks included) of a saved `.keras` file, in a fresh process."""
    code = ("import sys, numpy as np, keras, epsd_tf\n"
            "m = keras.models.load_model(sys.argv[1])\n"
            "np.savez(sys.argv[2], *m.get_weights())\n")
    out = str(path) + ".npz"
    subprocess.run([sys.executable, "-c", code, str(path), out], check=True, env=env(),
                   cwd=REPO, capture_output=True, timeout=300)
    with np.load(out) as arrays:
        return [arrays[k] for k in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]


def python() -> list:
    return [sys.executable]


LOSS_TOLERANCE = 1e-4  # relative, per-epoch training loss against the single-device run


def assert_same_training(workdir, reference) -> None:
    """The same mask and initial weights, and the same epoch losses within tolerance.

    `workdir` may have trained longer than `reference` (with the constant learning rate
    of gin/smoke.gin its first epochs are the same problem): the reference's epochs are
    compared.
    """
    for a, b in zip(weights(workdir / "pruned_init.keras"),
                    weights(reference / "pruned_init.keras")):
        np.testing.assert_array_equal(a, b)  # the same mask and initial weights
    expected = losses(reference)
    np.testing.assert_allclose(losses(workdir)[:len(expected)], expected, rtol=LOSS_TOLERANCE)
