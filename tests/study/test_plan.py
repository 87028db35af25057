"""Tests for epsd_tf.study.plan: the study's phases, families and cells."""

import os
import re
import shlex

import pytest

from epsd_tf.study import plan
from epsd_tf.sweep import grid
from tests.study import helpers

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _semantic_key(fam, cell):
    """What a cell measures: everything but where it is stored."""
    return (fam.gin_files, fam.bindings, cell.scorer, cell.method, cell.sparsity, cell.seed)


def test_every_planned_cell_has_its_own_directory_and_configuration():
    cells = plan.planned_cells()  # raises if two sweeps plan one cell
    assert len(cells) == sum(len(p.cells()) for p in plan.PHASES)
    directories = {os.path.join(fam.name, grid.CELLS, cell.name) for fam, cell in cells.values()}
    assert len(directories) == len(cells)
    assert len({_semantic_key(*v) for v in cells.values()}) == len(cells)
    # One root per configuration: two families never share gin files and bindings.
    configs = [(f.gin_files, f.bindings) for f in plan.FAMILIES]
    assert len(set(configs)) == len(configs)
    assert len({f.name for f in plan.FAMILIES}) == len(plan.FAMILIES)


def test_a_plan_listing_a_cell_twice_is_refused():
    phase = plan.PHASES[0]
    with pytest.raises(ValueError, match="plans r20/dense-dlb-seed0 twice"):
        plan.planned_cells([phase, plan.Phase("again", "", phase.sweeps[:1])])


def test_the_grid_of_the_issue_is_covered():
    cells = [cell for fam, cell in plan.planned_cells().values() if fam is plan.R20]
    seeds = {}
    for cell in cells:
        seeds.setdefault((cell.scorer, cell.method, cell.sparsity), set()).add(cell.seed)
    for scorer in ("epsd", "prospr", "snip", "grasp", "synflow", "magnitude", "random"):
        for sparsity in (0.36, 0.59, 0.79, 0.9, 0.95, 0.98):
            wanted = 5 if sparsity >= 0.95 else 3
            assert len(seeds[(scorer, "dlb", sparsity)]) >= wanted, (scorer, sparsity)
    for method in ("dlb", "none"):
        assert len(seeds[(grid.DENSE, method, 0.0)]) == 5
    for method in ("cskd", "pskd"):
        for sparsity in plan.HIGH:
            assert len(seeds[("epsd", method, sparsity)]) == (5 if sparsity >= 0.95 else 3)
    # The most informative cells first: phase 1 is EPSD, ProsPr, SNIP and both dense at 3 seeds.
    first = {(c.scorer, c.method) for _, c in plan.PHASES[0].cells()}
    assert first == {("epsd", "dlb"), ("prospr", "dlb"), ("snip", "dlb"), ("dense", "dlb"),
                     ("dense", "none")}


def test_commands_name_their_family_root_and_every_axis():
    sweep = next(p for p in plan.PHASES if p.name == "allocation").sweeps[0]  # ERK: bindings
    command = shlex.split(sweep.command("runs/study", ["--parallel=4"]))
    assert command[:2] == ["python", "tools/sweep.py"]
    assert "--root=runs/study/r20-erk" in command
    assert "--gin_bindings=prune_at_init.layer_density = 'erk'" in command
    assert "--sparsities=0.95,0.98" in command and command[-1] == "--parallel=4"
    dense = shlex.split(plan.PHASES[0].sweeps[0].command())
    assert not any(a.startswith("--sparsities") for a in dense)  # dense cells ignore it
    for fam in plan.FAMILIES:
        for path in fam.gin_files:
            assert os.path.isfile(os.path.join(REPO, path)), path


def test_next_phase_follows_what_is_committed(tmp_path):
    assert plan.next_phase(str(tmp_path)) is plan.PHASES[0]
    for fam, cell in plan.PHASES[0].cells():
        helpers.write_cell(str(tmp_path), fam, cell, accuracy=0.9, big_files=False)
    status = plan.phase_status(str(tmp_path))
    assert status[0]["missing"] == [] and status[0]["done"] == status[0]["planned"]
    assert plan.next_phase(str(tmp_path)) is plan.PHASES[1]
    os.remove(os.path.join(tmp_path, "r20", "cells", "epsd-dlb-s0.98-seed2", "metrics.json"))
    assert plan.next_phase(str(tmp_path)) is plan.PHASES[0]  # an unfinished cell is missing


def test_the_epochs_constant_is_the_config_default():
    text = open(os.path.join(REPO, "gin", "study_resnet20.gin")).read()
    assert re.search(r"^run\.epochs = (\d+)$", text, re.M).group(1) == str(plan.EPOCHS)


def test_device_minutes_take_each_familys_own_rate():
    missing = ["r20/epsd-dlb-s0.9-seed0", "r20/snip-dlb-s0.9-seed0", "vgg16/dense-dlb-seed0"]
    # Two ResNet-20 cells at 120/hour (0.5 min each), one VGG-16-BN cell at 20/hour (3 min).
    assert plan.device_minutes(missing, ["120", "vgg16=20"]) == pytest.approx(4.0)
    assert plan.device_minutes(missing, ["60"]) == pytest.approx(3.0)
    for rates, message in ((["vgg16=30"], "no cells_per_hour rate for family 'r20'"),
                           (["0"], "positive rate"), (["fast"], "positive rate"),
                           (["60", "90"], "two default rates")):
        with pytest.raises(ValueError, match=message):
            plan.device_minutes(missing, rates)
