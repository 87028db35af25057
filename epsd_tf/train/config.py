"""Gin at the edge: parse config files, validate them, run the experiment.

This is the only module (with `gin_registry.py` and `experiment.run`'s
decorator) that knows about gin. The library packages never import it.
"""

from __future__ import annotations

import os

import gin

from epsd_tf import files
from epsd_tf.train import experiment, gin_registry  # gin_registry registers configurables

# The configs ship inside the package (epsd_tf/gin/; the repository's top-level
# gin/ is a link to it), so `include 'gin/base.gin'` resolves from PACKAGE.
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_DIR = os.path.join(PACKAGE, "gin")


def parse(gin_files, gin_bindings=()) -> str:
    """Parses gin files and bindings, then locks the config; returns its text.

    The config is finalized (`gin.finalize()`): nothing can rebind a parameter
    after parsing, so the text returned (and stored as `config.gin`) is the
    config the run uses. The next `parse` clears and unlocks it.

    Raises:
        FileNotFoundError: a gin file does not exist (checked before parsing).
        ValueError: unknown configurable or parameter, or a syntax error; the
            message names the offending file or binding.
    """
    gin_files = list(gin_files)
    if not gin_files:
        raise ValueError("No gin file given; pass --gin_file=gin/quickstart.gin "
                         f"(available: {available_gin_files()})")
    for path in gin_files:
        if _resolve(path) is None:
            raise FileNotFoundError(
                f"gin file {path!r} does not exist; available in {GIN_DIR}: "
                f"{available_gin_files()}")
    gin.clear_config()
    # Gin files include each other as 'gin/<name>.gin', relative to the
    # package, from whatever directory the tool runs in.
    gin.add_config_file_search_path(PACKAGE)
    try:
        gin.parse_config_files_and_bindings(
            [_resolve(p) for p in gin_files], list(gin_bindings), finalize_config=True)
    except (ValueError, KeyError, TypeError, SyntaxError) as error:
        raise ValueError(
            f"Invalid gin config ({', '.join(gin_files)}; bindings {list(gin_bindings)}): "
            f"{error}\nConfigurables that exist: {sorted(gin_registry.names())}") from error
    return gin.config_str()


def run_from_config(workdir: str, config_text: str, overwrite: bool = False) -> dict:
    """Runs `experiment.run` with the parsed config; writes the operative config.

    The operative config (the parameters actually used) is written only by a run
    that trained, so reporting an already finished run never shrinks it.
    """
    finished_before = not overwrite and files.is_finished(workdir)
    metrics = experiment.run(workdir, config_text=config_text, overwrite=overwrite)
    if not finished_before:
        files.write_text(os.path.join(workdir, files.OPERATIVE_CONFIG),
                         gin.operative_config_str())
    return metrics


def available_gin_files() -> list[str]:
    return sorted(f for f in os.listdir(GIN_DIR) if f.endswith(".gin"))


def _resolve(path: str) -> str | None:
    """A path that exists, else the shipped config it names (`quickstart`,
    `quickstart.gin` or `gin/quickstart.gin`), else None."""
    if os.path.isfile(path):
        return path
    directory, name = os.path.split(path)
    if directory not in ("", "gin"):
        return None  # a path elsewhere that does not exist: never a shipped config
    for candidate in (name, name + ".gin"):
        shipped = os.path.join(GIN_DIR, candidate)
        if os.path.isfile(shipped):
            return shipped
    return None
