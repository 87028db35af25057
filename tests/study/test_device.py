"""Tests for epsd_tf.study.device: one device call (restore, sweeps until a deadline, pack).

The sweeps are the real `tools/sweep.py`; the cell runs are a stand-in for
tools/run.py (`--run_tool`) that writes what a finished cell writes, after an
optional sleep with a backup on disk (a cell the deadline can cut).
"""

import json
import os
import tarfile
import textwrap
import time

import pytest

from epsd_tf import files
from epsd_tf.study import carry, device, plan
from epsd_tf.sweep import grid
from tests.train.test_sweep import REPO

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]

RUN = textwrap.dedent("""\
    import json, os, sys, time
    args = sys.argv[1:]
    workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
    name = os.path.basename(workdir)
    resumed = os.path.isdir(os.path.join(workdir, "backup"))
    share = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "-")
    with open(os.environ["FAKE_EVENTS"], "a") as f:
        f.write(f"{time.time()} start {name} {int(resumed)} {share}\\n")
    if name in os.environ.get("FAKE_FAIL", "").split(","):
        sys.exit(1)
    os.makedirs(os.path.join(workdir, "backup"), exist_ok=True)
    with open(os.path.join(workdir, "backup", "position.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(workdir, "train_log.csv"), "w") as f:
        f.write("epoch,loss\\n0,1.0\\n1,0.9\\n")  # two epochs done before the sleep
    scorer = name.split("-")[0]  # FAKE_SLEEP_<scorer> if set, else FAKE_SLEEP
    time.sleep(float(os.environ.get(f"FAKE_SLEEP_{scorer}", os.environ.get("FAKE_SLEEP", "0"))))
    # FAKE_UNTIL_<scorer>=<cell>: run until that cell has ended (60 s at most), however
    # slowly the sweep processes start (CUT_AFTER says how slowly).
    until, give_up = os.environ.get(f"FAKE_UNTIL_{scorer}"), time.time() + 60
    while until and time.time() < give_up and f" end {until} " not in open(
            os.environ["FAKE_EVENTS"]).read():
        time.sleep(0.1)
    # FAKE_SLEEP_UNTIL=<epoch seconds>: run until then.
    time.sleep(max(0.0, float(os.environ.get("FAKE_SLEEP_UNTIL", "0")) - time.time()))
    with open(os.path.join(workdir, "config.gin"), "w") as f:
        f.write("build.name = 'resnet20'\\n")
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"test": {"accuracy": 0.5}, "epochs": 1, "method": "dlb", "pruning": None,
                   "seconds": {"training": 1.0}}, f)
    with open(os.environ["FAKE_EVENTS"], "a") as f:
        f.write(f"{time.time()} end {name} {int(resumed)} {share}\\n")
""")
FAMILY = plan.Family("fam", ("gin/smoke.gin",))
PHASES = (plan.Phase("first", "", (plan.Sweep(FAMILY, ("snip", "random"), ("dlb",), (0,),
                                              (0.9, 0.95)),)),
          plan.Phase("second", "", (plan.Sweep(FAMILY, ("dense",), ("dlb", "none"), (0,)),)))
# The deadline of a call whose cells it cuts. A sweep process spends 4.5 s importing
# Keras and JAX before its first cell starts here, twice that with both suites running
# on 2 cores: a 6 s deadline sometimes came before any cell had started.
CUT_AFTER = 15


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    events = tmp_path / "events.txt"
    monkeypatch.setenv("FAKE_EVENTS", str(events))
    monkeypatch.setenv("PYTHONPATH", REPO)
    monkeypatch.chdir(REPO)

    def read():
        if not events.exists():
            return []
        return [(float(t), kind, name, resumed == "1") for t, kind, name, resumed, _ in
                (line.split() for line in events.read_text().splitlines())]

    def shares():  # each cell's GPU memory fraction (XLA_PYTHON_CLIENT_MEM_FRACTION)
        return {line.split()[4] for line in events.read_text().splitlines()}
    read.shares = shares
    return [f"--run_tool={script}"], read


def _most_at_once(events):
    running, most = 0, 0
    for _, kind, _, _ in sorted(events):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_a_call_runs_the_phases_on_shared_slots_and_packs_every_cell(tmp_path, stand_in,
                                                                      monkeypatch):
    flags, events = stand_in
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one (pretend) GPU for the placement
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    summary = device.run_call(runs, out, seconds=120, parallel=3, sweep_flags=flags,
                              results_dir=str(tmp_path / "none"), phases=PHASES)
    assert summary["stopped"] == "every planned cell finished"
    assert summary["left"] == {"first": 0, "second": 0}
    names = sorted(c.name for p in PHASES for s in p.sweeps for c in s.cells())
    assert sorted(n for _, k, n, _ in events() if k == "end") == names  # each cell once
    assert _most_at_once(events()) <= 3  # the sweeps share the slots...
    first, second = summary["sweeps"]
    assert (first["slots"], second["slots"]) == (3, 2)  # ...and pass them on
    # Every cell got a third of the GPU's shared memory, also in the 2-slot sweep that
    # ran beside the other: the sweeps divide one machine, not one machine each.
    assert events.shares() == {f"{0.9 / 3:.3f}"}
    with tarfile.open(os.path.join(out, device.CELLS_TARBALL)) as tar:
        packed = {n.split("/")[2] for n in tar.getnames()}
    assert packed == set(names)
    assert sorted(os.listdir(out)) == sorted([device.CELLS_TARBALL, device.LOGS_TARBALL,
                                              device.SUMMARY, device.UNFINISHED_DIR])
    assert json.load(open(os.path.join(out, device.SUMMARY)))["finished"] == [
        f"fam/{n}" for n in sorted(names)]
    # Beside the (here no) unfinished parts, the cells this call finished.
    listed = os.path.join(out, device.UNFINISHED_DIR, carry.FINISHED_LIST)
    assert json.load(open(listed)) == [f"fam/{n}" for n in sorted(names)]


def test_a_call_is_refused_while_the_last_calls_finished_cells_are_not_collected(
        tmp_path, stand_in):
    flags, events = stand_in
    warm, out = str(tmp_path / "warm"), str(tmp_path / "out")
    args = dict(sweep_flags=flags, results_dir=str(tmp_path / "none"))
    device.run_call(warm, out, seconds=60, parallel=2, phases=PHASES[1:], **args)
    dense = sorted(c.name for c in PHASES[1].sweeps[0].cells())
    carried = os.path.join(out, device.UNFINISHED_DIR)
    assert json.load(open(os.path.join(carried, carry.FINISHED_LIST))) == [
        f"fam/{n}" for n in dense]
    # The next call on a fresh machine, its finished cells not collected: refused.
    fresh, out2 = str(tmp_path / "fresh"), str(tmp_path / "out2")
    with pytest.raises(ValueError, match=r"also finished 2 cells that are not committed.*"
                                         r"tools/study.py collect"):
        device.run_call(fresh, out2, seconds=60, parallel=2, unfinished=carried,
                        phases=PHASES, **args)
    assert len(events()) == 2 * len(dense) and not os.path.exists(out2)
    assert carry.not_collected(carried, fresh) == [f"fam/{n}" for n in dense]
    # On the machine that finished them (or once collected and restored) it runs.
    summary = device.run_call(warm, out2, seconds=60, parallel=2, unfinished=carried,
                              phases=PHASES, **args)
    assert summary["stopped"] == "every planned cell finished"
    started = [n for _, k, n, _ in events() if k == "start"]
    assert sorted(started) == sorted(dense + [c.name for c in PHASES[0].sweeps[0].cells()])


def test_the_deadline_cuts_cells_that_the_next_call_resumes_elsewhere(tmp_path, stand_in,
                                                                      monkeypatch):
    flags, events = stand_in
    monkeypatch.setenv("FAKE_SLEEP", "60")
    out1, out2 = str(tmp_path / "out1"), str(tmp_path / "out2")
    start, said = time.monotonic(), []
    first = device.run_call(str(tmp_path / "a"), out1, seconds=CUT_AFTER, parallel=2,
                            sweep_flags=flags, results_dir=str(tmp_path / "none"), phases=PHASES,
                            limit=CUT_AFTER + device.STOP_GRACE + 30, say=said.append)
    assert time.monotonic() - start < CUT_AFTER + device.STOP_GRACE
    assert first["stopped"] == "deadline" and first["finished"] == []
    cut = sorted(first["unfinished"])
    assert len(cut) == 2 and first["left"]["first"] == 4
    assert first["epochs_done"] == {key: 2 for key in cut}
    assert len(carry.unfinished_parts(os.path.join(out1, device.UNFINISHED_DIR))) == 1
    assert carry.not_collected(os.path.join(out1, device.UNFINISHED_DIR), "/nowhere") == []
    # The call's last words say where the cut cells' progress is, and that it is kept nowhere else.
    assert said[-1].startswith(f"carry {os.path.join(out1, device.UNFINISHED_DIR)} into the "
                               "next call") and "lost" in said[-1]
    # The next call, on another root (another machine), resumes them and runs the rest.
    monkeypatch.setenv("FAKE_SLEEP", "0")
    second = device.run_call(str(tmp_path / "b"), out2, seconds=120, parallel=2,
                             sweep_flags=flags, results_dir=str(tmp_path / "none"),
                             unfinished=os.path.join(out1, device.UNFINISHED_DIR),
                             phases=PHASES, say=said.append)
    assert sorted(second["resumed"]) == cut and not said[-1].startswith("carry")
    assert second["stopped"] == "every planned cell finished"
    resumed = {n for _, k, n, r in events() if k == "start" and r}
    assert {f"fam/{n}" for n in resumed} == set(cut)


def test_a_call_on_the_machine_that_cut_the_cells_resumes_them_in_place(tmp_path, stand_in,
                                                                         monkeypatch):
    flags, events = stand_in
    monkeypatch.setenv("FAKE_SLEEP", "60")
    root, out1, out2, said = str(tmp_path / "a"), str(tmp_path / "o1"), str(tmp_path / "o2"), []
    common = {"parallel": 2, "sweep_flags": flags, "results_dir": str(tmp_path / "none"),
              "phases": PHASES, "say": said.append}
    first = device.run_call(root, out1, seconds=CUT_AFTER,
                            limit=CUT_AFTER + device.STOP_GRACE + 30, **common)
    cut = sorted(first["unfinished"])
    monkeypatch.setenv("FAKE_SLEEP", "0")
    said.clear()
    second = device.run_call(root, out2, seconds=120,
                             unfinished=os.path.join(out1, device.UNFINISHED_DIR), **common)
    assert second["resumed"] == [] and sorted(second["resumed_in_place"]) == cut
    assert said[0] == ("restored 0 committed cells, 0 cut cells to resume (2 more carried "
                       "cells are here already, as far as or further than their parts: this "
                       "machine ran the call that cut them)")
    assert second["stopped"] == "every planned cell finished"
    assert {f"fam/{n}" for _, k, n, r in events() if k == "start" and r} == set(cut)


def test_bad_arguments_are_refused_before_anything_runs(tmp_path):
    for kwargs, message in (({"seconds": 0, "parallel": 1}, "seconds"),
                            ({"seconds": 10, "parallel": 0}, "parallel"),
                            ({"seconds": 10, "parallel": 1, "limit": 20}, "limit=20")):
        with pytest.raises(ValueError, match=message):
            device.run_call(str(tmp_path / "r"), str(tmp_path / "o"), phases=PHASES, **kwargs)
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "r")


def test_the_queue_skips_sweeps_whose_cells_are_finished(tmp_path):
    runs = str(tmp_path / "runs")
    dense = PHASES[1].sweeps[0]
    for cell in dense.cells():
        directory = grid.cell_dir(os.path.join(runs, "fam"), cell)
        os.makedirs(directory)
        open(os.path.join(directory, "metrics.json"), "w").write("{}")
    assert [p for p, _ in device.queue(runs, PHASES)] == ["first"]
    assert carry.unfinished_cells(runs) == {}


def test_the_sweeps_holding_cut_cells_start_first_on_a_slot_per_cut_cell(tmp_path):
    runs = str(tmp_path / "runs")
    first, second = PHASES[0].sweeps[0], PHASES[1].sweeps[0]
    cut = second.cells()[1]  # dense, no distillation: queued behind the first phase
    os.makedirs(os.path.join(grid.cell_dir(os.path.join(runs, "fam"), cut), files.BACKUP))
    todo = device.queue(runs, PHASES)
    assert [s for _, s in todo] == [first, second]
    starts, rest = device.assign_slots(todo, [0, 1, 2], runs)
    assert starts == [("second", second, [0], 2), ("first", first, [1, 2], 4)] and rest == []
    starts, rest = device.assign_slots(todo, [5], runs)
    assert starts == [("second", second, [5], 2)] and rest == [("first", first)]
    # Without cut cells: plan order, each sweep on as many slots as it has cells left.
    files.remove(grid.cell_dir(os.path.join(runs, "fam"), cut))
    starts, rest = device.assign_slots(todo, list(range(8)), runs)
    assert starts == [("first", first, [0, 1, 2, 3], 4), ("second", second, [4, 5], 2)]


def test_free_slots_extend_the_sweeps_and_then_run_a_second_process_of_a_running_one(
        tmp_path):
    runs = str(tmp_path / "runs")
    first, second = PHASES[0].sweeps[0], PHASES[1].sweeps[0]
    for sweep in (first, second):  # a cut cell in each sweep
        cut = grid.cell_dir(os.path.join(runs, "fam"), sweep.cells()[0])
        os.makedirs(os.path.join(cut, files.BACKUP))
    todo = device.queue(runs, PHASES)
    # A slot per cut cell first, then more slots up to each sweep's cells left: no slot
    # idles while cells wait (session 13's calls left 2 of 8 slots idle here).
    starts, rest = device.assign_slots(todo, list(range(8)), runs)
    assert starts == [("first", first, [0, 2, 3, 4], 4), ("second", second, [1, 5], 2)]
    assert rest == []
    # Nothing queued: a second process of a running sweep with more cells left than slots.
    running = [("first", first, 2), ("second", second, 2)]
    assert device.assign_slots([], [6, 7, 8], runs, running) == (
        [("first", first, [6, 7], 4)], [])
    assert device.assign_slots([], [6], runs, [("first", first, 4)]) == ([], [])
    # Two processes of one sweep: the slots they hold add up.
    assert device.assign_slots([], [6], runs, [("first", first, 2), ("first", first, 2)]) == (
        [], [])


def test_a_slot_freed_by_an_ended_sweep_runs_the_cells_another_sweep_has_not_started(
        tmp_path, stand_in, monkeypatch):
    flags, events = stand_in
    # The plan's first sweep (4 cells) waits for slots behind the second's cut cell; its
    # snip cells run until random 0.95 has ended, its random cells are short, and random
    # 0.9 fails. (A fixed sleep of the snip cells raced the start of the sweep process
    # that runs the random cells: see CUT_AFTER.)
    monkeypatch.setenv("FAKE_UNTIL_snip", "random-dlb-s0.95-seed0")
    monkeypatch.setenv("FAKE_FAIL", "random-dlb-s0.9-seed0")
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    cut = grid.cell_dir(os.path.join(runs, "fam"), PHASES[1].sweeps[0].cells()[0])
    os.makedirs(os.path.join(cut, files.BACKUP))
    summary = device.run_call(runs, out, seconds=120, parallel=3, sweep_flags=flags,
                              results_dir=str(tmp_path / "none"), phases=PHASES)
    got = events()
    starts = [n for _, k, n, _ in got if k == "start"]
    # The dense sweep's slot, once free, ran the random cells beside the two snip cells.
    assert [(s["phase"], s["slots"]) for s in summary["sweeps"]][:1] == [("second", 1)]
    assert sorted(s["slots"] for s in summary["sweeps"] if s["phase"] == "first") == [1, 2]
    assert _most_at_once([e for e in got if e[2] != "random-dlb-s0.9-seed0"]) == 3
    assert starts.count("random-dlb-s0.95-seed0") == 1  # each cell once: they skip each
    assert starts.count("snip-dlb-s0.9-seed0") == 1     # other's cells (--nowait_busy)
    # The failed cell is retried only by the sweep process that had it queued, not by
    # new processes started again and again while the snip cells run.
    assert starts.count("random-dlb-s0.9-seed0") == 2
    assert summary["left"] == {"first": 1, "second": 0}


@pytest.mark.parametrize("flags, message", [
    (["--seconds=5"], "--to=<output directory>"),
    (["--to={out}", "--seconds=5", "--phases=core,nope"], "unknown phases ['nope']"),
    (["--to={out}", "--seconds=5", "--unfinished=/no/such/dir"], "is not a directory"),
    (["--to={out}", "--seconds=5", "--parallel=0"], "parallel must be >= 1"),
])
def test_the_command_refuses_bad_flags_before_writing_anything(tmp_path, flags, message):
    import subprocess
    import sys
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = [sys.executable, "tools/study.py", "device", f"--runs_root={runs}",
            *(f.format(out=out) for f in flags)]
    result = subprocess.run(argv, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr + result.stdout
    assert not out.exists() and not runs.exists()


def test_restore_refuses_a_directory_without_parts_before_copying_anything(tmp_path):
    import subprocess
    import sys
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "tools/study.py", "restore", f"--to={runs}",
                             f"--unfinished={tmp_path}"], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "holds no unfinished-NN.tar.gz parts" in result.stderr
    assert not runs.exists()


def test_after_start_before_no_cell_starts_and_the_call_ends_with_the_started_ones(
        tmp_path, stand_in, monkeypatch):
    flags, events = stand_in
    # The sweep process is slow to start (CUT_AFTER): the start deadline leaves it 20 s,
    # and its first cells run until just past the deadline.
    monkeypatch.setenv("FAKE_SLEEP_UNTIL", str(time.time() + 21))
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    start = time.monotonic()
    summary = device.run_call(runs, out, seconds=120, parallel=2, sweep_flags=flags,
                              results_dir=str(tmp_path / "none"), phases=PHASES,
                              start_before=20)
    took = time.monotonic() - start
    started = sorted(n for _, k, n, _ in events() if k == "start")
    # The first sweep's two slots started a cell each before the start deadline; the
    # cells freed after it start nothing, and the second phase never starts.
    assert len(started) == 2 and sorted(n for _, k, n, _ in events() if k == "end") == started
    assert summary["stopped"] == "start deadline; every started cell finished"
    assert summary["left"] == {"first": 2, "second": 2}
    assert sorted(summary["finished"]) == [f"fam/{n}" for n in started]
    assert summary["unfinished"] == [] and [s["phase"] for s in summary["sweeps"]] == ["first"]
    assert took < 60  # ended with its cells, long before the 120 s deadline
    bad = {"seconds": 10, "parallel": 1, "start_before": 10}
    with pytest.raises(ValueError, match="start_before=10"):
        device.check_arguments(**bad)
