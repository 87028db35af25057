"""The GPU benchmark suite runs (smoke sizes, CPU): every part yields its figure."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "benchmarks"))

import gpu  # noqa: E402


def test_gpu_suite_smoke_runs_and_reports_ratios():
    result = gpu.run(smoke=True, parts=("sd_vs_fit", "scoring", "callbacks"),
                     methods=("dlb",))
    assert result["backend"] == "jax"
    assert result["sd_vs_fit"]["dlb"]["ratio"] > 0
    assert result["sd_vs_fit"]["dlb"]["images_per_second"] > 0
    assert result["scoring"]["ratio"] > 0
    assert 0 < result["callbacks"]["ratio"] <= 1 and result["callbacks"]["per_step"] > 0
    assert result["callbacks"]["steps"] == 2  # the smoke epoch
    assert result["callbacks"]["per_fit_seconds"] + result["callbacks"]["per_epoch_seconds"] > 0


def test_gpu_suite_rejects_unknown_parts():
    with pytest.raises(ValueError, match="unknown parts"):
        gpu.run(smoke=True, parts=("memry",))
