"""`epsd_tf` and the tools work on JAX where `import tensorflow` fails (issue 11).

And what needs TensorFlow (TFDS input, export, PQAT) fails before any work
with what to do instead.
"""

import pytest

from tests.jax import tf_free

pytest.importorskip("jax")


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_import_epsd_tf_and_every_package():
    result = _ok(tf_free.python(
        "import epsd_tf, keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        "for name in ('models', 'data', 'pruning', 'distill', 'analysis', 'sweep',\n"
        "             'train'):\n"
        "    getattr(epsd_tf, name) if name != 'sweep' else __import__('epsd_tf.sweep')\n"
        "from epsd_tf.train import config, experiment, gin_registry\n"
        "print('ok', sorted(k for k, v in sys.modules.items()\n"
        "                   if k.startswith('tensorflow') and v is not None))\n"))
    assert "ok []" in result.stdout


def _help(script: str) -> str:
    result = tf_free.tool(script, "--helpfull")  # absl exits 1 after printing help
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_run_helpfull_and_sweep_import():
    assert "--gin_file" in _help("run.py")
    _ok(tf_free.python("from epsd_tf import sweep\nfrom epsd_tf.sweep import loop, grid\n"))
    assert "--scorers" in _help("sweep.py")


def test_export_and_pqat_stages_fail_before_any_work(tmp_path):
    for binding, needle in (("run.export = @export_all", "epsd-export --model="),
                            ("run.pqat = @run_pqat", "run.pqat")):
        workdir = tmp_path / binding.split()[0]
        result = tf_free.tool("run.py", "--gin_file=gin/smoke.gin", f"--workdir={workdir}",
                              f"--gin_bindings={binding}", timeout=300)
        assert result.returncode != 0
        assert "needs TensorFlow" in result.stderr and needle in result.stderr
        assert not (workdir / "run.lock").exists() and not (workdir / "config.gin").exists()


def test_tfds_fails_before_any_work():
    result = tf_free.python(
        "from epsd_tf import data\n"
        "try:\n"
        "    data.load('cifar10', source='tfds')\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n")
    _ok(result)
    assert "refused:" in result.stdout and "source='npz'" in result.stdout


def test_a_backend_that_is_not_installed_is_named():
    result = tf_free.python("import os\nos.environ['KERAS_BACKEND'] = 'torch'\n"
                            "import importlib.util\n"
                            "assert importlib.util.find_spec('torch') is None\n"
                            "import epsd_tf\n")
    if "AssertionError" in result.stderr:
        pytest.skip("torch is installed here")
    assert result.returncode != 0
    assert "'torch' is not installed" in result.stderr and "KERAS_BACKEND" in result.stderr


def test_the_export_command_says_where_it_runs(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read: the backend is checked first")
    result = tf_free.tool("export.py", f"--model={model}", timeout=120)
    assert result.returncode != 0
    assert "epsd-export needs TensorFlow" in result.stderr
    assert "machine with TensorFlow" in result.stderr
