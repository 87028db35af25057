"""Tests for epsd_tf.analysis.results on hand-made sweep directories."""

import csv
import json
import statistics

import numpy as np
import pytest

from epsd_tf.analysis import (
    aggregate,
    collect,
    markdown_table,
    plot_accuracy_vs_sparsity,
    plot_layer_densities,
    write_csv,
)

# (scorer, method, sparsity, seed) -> test accuracy
ACCURACIES = {
    ("snip", "dlb", 0.9, 0): 0.80, ("snip", "dlb", 0.9, 1): 0.84, ("snip", "dlb", 0.9, 2): 0.85,
    ("snip", "dlb", 0.95, 0): 0.70, ("snip", "dlb", 0.95, 1): 0.74,
    ("epsd", "dlb", 0.9, 0): 0.88, ("epsd", "dlb", 0.9, 1): 0.90,
    ("dense", "dlb", 0.0, 0): 0.93, ("dense", "dlb", 0.0, 1): 0.95,
    ("snip", "none", 0.9, 0): 0.78,
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cell_name(scorer, method, sparsity, seed):
    if scorer == "dense":
        return f"dense-{method}-seed{seed}"
    return f"{scorer}-{method}-s{sparsity:g}-seed{seed}"


def report(densities):
    layers = [{"name": f"conv{i}/kernel", "layer": f"conv{i}", "parameters": 100,
               "kept": int(100 * d), "sparsity": 1 - d, "masked": True}
              for i, d in enumerate(densities)]
    return {"layers": layers, "totals": {}, "target_sparsity": None, "settings": {}}


def write_cell(root, scorer, method, sparsity, seed, accuracy, finished=True, jsv=None):
    name = cell_name(scorer, method, sparsity, seed)
    directory = root / "cells" / name
    directory.mkdir(parents=True)
    (directory / "cell.json").write_text(json.dumps(
        {"name": name, "scorer": scorer, "method": method, "sparsity": sparsity,
         "seed": seed}))
    pruning = None
    if scorer != "dense":
        pruning = {"scorer": scorer, "target_sparsity": sparsity,
                   "prunable_sparsity": sparsity}
        (directory / "pruning_report.json").write_text(json.dumps(report([0.5, 0.2, 0.1])))
    if finished:
        metrics = {"test": {"accuracy": accuracy, "loss": 1 - accuracy, "ece": 0.05},
                   "method": method, "epochs": 3, "pruning": pruning,
                   "parameters": {"sparsity_trainable": sparsity * 0.99},
                   "mean_jsv": jsv,
                   "seconds": {"pruning": 2.0, "training": 10.0 + seed, "total": 13.0}}
        (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


@pytest.fixture
def sweep_root(tmp_path):
    for (scorer, method, sparsity, seed), accuracy in ACCURACIES.items():
        write_cell(tmp_path, scorer, method, sparsity, seed, accuracy)
    # Unfinished: must not appear in any result.
    write_cell(tmp_path, "epsd", "dlb", 0.95, 0, None, finished=False)
    return tmp_path


def test_collect_reads_every_finished_cell(sweep_root):
    rows = collect(str(sweep_root))
    assert len(rows) == len(ACCURACIES)
    by_key = {(r["scorer"], r["method"], r["sparsity"], r["seed"]): r for r in rows}
    assert set(by_key) == set(ACCURACIES)
    row = by_key[("snip", "dlb", 0.95, 1)]
    assert row["test_accuracy"] == 0.74
    assert row["test_loss"] == pytest.approx(0.26)
    assert row["achieved_sparsity"] == 0.95
    assert row["training_seconds"] == 11.0
    assert row["cell"] == "snip-dlb-s0.95-seed1"
    assert row["mean_jsv_init"] is None
    assert by_key[("dense", "dlb", 0.0, 0)]["achieved_sparsity"] == 0.0


def test_aggregate_mean_and_sample_std_over_seeds(sweep_root):
    summary = {(r["scorer"], r["method"], r["sparsity"]): r
               for r in aggregate(collect(str(sweep_root)))}
    assert len(summary) == 5
    snip = summary[("snip", "dlb", 0.9)]
    values = [0.80, 0.84, 0.85]
    assert snip["n"] == 3 and snip["seeds"] == [0, 1, 2]
    assert snip["test_accuracy_mean"] == pytest.approx(statistics.mean(values))
    # ddof=1: the sample std (0.02646), not the population std (0.02160).
    assert snip["test_accuracy_std"] == pytest.approx(statistics.stdev(values))
    assert snip["test_accuracy_std"] == pytest.approx(0.0264575, abs=1e-6)
    assert snip["training_seconds_mean"] == pytest.approx(11.0)
    dense = summary[("dense", "dlb", 0.0)]
    assert dense["test_accuracy_mean"] == pytest.approx(0.94)
    assert dense["test_accuracy_std"] == pytest.approx(statistics.stdev([0.93, 0.95]))
    single = summary[("snip", "none", 0.9)]
    assert single["n"] == 1 and single["test_accuracy_mean"] == 0.78
    assert single["test_accuracy_std"] is None
    # Absent everywhere: no number is invented.
    assert snip["mean_jsv_init_mean"] is None and snip["mean_jsv_init_std"] is None


def test_aggregate_mean_jsv_when_present(tmp_path):
    for seed, value in ((0, 2.0), (1, 4.0)):
        write_cell(tmp_path, "snip", "dlb", 0.9, seed, 0.8,
                   jsv={"init": {"mean": value, "std": 0.1}, "trained": {"mean": 1.0}})
    (row,) = aggregate(collect(str(tmp_path)))
    assert row["mean_jsv_init_mean"] == pytest.approx(3.0)
    assert row["mean_jsv_init_std"] == pytest.approx(2 ** 0.5)
    assert row["mean_jsv_trained_mean"] == pytest.approx(1.0)


def test_markdown_table_has_the_papers_shape(sweep_root):
    table = markdown_table(aggregate(collect(str(sweep_root))))
    lines = table.splitlines()
    assert lines[0] == "| method | scorer | 0 % | 90 % | 95 % |"
    assert lines[1] == "|---|---|---:|---:|---:|"
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in lines[2:] if line.startswith("|")}
    assert list(rows) == [("dlb", "dense"), ("dlb", "epsd"), ("dlb", "snip"),
                          ("none", "snip")]
    # snip/dlb at 90 %: mean 83.00, sample std 2.65, three seeds (n shown per entry
    # because the groups have different seed counts).
    assert "| 83.00 ± 2.65 (n=3) |" in rows[("dlb", "snip")]
    assert "| 72.00 ± 2.83 (n=2) |" in rows[("dlb", "snip")]
    assert rows[("dlb", "dense")] == "| dlb | dense | 94.00 ± 1.41 (n=2) | – | – |"
    assert rows[("none", "snip")] == "| none | snip | – | 78.00 (n=1) | – |"
    assert "sample std (ddof=1)" in table


def test_markdown_table_with_equal_seed_counts_states_n_once(tmp_path):
    for seed, accuracy in ((0, 0.5), (1, 0.7)):
        write_cell(tmp_path, "random", "cskd", 0.98, seed, accuracy)
    table = markdown_table(aggregate(collect(str(tmp_path))))
    assert "| cskd | random | 60.00 ± 14.14 |" in table
    assert "n = 2 seeds" in table
    # An unknown field is refused, naming the fields that exist.
    with pytest.raises(ValueError, match="no accuracy_mean.*test_accuracy"):
        markdown_table(aggregate(collect(str(tmp_path))), field="accuracy")


def test_write_csv_round_trips(sweep_root, tmp_path):
    rows = collect(str(sweep_root))
    path = write_csv(rows, str(tmp_path / "out" / "results.csv"))
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows)
    assert read[0]["cell"] == rows[0]["cell"]
    assert float(read[0]["test_accuracy"]) == rows[0]["test_accuracy"]
    assert read[0]["mean_jsv_init"] == ""  # None -> empty field
    summary_path = write_csv(aggregate(rows), str(tmp_path / "summary.csv"))
    with open(summary_path) as f:
        summary = {(r["scorer"], r["method"], r["sparsity"]): r for r in csv.DictReader(f)}
    assert summary[("snip", "dlb", "0.9")]["seeds"] == "0 1 2"
    assert summary[("snip", "none", "0.9")]["test_accuracy_std"] == ""


def test_plots_are_written(sweep_root, tmp_path):
    summary = aggregate(collect(str(sweep_root)))
    paths = plot_accuracy_vs_sparsity(
        summary, str(tmp_path / "plots" / "accuracy_vs_sparsity_{method}.png"))
    assert sorted(paths) == ["dlb", "none"]
    for path in paths.values():
        assert open(path, "rb").read(8) == PNG_MAGIC
    reports = [str(sweep_root / "cells" / name / "pruning_report.json")
               for name in ("snip-dlb-s0.9-seed0", "epsd-dlb-s0.9-seed0")]
    path = plot_layer_densities(reports, str(tmp_path / "plots" / "density.png"))
    assert open(path, "rb").read(8) == PNG_MAGIC


def test_bad_input_is_named(sweep_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sweep directory"):
        collect(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"\{method\}"):
        plot_accuracy_vs_sparsity(aggregate(collect(str(sweep_root))), str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="no aggregated rows"):
        markdown_table([])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        plot_layer_densities([str(tmp_path / "missing.json")], str(tmp_path / "d.png"))
    other = tmp_path / "other" / "pruning_report.json"
    other.parent.mkdir()
    other.write_text(json.dumps(report([0.5, 0.5])))
    first = str(sweep_root / "cells" / "snip-dlb-s0.9-seed0" / "pruning_report.json")
    with pytest.raises(ValueError, match="different networks"):
        plot_layer_densities([first, str(other)], str(tmp_path / "d.png"))
    rows = collect(str(sweep_root))
    with pytest.raises(ValueError, match="repeated seeds"):
        aggregate(rows + rows[:1])


def test_a_run_that_disagrees_with_its_cell_is_refused(tmp_path):
    directory = write_cell(tmp_path, "snip", "dlb", 0.9, 0, 0.8)
    metrics = json.loads((directory / "metrics.json").read_text())
    metrics["pruning"]["scorer"] = "epsd"  # e.g. a user binding overrode the grid
    (directory / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="cell scorer 'snip' but the run used 'epsd'"):
        collect(str(tmp_path))
    (directory / "metrics.json").write_text(json.dumps({"method": "dlb"}))
    with pytest.raises(ValueError, match="no test accuracy"):
        collect(str(tmp_path))


def test_floor_layers_counts_layers_starved_down_to_the_floor():
    from epsd_tf.analysis.results import floor_layers
    layers = [{"name": "a", "parameters": 1000, "kept": 2},   # at the 0.2 % floor
              {"name": "b", "parameters": 1000, "kept": 3},   # above it
              {"name": "c", "parameters": 100, "kept": 1},    # ceil(0.2) = 1: at the floor
              {"name": "d", "parameters": 100, "kept": 0, "masked": False}]  # not pruned
    assert floor_layers({"layers": layers, "settings": {"min_density": 0.002}}) == 2
    layers[0]["kept"] = 0
    assert floor_layers({"layers": layers, "settings": {"min_density": 0.0}}) == 1  # empty only


def test_classifier_density_is_the_last_layers_kept_fraction():
    from epsd_tf.analysis.results import classifier_density
    layers = [{"name": "conv", "parameters": 1000, "kept": 20},
              {"name": "logits", "parameters": 640, "kept": 5}]
    assert classifier_density({"layers": layers}) == 5 / 640
    layers[-1].update(kept=640, masked=False)  # left dense (keep_dense)
    assert classifier_density({"layers": layers}) == 1.0


def test_collect_reads_landscape_and_floor_fields(tmp_path):
    directory = write_cell(tmp_path, "epsd", "dlb", 0.9, 0, 0.9)
    metrics = json.loads((directory / "metrics.json").read_text())
    metrics["landscape"] = {"sharpness_half": 0.125}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    write_cell(tmp_path, "dense", "dlb", 0.0, 0, 0.95)
    rows = {row["scorer"]: row for row in collect(str(tmp_path))}
    assert rows["epsd"]["landscape_sharpness"] == 0.125
    assert rows["epsd"]["floor_layers"] == 0  # report() has no floor and no empty layer
    assert rows["dense"]["landscape_sharpness"] is None and rows["dense"]["floor_layers"] is None
    assert 0 < rows["epsd"]["classifier_density"] <= 1
    assert rows["dense"]["classifier_density"] is None


def test_landscape_overlay_plot(tmp_path):
    from epsd_tf.analysis import plot_landscape_overlay
    curves = {"dense + dlb": {"alphas": [-1, 0, 1], "loss": [2.0, 0.3, 2.2]},
              "epsd + dlb": {"alphas": [-1, 0, 1], "loss": [1.0, 0.4, 1.1]}}
    path = plot_landscape_overlay(curves, str(tmp_path / "p" / "o.png"), title="t")
    assert open(path, "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="no landscapes"):
        plot_landscape_overlay({}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="equal-length"):
        plot_landscape_overlay({"bad": {"alphas": [0, 1], "loss": [1.0]}},
                               str(tmp_path / "x.png"))


def test_dense_only_methods_are_drawn_in_the_other_methods_plots(tmp_path):
    write_cell(tmp_path, "snip", "dlb", 0.9, 0, 0.8)
    write_cell(tmp_path, "dense", "dlb", 0.0, 0, 0.9)
    write_cell(tmp_path, "dense", "none", 0.0, 0, 0.88)
    paths = plot_accuracy_vs_sparsity(aggregate(collect(str(tmp_path))),
                                      str(tmp_path / "{method}.png"))
    assert list(paths) == ["dlb"]  # no plot holding a lone dense line for "none"
    assert open(paths["dlb"], "rb").read(8) == PNG_MAGIC


def test_the_paired_difference_plot_zooms_in_beside_the_full_scale(tmp_path):
    from epsd_tf.analysis import plots
    records = [{"label": "wide", "mean": -0.37, "low": -0.85, "high": 0.12},
               {"label": "small", "mean": -0.004, "low": -0.009, "high": -0.001},
               {"label": "one seed", "mean": 0.05, "low": None, "high": None}]
    full, zoomed = plots.paired_differences_figure(records, zoom=3.0).axes
    assert zoomed.get_xlim() == (-3.0, 3.0) and full.get_xlim()[0] < -80
    # In the zoomed panel the wide interval is clipped at the edges and ends in arrows;
    # its mean (-37 pt) is an arrowhead at the left edge; the small one is a red dot.
    markers = {(line.get_marker(), tuple(np.round(line.get_xdata(), 6)))
               for line in zoomed.get_lines() if line.get_marker() not in ("None", "")}
    assert markers == {("<", (-3.0,)), (">", (3.0,)), ("o", (-0.4,))}
    arrows = [line.get_markersize() for line in zoomed.get_lines() if line.get_marker() == "<"]
    assert sorted(arrows) == [4, 8]  # the interval's end, and the mean past the edge
    # The full-scale panel draws every mean where it is.
    assert {tuple(np.round(line.get_xdata(), 6)) for line in full.get_lines()
            if line.get_marker() == "o"} == {(-37.0,), (-0.4,), (5.0,)}
    red = [line for line in zoomed.get_lines() if line.get_color() == "tab:red"]
    assert [tuple(line.get_xdata()) for line in red] == [(-0.4,)]
    assert len(plots.paired_differences_figure(records).axes) == 1  # no zoom: one panel
    path = plots.plot_paired_differences(records, str(tmp_path / "d.png"), zoom=3.0)
    assert open(path, "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="zoom must be > 0"):
        plots.paired_differences_figure(records, zoom=0)


def test_the_accuracy_plot_spaces_sparsities_by_log_density_and_zooms_in(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from epsd_tf.analysis import plots
    for sparsity, snip, epsd in ((0.9, 0.85, 0.86), (0.95, 0.84, 0.845), (0.98, 0.40, 0.83)):
        write_cell(tmp_path, "snip", "dlb", sparsity, 0, snip)
        write_cell(tmp_path, "epsd", "dlb", sparsity, 0, epsd)
    write_cell(tmp_path, "dense", "dlb", 0.0, 0, 0.87)
    summary = aggregate(collect(str(tmp_path)))
    figure = plots.accuracy_figure(summary, "dlb", zoom=5.0)
    FigureCanvasAgg(figure).draw()
    full, zoomed = figure.axes
    # Density on a log scale, reversed: 90, 95 and 98 % are spread out, in that order.
    for axis in (full, zoomed):
        assert axis.get_xscale() == "log"
        assert list(axis.get_xticks()) == pytest.approx([10.0, 5.0, 2.0])
        assert [t.get_text() for t in axis.get_xticklabels()] == ["90", "95", "98"]
        assert axis.get_xlim()[0] > 10.0 > 2.0 > axis.get_xlim()[1]
    # The zoomed panel: the 5 pt below the best mean (dense, 87 %); SNIP's collapse at
    # 98 % (40 %) is an arrow at its lower edge there, and a point in the full panel.
    assert zoomed.get_ylim() == pytest.approx((82.0, 87.5))
    arrows = [(tuple(line.get_xdata()), tuple(line.get_ydata()))
              for line in zoomed.get_lines() if line.get_marker() == "v"]
    assert arrows == [((pytest.approx(2.0, rel=0.05),), (pytest.approx(82.0),))]
    assert not [line for line in full.get_lines() if line.get_marker() == "v"]
    assert full.get_ylim()[0] < 40.0
    assert len(plots.accuracy_figure(summary, "dlb").axes) == 1  # no zoom: one panel
    # Every mean within 50 pt of the best: the zoomed panel would be the full one.
    assert len(plots.accuracy_figure(summary, "dlb", zoom=50.0).axes) == 1
    with pytest.raises(ValueError, match="zoom must be > 0"):
        plots.accuracy_figure(summary, "dlb", zoom=-1.0)
    unknown = r"no rows of method 'cskd' to plot \(the rows have \['dlb'\]\)"
    with pytest.raises(ValueError, match=unknown):
        plots.accuracy_figure(summary, "cskd")
    paths = plot_accuracy_vs_sparsity(summary, str(tmp_path / "{method}.png"), zoom=5.0)
    assert open(paths["dlb"], "rb").read(8) == PNG_MAGIC
