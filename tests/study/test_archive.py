"""Tests for epsd_tf.study.archive: what a committed cell holds and when it is refused."""

import json
import os
import tarfile

import pytest

from epsd_tf.study import archive, plan
from epsd_tf.sweep import grid
from tests.study import helpers

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]
EPSD_98, DENSE_0 = helpers.EPSD_98, helpers.DENSE_0


def test_collect_copies_only_the_small_files(tmp_path):
    runs, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.8, floor=2)
    helpers.write_cell(runs, plan.R20, DENSE_0, accuracy=0.9)
    unfinished = helpers.write_cell(runs, plan.R20, grid.Cell("snip", "dlb", 0.98, 0),
                                    accuracy=0.7)
    os.remove(os.path.join(unfinished, "metrics.json"))
    outcome = archive.collect(runs, committed)
    assert sorted(outcome["new"]) == ["r20/dense-dlb-seed0", "r20/epsd-dlb-s0.98-seed0"]
    cell = os.path.join(committed, "r20", "cells", EPSD_98.name)
    assert helpers.tree(cell) == sorted(["cell.json", "metrics.json", "config.gin",
                                         "operative_config.gin", "stages.json", "train_log.csv",
                                         "cell_state.json", "pruning_summary.json"])
    assert all(os.path.getsize(p) <= archive.MAX_FILE_BYTES
               for p in (os.path.join(cell, n) for n in os.listdir(cell)))
    summary = json.load(open(os.path.join(cell, "pruning_summary.json")))
    assert [layer["kept"] for layer in summary["layers"]][:2] == [1, 1]
    assert not any("score_histogram" in layer for layer in summary["layers"])
    assert "pruning_summary.json" not in os.listdir(os.path.join(committed, "r20", "cells",
                                                                 DENSE_0.name))
    # Collecting again changes nothing, and records no session.
    assert archive.collect(runs, committed)["same"] == outcome["new"]
    [session] = json.load(open(os.path.join(committed, "sessions.json")))
    assert session["cells"] == outcome["new"]


def test_pack_then_collect_gives_the_same_tree(tmp_path):
    runs = str(tmp_path / "runs")
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.8)
    tarball = str(tmp_path / "out" / "study_cells.tar.gz")
    assert archive.pack(runs, tarball) == ["r20/epsd-dlb-s0.98-seed0"]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert not any(n.endswith((".keras", "run.log")) or "tensorboard" in n for n in names)
    archive.collect(tarball, str(tmp_path / "a"))
    archive.collect(runs, str(tmp_path / "b"))
    assert helpers.tree(str(tmp_path / "a")) == helpers.tree(str(tmp_path / "b"))


def test_collect_refuses_a_changed_config_before_writing_anything(tmp_path):
    runs, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.8)
    archive.collect(runs, committed)
    later = str(tmp_path / "later")
    helpers.write_cell(later, plan.R20, DENSE_0, accuracy=0.9)  # fine on its own
    helpers.write_cell(later, plan.R20, EPSD_98, accuracy=0.85, epochs=60)
    with pytest.raises(ValueError, match="config"):
        archive.collect(later, committed)
    assert not os.path.exists(os.path.join(committed, "r20", "cells", DENSE_0.name))
    assert json.load(open(os.path.join(committed, "r20", "cells", EPSD_98.name,
                                       "metrics.json")))["test"]["accuracy"] == 0.8


def test_collect_refuses_a_family_whose_cells_disagree(tmp_path):
    runs, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.8)
    archive.collect(runs, committed)
    other = str(tmp_path / "other")
    helpers.write_cell(other, plan.R20, grid.Cell("snip", "dlb", 0.98, 0), accuracy=0.8,
                       config_extra={"load.batch_size": "64"})
    with pytest.raises(ValueError, match=r"differs from r20/epsd-dlb-s0.98-seed0.*batch_size"):
        archive.collect(other, committed)


def test_collect_refuses_a_cell_that_did_not_evaluate_what_it_trained(tmp_path):
    runs, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    helpers.write_cell(runs, plan.R20, DENSE_0, accuracy=0.9)  # fine on its own
    close = helpers.write_cell(runs, plan.R20, grid.Cell("snip", "dlb", 0.98, 0),
                               accuracy=0.5192)
    far = helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.1141)
    for cell in (close, far):  # the GPU cell that a resume evaluated untrained: 11.41 %
        with open(os.path.join(cell, "train_log.csv"), "w") as f:
            f.write("epoch,accuracy,val_accuracy\n0,0.5,0.49\n1,0.52,0.5178\n")
    with pytest.raises(ValueError, match=r"epsd-dlb-s0.98-seed0: test accuracy 11.41% but "
                                         r"51.78% on validation.*run the cell again"):
        archive.collect(runs, committed)
    assert not os.path.exists(committed)  # nothing written
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.5141)  # a log without validation
    assert len(archive.collect(runs, committed)["new"]) == 3


@pytest.mark.parametrize("cell, bindings, message", [
    (grid.Cell("epsd", "dlb", 0.97, 0), None, "not a cell of the study plan"),
    (EPSD_98, ["run.epochs = 1"], "but the plan runs it with"),
])
def test_collect_refuses_cells_outside_the_plan(tmp_path, cell, bindings, message):
    runs = str(tmp_path / "runs")
    helpers.write_cell(runs, plan.R20, cell, accuracy=0.8, sweep_bindings=bindings)
    with pytest.raises(ValueError, match=message):
        archive.collect(runs, str(tmp_path / "committed"))


def test_restore_makes_a_fresh_sweep_root_skip_the_committed_cells(tmp_path):
    runs, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    assert archive.restore(committed, str(tmp_path / "fresh")) == []  # nothing committed yet
    helpers.write_cell(runs, plan.R20, EPSD_98, accuracy=0.8)
    archive.collect(runs, committed)
    fresh = str(tmp_path / "fresh")
    assert archive.restore(committed, fresh) == ["r20/epsd-dlb-s0.98-seed0"]
    from epsd_tf.sweep.state import SweepState
    state = SweepState(os.path.join(fresh, "r20"))
    assert state.is_finished(EPSD_98)
    # The sweep's own check accepts the plan's command and refuses another one.
    sweep = plan.Sweep(plan.R20, ("epsd",), ("dlb",), (0,), (0.98,))
    state.check_finished_cells(sweep.cells(), plan.R20.gin_files, plan.R20.bindings)
    with pytest.raises(ValueError, match="finished with"):
        state.check_finished_cells(sweep.cells(), plan.R20.gin_files, ["run.epochs = 1"])


def test_gin_parameters_read_gin_config_text():
    text = "# Parameters for a:\n# ===\na.b = 1\na.c = [1,\n    2]\n\nrun.seed = 3\n"
    assert archive.gin_parameters(text) == {"a.b": "1", "a.c": "[1, 2]", "run.seed": "3"}
    assert archive.family_config(text) == {"a.b": "1", "a.c": "[1, 2]"}


def test_superseded_cells_leave_the_study_whole_and_the_plan_runs_them_again(tmp_path):
    runs, tree = str(tmp_path / "runs"), str(tmp_path / "study")
    for cell in (EPSD_98, DENSE_0, grid.Cell("prospr", "dlb", 0.98, 0)):
        helpers.write_cell(runs, plan.R20, cell, accuracy=0.5)
    archive.collect(runs, tree)
    before = helpers.tree(os.path.join(tree, "r20", "cells", EPSD_98.name))
    for patterns, tag, why, message in ((["r20/nothing-*"], "t", "x", "matches no"),
                                        (["r20/epsd-*"], "a b", "x", "tag"),
                                        (["r20/epsd-*"], "t", " ", "reason")):
        with pytest.raises(ValueError, match=message):
            archive.supersede(tree, patterns, tag, why)
    assert sorted(plan.committed(tree)) == sorted(  # nothing moved by a refused call
        f"r20/{c}" for c in (EPSD_98.name, DENSE_0.name, "prospr-dlb-s0.98-seed0"))
    moved = archive.supersede(tree, ["r20/epsd-*", "r20/prospr-*"], "fp32-bn", "BN in float32")
    assert sorted(moved) == ["r20/epsd-dlb-s0.98-seed0", "r20/prospr-dlb-s0.98-seed0"]
    assert sorted(plan.committed(tree)) == [f"r20/{DENSE_0.name}"]  # missing again: re-run
    kept = os.path.join(tree, archive.SUPERSEDED, "fp32-bn", "r20", "cells", EPSD_98.name)
    assert helpers.tree(kept) == before  # whole, for the record
    why = open(os.path.join(tree, archive.SUPERSEDED, "fp32-bn", "WHY.md")).read()
    assert "BN in float32" in why and "- r20/epsd-dlb-s0.98-seed0" in why
    from epsd_tf.study import rows
    assert [r["key"] for r in rows.load(tree)] == [f"r20/{DENSE_0.name}"]
    # The re-run cell can be collected again; superseding it once more is refused.
    archive.collect(runs, tree)
    with pytest.raises(ValueError, match="already superseded"):
        archive.supersede(tree, ["r20/epsd-*"], "fp32-bn", "again")


def test_a_committed_cell_that_ran_again_is_kept_as_a_repeat_only_when_asked(tmp_path):
    runs, again, tree = (str(tmp_path / n) for n in ("runs", "again", "study"))
    for cell, accuracy in ((EPSD_98, 0.80), (DENSE_0, 0.90)):
        helpers.write_cell(runs, plan.R20, cell, accuracy=accuracy)
    archive.collect(runs, tree)
    committed = helpers.tree(tree)
    # The next call restored both cells (byte-identical) and ran EPSD once more.
    archive.restore(tree, again)
    helpers.write_cell(again, plan.R20, EPSD_98, accuracy=0.81)
    with pytest.raises(ValueError, match="tag"):
        archive.collect(again, tree, repeats="a b")
    outcome = archive.collect(again, tree)  # without a tag: reported, not written
    assert outcome == {"new": [], "same": ["r20/dense-dlb-seed0"],
                       "rerun": ["r20/epsd-dlb-s0.98-seed0"]}
    assert helpers.tree(tree) == committed
    outcome = archive.collect(again, tree, note="call 2", repeats="s7")
    kept = os.path.join(tree, archive.REPEATS, "s7", "r20", "cells", EPSD_98.name)
    assert json.load(open(os.path.join(kept, "metrics.json")))["test"]["accuracy"] == 0.81
    first = os.path.join(tree, "r20", "cells", EPSD_98.name, "metrics.json")
    assert json.load(open(first))["test"]["accuracy"] == 0.80  # the committed run stays
    assert archive.repeat_roots(tree) == {"s7": os.path.join(tree, archive.REPEATS, "s7")}
    assert json.load(open(os.path.join(tree, "sessions.json")))[-1]["repeats"] == {
        "s7": ["r20/epsd-dlb-s0.98-seed0"]}
    assert sorted(plan.committed(tree)) == sorted(  # the plan does not count a repeat
        f"r20/{c.name}" for c in (EPSD_98, DENSE_0))
    with pytest.raises(ValueError, match="already has a repeat"):
        archive.collect(again, tree, repeats="s7")
