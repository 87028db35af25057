"""Packaging: console scripts, shipped gin configs, registration on `import epsd_tf`.

The full check (a fresh venv, `pip install '.[cpu]'`, `epsd-run` from /tmp) is
too slow for CI; these are the cheap invariants it rests on.
"""

import ast
import glob
import os
import subprocess
import sys
import tomllib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _subprocess(code: str, cwd, *args, timeout=300):
    """A fresh interpreter in `cwd` that sees the checkout (not an installed copy)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_console_scripts_resolve_to_callables(tmp_path):
    scripts = _pyproject()["project"]["scripts"]
    assert {"epsd-run", "epsd-sweep", "epsd-export"} <= set(scripts)
    # In a fresh interpreter each: every CLI module defines its own absl flags.
    for name, target in scripts.items():
        module, function = target.split(":")
        result = _subprocess(f"import {module} as m; assert callable(m.{function})", tmp_path)
        assert result.returncode == 0, (name, result.stderr[-2000:])


def test_extras_name_a_backend_each():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert any(r.startswith("tensorflow-cpu") for r in extras["cpu"])
    assert any(r.startswith("tensorflow[and-cuda]") for r in extras["gpu"])
    assert any(r.startswith("jax") for r in extras["jax"])
    assert not any("tensorflow" in r for r in extras["jax"])  # issue 11: a TF-free install
    assert not any("tensorflow" in r for r in _pyproject()["project"]["dependencies"])


def test_every_gin_config_is_package_data():
    from epsd_tf.train import config
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["epsd_tf"]
    package = os.path.join(REPO, "epsd_tf")
    shipped = {os.path.relpath(p, package) for pattern in patterns
               for p in glob.glob(os.path.join(package, pattern))}
    configs = config.available_gin_files()
    assert len(configs) >= 5 and "quickstart.gin" in configs
    assert {os.path.join("gin", name) for name in configs} <= shipped
    # The repository's gin/ is the package's (README commands use gin/<name>.gin).
    assert os.path.realpath(os.path.join(REPO, "gin")) == os.path.realpath(config.GIN_DIR)


@pytest.mark.parametrize("name", ["smoke", "smoke.gin", "gin/smoke.gin"])
def test_shipped_configs_are_found_by_name_from_any_directory(name, tmp_path, monkeypatch):
    from epsd_tf.train import config
    monkeypatch.chdir(tmp_path)  # no gin/ here: the package's copy answers
    text = config.parse([name], ["run.epochs = 1"])
    assert "load.dataset = 'synthetic'" in text and "run.epochs = 1" in text


def test_a_missing_path_is_not_mistaken_for_a_shipped_config(tmp_path):
    from epsd_tf.train import config
    with pytest.raises(FileNotFoundError, match="available in .*smoke.gin"):
        config.parse([str(tmp_path / "smoke.gin")])


def test_tools_do_not_edit_sys_path():
    for path in glob.glob(os.path.join(REPO, "tools", "*.py")):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), path


def test_epsd_run_lists_the_shipped_configs_outside_the_repository(tmp_path):
    result = _subprocess("", tmp_path, "-m", "epsd_tf.cli.run", "--list_configs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "quickstart.gin" in result.stdout.split()


def test_load_model_after_a_plain_import_of_the_package(tmp_path):
    """A saved pruned model loads in a fresh interpreter that only ran `import epsd_tf`."""
    import keras

    from epsd_tf import pruning
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(8, activation="relu")(inputs))
    model = pruning.wrap(keras.Model(inputs, outputs))
    assert pruning.has_masks(model)
    path = tmp_path / "model.keras"
    model.save(path)
    code = ("import sys, numpy as np, epsd_tf, keras\n"
            "assert 'epsd_tf.data' not in sys.modules and 'gin' not in sys.modules\n"
            f"model = keras.models.load_model({str(path)!r})\n"
            "print(type(model.layers[1]).__name__, float(np.sum(model(np.ones((1, 6))))))\n")
    result = _subprocess(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = float(keras.ops.sum(model(keras.ops.ones((1, 6)))))
    name, value = result.stdout.split()
    assert name == "PruneLowMagnitude"
    assert float(value) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("tty, expected", [(True, 1), (False, 2)])
def test_progress_is_one_line_per_epoch_unless_stdout_is_a_terminal(tty, expected, monkeypatch):
    from epsd_tf.train import callbacks

    class Stdout:
        def isatty(self):
            return tty

    monkeypatch.setattr(sys, "stdout", Stdout())
    assert callbacks.progress_verbosity("auto") == expected
    assert callbacks.progress_verbosity(0) == 0
    with pytest.raises(ValueError, match="'auto', 0, 1 or 2"):
        callbacks.progress_verbosity("bars")


def test_citation_file_cites_the_software_and_references_the_paper():
    """CITATION.cff 1.2.0 (validated with cffconvert when written); versions agree."""
    import epsd_tf
    text = open(os.path.join(REPO, "CITATION.cff")).read()
    assert text.startswith("cff-version: 1.2.0\n")
    assert "\ntype: software\n" in text
    assert f"\nversion: {epsd_tf.__version__}\n" in text
    assert _pyproject()["project"]["version"] == epsd_tf.__version__
    references = text[text.index("\nreferences:\n"):]
    assert "EPSD: Early Pruning with Self-Distillation" in references
    assert "arXiv:2402.00084" in references
