"""The sweep throughput benchmark (tools/benchmarks/sweep_throughput.py) runs TF-free.

`--smoke` runs real `tools/run.py` cells (gin/smoke.gin) with `--parallel` 1 and
2 on CPU, the sweep process with TensorFlow blocked, and writes one JSON.
"""

import json

import pytest

from tests.jax import tf_free

pytest.importorskip("jax")


@pytest.mark.slow
def test_sweep_throughput_smoke_runs_without_tensorflow(tmp_path):
    output = tmp_path / "throughput.json"
    result = tf_free.tool("benchmarks/sweep_throughput.py", "--smoke", "--cells_per_slot=1",
                          f"--output={output}", f"--workdir={tmp_path / 'roots'}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["machine"]["backend"] == "jax" and "tensorflow" not in report["machine"]
    assert [r["parallel"] for r in report["results"]] == [1, 2]
    for entry in report["results"]:
        assert entry["done"] == entry["cells"] == entry["parallel"] and not entry["failed"]
        assert entry["cells_per_hour"] > 0 and entry["mean_cell_seconds"] > 0
    assert report["results"][0]["speedup_vs_parallel_1"] == 1.0
    assert report["best_parallel"] in (1, 2)
    # Both --parallel=2 cells ran, each pinned to one of the two slots' cores.
    assert len(report["results"][1]["slots"]) == 2
    roots = tmp_path / "roots" / "round0"
    assert (roots / "parallel2" / "shards" / "0-of-1.json").exists()
    assert "--parallel=2:" in result.stdout


def test_sweep_throughput_refuses_bad_settings():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "benchmarks"))
    import sweep_throughput
    with pytest.raises(ValueError, match="each must be >= 1"):
        sweep_throughput.run(smoke=True, parallel=(0,))
    with pytest.raises(ValueError, match="each must be >= 1"):
        sweep_throughput.run(smoke=True, rounds=0)


def test_the_sweep_process_leaves_the_devices_to_its_cells(tmp_path):
    """A whole sweep (pool, state, results) never starts a JAX backend in its own
    process: on a GPU it would take memory from the cells it runs."""
    from tests.train.test_sweep_parallel import SLOW_RUN
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)
    code = (
        "import os\n"
        f"os.environ.update(FAKE_EVENTS={str(tmp_path / 'events')!r}, "
        f"FAKE_CALLS={str(tmp_path / 'calls')!r})\n"
        "from epsd_tf import sweep\n"
        f"code = sweep.sweep({str(tmp_path / 's')!r}, gin_files=['gin/smoke.gin'], "
        "scorers=['random', 'dense'], methods=['none'], sparsities=['0.9'], seeds=['0'], "
        f"run_tool={str(script)!r}, parallel=2, gpus=0, report=print)\n"
        "from jax._src import xla_bridge\n"
        "print('exit', code, 'backends', sorted(xla_bridge._backends))\n")
    result = tf_free.python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exit 0 backends []" in result.stdout
    assert (tmp_path / "s" / "results.md").exists()


def test_mps_both_pairs_the_two_ways_in_alternating_order(monkeypatch):
    import contextlib
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "benchmarks"))
    import sweep_throughput
    under = []
    order = []

    @contextlib.contextmanager
    def fake_daemon():
        under.append(True)
        yield {}
        under.pop()

    speeds = iter([100.0, 300.0, 180.0, 200.0])  # (off, on) in round 0, (on, off) in round 1

    def fake_measure(n, root, *args):
        order.append((n, bool(under)))
        return {"parallel": n, "cells_per_hour": next(speeds), "done": n, "cells": n,
                "failed": [], "wall_seconds": 1.0}
    monkeypatch.setattr(sweep_throughput.mps_lib, "daemon", fake_daemon)
    monkeypatch.setattr(sweep_throughput, "measure", fake_measure)
    report = sweep_throughput.run(smoke=True, parallel=(8,), rounds=2, mps="both", gpus=0)
    assert order == [(8, False), (8, True), (8, True), (8, False)]
    assert report["mps_speedup"] == {"8": pytest.approx((3.0 + 0.9) / 2)}  # 300/100, 180/200
    assert {(r["mps"], r["cells_per_hour"]) for r in report["results"]} == {
        (False, 150.0), (True, 240.0)}
    with pytest.raises(ValueError, match="mps='sometimes'"):
        sweep_throughput.run(smoke=True, mps="sometimes")
