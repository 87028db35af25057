"""Tests of epsd_tf.sweep and tools/sweep.py: the grid, resume after a crash or an
interruption, cell locks, results.

The resume logic is tested in-process with a stand-in for tools/run.py (a tiny
script that writes a cell's metrics.json in milliseconds); one end-to-end test
runs the real tool on gin/smoke.gin, interrupts the sweep after its first cell
and resumes it.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from epsd_tf import files, sweep
from epsd_tf.sweep import grid, runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = os.path.join(REPO, "tools", "sweep.py")

FAKE_RUN = textwrap.dedent("""\
    # Stand-in for tools/run.py: same flags; writes the metrics a finished run writes.
    import json, os, sys
    args = sys.argv[1:]
    assert any(a.startswith("--gin_file=") for a in args), args
    values = dict(a.split("=", 1)[1].split(" = ", 1) for a in args
                  if a.startswith("--gin_bindings="))
    workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
    name = os.path.basename(workdir)
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(name + "\\n")
    print("fake run of", name)
    if name in os.environ.get("FAKE_CRASH", "").split(","):
        os.makedirs(os.path.join(workdir, "backup"), exist_ok=True)
        sys.exit("simulated crash in " + name)
    methods = {"@NoDistillation()": "none", "@DLB()": "dlb", "@CSKD()": "cskd",
               "@PSKD()": "pskd"}
    seed = int(values["run.seed"])
    assert values["load.seed"] == values["run.seed"]
    pruning = None
    if values["run.prune"] != "None":
        sparsity = float(values["prune_at_init.sparsity"])
        pruning = {"scorer": values["prune_at_init.scorer"].strip("'"),
                   "target_sparsity": sparsity, "prunable_sparsity": sparsity}
        layers = [{"name": "conv/kernel", "layer": "conv", "parameters": 10,
                   "kept": round(10 * (1 - sparsity)), "sparsity": sparsity, "masked": True}]
        with open(os.path.join(workdir, "pruning_report.json"), "w") as f:
            json.dump({"layers": layers}, f)
    metrics = {"test": {"accuracy": 0.5 + 0.1 * seed, "loss": 1.0}, "epochs": 1,
               "method": methods[values["run.method"]], "pruning": pruning,
               "seconds": {"training": 1.0}}
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
""")


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Path of the stand-in run tool; `calls()` lists the cells it ran, in order."""
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    calls_path = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls_path))

    def calls():
        return calls_path.read_text().split() if calls_path.exists() else []
    return str(script), calls


def test_grid_cells_names_and_bindings():
    cells = sweep.make_grid(["snip", "dense"], ["dlb", "none"], ["0.9", "0.95"], ["0", "1"])
    # Dense ignores sparsity: per seed and method, 2 pruned cells + 1 dense.
    assert len(cells) == 2 * 2 * (2 + 1)
    names = [c.name for c in cells]
    assert len(set(names)) == len(names)
    assert names[:3] == ["snip-dlb-s0.9-seed0", "snip-dlb-s0.95-seed0", "dense-dlb-seed0"]
    assert names[-1] == "dense-none-seed1"
    snip = cells[1]
    assert snip.bindings() == [
        "run.prune = @prune_at_init", "prune_at_init.scorer = 'snip'",
        "prune_at_init.sparsity = 0.95", "run.method = @DLB()", "run.seed = 0",
        "load.seed = 0"]
    assert cells[-1].bindings() == ["run.prune = None", "run.method = @NoDistillation()",
                                    "run.seed = 1", "load.seed = 1"]


def test_cell_bindings_are_valid_for_run_py():
    """The cell's bindings (applied last) parse with gin and override the base file."""
    from epsd_tf.train import config
    for cell in sweep.make_grid(["random", "dense"], ["cskd"], ["0.5"], ["3"]):
        text = config.parse(["gin/smoke.gin"], ["run.epochs = 1", *cell.bindings()])
        assert "run.seed = 3" in text and "load.seed = 3" in text
        assert "@CSKD()" in text
        if cell.scorer == "dense":
            assert "run.prune = None" in text
        else:
            assert "prune_at_init.scorer = 'random'" in text  # smoke.gin says 'epsd'
            assert "prune_at_init.sparsity = 0.5" in text


@pytest.mark.parametrize("scorers, methods, sparsities, seeds, message", [
    (["snipp"], ["dlb"], ["0.9"], ["0"], "Unknown scorer 'snipp'.*'dense'"),
    (["snip"], ["kd"], ["0.9"], ["0"], "Unknown method 'kd'.*'pskd'"),
    (["snip"], ["dlb"], ["1.0"], ["0"], r"outside \[0, 1\)"),
    (["snip"], ["dlb"], ["ninety"], ["0"], "--sparsities=ninety"),
    (["snip"], ["dlb"], ["0.9"], ["0.5"], "--seeds=0.5"),
    (["snip", "snip"], ["dlb"], ["0.9"], ["0"], "distinct"),
    ([], ["dlb"], ["0.9"], ["0"], "distinct"),
])
def test_bad_grid_is_refused(scorers, methods, sparsities, seeds, message):
    with pytest.raises(ValueError, match=message):
        sweep.make_grid(scorers, methods, sparsities, seeds)


def test_crashed_cell_is_rerun_and_finished_cells_are_not(tmp_path, fake_run, monkeypatch,
                                                          capsys):
    script, calls = fake_run
    root = str(tmp_path / "sweep")
    cells = sweep.make_grid(["snip", "dense"], ["dlb"], ["0.9", "0.95"], ["0", "1"])
    names = [c.name for c in cells]
    monkeypatch.setenv("FAKE_CRASH", "snip-dlb-s0.95-seed0")
    outcome = sweep.run_sweep(cells, root, ["gin/smoke.gin"], ["run.epochs = 1"],
                              run_tool=script, report=print)
    # The crash did not stop the sweep: every other cell ran.
    assert outcome["failed"] == ["snip-dlb-s0.95-seed0"]
    assert sorted(outcome["done"]) == sorted(set(names) - {"snip-dlb-s0.95-seed0"})
    assert calls() == names
    out = capsys.readouterr().out
    assert "snip-dlb-s0.95-seed0 failed (exit code 1)" in out
    assert "simulated crash in snip-dlb-s0.95-seed0" in out  # the log tail
    assert "[6/6] dense-dlb-seed1: done in" in out and "ETA" in out
    state = json.loads((tmp_path / "sweep" / "sweep_state.json").read_text())
    assert state["cells"]["snip-dlb-s0.95-seed0"]["status"] == "failed"
    assert state["cells"]["dense-dlb-seed0"]["status"] == "done"
    finished = {n: os.path.getmtime(os.path.join(root, "cells", n, "metrics.json"))
                for n in outcome["done"]}

    monkeypatch.delenv("FAKE_CRASH")
    again = sweep.run_sweep(cells, root, ["gin/smoke.gin"], ["run.epochs = 1"],
                            run_tool=script, report=print)
    assert again["done"] == ["snip-dlb-s0.95-seed0"] and not again["failed"]
    assert sorted(again["skipped"]) == sorted(finished)
    assert calls() == names + ["snip-dlb-s0.95-seed0"]  # only the crashed cell ran again
    for name, mtime in finished.items():
        assert os.path.getmtime(os.path.join(root, "cells", name, "metrics.json")) == mtime
    state = json.loads((tmp_path / "sweep" / "sweep_state.json").read_text())
    assert state["cells"]["snip-dlb-s0.95-seed0"]["attempts"] == 2
    assert all(entry["status"] == "done" for entry in state["cells"].values())
    log = (tmp_path / "sweep" / "cells" / "snip-dlb-s0.95-seed0" / "run.log").read_text()
    assert log.count("=== attempt") == 2  # both attempts' output kept

    # The table aggregates the two seeds of each cell: 0.5 and 0.6 -> 55.00 ± 7.07.
    written = sweep.write_results(root, sweep.density_cells(["all"], root, cells))
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert "| dlb | dense | 55.00 ± 7.07 | – | – |" in table
    assert "| dlb | snip | – | 55.00 ± 7.07 | 55.00 ± 7.07 |" in table
    assert "n = 2 seeds" in table
    assert os.path.join(root, "plots", "accuracy_vs_sparsity_dlb.png") in written
    assert os.path.join(root, "plots", "layer_density_snip-dlb-s0.9-seed1.png") in written
    assert len((tmp_path / "sweep" / "results.csv").read_text().splitlines()) == 1 + 6


def test_max_failures_stops_launching_cells(tmp_path, fake_run, monkeypatch):
    script, calls = fake_run
    cells = sweep.make_grid(["random", "snip"], ["none"], ["0.9"], ["0", "1"])
    monkeypatch.setenv("FAKE_CRASH", ",".join(c.name for c in cells))
    outcome = sweep.run_sweep(cells, str(tmp_path / "s"), ["gin/smoke.gin"], [],
                              max_failures=2, run_tool=script)
    assert outcome["failed"] == [c.name for c in cells[:2]]
    assert outcome["not_run"] == [c.name for c in cells[2:]]
    assert calls() == [c.name for c in cells[:2]]
    with pytest.raises(ValueError, match="max_failures"):
        sweep.run_sweep(cells, str(tmp_path / "s"), ["gin/smoke.gin"], [], max_failures=0)


def test_no_cell_starts_after_start_until(tmp_path, fake_run):
    script, calls = fake_run
    cells = sweep.make_grid(["random", "snip"], ["none"], ["0.9"], ["0"])
    reports = []
    outcome = sweep.run_sweep(cells, str(tmp_path / "s"), ["gin/smoke.gin"], [],
                              run_tool=script, report=reports.append,
                              start_until=time.time() - 1)
    assert outcome["not_run"] == [c.name for c in cells] and calls() == []
    assert any("the start deadline passed" in line for line in reports)
    outcome = sweep.run_sweep(cells, str(tmp_path / "s"), ["gin/smoke.gin"], [],
                              run_tool=script, start_until=time.time() + 600)
    assert outcome["done"] == [c.name for c in cells]


def test_cells_with_progress_on_disk_resume_before_the_others(tmp_path, fake_run):
    script, calls = fake_run
    cells = sweep.make_grid(["random", "snip"], ["none"], ["0.9"], ["0", "1"])
    root = str(tmp_path / "s")
    os.makedirs(os.path.join(grid.cell_dir(root, cells[2]), files.BACKUP))
    reports = []
    outcome = sweep.run_sweep(cells, root, ["gin/smoke.gin"], [], run_tool=script,
                              report=reports.append)
    assert calls() == [cells[2].name] + [c.name for c in cells if c != cells[2]]
    assert sorted(outcome["done"]) == sorted(c.name for c in cells)
    assert f"1 cells resume first: {[cells[2].name]}" in reports


def test_a_finished_cell_with_another_config_is_refused(tmp_path, fake_run):
    script, calls = fake_run
    cells = sweep.make_grid(["random"], ["none"], ["0.9"], ["0"])
    root = str(tmp_path / "s")
    sweep.run_sweep(cells, root, ["gin/smoke.gin"], ["run.epochs = 1"], run_tool=script)
    with pytest.raises(ValueError, match="finished with .*run.epochs = 1.*new --root"):
        sweep.run_sweep(cells, root, ["gin/smoke.gin"], ["run.epochs = 2"], run_tool=script)
    assert calls() == ["random-none-s0.9-seed0"]


def test_density_plot_cells_are_checked(tmp_path):
    cells = sweep.make_grid(["snip", "dense"], ["dlb"], ["0.9"], ["0"])
    assert sweep.density_cells(["all"], str(tmp_path), cells) == ["snip-dlb-s0.9-seed0"]
    with pytest.raises(ValueError, match="dense-dlb-seed0.*valid: \\['snip-dlb-s0.9-seed0'\\]"):
        sweep.density_cells(["dense-dlb-seed0"], str(tmp_path), cells)


def _sweep_command(root):
    return [sys.executable, SWEEP, "--base_gin=gin/smoke.gin", "--scorers=random,snip,dense",
            "--methods=none", "--sparsities=0.9", "--seeds=0", f"--root={root}",
            "--density_plots=all",
            # Tiny cells: each is dominated by the TensorFlow import of its process.
            "--gin_bindings=run.epochs = 1", "--gin_bindings=run.verbose = 0",
            "--gin_bindings=load.num_examples = 128", "--gin_bindings=load.num_test = 64"]


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_redoing_finished_cells(tmp_path):
    """End to end with tools/run.py: stop the sweep while its second cell runs, resume."""
    root = tmp_path / "sweep"
    first = root / "cells" / "random-none-s0.9-seed0"
    second = root / "cells" / "snip-none-s0.9-seed0"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)  # the checkout
    process = subprocess.Popen(_sweep_command(root), cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if (first / "metrics.json").exists() and (second / "run.log").exists():
                break
            time.sleep(0.1)
        time.sleep(1.0)  # the second cell's process is up
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)  # e.g. a pre-empted job
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode != 0
        assert "run the same command to resume" in stderr
        # The sweep stopped its running cell too: nothing of its process group is left.
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    state = json.loads((root / "sweep_state.json").read_text())
    assert state["cells"]["random-none-s0.9-seed0"]["status"] == "done"
    assert state["cells"]["snip-none-s0.9-seed0"]["status"] == "interrupted"
    assert not (second / "metrics.json").exists()
    finished_mtime = os.path.getmtime(first / "metrics.json")
    first_log = (first / "run.log").read_text()

    result = subprocess.run(_sweep_command(root), cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[1/3] random-none-s0.9-seed0: done (finished earlier, skipped)" in result.stdout
    assert "[2/3] snip-none-s0.9-seed0: done in" in result.stdout
    assert "[3/3] dense-none-seed0: done in" in result.stdout
    # The finished cell was not redone; the interrupted one ran a second attempt.
    assert os.path.getmtime(first / "metrics.json") == finished_mtime
    assert (first / "run.log").read_text() == first_log
    assert (second / "run.log").read_text().count("=== attempt") == 2
    state = json.loads((root / "sweep_state.json").read_text())
    assert {name: entry["status"] for name, entry in state["cells"].items()} == {
        "random-none-s0.9-seed0": "done", "snip-none-s0.9-seed0": "done",
        "dense-none-seed0": "done"}
    table = (root / "results.md").read_text()
    for scorer in ("random", "snip", "dense"):
        assert f"| none | {scorer} |" in table
    assert "| method | scorer | 0 % | 90 % |" in table
    for png in ("accuracy_vs_sparsity_none.png", "layer_density_random-none-s0.9-seed0.png",
                "layer_density_snip-none-s0.9-seed0.png"):
        assert (root / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert len((root / "results.csv").read_text().splitlines()) == 1 + 3


def test_the_sweep_command_exit_codes_dry_run_and_collect_only(tmp_path, fake_run,
                                                               monkeypatch, capsys):
    script, calls = fake_run
    root = tmp_path / "s"
    grid = dict(gin_files=["gin/smoke.gin"], scorers=["snip", "dense"], methods=["pskd"],
                sparsities=["0.98"], seeds=["0"], run_tool=script, report=print)
    assert sweep.sweep(str(root), dry_run=True, **grid) == 0
    out = capsys.readouterr().out
    assert "snip-pskd-s0.98-seed0 [to run]: " in out and "dense-pskd-seed0 [to run]" in out
    assert not root.exists() and not calls()  # a dry run touches nothing

    monkeypatch.setenv("FAKE_CRASH", "dense-pskd-seed0")
    assert sweep.sweep(str(root), **grid) == 1  # a failed cell fails the sweep, after the rest
    assert calls() == ["snip-pskd-s0.98-seed0", "dense-pskd-seed0"]
    assert "1 failed ['dense-pskd-seed0']" in capsys.readouterr().out
    assert "| pskd | snip | 50.00 |" in (root / "results.md").read_text()  # partial results

    monkeypatch.delenv("FAKE_CRASH")
    assert sweep.sweep(str(root), density_plots=["snip-pskd-s0.98-seed0"], **grid) == 0
    assert calls()[2:] == ["dense-pskd-seed0"]
    assert (root / "plots" / "layer_density_snip-pskd-s0.98-seed0.png").exists()

    (root / "results.md").unlink()
    assert sweep.sweep(str(root), collect_only=True, report=print) == 0
    assert "| pskd | dense | 50.00 | – |" in (root / "results.md").read_text()
    assert len(calls()) == 3  # collecting runs nothing
    with pytest.raises(ValueError, match="base gin file"):
        sweep.sweep(str(root), scorers=["snip"], methods=["dlb"], sparsities=["0.9"],
                    seeds=["0"])


HOLD_LOCK = ("import sys, time\n"
             "from epsd_tf import files\n"
             "with files.locked(sys.argv[1]):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(600)\n")


def test_a_cell_another_sweep_runs_is_left_alone_and_a_dead_sweeps_lock_taken_over(
        tmp_path, fake_run, capsys):
    script, calls = fake_run
    root = str(tmp_path / "s")
    cells = sweep.make_grid(["random", "snip"], ["none"], ["0.9"], ["0"])
    lock = os.path.join(sweep.cell_dir(root, cells[0]), "cell.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, lock], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # another sweep runs cell 0
        outcome = sweep.run_sweep(cells, root, ["gin/smoke.gin"], [], run_tool=script,
                                  report=print, wait_busy=False)  # (waiting: test below)
    finally:
        holder.kill()
        holder.wait()
    assert outcome["busy"] == [cells[0].name] and outcome["done"] == [cells[1].name]
    assert calls() == [cells[1].name]  # the busy cell was not run a second time
    assert f"pid {holder.pid}" in capsys.readouterr().out
    # The other sweep was killed: its lock is stale, and the next sweep runs the cell.
    outcome = sweep.run_sweep(cells, root, ["gin/smoke.gin"], [], run_tool=script,
                              report=print)
    assert outcome["done"] == [cells[0].name] and outcome["skipped"] == [cells[1].name]
    assert not os.path.exists(lock)


@pytest.mark.parametrize("other_sweep", ["finishes it", "dies"])
def test_a_busy_cell_is_waited_for_and_run_only_if_the_other_sweep_did_not_finish_it(
        tmp_path, fake_run, monkeypatch, other_sweep):
    from epsd_tf.sweep import pool
    monkeypatch.setattr(pool, "BUSY_POLL", 0.2)
    script, calls = fake_run
    root = str(tmp_path / "s")
    cells = sweep.make_grid(["random", "snip"], ["none"], ["0.9"], ["0"])
    directory = sweep.cell_dir(root, cells[0])
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK,
                               os.path.join(directory, "cell.lock")],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = []

    def report(line):
        lines.append(line)
        if "busy, another sweep runs it" in line:  # the other sweep ends now
            assert f"pid {holder.pid}" in line and calls() == []  # cell 1 not started yet
            if other_sweep == "finishes it":
                with open(os.path.join(directory, "metrics.json"), "w") as f:
                    f.write("{}")
            holder.kill()
            holder.wait()
    try:
        assert holder.stdout.readline().strip() == "held"  # another sweep runs cell 0
        outcome = sweep.run_sweep(cells, root, ["gin/smoke.gin"], [], run_tool=script,
                                  report=report)
    finally:
        holder.kill()
        holder.wait()
    assert sum("busy, another sweep runs it" in line for line in lines) == 1, lines
    assert outcome["busy"] == [] and not outcome["failed"]
    if other_sweep == "finishes it":
        assert outcome["done"] == [cells[1].name] and outcome["skipped"] == [cells[0].name]
        assert calls() == [cells[1].name]
        assert any(f"{cells[0].name}: done (finished elsewhere" in line for line in lines)
    else:  # the busy cell waited until this sweep's other cell was started
        assert outcome["done"] == [cells[1].name, cells[0].name]
        assert calls() == [cells[1].name, cells[0].name]
        assert not os.path.exists(os.path.join(directory, "cell.lock"))


def test_a_cell_finished_by_the_sweep_that_released_its_lock_is_not_started(tmp_path):
    root = str(tmp_path / "s")
    (cell,) = sweep.make_grid(["random"], ["none"], ["0.9"], ["0"])
    directory = sweep.cell_dir(root, cell)
    os.makedirs(directory)
    with open(os.path.join(directory, "metrics.json"), "w") as f:
        f.write("{}")
    state = sweep.SweepState(root)
    run = runner.CellRun(cell, [sys.executable, "-c", "raise SystemExit(3)"], state)
    assert not run.start() and run.finished and not run.busy and run.process is None
    assert not os.path.exists(os.path.join(directory, "cell.lock"))  # released
    assert sweep.run_cell(cell, run.command, state, print) == "done"


def test_results_overlay_landscapes_and_plot_densities_side_by_side(tmp_path):
    """Cells run with the landscape stage get overlays (first seed, dense in each)."""
    from tests.analysis.test_results import write_cell

    def cell(scorer, method, sparsity, seed, sharpness):
        directory = write_cell(tmp_path, scorer, method, sparsity, seed, 0.8)
        (directory / "landscape").mkdir()
        (directory / "landscape" / "landscape.json").write_text(json.dumps(
            {"alphas": [-1, 0, 1], "loss": [1 + sharpness, 1.0, 1 + sharpness]}))
        metrics = json.loads((directory / "metrics.json").read_text())
        metrics["landscape"] = {"sharpness_half": sharpness}
        (directory / "metrics.json").write_text(json.dumps(metrics))
        if scorer != "dense":  # one of two layers starved down to the 0.2 % floor
            (directory / "pruning_report.json").write_text(json.dumps(
                {"layers": [{"name": "c/kernel", "parameters": 1000, "kept": 2},
                            {"name": "d/kernel", "parameters": 1000, "kept": 100}],
                 "settings": {"min_density": 0.002}}))
        return directory.name

    for seed in (0, 1):
        cell("dense", "none", 0.0, seed, 2.0)
        cell("dense", "dlb", 0.0, seed, 1.0)
        chosen = [cell(s, "dlb", 0.98, seed, 0.5) for s in ("epsd", "snip")]
    written = sweep.write_results(str(tmp_path), chosen)
    plots = tmp_path / "plots"
    assert (plots / "landscape_dlb_s0.98.png").exists()
    assert (plots / "layer_density.png").exists()  # both chosen cells in one chart
    assert str(plots / "layer_density.png") in written
    text = (tmp_path / "results.md").read_text()
    assert "| dlb | epsd | – | 0.500 ± 0.000 |" in text  # sharpness table
    assert "| dlb | snip | – | 1.0 ± 0.0 |" in text       # one layer held at the floor
