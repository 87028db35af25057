"""Running the tools in a subprocess where `import tensorflow` fails (JAX suite helper).

`sys.modules["tensorflow"] = None` makes every `import tensorflow` raise and
`importlib.util.find_spec("tensorflow")` answer None, so these checks hold
even in an environment where TensorFlow happens to be installed.
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK_TF = ("import sys\n"
            "for name in ('tensorflow', 'tensorflow_datasets', 'tf_keras'):\n"
            "    sys.modules[name] = None\n")


def python(code: str, *, timeout: float = 300, **popen):
    """Runs `code` after blocking TensorFlow, with KERAS_BACKEND=jax, from the repo."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, "-c", BLOCK_TF + code]
    if popen:
        return subprocess.Popen(args, cwd=REPO, env=env, **popen)
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def tool(script: str, *args: str, timeout: float = 600, **popen):
    """Runs `tools/<script>` with `args` as `__main__`, TensorFlow blocked."""
    code = (f"import runpy\nsys.argv = {[script, *args]!r}\n"
            f"runpy.run_path({os.path.join(REPO, 'tools', script)!r}, run_name='__main__')\n")
    return python(code, timeout=timeout, **popen)
