"""Tests of sweeps spread over devices and hosts (issue 15): `--parallel`, `--shard`,
cell locks with heartbeats, the per-cell state, `--status`, bad flags.

A stand-in for tools/run.py (`SLOW_RUN`) records when each cell starts and ends,
the environment and CPU cores it got, and fails if a second process runs the
same cell at the same time (an `flock` on the cell's workdir); then it writes
the metrics a finished run writes (`test_sweep.FAKE_RUN`), and its `end` event
last (a crashed cell has none).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from epsd_tf import files, sweep
from epsd_tf.sweep import placement, shards
from tests.train.test_sweep import FAKE_RUN, HOLD_LOCK, REPO, SWEEP

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]

ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
            "XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_FORCE_GPU_ALLOW_GROWTH",
            "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")

SLOW_RUN = textwrap.dedent(f"""\
    import fcntl, json, os, sys, time
    workdir = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--workdir="))
    name = os.path.basename(workdir)
    guard = open(os.path.join(workdir, ".guard"), "w")
    fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the cell runs twice at once
    def event(kind):
        with open(os.environ["FAKE_EVENTS"], "a") as f:
            f.write(f"{{time.time()}} {{kind}} {{name}} {{os.getpid()}}\\n")
    event("start")
    env = {{k: os.environ.get(k) for k in {ENV_KEYS!r}}}
    env["cores"] = sorted(os.sched_getaffinity(0))
    with open(os.path.join(workdir, "env.json"), "w") as f:
        json.dump(env, f)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    # FAKE_AT_ONCE=n: run until n cells have started (30 s at most), however slowly the
    # processes start on a loaded machine.
    give_up = time.time() + 30
    while time.time() < give_up and open(os.environ["FAKE_EVENTS"]).read().count(
            " start ") < int(os.environ.get("FAKE_AT_ONCE", "0")):
        time.sleep(0.05)
""") + FAKE_RUN + 'event("end")  # after metrics.json: the cell finished\n'


@pytest.fixture
def slow_run(tmp_path, monkeypatch):
    """Path of the stand-in run tool; `events()` lists (time, kind, cell, pid)."""
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)
    events_path = tmp_path / "events.txt"
    monkeypatch.setenv("FAKE_EVENTS", str(events_path))
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.txt"))
    monkeypatch.setenv("FAKE_SLEEP", "0")

    def events():
        if not events_path.exists():
            return []
        rows = [line.split() for line in events_path.read_text().splitlines()]
        return [(float(t), kind, name, int(pid)) for t, kind, name, pid in rows]
    return str(script), events


def _ends(events):
    return sorted(name for _, kind, name, _ in events if kind == "end")


GRID = dict(scorers=["random", "snip"], methods=["none"], sparsities=["0.9", "0.95"],
            seeds=["0"])


def _cells():
    return sweep.make_grid(GRID["scorers"], GRID["methods"], GRID["sparsities"], GRID["seeds"])


# --- shards ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_the_shards_partition_the_grid(count):
    cells = sweep.make_grid(["random", "snip", "dense"], ["none", "dlb"], ["0.9", "0.95"],
                            ["0", "1"])
    parts = [shards.select(cells, index, count) for index in range(count)]
    names = [c.name for part in parts for c in part]
    assert sorted(names) == sorted(c.name for c in cells)  # the union is the grid...
    assert len(names) == len(set(names))                     # ...with no overlap
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert parts == [shards.select(cells, i, count) for i in range(count)]  # deterministic
    # More seeds append cells: the earlier cells keep their shards.
    grown = sweep.make_grid(["random", "snip", "dense"], ["none", "dlb"], ["0.9", "0.95"],
                            ["0", "1", "2"])
    for index in range(count):
        assert set(parts[index]) <= set(shards.select(grown, index, count))


@pytest.mark.parametrize("text, message", [
    ("3/2", "index 3 of 2"), ("2/2", "index 2 of 2"), ("x", "expected i/n"),
    ("1/0", "n >= 1"), ("-1/2", "expected i/n"), ("1/2/3", "expected i/n")])
def test_a_bad_shard_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        shards.parse_shard(text)


def test_shard_parsing():
    assert shards.parse_shard(None) == (0, 1)
    assert shards.parse_shard("1/4") == (1, 4)
    assert shards.parse_shard(" 0 / 1 ") == (0, 1)


# --- placement -------------------------------------------------------------------------


def test_cpu_cores_are_divided_between_the_slots():
    slots = placement.placements(3, [], list(range(8)))
    assert [s.cores for s in slots] == [(0, 1), (2, 3, 4), (5, 6, 7)]
    assert [s.env["OMP_NUM_THREADS"] for s in slots] == ["2", "3", "3"]
    assert all(s.env["TF_NUM_INTRAOP_THREADS"] == s.env["OMP_NUM_THREADS"] for s in slots)
    assert all("CUDA_VISIBLE_DEVICES" not in s.env and "XLA_FLAGS" not in s.env
               for s in slots)
    # More cells than cores: one core each, shared round robin, XLA single-threaded.
    slots = placement.placements(5, [], [4, 6])
    assert [s.cores for s in slots] == [(4,), (6,), (4,), (6,), (4,)]
    assert all(s.env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false" for s in slots)
    assert all(s.env["TF_NUM_INTEROP_THREADS"] == "1" for s in slots)
    # One cell: the machine as it is.
    (only,) = placement.placements(1, ["0", "1"], [0, 1])
    assert only.env == {} and only.cores is None and only.preexec() is None


def test_gpus_are_pinned_round_robin_and_shared_with_a_memory_fraction():
    slots = placement.placements(2, ["0", "1"], list(range(16)))
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1"]
    assert all("XLA_PYTHON_CLIENT_MEM_FRACTION" not in s.env for s in slots)  # one per GPU
    slots = placement.placements(8, ["0"], list(range(16)))
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0"] * 8
    assert all(s.env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.113" for s in slots)  # 0.9/8
    assert all(s.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for s in slots)
    assert all(s.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for s in slots)
    assert [len(s.cores) for s in slots] == [2] * 8
    slots = placement.placements(6, ["2", "5"], list(range(12)))
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["2", "5"] * 3
    assert slots[0].env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.300"  # 0.9 * 2 / 6
    # XLA_FLAGS of the sweep's environment are kept, the slot's appended.
    one_core = placement.placements(2, [], [0, 1])[0]
    merged = one_core.apply({"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "A": "b"})
    assert merged["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 "
                                   "--xla_cpu_multi_thread_eigen=false")
    assert merged["A"] == "b" and merged["OMP_NUM_THREADS"] == "1"


def test_sweeps_sharing_a_machine_take_their_own_slots_of_one_division():
    machine = placement.placements(8, ["0"], list(range(16)))
    mine = placement.placements(3, ["0"], list(range(16)), slots="5,1,6/8")
    assert mine == [machine[5], machine[1], machine[6]]
    # A one-slot sweep beside others gets an eighth of the GPU and 2 cores, not the machine.
    (one,) = placement.placements(1, ["0"], list(range(16)), slots="7/8")
    assert one.env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.113" and one.cores == (14, 15)
    assert placement.placements(1, ["0"], [0, 1], slots="0/1")[0].env == {}
    assert placement.parse_slots("3,4/8") == ([3, 4], 8)
    for text in ("3,4", "8/8", "1,1/4", "a/4", "1/0", ""):
        with pytest.raises(ValueError, match="--slots"):
            placement.parse_slots(text)
    with pytest.raises(ValueError, match="names 2 slots but --parallel=3"):
        placement.placements(3, ["0"], [0, 1], slots="0,1/4")


def test_every_slot_shares_the_sweeps_jax_compilation_cache_unless_the_user_set_one(tmp_path):
    root = str(tmp_path / "s")
    cache = str(tmp_path / "s" / ".jax_cache")
    for parallel in (1, 3):
        slots = placement.placements(parallel, ["0"], [0, 1], root)
        for slot in slots:
            env = slot.apply({"PATH": "/bin"})
            assert env["JAX_COMPILATION_CACHE_DIR"] == cache and env["PATH"] == "/bin"
            assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
            assert "JAX_COMPILATION_CACHE_DIR=" in slot.describe()
            # The user's own values win, an empty one (the cache off) included.
            mine = slot.apply({"JAX_COMPILATION_CACHE_DIR": "",
                               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2"})
            assert mine["JAX_COMPILATION_CACHE_DIR"] == ""
            assert mine["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "2"
    # A relative root still names one directory, whatever the cell's working directory.
    (slot,) = placement.placements(1, [], [0], "runs/x")
    assert slot.apply({})["JAX_COMPILATION_CACHE_DIR"] == os.path.abspath("runs/x/.jax_cache")
    assert placement.placements(1, [], [0])[0].apply({}) == {}  # no root: no cache


def test_gpu_detection(tmp_path, monkeypatch):
    assert placement.detect_gpus(None, {"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    assert placement.detect_gpus(None, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert placement.detect_gpus(None, {"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert placement.detect_gpus(1, {"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3"]
    assert placement.detect_gpus(2, {}) == ["0", "1"]
    assert placement.detect_gpus(0, {"CUDA_VISIBLE_DEVICES": "0"}) == []
    with pytest.raises(ValueError, match="lists 2"):
        placement.detect_gpus(3, {"CUDA_VISIBLE_DEVICES": "3,1"})
    with pytest.raises(ValueError, match="--gpus=-1"):
        placement.detect_gpus(-1, {})
    # Without CUDA_VISIBLE_DEVICES: the GPU lines of `nvidia-smi -L` (a stand-in here).
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\n"
                    "echo '  MIG 1g.18gb Device 0: (UUID: MIG-b)'\n"
                    "echo 'GPU 1: NVIDIA H200 (UUID: GPU-c)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    assert placement.detect_gpus(None, {}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi: CPU
    assert placement.detect_gpus(None, {}) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(parallel=0), "--parallel=0"), (dict(gpus=-1), "--gpus=-1"),
    (dict(shard="3/2"), "index 3 of 2"), (dict(shard="x"), "expected i/n"),
    (dict(slots="0,1/2"), "names 2 slots")])
def test_bad_flags_are_refused_before_any_file_is_written(tmp_path, kwargs, message):
    root = tmp_path / "s"
    with pytest.raises(ValueError, match=message):
        sweep.sweep(str(root), gin_files=["gin/smoke.gin"], **GRID, **kwargs)
    with pytest.raises(ValueError, match=message):
        sweep.run_sweep(_cells(), str(root), ["gin/smoke.gin"], [], **kwargs)
    assert not root.exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag, message", [  # the others: the library test above
    ("--shard=3/2", "index 3 of 2"), ("--parallel=0", "--parallel=0: 0 is not a positive")])
def test_the_command_refuses_bad_flags_before_any_work(tmp_path, flag, message):
    root = tmp_path / "s"
    result = subprocess.run([sys.executable, SWEEP, "--base_gin=gin/smoke.gin",
                             f"--root={root}", flag], cwd=REPO, text=True, capture_output=True,
                            env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not root.exists()


# --- the pool --------------------------------------------------------------------------


def test_parallel_cells_run_at_once_each_with_its_share_of_the_machine(tmp_path, slow_run,
                                                                       monkeypatch):
    script, events = slow_run
    monkeypatch.setenv("FAKE_AT_ONCE", "3")  # each cell runs until 3 have started
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # two "GPUs" for three slots
    # The sweep's cache is a default, taken where the caller set none (the test
    # session sets one: tests/conftest.py).
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    root = tmp_path / "s"
    cells = _cells()
    lines = []
    outcome = sweep.run_sweep(cells, str(root), ["gin/smoke.gin"], [], run_tool=script,
                              parallel=3, report=lines.append)
    assert sorted(outcome["done"]) == sorted(c.name for c in cells) and not outcome["failed"]
    assert _ends(events()) == sorted(c.name for c in cells)  # each cell ran once
    # The pool really ran cells side by side: at some moment 3 were running.
    running, most = 0, 0
    for _, kind, _, _ in sorted(events()):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == 3
    # Each cell got its slot's placement: a GPU, a memory share, its cores.
    slots = placement.placements(3, ["0", "1"], placement.available_cores())
    for cell in cells:
        env = json.loads((root / "cells" / cell.name / "env.json").read_text())
        matching = [s for s in slots if s.env["CUDA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"]
                    and list(s.cores) == env["cores"]]
        assert matching, (env, [s.describe() for s in slots])
        assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.600"  # 0.9 * 2 / 3
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert env["OMP_NUM_THREADS"] == str(len(env["cores"]))
        # One JAX compilation cache for every cell of the sweep, under its root.
        assert env["JAX_COMPILATION_CACHE_DIR"] == str(root.resolve() / ".jax_cache")
        assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert any("running in slot 2" in line for line in lines)
    assert any("to go, ETA" in line for line in lines)
    # State: one file per cell (the truth) and the root view derived from them.
    view = json.loads((root / "sweep_state.json").read_text())["cells"]
    for cell in cells:
        entry = json.loads((root / "cells" / cell.name / "cell_state.json").read_text())
        assert entry["status"] == "done" and entry["attempts"] == 1
        assert entry["host"] == socket.gethostname()
        assert view[cell.name] == entry
    progress = json.loads((root / "shards" / "0-of-1.json").read_text())
    assert progress["phase"] == "finished" and progress["done"] == len(cells)
    assert progress["left"] == 0 and progress["parallel"] == 3


@pytest.mark.slow
def test_two_sweeps_on_one_root_never_run_the_same_cell(tmp_path, slow_run, monkeypatch):
    """Two shards that overlap (both 0/1) and run side by side: each cell runs once."""
    script, events = slow_run
    monkeypatch.setenv("FAKE_SLEEP", "1.5")
    root = tmp_path / "s"
    command = [sys.executable, SWEEP, "--base_gin=gin/smoke.gin", f"--root={root}",
               f"--run_tool={script}", "--scorers=random,snip", "--methods=none",
               "--sparsities=0.9,0.95", "--seeds=0", "--parallel=2", "--gpus=0"]
    env = dict(os.environ, PYTHONPATH=REPO)
    first = subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    second = subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    names = sorted(c.name for c in _cells())
    assert _ends(events()) == names, outputs  # every cell exactly once, none at once twice
    assert all(p.returncode == 0 for p in (first, second)), outputs
    for cell in _cells():
        entry = json.loads((root / "cells" / cell.name / "cell_state.json").read_text())
        assert entry["status"] == "done" and entry["attempts"] == 1
        assert not (root / "cells" / cell.name / "cell.lock").exists()


def _lock_from(path, host, pid, age):
    """A lock file as another sweep left it, its heartbeat `age` seconds old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "since": time.time() - age,
                                "purpose": "sweep cell", "token": f"t-{host}-{pid}"}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_a_lock_from_another_host_is_taken_over_only_when_its_heartbeat_stopped(
        tmp_path, slow_run):
    script, events = slow_run
    root = tmp_path / "s"
    fresh, stale = _cells()[:2]
    fresh_lock = root / "cells" / fresh.name / "cell.lock"
    stale_lock = root / "cells" / stale.name / "cell.lock"
    _lock_from(fresh_lock, "elsewhere", 7, age=10)      # that host still runs it
    _lock_from(stale_lock, "elsewhere", 8, age=3600)    # that host died an hour ago
    # ...leaving the run.lock of its tools/run.py process behind.
    _lock_from(root / "cells" / stale.name / files.LOCK, "elsewhere", 9, age=3600)
    outcome = sweep.run_sweep([fresh, stale], str(root), ["gin/smoke.gin"], [],
                              run_tool=script, wait_busy=False)  # not 5 min for `fresh`
    assert outcome["busy"] == [fresh.name] and outcome["done"] == [stale.name]
    assert _ends(events()) == [stale.name]
    assert fresh_lock.exists() and not stale_lock.exists()
    assert not (root / "cells" / stale.name / files.LOCK).exists()
    # The status shows the other host's live lock as running.
    status = sweep.grid_status(str(root))
    state, detail = status["cells"][fresh.name]
    assert state == "running" and "host elsewhere, pid 7" in detail


def test_a_running_cells_lock_gets_a_heartbeat(tmp_path):
    lock = str(tmp_path / "cell.lock")
    owner = files.acquire_lock(lock)
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    assert files.touch_lock(lock, owner)
    assert time.time() - os.path.getmtime(lock) < 60
    assert not files.touch_lock(lock, dict(owner, token="another"))
    files.release_lock(lock, owner)
    assert not files.touch_lock(lock, owner)


def _sweep_cli(root, script, *extra):
    return [sys.executable, SWEEP, "--base_gin=gin/smoke.gin", f"--root={root}",
            f"--run_tool={script}", "--scorers=random,snip,dense", "--methods=none",
            "--sparsities=0.9,0.95", "--seeds=0", "--gpus=0", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_killed_parallel_sweep_resumes_and_runs_every_cell_once(tmp_path, slow_run,
                                                                  monkeypatch, signum):
    script, events = slow_run
    monkeypatch.setenv("FAKE_SLEEP", "1.0")
    root = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=REPO)
    # Started with SIGINT ignored, as a shell script's background job is (and pytest itself
    # when run from one): the sweep must still stop on SIGINT.
    process = subprocess.Popen(_sweep_cli(root, script, "--parallel=2"), cwd=REPO, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_ends(events())) < 2:
            time.sleep(0.05)
        while time.time() < deadline and sum(k == "start" for _, k, _, _ in events()) < 4:
            time.sleep(0.05)  # two more cells started: they are running now
        process.send_signal(signum)  # SIGINT: Ctrl-C, or `timeout -s INT`
        output = process.communicate(timeout=60)[0]
        assert process.returncode != 0 and "run the same command to resume" in output
        assert "Traceback" not in output, output[-3000:]
        with pytest.raises(ProcessLookupError):  # no cell process outlived the sweep
            os.killpg(process.pid, 0)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finished = set(_ends(events()))
    interrupted = {n for _, k, n, _ in events() if k == "start"} - finished
    assert len(finished) >= 2 and interrupted
    cut_seconds = {}
    for name in interrupted:
        entry = json.loads((root / "cells" / name / "cell_state.json").read_text())
        assert entry["status"] == "interrupted"
        assert entry["elapsed_total"] == entry["elapsed"] > 0
        cut_seconds[name] = entry["elapsed"]
        assert not (root / "cells" / name / "cell.lock").exists()
    assert json.loads((root / "shards" / "0-of-1.json").read_text())["phase"] == "stopped"

    result = subprocess.run(_sweep_cli(root, script, "--parallel=2"), cwd=REPO, env=env,
                            text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(c.name for c in sweep.make_grid(["random", "snip", "dense"], ["none"],
                                                   ["0.9", "0.95"], ["0"]))
    assert _ends(events()) == names  # every cell finished exactly once over both sweeps
    for name in finished:
        assert f"{name}: done (finished earlier, skipped)" in result.stdout
    for name, seconds in cut_seconds.items():  # the wall time counts both attempts
        entry = json.loads((root / "cells" / name / "cell_state.json").read_text())
        assert entry["elapsed_total"] == pytest.approx(seconds + entry["elapsed"])
    assert "| none | dense |" in (root / "results.md").read_text()

    status = subprocess.run([sys.executable, SWEEP, f"--root={root}", "--status"], cwd=REPO,
                            env=env, text=True, capture_output=True, timeout=120)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "5 cells: 5 done, 0 running, 0 failed, 0 interrupted, 0 pending" in status.stdout
    assert "shard 0/1 (finished" in status.stdout and "all cells done" in status.stdout


def _gone(pid):
    """True once `pid` is no process (or a zombie awaiting its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_cells_of_a_sigkilled_sweep_die_with_it_and_the_same_command_resumes_them(
        tmp_path, slow_run):
    """kill -9 (or a command time limit) gives the sweep no chance to stop its cells:
    the parent-death signal does, so no orphan keeps training (issue 13, on the H200)."""
    script, events = slow_run
    root = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=REPO, FAKE_SLEEP="60")  # far longer than the test waits
    process = subprocess.Popen(_sweep_cli(root, script, "--parallel=2"), cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and sum(k == "start" for _, k, _, _ in events()) < 2:
            time.sleep(0.05)
        cells = {pid: name for _, kind, name, pid in events() if kind == "start"}
        assert len(cells) == 2 and not any(_gone(pid) for pid in cells)
        process.kill()
        process.wait()
        deadline = time.time() + 10
        while time.time() < deadline and not all(_gone(pid) for pid in cells):
            time.sleep(0.05)
        assert all(_gone(pid) for pid in cells), [n for p, n in cells.items() if not _gone(p)]
    finally:
        for pid in cells if "cells" in locals() else ():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert not _ends(events())
    # The dead sweep's locks are stale: its cells read as interrupted, not running.
    status = sweep.grid_status(str(root))
    assert {status["cells"][name][0] for name in cells.values()} == {"interrupted"}

    env["FAKE_SLEEP"] = "0"
    result = subprocess.run(_sweep_cli(root, script, "--parallel=2"), cwd=REPO, env=env,
                            text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(c.name for c in sweep.make_grid(["random", "snip", "dense"], ["none"],
                                                   ["0.9", "0.95"], ["0"]))
    assert _ends(events()) == names  # every cell finished exactly once
    for name in cells.values():
        entry = json.loads((root / "cells" / name / "cell_state.json").read_text())
        assert entry["status"] == "done" and entry["attempts"] == 2
        assert not (root / "cells" / name / "cell.lock").exists()


@pytest.mark.slow
def test_a_sweep_waits_for_the_cells_of_another_and_runs_them_when_that_one_is_killed(
        tmp_path, slow_run):
    """Two sweeps on one root; the first is killed (-9) while the second, its own cells
    done, waits for the first's: the second runs them, and every cell ends once."""
    script, events = slow_run
    root = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=REPO)
    first = subprocess.Popen(_sweep_cli(root, script, "--parallel=2"), cwd=REPO,
                             env=dict(env, FAKE_SLEEP="60"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and sum(k == "start" for _, k, _, _ in events()) < 2:
            time.sleep(0.05)
        held = sorted(name for _, kind, name, _ in events() if kind == "start")
        assert len(held) == 2
        second = subprocess.Popen(_sweep_cli(root, script, "--parallel=2"), cwd=REPO,
                                  env=dict(env, FAKE_SLEEP="0.2"), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while time.time() < deadline and len(_ends(events())) < 3:
            time.sleep(0.05)  # the second sweep ran the three other cells...
        time.sleep(1.0)
        assert second.poll() is None  # ...and waits for the first's two
        assert len(_ends(events())) == 3 and not set(held) & set(_ends(events()))
        first.kill()
        first.wait()  # reaped, as its shell would (a zombie's pid still counts as alive)
        output = second.communicate(timeout=120)[0]
    finally:
        for process in (first, second) if "second" in locals() else (first,):
            process.kill()
            process.wait()
    assert second.returncode == 0, output[-3000:]
    names = sorted(c.name for c in sweep.make_grid(["random", "snip", "dense"], ["none"],
                                                   ["0.9", "0.95"], ["0"]))
    assert _ends(events()) == names  # every cell ended exactly once, never two at once
    for name in held:
        assert f"{name}: busy, another sweep runs it (" in output
        entry = json.loads((root / "cells" / name / "cell_state.json").read_text())
        assert entry["status"] == "done" and entry["attempts"] == 2
    assert "5 run, 0 finished earlier, 0 failed, 0 run elsewhere, 0 not run" in output


# --- status ----------------------------------------------------------------------------


def test_status_of_a_grid_run_in_shards(tmp_path, slow_run, monkeypatch):
    script, events = slow_run
    root = tmp_path / "s"
    cells = _cells()
    monkeypatch.setenv("FAKE_CRASH", cells[2].name)  # shard 0 of 2 runs cells 0 and 2
    outcome = sweep.run_sweep(cells, str(root), ["gin/smoke.gin"], [], run_tool=script,
                              shard="0/2")
    assert outcome["done"] == [cells[0].name] and outcome["failed"] == [cells[2].name]
    started = sorted(name for _, kind, name, _ in events() if kind == "start")
    assert started == [cells[0].name, cells[2].name]  # shard 1's cells not run
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "cells" / cells[1].name / "cell.lock")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # shard 1 runs cell 1 now
        status = sweep.grid_status(str(root))
    finally:
        holder.kill()
        holder.wait()
    assert {name: state for name, (state, _) in status["cells"].items()} == {
        cells[0].name: "done", cells[1].name: "running", cells[2].name: "failed",
        cells[3].name: "pending"}
    assert f"pid {holder.pid}" in status["cells"][cells[1].name][1]
    lines = sweep.format_status(status)
    assert "4 cells: 1 done, 1 running, 1 failed, 0 interrupted, 1 pending" in lines
    assert any(line.startswith("shard 0/2 (finished") and "1/2 done" in line for line in lines)
    assert lines[-1].startswith("ETA unknown: no shard is running")
    # The holder is gone now: its cell reads as interrupted (a stale lock), not running.
    assert sweep.grid_status(str(root))["cells"][cells[1].name][0] == "interrupted"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sweep.grid_status(str(tmp_path / "nowhere"))


def test_shards_run_apart_and_collect_only_merges_them(tmp_path, slow_run):
    script, events = slow_run
    root = tmp_path / "s"
    grid = dict(gin_files=["gin/smoke.gin"], run_tool=script, **GRID)
    for shard in ("1/2", "0/2"):
        assert sweep.sweep(str(root), shard=shard, **grid) == 0
    assert _ends(events()) == sorted(c.name for c in _cells())  # each once, by its shard
    records = {r["shard"]: r for r in shards.read_progress(str(root))}
    assert sorted(records) == ["0/2", "1/2"]
    assert records["0/2"]["cells"] == [c.name for c in _cells()[0::2]]
    assert records["1/2"]["grid"] == [c.name for c in _cells()]
    (root / "results.md").unlink()
    (root / "results.csv").unlink()
    assert sweep.sweep(str(root), collect_only=True) == 0
    assert len((root / "results.csv").read_text().splitlines()) == 1 + len(_cells())


def test_the_root_state_is_derived_from_the_cell_files_and_old_roots_still_read(tmp_path):
    root = tmp_path / "s"
    cells = _cells()
    # A root written by an older sweep: one state file, no per-cell files.
    (root / "cells" / cells[0].name).mkdir(parents=True)
    (root / "sweep_state.json").write_text(json.dumps(
        {"cells": {cells[0].name: {"status": "failed", "attempts": 1}}}))
    state = sweep.SweepState(str(root))
    assert state.entry(cells[0])["status"] == "failed"
    # Two workers, each with its own view, each updating its own cell: both kept.
    mine, theirs = sweep.SweepState(str(root)), sweep.SweepState(str(root))
    (root / "cells" / cells[1].name).mkdir()
    mine.entry(cells[1]).update(status="running", attempts=1)
    theirs.entry(cells[0]).update(status="done", attempts=2)
    mine.save_cell(cells[1])
    theirs.save_cell(cells[0])
    mine.save()  # a stale writer rewrites the view: it is recomputed, not merged
    view = json.loads((root / "sweep_state.json").read_text())["cells"]
    assert view[cells[0].name] == {"status": "done", "attempts": 2}
    assert view[cells[1].name] == {"status": "running", "attempts": 1}
