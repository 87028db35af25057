"""The ground floor: atomic files, the run directory's names, locks, zero counts.

Every package writes its files through this module and imports nothing else
from epsd_tf here (it sits below all of them; numpy is its only heavy import),
so one rule holds everywhere:

* **Atomic writes.** A file or directory is written to a temporary sibling and
  renamed into place once complete (`os.replace` within one filesystem), so a
  crash or a kill never leaves a half-written file for the next run to trip on.
* **One run directory layout** (the names below) and one rule for "finished":
  `metrics.json` exists (`is_finished`).
* **One lock** per run directory (or sweep cell): a file created atomically
  that names its owner's host and pid, taken over only when that owner is
  gone (same host, pid not alive; or, where the caller asks for it, another
  host whose heartbeat, the lock file's mtime, is older than a timeout).
  See `locked`.
* **One zero count** (`count_zeros`) behind every sparsity figure the library
  reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from absl import logging

# The run directory (`workdir`) of one experiment; what each file holds is
# described in epsd_tf/train/workdir.py.
CONFIG = "config.gin"
OPERATIVE_CONFIG = "operative_config.gin"
LOCK = "run.lock"
PRUNED_INIT = "pruned_init.keras"
PRUNING_REPORT = "pruning_report.json"
BACKUP = "backup"
TRAIN_LOG = "train_log.csv"
TENSORBOARD = "tensorboard"
STAGES = "stages.json"
MODEL = "model.keras"
METRICS = "metrics.json"
LANDSCAPE = "landscape"
EXPORT = "export"
PQAT = "pqat"


def is_finished(workdir: str) -> bool:
    """True when `workdir` holds a finished run: its `metrics.json` exists.

    `metrics.json` is the last file a run writes, so this is the one test of
    "finished" (runs, resumes, sweeps and result tables all use it).
    """
    return os.path.isfile(os.path.join(workdir, METRICS))


def has_progress(workdir: str) -> bool:
    """True when `workdir` holds results or checkpoints that a re-run would reuse."""
    return any(os.path.exists(os.path.join(workdir, name))
               for name in (PRUNED_INIT, BACKUP, STAGES, MODEL, METRICS))


# --- atomic writes ---------------------------------------------------------------------


def remove(path: str) -> None:
    """Removes a file, link or directory tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool = True, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` on success.

    Parent directories are created. On an exception nothing is left behind and
    an existing `path` is untouched.

    Args:
        path: final destination (a file, or a directory such as a SavedModel).
        overwrite: replace an existing destination.
        suffix: extension the temporary must keep (Keras insists on `.keras`).

    Yields:
        The temporary path to write to; it does not exist yet.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False (before work).
    """
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    holder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    temporary = os.path.join(holder, "artifact" + suffix)
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise RuntimeError(f"the writer produced nothing for {path!r}")
        if os.path.isdir(path) and not os.path.islink(path):
            remove(path)  # a directory cannot be replaced by a rename
        os.replace(temporary, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def write_bytes(path: str, data: bytes, overwrite: bool = True) -> str:
    """Writes `data` to `path` atomically; returns `path`."""
    with atomic_path(path, overwrite) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
    return path


def write_text(path: str, text: str, overwrite: bool = True) -> str:
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    return write_bytes(path, text.encode("utf-8"), overwrite)


def write_json(path: str, obj: Any, overwrite: bool = True, *, sort_keys: bool = True,
               default: Callable[[Any], Any] | None = None) -> str:
    """Writes `obj` as indented JSON to `path` atomically; returns `path`.

    numpy scalars and arrays are written as numbers and lists; any other value
    JSON cannot hold goes through `default` (e.g. `str`), or raises TypeError.
    """
    def encode(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        if default is not None:
            return default(value)
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")

    text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=encode) + "\n"
    return write_text(path, text, overwrite)


def read_json(path: str) -> Any:
    """Reads a JSON file.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: it is not valid JSON (the message names the file).
    """
    with open(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r} is not valid JSON: {error}") from error


def save_model(model, path: str, overwrite: bool = True) -> str:
    """Saves a Keras model as a `.keras` archive at `path`, atomically; returns `path`."""
    if not path.endswith(".keras"):
        raise ValueError(f"a Keras archive path must end in '.keras', got {path!r}")
    with atomic_path(path, overwrite, suffix=".keras") as temporary:
        model.save(temporary)
    return path


def ensure_writable_directory(path: str) -> str:
    """Creates directory `path` if needed and proves it writable by writing in it.

    A real write (not `os.access`) also catches read-only filesystems and holds
    for root. Meant for checks before long work.

    Raises:
        ValueError: `path` exists and is not a directory.
        PermissionError: it cannot be created or written.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise PermissionError(f"directory {path!r} is not writable: {error}") from error
    return path


# --- locks -----------------------------------------------------------------------------


class LockHeldError(RuntimeError):
    """The lock is held by another live process (named in the message)."""


def _describe(owner: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
    return (f"host {owner.get('host')!r}, pid {owner.get('pid')}"
            f"{' (' + owner['purpose'] + ')' if owner.get('purpose') else ''}, since {since}")


def _read_owner(path: str) -> dict | None:
    """The owner record of a lock file; None if it vanished; {} if unreadable."""
    try:
        with open(path) as handle:
            owner = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def lock_owner(path: str) -> dict | None:
    """The owner record of the lock file `path` (host, pid, since, purpose, token);
    None if there is no lock, {} if its record is unreadable."""
    return _read_owner(path)


def owner_alive(owner: dict) -> bool:
    """False only if the owner is certainly gone: this host, and its pid not alive.

    An owner on another host cannot be checked from here, so it counts as alive.
    """
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def heartbeat_lost(path: str, owner: dict, stale_after: float | None) -> bool:
    """True when `owner` is on another host and the lock file's mtime is older
    than `stale_after` seconds (its owner stopped calling `touch_lock`)."""
    if stale_after is None or owner.get("host") == socket.gethostname():
        return False
    try:
        return time.time() - os.path.getmtime(path) > stale_after
    except FileNotFoundError:
        return False


def touch_lock(path: str, owner: dict) -> bool:
    """The owner's heartbeat: sets the lock file's mtime to now; False if no longer ours."""
    holder = _read_owner(path)
    if not holder or holder.get("token") != owner["token"]:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
        return True
    return False


def acquire_lock(path: str, purpose: str = "", stale_after: float | None = None) -> dict:
    """Takes the lock file `path`; returns this process's owner record.

    The lock is created atomically (a complete record is hard-linked into
    place, so no reader ever sees a half-written owner). A lock whose owner is
    gone (same host, pid not alive: a killed run) is taken over; so is, when
    `stale_after` is given, one held from another host whose heartbeat
    (`touch_lock`) is older than `stale_after` seconds. Any other existing
    lock refuses at once.

    Raises:
        LockHeldError: another live process (or one on another host, or this
            process itself) holds it; the message names the owner and the file.
    """
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
             "purpose": purpose, "token": uuid.uuid4().hex}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    claim = f"{path}.{owner['token']}.claim"
    with open(claim, "w") as handle:
        json.dump(owner, handle)
    try:
        for _ in range(5):
            try:
                os.link(claim, path)
                return owner
            except FileExistsError:
                pass
            holder = _read_owner(path)
            if holder is None:  # released meanwhile: try again
                continue
            lost = heartbeat_lost(path, holder or {}, stale_after)
            if not lost and (not holder or owner_alive(holder)):
                who = _describe(holder) if holder else "an unreadable owner record"
                raise LockHeldError(
                    f"{path} is held by {who}; only one run may use it at a time. If that "
                    "process is gone (e.g. on another host), delete the lock file.")
            _take_over(path, holder, owner["token"],
                       "its heartbeat stopped" if lost else "that process is gone")
        raise LockHeldError(f"could not take {path}: other processes keep taking it")
    finally:
        os.remove(claim)


def _take_over(path: str, stale: dict, token: str, why: str) -> None:
    """Moves a stale lock aside, making sure it was the one judged stale."""
    tomb = f"{path}.{token}.stale"
    try:
        os.rename(path, tomb)  # atomic: of several takers, one moves each file
    except FileNotFoundError:
        return
    moved = _read_owner(tomb) or {}
    if moved.get("token") != stale.get("token"):
        # Another taker replaced the stale lock just before: give theirs back.
        with contextlib.suppress(FileExistsError):
            os.link(tomb, path)
    else:
        logging.warning("took over the stale lock %s of %s (%s)", path, _describe(stale), why)
    os.remove(tomb)


def release_lock(path: str, owner: dict) -> None:
    """Removes the lock file `path` if `owner` (from `acquire_lock`) still holds it."""
    holder = _read_owner(path)
    if holder and holder.get("token") == owner["token"]:
        os.remove(path)
    else:
        logging.warning("lock %s is no longer ours (now %s); left alone", path, holder)


@contextlib.contextmanager
def locked(path: str, purpose: str = "", stale_after: float | None = None) -> Iterator[dict]:
    """Holds the lock file `path` for the `with` block (released on exceptions too)."""
    owner = acquire_lock(path, purpose, stale_after)
    try:
        yield owner
    finally:
        release_lock(path, owner)


# --- zero counts -----------------------------------------------------------------------


def count_zeros(arrays: Iterable) -> tuple[int, int]:
    """`(exact zeros, entries)` over arrays (numpy, or anything with `.numpy()`).

    The one count behind every sparsity the library reports: sparsity is
    `zeros / entries` (the fraction removed), density `1 - sparsity`.
    """
    zeros = total = 0
    for array in arrays:
        values = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
        total += values.size
        zeros += values.size - int(np.count_nonzero(values))
    return zeros, total
