"""Tests for epsd_tf.study.report (+ rows, compare): RESULTS.md from a committed tree."""

import json
import math
import os

import pytest

from epsd_tf.analysis import stats
from epsd_tf.study import archive, claims, compare, plan, report, rows
from epsd_tf.sweep import grid
from tests.study import helpers

# No backend code runs here: the JAX suite runs it, the TF suite of `make test` skips it.
pytestmark = [pytest.mark.jax, pytest.mark.backend_free]
# Test accuracy by (scorer, seed) at 98 %: EPSD − SNIP = +1, +2, +3 pt on seeds 0-2;
# seed 3 exists for EPSD only (SNIP's is missing).
ACCURACY = {("epsd", 0): 0.80, ("epsd", 1): 0.82, ("epsd", 2): 0.84, ("epsd", 3): 0.81,
            ("snip", 0): 0.79, ("snip", 1): 0.80, ("snip", 2): 0.81}


@pytest.fixture
def committed(tmp_path):
    runs, tree = str(tmp_path / "runs"), str(tmp_path / "study")
    for (scorer, seed), accuracy in ACCURACY.items():
        helpers.write_cell(runs, plan.R20, grid.Cell(scorer, "dlb", 0.98, seed),
                           accuracy=accuracy, floor=2 if scorer == "epsd" else 0,
                           jsv_init=1.0 + seed + (0.5 if scorer == "epsd" else 0.0))
    for seed in (0, 1):
        helpers.write_cell(runs, plan.R20, grid.Cell("dense", "dlb", 0.0, seed), accuracy=0.9)
    archive.collect(runs, tree, note="one H200, JAX 0.11.2")
    return tree


def test_rows_carry_what_the_committed_files_say(committed):
    loaded = rows.load(committed)
    assert len(loaded) == len(ACCURACY) + 2
    assert {r["arch"] for r in loaded} == {"resnet20"}
    assert {r["allocation"] for r in loaded} == {"global"}
    assert not any(r["landscape_run"] for r in loaded)
    assert {r["floor_layers"] for r in loaded if r["scorer"] == "epsd"} == {2}
    assert {r["classifier_density"] for r in loaded if r["scorer"] == "epsd"} == {64 / 640}


def test_allocation_labels_come_from_the_config():
    assert rows.allocation({}) == "global"
    assert rows.allocation({"prune_at_init.scope": "'layerwise'",
                            "prune_at_init.layer_density": "'erk'"}) == "erk"
    assert rows.allocation({"prune_at_init.rounds": "5"}) == "global, 5 rounds"
    assert rows.allocation({"prune_at_init.rounds": "None"}) == "global"
    assert rows.allocation({"prune_at_init.keep_dense": "['logits']"}) == "global, logits dense"
    assert rows.allocation({"prune_at_init.keep_dense": "()"}) == "global"


def test_the_classifier_ablation_is_its_own_group_and_claim(committed, tmp_path):
    runs = str(tmp_path / "ablation")
    for (scorer, seed), accuracy in ACCURACY.items():  # +5.0 to +5.3 pt with logits dense
        helpers.write_cell(runs, plan.R20_DENSE_CLASSIFIER, grid.Cell(scorer, "dlb", 0.98, seed),
                           accuracy=accuracy + 0.05 + 0.001 * seed)
    archive.collect(runs, committed)
    text, _ = report.render(committed, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    assert "### resnet20, global, logits dense allocation" in text
    assert "| resnet20 | global, logits dense | dlb | 98 % | snip | 3 | +2.00 |" in text
    claim = text.split("### The classifier left dense (our ablation)")[1].split("### ")[0]
    assert "*Our question:*" in claim and "EPSD − snip = +2.00 pt" in claim
    # Each criterion against itself with global ranking: +5.0 to +5.3 pt, every seed.
    assert ("- epsd, 98 %, dlb: global, logits dense − global = +5.15 pt, 95 % CI [+4.94, "
            "+5.36] over 4 matched seeds (ahead on 4, behind on 0): real") in claim
    assert "- snip, 98 %, dlb: global, logits dense − global = +5.10 pt" in claim
    allocation = text.split("### Allocation (layer-wise ERK")[1].split("### ")[0]
    assert "No committed cells test this yet." in allocation  # not an allocation variant


def test_paired_comparison_uses_matched_seeds_only(committed):
    [record] = compare.comparisons(rows.load(committed))
    assert (record["baseline"], record["n"], record["seeds"]) == ("snip", 3, [0, 1, 2])
    assert record["mean"] == pytest.approx(0.02)
    half = 4.302653 * 0.01 / math.sqrt(3)  # std of (1, 2, 3) pt is 1 pt
    assert (record["low"], record["high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert (record["wins"], record["losses"], record["sign_p"]) == (3, 0, 0.25)
    assert record["verdict"] == "noise"  # t(0.975, 2) = 4.30: the interval is ±2.48 pt


def test_the_claims_tally_names_comparisons_where_every_seed_points_one_way():
    def record(mean, verdict):
        return {"mean": mean, "verdict": verdict}

    text = claims.tally([record(-0.29, stats.ONE_WAY), record(-0.01, "noise"),
                         record(-0.013, "real"), record(0.02, "too few seeds")])
    assert text == ("Of 4 comparisons, the 95 % interval puts EPSD ahead in 0, behind in 1, "
                    "and includes 0 in 2 (in 1 of these every seed points one way: EPSD "
                    "behind in 1, ahead in 0); 1 have fewer than 2 matched seeds.")


def test_a_lower_is_better_field_counts_epsd_ahead_where_its_value_is_lower():
    # Sharpness: EPSD flatter (lower) than SNIP on seeds 0-4, by 1 to 5.
    cells = [{"arch": "resnet20", "allocation": "global", "method": "dlb", "sparsity": 0.98,
              "scorer": scorer, "seed": seed,
              "landscape_sharpness": 10.0 + seed * (1.0 if scorer == "epsd" else 2.0)}
             for scorer in ("epsd", "snip") for seed in range(5)]
    cells[0]["landscape_sharpness"] = 9.0  # seed 0: 9 against 10
    [record] = compare.comparisons(cells, "landscape_sharpness")
    assert record["mean"] == pytest.approx(-2.2)
    assert (record["wins"], record["losses"]) == (5, 0)
    assert compare.epsd_ahead(record)
    assert "(EPSD ahead on 5, behind on 0;" in compare.describe(record, 1.0, "", 1)
    assert claims.tally([record]).startswith("Of 1 comparisons, the 95 % interval puts EPSD "
                                             "ahead in 1, behind in 0")
    [accuracy] = compare.comparisons(
        [{**c, "test_accuracy": c["landscape_sharpness"]} for c in cells])
    assert (accuracy["wins"], accuracy["losses"]) == (0, 5)
    assert not compare.epsd_ahead(accuracy)


def test_the_allocation_claim_names_the_allocation_of_each_comparison(tmp_path, monkeypatch):
    runs = str(tmp_path / "runs")
    for seed in (0, 1):
        for scorer, accuracy in (("epsd", 0.91), ("snip", 0.90)):
            helpers.write_cell(runs, plan.R20_ERK, grid.Cell(scorer, "dlb", 0.98, seed),
                               accuracy=accuracy + seed / 100, big_files=False)
        helpers.write_cell(runs, plan.R20_ITERATIVE, grid.Cell("epsd", "dlb", 0.98, seed),
                           accuracy=0.92, big_files=False)
        helpers.write_cell(runs, plan.R20, grid.Cell("epsd", "dlb", 0.98, seed),
                           accuracy=0.6, big_files=False)
    text, _ = report.render(runs, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    claim = text.split("### Allocation (layer-wise ERK")[1].split("### ")[0]
    assert "- 98 %, dlb, erk: EPSD − snip = +1.00 pt" in claim
    assert "- 98 %, dlb: EPSD (global, 5 rounds) − epsd (global) = +32.00 pt" in claim
    # The iterative figure shows the global-ranking cells of its sparsities beside it.
    assert "`, one-shot` and `, N rounds`: the global-ranking cells" in text
    summaries = []
    monkeypatch.setattr(report.plots, "plot_accuracy_vs_sparsity",
                        lambda summary, template, **_: summaries.append(summary) or {})
    report.render(runs, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    iterative = [s for s in summaries if any(r["scorer"] == "epsd, one-shot" for r in s)]
    assert len(iterative) == 1
    assert {(r["scorer"], r["sparsity"], r["n"]) for r in iterative[0]
            if r["scorer"] != "dense"} == {("epsd", 0.98, 2), ("epsd, one-shot", 0.98, 2)}


def test_the_headline_lists_comparisons_with_two_seeds_and_only_names_the_others(committed,
                                                                                tmp_path):
    runs = str(tmp_path / "grasp")
    helpers.write_cell(runs, plan.R20, grid.Cell("grasp", "dlb", 0.98, 3), accuracy=0.2,
                       big_files=False)
    archive.collect(runs, committed)
    text = claims.headline(compare.comparisons(rows.load(committed)))
    assert "- 98 %, dlb: EPSD − snip = +2.00 pt, 95 % CI" in text
    assert "EPSD − grasp" not in text
    assert text.endswith("With fewer than 2 matched seeds so far (see the paired table): "
                         "grasp (1 seed).\n")


def test_iterative_epsd_is_compared_with_the_one_shot_scorers(tmp_path):
    runs = str(tmp_path / "runs")
    for seed in (0, 1):
        helpers.write_cell(runs, plan.R20, grid.Cell("epsd", "dlb", 0.95, seed), accuracy=0.8)
        helpers.write_cell(runs, plan.R20_ITERATIVE, grid.Cell("epsd", "dlb", 0.95, seed),
                           accuracy=0.81 + seed / 100, big_files=False)
    records = compare.comparisons(rows.load(runs))
    iterative = [r for r in records if "rounds" in r["allocation"]]
    assert [(r["baseline"], r["baseline_allocation"]) for r in iterative] == [("epsd", "global")]
    assert iterative[0]["mean"] == pytest.approx(0.015)


def test_results_md_has_the_numbers_and_names_the_missing_cells(committed, tmp_path):
    out = str(tmp_path / "docs" / "RESULTS.md")
    written = report.write(committed, out, str(tmp_path / "docs" / "figures"))
    text = open(out).read()
    assert written[0] == out and all(os.path.isfile(p) for p in written)
    assert any(p.endswith("accuracy_resnet20_global_dlb.png") for p in written)
    assert any("layer_density_resnet20_98" in p for p in written)
    assert any(p.endswith("classifier_resnet20_98.png") for p in written)
    assert "### Fraction of the classifier kept: resnet20, global allocation" in text
    assert "| dlb | epsd | – | 0.100 ± 0.000 (n=4) |" in text  # dense column, 98 %
    assert "The study is incomplete: 9 of" in text
    assert "| one H200, JAX 0.11.2 | 9 |" in text  # the session that committed them
    # Means ± sample std: EPSD (80, 82, 84, 81) and SNIP (79, 80, 81).
    assert "81.75 ± 1.71 (n=4)" in text and "80.00 ± 1.00 (n=3)" in text
    assert "EPSD − snip = +2.00 pt, 95 % CI [-0.48, +4.48] over 3 matched seeds" in text
    assert "| resnet20 | global | dlb | 98 % | snip | 3 | +2.00 |" in text
    assert "r20/snip-dlb-s0.98-seed{3,4}" in text  # the missing SNIP seeds are listed
    assert "r20/epsd-dlb-s0.9-seed{0,1,2}" in text
    assert "the 95 % interval puts EPSD ahead in 0, behind in 0, and includes 0 in 1" in text
    # The hand-written block survives a re-generation.
    text = text.replace(report.HAND_DEFAULT, "Run on one H200, JAX 0.11.2.")
    open(out, "w").write(text)
    report.write(committed, out, str(tmp_path / "docs" / "figures"))
    assert "Run on one H200, JAX 0.11.2." in open(out).read()


def test_an_empty_tree_reports_everything_missing(tmp_path):
    os.makedirs(tmp_path / "study")
    out = str(tmp_path / "RESULTS.md")
    report.write(str(tmp_path / "study"), out)
    text = open(out).read()
    total = len(plan.planned_cells())
    assert f"0 of {total} planned cells are committed" in text
    assert "No paired comparison" in text


def test_sessions_show_the_median_training_time_of_single_attempt_resnet20_cells(tmp_path):
    runs, tree = str(tmp_path / "runs"), str(tmp_path / "study")
    for seed, minutes in enumerate((3.0, 5.0, 4.0, 60.0)):
        helpers.write_cell(runs, plan.R20, grid.Cell("dense", "dlb", 0.0, seed), accuracy=0.9,
                           training_seconds=minutes * 60)
    resumed = os.path.join(runs, "r20", grid.CELLS, "dense-dlb-seed3", archive.CELL_STATE)
    with open(resumed) as f:
        state = json.load(f)
    with open(resumed, "w") as f:
        json.dump({**state, "attempts": 2}, f)  # its training time is the last attempt's only
    archive.collect(runs, tree, note="call one")
    text, _ = report.render(tree, str(tmp_path / "RESULTS.md"), str(tmp_path / "figures"))
    assert "| call one | 4 | 4.0 (n=3) |" in text


def test_superseded_cells_get_their_own_section_paired_with_the_current_cells(committed,
                                                                              tmp_path):
    def sessions_row(text):
        return next(line for line in text.splitlines() if line.startswith("| 20"))
    before, _ = report.render(committed, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    archive.supersede(committed, ["r20/epsd-*"], "fp32-bn", "BN in float32.")
    text, _ = report.render(committed, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    assert sessions_row(text) == sessions_row(before)  # their run times still count
    main, superseded = text.split("## Superseded cells")[0], text.split("## Superseded cells")[1]
    assert "| epsd |" not in main.split("## Test accuracy")[1]  # out of the main tables
    assert "### `fp32-bn`: 4 cells" in superseded and "BN in float32." in superseded
    assert "| resnet20 | global | dlb | 98 % | snip | 3 | +2.00 |" in superseded  # still paired


def test_a_network_with_dense_cells_only_gets_its_dense_table_and_no_figure(committed,
                                                                            tmp_path):
    runs = str(tmp_path / "more")
    helpers.write_cell(runs, plan.VGG16, grid.Cell("dense", "dlb", 0.0, 0), accuracy=0.93,
                       arch="vgg16_bn")
    archive.collect(runs, committed)
    text, written = report.render(committed, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    assert "### vgg16_bn, global allocation" in text and "| dlb | dense | 93.00" in text
    assert not any("vgg16" in os.path.basename(path) for path in written)


def test_a_cell_run_twice_is_paired_with_its_committed_run(committed, tmp_path):
    again = str(tmp_path / "again")
    archive.restore(committed, again)
    helpers.write_cell(again, plan.R20, grid.Cell("epsd", "dlb", 0.98, 1), accuracy=0.815,
                       floor=2)
    helpers.write_cell(again, plan.R20, grid.Cell("snip", "dlb", 0.98, 0), accuracy=0.785,
                       floor=1)  # another mask profile than the committed run's
    archive.collect(again, committed, repeats="s7")
    text, _ = report.render(committed, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    section = text.split("## Cells run twice")[1].split("## Missing cells")[0]
    assert "### `s7`: 2 cells run twice" in section
    # EPSD at 98 %: seeds 0.80/0.82/0.84/0.81, std 1.71 pt; SNIP 0.79/0.80/0.81, std 1.00 pt.
    assert "| r20/epsd-dlb-s0.98-seed1 | 82.00 | 81.50 | -0.50 | same | 1.71 |" in section
    assert "| r20/snip-dlb-s0.98-seed0 | 79.00 | 78.50 | -0.50 | differ | 1.00 |" in section
    assert "median 0.50 pt, largest 0.50 pt, over 2 cells" in section
    assert "seed-to-seed std of their groups: median 1.35 pt" in section
    # The tables above still hold the committed runs only.
    assert text.count("r20/epsd-dlb-s0.98-seed1") == 1


def test_a_scorer_that_prunes_in_rounds_by_default_is_labelled_with_them(tmp_path,
                                                                        monkeypatch):
    # SynFlow prunes in 100 rounds by default, in a family whose allocation reads
    # "global": its comparisons, and its line in the iterative figure, say so.
    runs = str(tmp_path / "runs")
    for seed in (0, 1):
        for fam, scorer, accuracy in ((plan.R20, "epsd", 0.6), (plan.R20, "synflow", 0.9),
                                      (plan.R20_ITERATIVE, "epsd", 0.89)):
            helpers.write_cell(runs, fam, grid.Cell(scorer, "dlb", 0.98, seed),
                               accuracy=accuracy + seed / 100, big_files=False)
    loaded = rows.load(runs)
    assert {(r["family"], r["scorer"], r["rounds"]) for r in loaded} == {
        ("r20", "epsd", 1), ("r20", "synflow", 100), ("r20-iterative", "epsd", 5)}
    assert {r["allocation"] for r in loaded if r["scorer"] == "synflow"} == {"global"}
    described = [compare.describe(r) for r in compare.comparisons(loaded)]
    assert "EPSD − synflow (100 rounds) = -30.00 pt" in described[0]
    assert "EPSD (global, 5 rounds) − synflow (global, 100 rounds) = -1.00 pt" in described[2]
    assert "EPSD (global, 5 rounds) − epsd (global) = +29.00 pt" in described[1]
    summaries = []
    monkeypatch.setattr(report.plots, "plot_accuracy_vs_sparsity",
                        lambda summary, template, **_: summaries.append(summary) or {})
    report.render(runs, str(tmp_path / "RESULTS.md"), str(tmp_path / "f"))
    iterative = [s for s in summaries if any(r["scorer"] == "epsd, one-shot" for r in s)]
    assert {r["scorer"] for r in iterative[0]} == {"epsd", "epsd, one-shot",
                                                    "synflow, 100 rounds"}
