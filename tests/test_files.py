"""Tests of epsd_tf.files, the ground floor: atomic writes, finished rule, locks, zeros."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from epsd_tf import files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    files.write_json(str(path), {"accuracy": np.float32(0.5), "counts": np.arange(3)})
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "counts": [0, 1, 2]}
    with pytest.raises(TypeError, match="not JSON serialisable"):
        files.write_json(str(path), {"bad": object()})
    with pytest.raises(RuntimeError, match="killed"):
        with files.atomic_path(str(path)) as temporary:
            open(temporary, "w").write("{half")
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text())["counts"] == [0, 1, 2]  # untouched
    assert os.listdir(path.parent) == ["metrics.json"]  # no temporary left
    with pytest.raises(FileExistsError, match="overwrite"):
        files.write_text(str(path), "x", overwrite=False)
    assert files.write_json(str(path), {"o": object()}, default=str)
    assert json.loads(path.read_text())["o"].startswith("<object")


def test_read_json_names_a_broken_file(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        files.read_json(str(tmp_path / "bad.json"))
    with pytest.raises(FileNotFoundError):
        files.read_json(str(tmp_path / "missing.json"))


def test_save_model_is_atomic_and_needs_the_keras_suffix(tmp_path):
    class Model:
        def save(self, path):
            assert path.endswith(".keras") and not os.path.exists(path)
            open(path, "w").write("archive")

    files.save_model(Model(), str(tmp_path / "m.keras"))
    assert (tmp_path / "m.keras").read_text() == "archive"
    with pytest.raises(ValueError, match="'.keras'"):
        files.save_model(Model(), str(tmp_path / "m.h5"))


def test_finished_means_metrics_json_exists(tmp_path):
    assert not files.is_finished(str(tmp_path)) and not files.has_progress(str(tmp_path))
    (tmp_path / files.STAGES).write_text("{}")
    assert files.has_progress(str(tmp_path)) and not files.is_finished(str(tmp_path))
    (tmp_path / files.METRICS).write_text("{}")
    assert files.is_finished(str(tmp_path))


def test_ensure_writable_directory(tmp_path):
    assert files.ensure_writable_directory(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        files.ensure_writable_directory(str(tmp_path / "f"))
    with pytest.raises(PermissionError, match="not writable"):
        files.ensure_writable_directory(str(tmp_path / "f" / "below_a_file"))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(path, **owner):
    path.write_text(json.dumps({"since": 0.0, "token": "t", **owner}))


def test_lock_is_exclusive_and_released_on_exceptions(tmp_path):
    path = str(tmp_path / "run.lock")
    with pytest.raises(KeyError):
        with files.locked(path, purpose="test") as owner:
            assert owner["pid"] == os.getpid()
            assert json.loads(open(path).read())["token"] == owner["token"]
            with pytest.raises(files.LockHeldError, match=f"pid {os.getpid()} \\(test\\)"):
                files.acquire_lock(path)  # even this process cannot take it twice
            raise KeyError("boom")
    assert os.listdir(tmp_path) == []  # released, no claim files left


def test_a_stale_lock_is_taken_over_only_when_its_owner_is_surely_gone(tmp_path):
    path = tmp_path / "run.lock"
    _write_lock(path, host=socket.gethostname(), pid=_dead_pid())
    with files.locked(str(path)) as owner:  # dead pid on this host: taken over
        assert json.loads(path.read_text())["pid"] == os.getpid() == owner["pid"]
    _write_lock(path, host="another-host", pid=_dead_pid())
    with pytest.raises(files.LockHeldError, match="another-host"):
        files.acquire_lock(str(path))  # cannot check another host's pids
    path.write_text("not json")
    with pytest.raises(files.LockHeldError, match="unreadable"):
        files.acquire_lock(str(path))
    assert path.read_text() == "not json"  # refused locks are left alone


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    path = tmp_path / "run.lock"
    owner = files.acquire_lock(str(path))
    _write_lock(path, host="h", pid=1, token="someone else")
    files.release_lock(str(path), owner)
    assert json.loads(path.read_text())["token"] == "someone else"


def test_count_zeros():
    class Variable:
        def numpy(self):
            return np.array([[0.0, 1.0], [0.0, 0.0]])

    assert files.count_zeros([np.array([0, 2, 0]), Variable()]) == (5, 7)
    assert files.count_zeros([]) == (0, 0)
