"""Atomic artifact writing: no partial files are ever left behind.

Every artifact is first written to a temporary sibling (same directory, so the
final `os.replace` is an atomic rename on one filesystem) and renamed into
place only once it is complete. A failure anywhere removes the temporary.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


def check_destination(path: str, overwrite: bool) -> None:
    """Raises before any work if `path` cannot be written.

    Args:
        path: file or directory the artifact will be written to.
        overwrite: whether an existing file/directory at `path` may be replaced.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        FileNotFoundError: the parent directory does not exist.
        PermissionError: the parent directory is not writable.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Export target {path!r} already exists; pass overwrite=True to "
            "replace it or choose another path.")
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            f"Directory {parent!r} for export target {path!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Directory {parent!r} is not writable; cannot export {path!r}.")


def prepare_workdir(workdir: str) -> None:
    """Creates `workdir` (and parents) or raises a clear error if impossible."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"Cannot create export workdir {workdir!r}: {error}") from error
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise PermissionError(f"Export workdir {workdir!r} is not writable.")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool, is_dir: bool = False,
                suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` on success.

    Args:
        path: final destination.
        overwrite: replace an existing destination.
        is_dir: the artifact is a directory (SavedModel) rather than a file.
        suffix: extension the temporary must keep (Keras insists on `.keras`).

    Yields:
        The temporary path to write to. It does not exist yet for files; for
        directories its parent exists and the directory itself does not.
    """
    check_destination(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    holder = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    temporary = os.path.join(holder, "artifact" + suffix)
    try:
        yield temporary
        if not os.path.exists(temporary):
            raise RuntimeError(f"Writer produced no artifact for {path!r}.")
        if os.path.exists(path):
            # Only reached with overwrite=True (checked above). A directory
            # cannot be atomically replaced by rename, so remove it first.
            _remove(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def write_bytes(path: str, data: bytes, overwrite: bool) -> None:
    """Writes `data` to `path` atomically."""
    with atomic_path(path, overwrite) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def write_text(path: str, text: str, overwrite: bool) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"), overwrite)


def size_bytes(path: str) -> int:
    """Size of a file, or the total size of the files under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in names)
    return total


def gzipped_size_bytes(path: str) -> int:
    """Bytes of `path` after gzip (level 9); directories are tarred first.

    This is the download size a deployer pays; sparse zeros compress well even
    in a dense file, so raw and gzipped sizes are both reported.
    """
    import gzip
    import io
    import tarfile

    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return len(gzip.compress(handle.read(), compresslevel=9, mtime=0))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(path, arcname=os.path.basename(path))
    return len(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
