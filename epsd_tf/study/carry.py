"""Unfinished study cells, carried whole from one device call to the next.

A device command has a time limit, and a
cell cut by it would otherwise start again from nothing. `pack_unfinished`
writes every cell that has progress but no `metrics.json` (its pruned
initialisation, the last epoch's backup, its log and state) into
`unfinished-NN.tar.gz` parts of at most `PART_BYTES` (the device machine
brings back files of up to 16 MiB); `restore_unfinished` puts them back on the
next machine, without their locks (they belong to the machine that stopped),
and the same sweep command resumes them from their last finished epoch. These
parts are scratch between device calls, never committed.

Beside the parts, `write_finished` lists the cells the same call finished
(`FINISHED_LIST`); `not_collected` names those the next machine does not have
finished, so a call whose finished cells were not collected into the
repository before the next one is refused rather than run again.

Back in the repository, `keep` puts a call's parts where the next call is given
them (`tools/study.py collect --keep_unfinished=DIR`), replacing the last call's,
but never dropping a cut cell that the new parts do not hold and that is not
committed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import time
from typing import Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.study import archive
from epsd_tf.sweep import grid, runner

# Compressed bytes of one part: the device machine brings back files of up to 16 MiB.
PART_BYTES = 15 * 2**20
UNFINISHED_PART = "unfinished-{:02d}.tar.gz"
# Beside the parts: the cells the call that cut them finished (`write_finished`).
FINISHED_LIST = "finished_in_that_call.json"
# A cell's files that belong to the machine that ran it: never carried.
_LOCAL_ONLY = (runner.CELL_LOCK, files.LOCK, files.TENSORBOARD)


def _member_name(key: str) -> str:
    """A cell's tarball name inside a part: `<family>__<cell>.tar.gz`."""
    return key.replace("/", "__") + ".tar.gz"


def _member_key(name: str) -> str:
    """The `<family>/<cell>` key of a part's member (`_member_name` undone)."""
    return name[:-len(".tar.gz")].replace("__", "/", 1)


def unfinished_cells(source: str) -> dict[str, str]:
    """`{"<family>/<cell>": directory}` of the cells under `source` (a study or
    sweep root) that have progress a re-run would reuse but are not finished."""
    return {key: path for key, path in archive.cell_dirs(source)
            if files.has_progress(path) and not files.is_finished(path)}


def epochs_done(cell_dir: str) -> int:
    """The epochs a cell has finished: the rows of its `train_log.csv` (0 without)."""
    path = os.path.join(cell_dir, files.TRAIN_LOG)
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return max(sum(1 for line in f if line.strip()) - 1, 0)


def unfinished_parts(directory: str) -> list[str]:
    """The `unfinished-NN.tar.gz` parts in `directory` (`pack_unfinished`), in order."""
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if re.fullmatch(r"unfinished-\d+\.tar\.gz", name))


def _cell_tarball(key: str, cell_dir: str) -> bytes:
    """The cell's directory, without the ruling machine's locks, as `.tar.gz` bytes."""
    fam, name = key.split("/")
    buffer = io.BytesIO()
    # Level 1: weights hardly compress at any level, and level 9 took minutes for a
    # few VGG-16 cells; the zeros of pruned weights and masks still shrink.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for entry in sorted(os.listdir(cell_dir)):
            if entry in _LOCAL_ONLY:
                continue
            tar.add(os.path.join(cell_dir, entry),
                    arcname=os.path.join(fam, grid.CELLS, name, entry))
    return buffer.getvalue()


def pack_unfinished(source: str, directory: str, part_bytes: int = PART_BYTES,
                    max_parts: int | None = None,
                    deadline: float | None = None) -> dict[str, list]:
    """Writes the unfinished cells under `source` into `directory/unfinished-NN.tar.gz`.

    Each cell goes whole into one part; parts hold at most `part_bytes`
    (compressed, each cell measured alone). Cells with the most training done
    (the newest backup) go first, so that with `max_parts` the ones left out
    are those that lose least.

    Args:
        deadline: a `time.monotonic()` time: cells not yet compressed by then
            are left out (a device call has a hard limit; a few large cells
            could otherwise use it up and lose every file of the call).

    Returns:
        `{"packed": [keys], "parts": [paths], "left_out": [keys]}`; a cell is
        left out when it alone exceeds `part_bytes`, the parts are used up, or
        the deadline has passed.
    """
    cells = unfinished_cells(source)
    progress = {key: _progress_time(path) for key, path in cells.items()}
    order = sorted(cells, key=lambda k: (-progress[k], k))
    parts: list[list[tuple[str, bytes]]] = []
    sizes: list[int] = []
    left_out = []
    for key in order:
        if deadline is not None and time.monotonic() >= deadline:
            logging.warning("%s: no time left to pack it; it will start again", key)
            left_out.append(key)
            continue
        data = _cell_tarball(key, cells[key])
        if len(data) > part_bytes:
            logging.warning("%s: %d bytes compressed, more than a part's %d; it will "
                            "start again", key, len(data), part_bytes)
            left_out.append(key)
            continue
        slot = next((i for i, size in enumerate(sizes) if size + len(data) <= part_bytes), None)
        if slot is None:
            if max_parts is not None and len(parts) >= max_parts:
                left_out.append(key)
                continue
            parts.append([])
            sizes.append(0)
            slot = len(parts) - 1
        parts[slot].append((key, data))
        sizes[slot] += len(data)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for number, members in enumerate(parts):
        path = os.path.join(directory, UNFINISHED_PART.format(number))
        with tarfile.open(path, "w") as outer:  # already compressed, cell by cell
            for key, data in members:
                info = tarfile.TarInfo(_member_name(key))
                info.size = len(data)
                info.mtime = int(time.time())
                outer.addfile(info, io.BytesIO(data))
        paths.append(path)
    packed = [key for members in parts for key, _ in members]
    return {"packed": packed, "parts": paths, "left_out": left_out}


def _progress_time(cell_dir: str) -> float:
    """The mtime of the cell's newest backup file (0 without a backup)."""
    backup = os.path.join(cell_dir, files.BACKUP)
    times = [os.path.getmtime(os.path.join(d, n))
             for d, _, names in os.walk(backup) for n in names]
    return max(times, default=0.0)


def write_finished(directory: str, finished: Sequence[str]) -> str:
    """Lists `finished` (the `<family>/<cell>` keys a call packed as finished) in
    `directory/FINISHED_LIST`, beside that call's unfinished parts."""
    os.makedirs(directory, exist_ok=True)
    return files.write_json(os.path.join(directory, FINISHED_LIST), sorted(finished))


def not_collected(directory: str, runs_root: str) -> list[str]:
    """The cells `directory`'s call finished that are not finished under `runs_root`.

    After `archive.restore` of the committed cells these are the ones that call
    finished but nobody collected: a sweep would run them again. Empty without
    a `FINISHED_LIST` (parts written by `tools/study.py pack`).
    """
    path = os.path.join(directory, FINISHED_LIST)
    if not os.path.isfile(path):
        return []
    finished = {key for key, cell_dir in archive.cell_dirs(runs_root)
                if files.is_finished(cell_dir)}
    return [key for key in files.read_json(path) if key not in finished]


def part_cells(parts: Sequence[str]) -> list[str]:
    """The `<family>/<cell>` keys the `unfinished-NN.tar.gz` parts hold."""
    keys = []
    for part in parts:
        with tarfile.open(part) as outer:
            keys += [_member_key(name) for name in outer.getnames()]
    return sorted(keys)


def keep(call_unfinished: str, directory: str, committed: str) -> list[str]:
    """Makes `directory` hold the parts (and `FINISHED_LIST`) of `call_unfinished`, a
    device call's `$OUT/unfinished` as fetched, for the next call's `--unfinished`.

    The last call's parts in `directory` go: that call restored them, so whatever of
    them it did not finish it cut again, into its own parts. Raises `ValueError`
    before changing anything if `directory` holds a cell that is neither in the new
    parts nor committed under `committed` (a call run without `--unfinished`):
    replacing it would lose that cell's progress. Returns the cells now kept.
    """
    new_parts = unfinished_parts(call_unfinished) if os.path.isdir(call_unfinished) else []
    kept = part_cells(new_parts)
    old = part_cells(unfinished_parts(directory)) if os.path.isdir(directory) else []
    try:
        done = set(archive.finished_cells(committed))
    except FileNotFoundError:  # nothing committed yet
        done = set()
    lost = sorted(set(old) - set(kept) - done)
    if lost:
        raise ValueError(f"{directory} holds cut cells that the call's parts do not and "
                         f"that are not committed: {', '.join(lost)}; the call did not "
                         f"resume them (no --unfinished={directory}?): carry them into "
                         "the next call first, or delete the directory to give them up")
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staged = tempfile.mkdtemp(prefix=".keep-", dir=parent)
    os.chmod(staged, 0o755)
    for path in new_parts + [os.path.join(call_unfinished, FINISHED_LIST)]:
        if os.path.isfile(path):  # contents only: fetched files are read-only
            shutil.copyfile(path, os.path.join(staged, os.path.basename(path)))
    files.remove(directory)
    os.replace(staged, directory)
    return kept


def restore_unfinished(parts: Sequence[str], runs_root: str) -> dict[str, list]:
    """Puts the cells of `unfinished-NN.tar.gz` parts back under `runs_root`.

    A cell that is finished under `runs_root`, or has progress there already,
    is left as it is (`"kept"`); the others replace what is there
    (`"restored"`). The same sweep command then resumes them.
    """
    outcome: dict[str, list] = {"restored": [], "kept": []}
    for part in sorted(parts):
        with tarfile.open(part) as outer:
            for member in outer.getmembers():
                key = _member_key(member.name)
                fam, name = key.split("/")
                target = os.path.join(runs_root, fam, grid.CELLS, name)
                if files.is_finished(target) or files.has_progress(target):
                    outcome["kept"].append(key)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as scratch:
                    with tarfile.open(fileobj=outer.extractfile(member), mode="r:gz") as inner:
                        inner.extractall(scratch, filter="data")
                    unpacked = os.path.join(scratch, fam, grid.CELLS, name)
                    if not os.path.isdir(unpacked):
                        raise ValueError(f"{part}: {member.name} does not hold {key}")
                    for entry in _LOCAL_ONLY:
                        files.remove(os.path.join(unpacked, entry))
                    files.remove(target)
                    shutil.move(unpacked, target)
                outcome["restored"].append(key)
    return outcome
