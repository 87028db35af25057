"""Command-line entry points (`epsd-run`, `epsd-sweep`, `epsd-export`).

Each module defines its absl flags and a `main()` that `pyproject.toml` names
as a console script; `tools/*.py` are thin wrappers around the same `main()`.
Import one module per process: each defines its own flags.
"""

import os
import sys

from absl import app, flags


def run_app(main, module_name: str) -> None:
    """`app.run(main)` for a console script, with `--help` listing the module's flags.

    absl's `--help` lists the flags of the module named by `sys.argv[0]`; a
    console script (`.../bin/epsd-run`) is not the module that defined them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)
