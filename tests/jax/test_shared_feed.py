"""The shared-GPU feed benchmark (tools/benchmarks/shared_feed.py) runs TF-free.

`--smoke` runs two worker processes per side at once on CPU (the small CNN),
through the file barrier and the sweep's placement, and writes one JSON.
"""

import json
import sys
from pathlib import Path

import pytest

from tests.jax import tf_free

pytest.importorskip("jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "benchmarks"))

import shared_feed  # noqa: E402


def test_shared_feed_smoke_times_both_sides_with_every_worker(tmp_path):
    output = tmp_path / "shared_feed.json"
    result = tf_free.tool("benchmarks/shared_feed.py", "--smoke", "--parallel=2",
                          "--rounds=1", "--steps=2", "--fits=1", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    [entry] = json.loads(output.read_text())["results"]
    assert entry["parallel"] == 2 and [w["side"] for w in entry["waves"]] == ["device", "fed"]
    for wave in entry["waves"]:
        assert len(wave["per_process"]) == 2 and min(wave["per_process"]) > 0
        assert wave["images_per_second"] == pytest.approx(sum(wave["per_process"]))
    assert entry["fed_over_device"] == pytest.approx(
        entry["fed_images_per_second"] / entry["device_images_per_second"])
    assert "2 at once: device" in result.stdout


def test_the_sides_alternate_per_round_and_the_ratio_is_the_median_of_rounds():
    order = []
    speeds = iter([100.0, 50.0, 40.0, 100.0, 100.0, 90.0])  # per wave, in run order

    def fake_wave(side, n, steps, fits, smoke, scratch, gpus):
        order.append(side)
        return {"side": side, "parallel": n, "images_per_second": next(speeds),
                "per_process": []}

    report = shared_feed.run(parallel=(8,), rounds=3, wave_fn=fake_wave)
    assert order == ["device", "fed", "fed", "device", "device", "fed"]
    [entry] = report["results"]
    # Rounds: fed/device = 50/100, 40/100, 90/100: median 0.5.
    assert entry["fed_over_device"] == pytest.approx(0.5)
    assert entry["device_images_per_second"] == 100.0 and entry["fed_images_per_second"] == 50.0
    with pytest.raises(ValueError, match="each must be >= 1"):
        shared_feed.run(parallel=(0,), wave_fn=fake_wave)
