"""Tests for epsd_tf.study.carry: unfinished cells travel whole between device calls."""

import os
import time

import pytest

from epsd_tf.study import carry, plan
from epsd_tf.sweep import grid
from tests.study import helpers

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]
EPSD_98, DENSE_0 = helpers.EPSD_98, helpers.DENSE_0


def _unfinished_cell(runs, cell, backup_bytes=1000, age=0.0):
    """A cell cut mid-training: a pruned init, a backup, a log, its locks; no metrics.
    (TensorBoard events stay behind: only TensorFlow writes them, and they grow.)"""
    directory = helpers.write_cell(runs, plan.R20, cell, accuracy=0.5, big_files=False)
    os.remove(os.path.join(directory, "metrics.json"))
    os.makedirs(os.path.join(directory, "backup"), exist_ok=True)
    backup = os.path.join(directory, "backup", "model.weights.h5")
    with open(backup, "wb") as f:
        f.write(os.urandom(backup_bytes))  # incompressible, so sizes are predictable
    when = time.time() - age
    os.utime(backup, (when, when))
    for name in ("pruned_init.keras", "run.log", "run.lock", "cell.lock"):
        with open(os.path.join(directory, name), "w") as f:
            f.write(name)
    return directory


def test_unfinished_cells_travel_whole_without_their_locks(tmp_path):
    runs, fresh, out = (str(tmp_path / n) for n in ("runs", "fresh", "out"))
    helpers.write_cell(runs, plan.R20, DENSE_0, accuracy=0.9)  # finished: not carried
    snip = grid.Cell("snip", "dlb", 0.98, 0)
    cut = _unfinished_cell(runs, EPSD_98)
    _unfinished_cell(runs, snip)
    outcome = carry.pack_unfinished(runs, out)
    assert sorted(outcome["packed"]) == ["r20/epsd-dlb-s0.98-seed0", "r20/snip-dlb-s0.98-seed0"]
    assert outcome["left_out"] == [] and len(outcome["parts"]) == 1
    restored = carry.restore_unfinished(outcome["parts"], fresh)
    assert sorted(restored["restored"]) == sorted(outcome["packed"])
    back = os.path.join(fresh, "r20", "cells", EPSD_98.name)
    assert helpers.tree(back) == sorted(n for n in helpers.tree(cut)
                                        if n not in ("run.lock", "cell.lock")
                                        and not n.startswith("tensorboard"))
    with open(os.path.join(back, "backup", "model.weights.h5"), "rb") as a, \
            open(os.path.join(cut, "backup", "model.weights.h5"), "rb") as b:
        assert a.read() == b.read()
    # A second restore keeps what is there (progress made meanwhile is never overwritten).
    again = carry.restore_unfinished(outcome["parts"], fresh)
    assert again["restored"] == [] and len(again["kept"]) == 2
    # Restored next to the committed cells, a sweep sees them as unfinished, to resume.
    from epsd_tf.sweep.state import SweepState
    assert not SweepState(os.path.join(fresh, "r20")).is_finished(EPSD_98)


def test_unfinished_parts_are_bounded_and_the_most_advanced_cells_go_first(tmp_path):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    old = _unfinished_cell(runs, grid.Cell("snip", "dlb", 0.95, 0), backup_bytes=6000, age=600)
    _unfinished_cell(runs, grid.Cell("snip", "dlb", 0.98, 0), backup_bytes=6000, age=0)
    _unfinished_cell(runs, EPSD_98, backup_bytes=40_000)  # alone larger than a part
    outcome = carry.pack_unfinished(runs, out, part_bytes=20_000, max_parts=1)
    assert outcome["packed"] == ["r20/snip-dlb-s0.98-seed0", "r20/snip-dlb-s0.95-seed0"]
    assert outcome["left_out"] == ["r20/epsd-dlb-s0.98-seed0"]
    assert all(os.path.getsize(p) <= 20_000 + 10_240 for p in outcome["parts"])  # tar framing
    outcome = carry.pack_unfinished(runs, str(tmp_path / "small"), part_bytes=9000,
                                    max_parts=1)  # one cell per part, one part
    assert outcome["packed"] == ["r20/snip-dlb-s0.98-seed0"]
    assert sorted(outcome["left_out"]) == ["r20/epsd-dlb-s0.98-seed0",
                                           "r20/snip-dlb-s0.95-seed0"]
    assert os.path.isdir(old)  # packing never changes the sweep root


def test_unfinished_cells_not_packed_by_the_deadline_are_left_out(tmp_path, monkeypatch):
    runs = str(tmp_path / "runs")
    _unfinished_cell(runs, grid.Cell("snip", "dlb", 0.98, 0), age=0)
    _unfinished_cell(runs, grid.Cell("snip", "dlb", 0.95, 0), age=600)
    packed_at = []
    real = carry._cell_tarball

    def slow(key, cell_dir):  # every cell takes 10 s (of a fake clock) to compress
        packed_at.append(clock[0])
        clock[0] += 10.0
        return real(key, cell_dir)
    clock = [100.0]
    monkeypatch.setattr(carry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(carry, "_cell_tarball", slow)
    outcome = carry.pack_unfinished(runs, str(tmp_path / "out"), deadline=105.0)
    assert outcome["packed"] == ["r20/snip-dlb-s0.98-seed0"]  # the most advanced, in time
    assert outcome["left_out"] == ["r20/snip-dlb-s0.95-seed0"] and packed_at == [100.0]
    everything = carry.pack_unfinished(runs, str(tmp_path / "all"), deadline=None)
    assert len(everything["packed"]) == 2


def test_keep_replaces_the_last_calls_parts_but_never_drops_a_cut_cell(tmp_path):
    keep, committed = str(tmp_path / ".probe" / "unfinished"), str(tmp_path / "committed")
    snip, epsd_95 = grid.Cell("snip", "dlb", 0.98, 0), grid.Cell("epsd", "dlb", 0.95, 0)
    first = str(tmp_path / "call1")  # call 1 cut EPSD_98 and snip
    _unfinished_cell(str(tmp_path / "runs1"), EPSD_98)
    _unfinished_cell(str(tmp_path / "runs1"), snip)
    carry.pack_unfinished(str(tmp_path / "runs1"), os.path.join(first, "unfinished"))
    carry.write_finished(os.path.join(first, "unfinished"), ["r20/dense-dlb-seed0"])
    assert carry.keep(os.path.join(first, "unfinished"), keep, committed) == [
        "r20/epsd-dlb-s0.98-seed0", "r20/snip-dlb-s0.98-seed0"]
    assert sorted(os.listdir(keep)) == [carry.FINISHED_LIST, "unfinished-00.tar.gz"]

    # Call 2 resumed both: it finished snip (committed now) and cut EPSD_98 and another.
    second = str(tmp_path / "call2")
    _unfinished_cell(str(tmp_path / "runs2"), EPSD_98)
    _unfinished_cell(str(tmp_path / "runs2"), epsd_95)
    carry.pack_unfinished(str(tmp_path / "runs2"), os.path.join(second, "unfinished"))
    helpers.write_cell(committed, plan.R20, snip, accuracy=0.9)
    assert carry.keep(os.path.join(second, "unfinished"), keep, committed) == [
        "r20/epsd-dlb-s0.95-seed0", "r20/epsd-dlb-s0.98-seed0"]
    assert os.listdir(keep) == ["unfinished-00.tar.gz"]  # call 2's parts only

    # Call 3 ran without --unfinished and cut nothing: keeping would drop both.
    before = open(os.path.join(keep, "unfinished-00.tar.gz"), "rb").read()
    with pytest.raises(ValueError, match=r"not committed: r20/epsd-dlb-s0.95-seed0, "
                                         r"r20/epsd-dlb-s0.98-seed0; .*--unfinished="):
        carry.keep(str(tmp_path / "call3" / "unfinished"), keep, committed)
    assert open(os.path.join(keep, "unfinished-00.tar.gz"), "rb").read() == before
    # Once they are committed, a call that cut nothing leaves nothing to carry.
    helpers.write_cell(committed, plan.R20, EPSD_98, accuracy=0.9)
    helpers.write_cell(committed, plan.R20, epsd_95, accuracy=0.9)
    assert carry.keep(str(tmp_path / "call3" / "unfinished"), keep, committed) == []
    assert os.listdir(keep) == []
