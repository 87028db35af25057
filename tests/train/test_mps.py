"""Tests for epsd_tf.sweep.mps: the MPS daemon's lifetime, with a stand-in control program."""

import os
import subprocess
import sys

import pytest

from epsd_tf.sweep import mps
from tests.train.test_sweep import REPO

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]

CONTROL = """#!/bin/sh
# Stand-in for nvidia-cuda-mps-control: logs its arguments, stdin and pipe directory.
input=""; [ "$#" -eq 0 ] && input=$(cat)
echo "args=$* input=$input pipe=$CUDA_MPS_PIPE_DIRECTORY" >> "$FAKE_MPS_LOG"
[ "$1" = "-d" ] && [ -n "$FAKE_MPS_FAIL" ] && { echo "cannot start" >&2; exit 1; }
exit 0
"""


@pytest.fixture
def control(tmp_path, monkeypatch):
    path = tmp_path / "bin" / mps.CONTROL
    path.parent.mkdir()
    path.write_text(CONTROL)
    path.chmod(0o755)
    log = tmp_path / "mps.log"
    monkeypatch.setenv("PATH", f"{path.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_LOG", str(log))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setenv("CUDA_MPS_LOG_DIRECTORY", "/the/users/own")
    return lambda: log.read_text().splitlines()


def test_the_daemon_serves_the_block_and_quits_after_it(control):
    with mps.daemon(check=False) as names:
        pipe = os.environ["CUDA_MPS_PIPE_DIRECTORY"]
        assert names["CUDA_MPS_PIPE_DIRECTORY"] == pipe and os.path.isdir(pipe)
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ["
                                "'CUDA_MPS_PIPE_DIRECTORY'])"], capture_output=True, text=True)
        assert child.stdout.strip() == pipe  # the cells started inside find the daemon
    assert control() == [f"args=-d input= pipe={pipe}", f"args= input=quit pipe={pipe}"]
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and not os.path.exists(pipe)
    assert os.environ["CUDA_MPS_LOG_DIRECTORY"] == "/the/users/own"  # restored


def test_a_failed_start_or_check_raises_and_leaves_nothing_behind(control, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    with pytest.raises(mps.MpsError, match="cannot start"):
        with mps.daemon(check=False):
            pytest.fail("the block must not run")
    monkeypatch.delenv("FAKE_MPS_FAIL")
    # No GPU here: the check's JAX process finds none (or no JAX), and the daemon is quit.
    with pytest.raises(mps.MpsError, match="could not run"):
        with mps.daemon(check=True):
            pytest.fail("the block must not run")
    assert control()[-1].startswith("args= input=quit")
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_without_the_control_program_the_commands_refuse_mps(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not mps.available()
    with pytest.raises(mps.MpsError, match="not on PATH"):
        with mps.daemon():
            pass
    result = subprocess.run([sys.executable, "tools/sweep.py", "--base_gin=gin/smoke.gin",
                             f"--root={tmp_path / 's'}", "--mps"], cwd=REPO, text=True,
                            capture_output=True, env=dict(os.environ, PYTHONPATH=REPO),
                            timeout=120)
    assert result.returncode != 0 and "not on PATH" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "s").exists()
