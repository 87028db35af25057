"""Command-line entry points (`epsd-run`, `epsd-sweep`, `epsd-export`).

Each module defines its absl flags and a `main()` that `pyproject.toml` names
as a console script; `tools/*.py` are thin wrappers around the same `main()`.
Import one module per process: each defines its own flags.
"""
