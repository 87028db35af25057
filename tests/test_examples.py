"""The scripts in examples/ run end to end on tiny data (each in its own process)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")


def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_prune_your_own_model_then_export_it(tmp_path):
    out = _run("prune_your_own_model.py", f"--out={tmp_path}", "--epochs=2")
    assert "(90.0 % pruned)" in out and "pruned weights still zero: True" in out
    accuracy = float(out.split("test accuracy ")[1].split(";")[0])
    assert accuracy > 0.5  # 4 learnable classes: clearly above chance
    out = _run("export_trained_model.py", f"--model={tmp_path / 'model.keras'}",
               f"--npz={tmp_path / 'toy.npz'}", "--latency_runs=0")
    assert "ship: " in out
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert "export_trained_model.py --model=" in card and "90.0" in card


@pytest.mark.slow
def test_compare_scorers(tmp_path):
    out = _run("compare_scorers.py", f"--out={tmp_path}", "--scorers=snip,random",
               "--epochs=1")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[0] for row in rows] == ["snip", "random"]
    assert all(0.0 <= float(row[1]) <= 1.0 for row in rows)
