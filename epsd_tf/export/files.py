"""Export destinations: checks before work, atomic writes, artifact sizes.

The atomic write itself (temporary sibling + rename, nothing left behind on a
failure) is `epsd_tf.files`; this module adds the export-specific checks
(existing targets, missing or unwritable directories, named in export terms)
and the size measurements of the export report.
"""

import contextlib
import os
from typing import Iterator

from epsd_tf import files


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


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool, is_dir: bool = False,
                suffix: str = "") -> Iterator[str]:
    """`epsd_tf.files.atomic_path` after the export checks of `check_destination`.

    Args:
        path: final destination.
        overwrite: replace an existing destination.
        is_dir: the artifact is a directory (SavedModel) rather than a file.
        suffix: extension the temporary must keep (Keras insists on `.keras`).

    Yields:
        The temporary path to write to (it does not exist yet).
    """
    del is_dir  # files and directories are renamed into place alike
    check_destination(path, overwrite)
    with files.atomic_path(path, overwrite, suffix=suffix) as temporary:
        yield temporary


def write_bytes(path: str, data: bytes, overwrite: bool) -> None:
    """Writes `data` to `path` atomically (export checks first)."""
    check_destination(path, overwrite)
    files.write_bytes(path, data, overwrite)


def write_text(path: str, text: str, overwrite: bool) -> None:
    """Writes `text` (UTF-8) to `path` atomically (export checks first)."""
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
