"""docs/RESULTS.md and its figures, from the committed study cells only.

`write(results_dir, out_path)` reads `docs/results/study/` (`rows.load`),
and writes the tables (mean ± sample std over seeds, `analysis.results`), the
paired comparisons of EPSD with each baseline (`compare`), the figures
(`analysis.plots`), the claims of Chen et al. (AAAI 2024) with the numbers
that bear on each (`claims`), and the list of planned cells not committed
yet. Nothing is estimated or filled in: a missing cell is listed as missing.
The block between `HAND_BEGIN` and `HAND_END` of an existing output file is
kept as it is (the lead's notes: hardware, sessions, interpretation).
"""

from __future__ import annotations

import os
import re
import statistics
from typing import Sequence

from absl import logging

from epsd_tf import files
from epsd_tf.analysis import plots, results
from epsd_tf.analysis.landscape_stage import read_landscape
from epsd_tf.study import archive, claims, compare, plan, repeats
from epsd_tf.study import rows as rows_lib

HAND_BEGIN = "<!-- hand-written: begin (kept by tools/study.py report) -->"
HAND_END = "<!-- hand-written: end -->"
HAND_DEFAULT = ("_Notes of whoever runs the study: hardware and software of each session, "
                "anything the numbers do not say. This block is kept when the report is "
                "re-generated._")
CONVERGENCE = "convergence"
CPU_SHORT = "docs/results/cpu_short/RESULTS.md"
# Second panels, in points: the paired-difference figure's ±3 (most differences are
# < 1 pt), the accuracy figures' 5 below the best mean (90-98 % differ by < 1 pt).
DIFFERENCE_ZOOM = 3.0
ACCURACY_ZOOM = 5.0


def _hand_written(out_path: str) -> str:
    if os.path.isfile(out_path):
        text = open(out_path).read()
        match = re.search(re.escape(HAND_BEGIN) + r"\n(.*?)\n?" + re.escape(HAND_END), text,
                          re.S)
        if match:
            return match.group(1).strip("\n")
    return HAND_DEFAULT


def _slug(*parts) -> str:
    return "_".join(re.sub(r"[^\w.]+", "-", str(p)).strip("-") for p in parts)


def _ordered(sets):
    return sorted(sets, key=lambda k: (k[0] != "resnet20", k[0], k[1] != "global", k[1]))


def _pruned_sets(rows):
    """`(arch, allocation)` pairs of pruned main cells, global first."""
    return _ordered({(r["arch"], r["allocation"]) for r in rows if r["scorer"] != results.DENSE})


def _table_sets(rows):
    """`_pruned_sets`, and the global table of a network with dense cells only."""
    sets = set(_pruned_sets(rows))
    sets |= {(r["arch"], "global") for r in rows if not any(a == r["arch"] for a, _ in sets)}
    return _ordered(sets)


def _with_dense(rows, arch, allocation):
    return [r for r in rows if r["arch"] == arch and
            (r["allocation"] == allocation or r["scorer"] == results.DENSE)]


def _global_ranking_references(rows, arch, allocation):
    """For an iterative allocation's figure: the global-ranking cells it is compared
    with (`compare.baseline_allocation`) of its network, sparsities and SD methods, each
    scorer named `<scorer>, one-shot`, or `<scorer>, <R> rounds` where it pruned in
    rounds by default (SynFlow)."""
    against = compare.baseline_allocation(allocation)
    groups = {(r["method"], r["sparsity"]) for r in rows if r["arch"] == arch and
              r["allocation"] == allocation and r["scorer"] != results.DENSE}
    return [dict(r, scorer=f"{r['scorer']}, " + (f"{r['rounds']} rounds"
                                                 if (r.get("rounds") or 1) > 1 else "one-shot"))
            for r in rows
            if r["arch"] == arch and r["allocation"] == against and
            r["scorer"] != results.DENSE and (r["method"], r["sparsity"]) in groups]


def _tables(rows) -> str:
    text = ""
    for arch, allocation in _table_sets(rows):
        summary = results.aggregate(_with_dense(rows, arch, allocation))
        text += f"\n### {arch}, {allocation} allocation\n\n" + results.markdown_table(summary)
    return text or "\n_No cell committed yet._\n"


def _field_tables(rows, field: str, title: str, digits: int) -> str:
    text = ""
    for arch, allocation in _table_sets(rows):
        subset = _with_dense(rows, arch, allocation)
        if any(r.get(field) is not None for r in subset):
            text += (f"\n### {title}: {arch}, {allocation} allocation\n\n" +
                     results.markdown_table(results.aggregate(subset), field, percent=False,
                                            digits=digits))
    return text or f"\n_No {title} measured yet._\n"


def _missing(results_dir: str) -> tuple[str, int, int]:
    """The missing-cells section, and the committed and planned counts."""
    status = plan.phase_status(results_dir)
    planned = sum(s["planned"] for s in status)
    done = sum(s["done"] for s in status)
    lines = ["| phase | committed / planned | missing cells |", "|---|---:|---|"]
    for phase, s in zip(plan.PHASES, status):
        lines.append(f"| {phase.name} | {s['done']} / {s['planned']} | "
                     f"{_compress(s['missing']) or '–'} |")
    return "\n".join(lines) + "\n", done, planned


def _compress(keys: Sequence[str]) -> str:
    """`r20/epsd-dlb-s0.95-seed3`, `...seed4` -> `r20/epsd-dlb-s0.95-seed{3,4}`."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        stem, _, seed = key.rpartition("-seed")
        groups.setdefault(stem, []).append(seed)
    return ", ".join(f"{stem}-seed{{{','.join(seeds)}}}" if len(seeds) > 1 else
                     f"{stem}-seed{seeds[0]}" for stem, seeds in groups.items())


def _convergence(results_dir: str) -> str:
    directory = os.path.join(results_dir, CONVERGENCE)
    if not os.path.isdir(directory):
        return "_No convergence check committed._\n"
    lines = ["| run | method | pruned | epochs | test accuracy (%) |", "|---|---|---|---:|---:|"]
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, files.METRICS)
        if os.path.isfile(path):
            m = files.read_json(path)
            pruning = m.get("pruning") or {}
            pruned = (f"{pruning['scorer']} {100 * pruning['target_sparsity']:g} %"
                      if pruning else "dense")
            lines.append(f"| {name} | {m.get('method')} | {pruned} | {m.get('epochs')} | "
                         f"{100 * m['test']['accuracy']:.2f} |")
    return ("Runs and configuration: `docs/results/study/convergence/README.md`.\n\n" +
            "\n".join(lines) + "\n")


def _what_was_run(rows, results_dir: str, superseded: dict) -> str:
    lines = ["| family | gin files and bindings | about | cells committed |",
             "|---|---|---|---:|"]
    for fam in plan.FAMILIES:
        n = sum(r["family"] == fam.name for r in rows)
        config = " ".join([*fam.gin_files, *(f"`{b}`" for b in fam.bindings)])
        lines.append(f"| {fam.name} | {config} | {fam.about} | {n} |")
    text = "\n".join(lines) + "\n"
    if rows:
        wall = [r["wall_seconds"] for r in rows if r.get("wall_seconds") is not None]
        training = [r["training_seconds"] for r in rows if r.get("training_seconds")]
        text += (f"\nCommitted cells: {len(rows)}; their sweep wall time adds up to "
                 f"{sum(wall) / 3600:.2f} cell-hours ({len(wall)} cells with a sweep entry; "
                 "cells shared the GPU, so device time is less), training "
                 f"{sum(training) / 3600:.2f} cell-hours. Epochs per cell: "
                 f"{sorted({r['epochs'] for r in rows})}.\n")
    sessions_path = os.path.join(results_dir, archive.SESSIONS)
    if os.path.isfile(sessions_path):
        text += ("\nSessions (`docs/results/study/sessions.json`, one entry per "
                 "`tools/study.py collect`). The last column is the median training time "
                 "of the session's ResNet-20 cells that ran in one attempt (30 epochs; "
                 "scoring and Mean-JSV excluded): with N cells sharing the GPU, N cells "
                 "per that time.\n\n| collected | note | cells | ResNet-20 training, "
                 "median (min) |\n|---|---|---:|---:|\n")
        # Timing is a property of the run: superseded cells count too.
        by_key = {r["key"]: r for entry in superseded.values() for r in entry["rows"]}
        by_key.update({r["key"]: r for r in rows})
        for session in files.read_json(sessions_path):
            text += f"| {session['collected']} | {session['note'] or '–'} | " \
                    f"{len(session['cells'])} | {_training_minutes(session, by_key)} |\n"
    text += "\nThe sweeps, phase by phase (`python tools/study.py plan --all` prints them):\n\n```sh\n"
    for phase in plan.PHASES:
        text += f"# {phase.name}\n" + "".join(s.command() + "\n" for s in phase.sweeps)
    return text + "```\n"


def _training_minutes(session: dict, by_key: dict) -> str:
    seconds = [by_key[k]["training_seconds"] for k in session["cells"]
               if k in by_key and by_key[k]["arch"] == "resnet20"
               and by_key[k].get("attempts") == 1 and by_key[k].get("training_seconds")]
    if not seconds:
        return "–"
    return f"{statistics.median(seconds) / 60:.1f} (n={len(seconds)})"


def _load_superseded(results_dir: str) -> dict[str, dict]:
    """`{tag: {"rows": committed-cell rows, "why": WHY.md}}` of each `superseded/<tag>/`."""
    loaded = {}
    for tag, root in archive.superseded_roots(results_dir).items():
        why_path = os.path.join(root, "WHY.md")
        why = ""
        if os.path.isfile(why_path):
            with open(why_path) as f:
                why = f.read()
        loaded[tag] = {"rows": rows_lib.load(root), "why": why}
    return loaded


def _superseded(superseded: dict, main) -> str:
    """Each superseded tag (`_load_superseded`): why, and its cells' tables beside the
    current cells of the other scorers (so that, e.g., superseded EPSD cells still pair
    with SNIP)."""
    text = ""
    for tag, entry in superseded.items():
        rows = entry["rows"]
        if not rows:
            continue
        replaced = {(r["family"], r["scorer"]) for r in rows}
        both = rows + [r for r in main if (r["family"], r["scorer"]) not in replaced]
        why = re.sub(r"^## (.*)$", r"**\1.**", entry["why"].strip(), flags=re.M)
        text += (f"\n### `{tag}`: {len(rows)} cells\n\n{why}\n\nThese cells with the current "
                 "cells of the other scorers:\n" + _tables(both).replace("\n### ", "\n#### ")
                 + "\n" + compare.markdown(compare.comparisons(both)))
    return text or "\n_No cell has been superseded._\n"


def _cost(rows) -> str:
    pruned = [r for r in rows if r["scorer"] != results.DENSE and r.get("pruning_seconds")]
    if not pruned:
        return "_No pruned cell committed yet._\n"
    lines = ["| network | scorer | method | cells | scoring (s) | training (s) | scoring / "
             "training | scoring passes (batch-equivalents) | training passes | PtD / EPSD "
             "(epoch-equivalents) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted({(r["arch"], r["scorer"], r["method"]) for r in pruned}):
        group = rows_lib.matching(pruned, arch=key[0], scorer=key[1], method=key[2])

        def mean(field, group=group):
            values = [r[field] for r in group if r.get(field) is not None]
            return sum(values) / len(values) if values else None

        def show(value, digits=1):
            return "–" if value is None else f"{value:.{digits}f}"

        scoring, training = mean("pruning_seconds"), mean("training_seconds")
        ratio = scoring / training if scoring is not None and training else None
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(group)} | {show(scoring)} | "
                     f"{show(training)} | {show(ratio, 3)} | "
                     f"{show(mean('scoring_pass_equivalents'), 0)} | "
                     f"{show(mean('training_passes'), 0)} | {show(mean('ptd_over_epsd'), 1)} |")
    return ("Seconds are wall time of the run's stages (scoring includes XLA compilation; "
            "cells shared a GPU). A cell cut and resumed whose first attempt ran before session "
            "7 recorded only its last attempt's times (no scoring time) and is left out: "
            "`cells` counts the cells used. Passes are batch-sized forward+backward passes "
            "(`analysis/cost.py`); Prune-then-Distill's count (teacher 200 epochs, up to 7 × 130 "
            "epochs of IMP, 200 epochs of KD) leaves out the teacher's forward passes during "
            "KD, so the ratio is a lower bound.\n\n" + "\n".join(lines) + "\n")


def _figures(rows, landscape_rows, accuracy_records, figures_dir: str, out_dir: str) -> str:
    text, written = "", []
    link = lambda path: os.path.relpath(path, out_dir)  # noqa: E731
    for arch, allocation in _pruned_sets(rows):  # dense cells only: nothing to plot yet
        iterative = compare.baseline_allocation(allocation) != allocation
        chosen = _with_dense(rows, arch, allocation)
        summary = results.aggregate(
            chosen + (_global_ranking_references(rows, arch, allocation) if iterative else []))
        template = os.path.join(figures_dir, f"accuracy_{_slug(arch, allocation)}_{{method}}.png")
        for method, path in plots.plot_accuracy_vs_sparsity(summary, template,
                                                            zoom=ACCURACY_ZOOM).items():
            written.append(path)
            text += (f"\n![Test accuracy against sparsity, {arch}, {allocation}, {method}]"
                     f"({link(path)})\n\n*{arch}, {allocation} allocation, {method}: test "
                     "accuracy (mean ± sample std over seeds) against sparsity (log density); "
                     f"right, where some mean is lower: the {ACCURACY_ZOOM:g} pt below the "
                     "best mean (arrows: means below it); dashed: dense with this method, "
                     "dotted: dense with the others"
                     + ("; `, one-shot` and `, N rounds`: the global-ranking cells, each "
                        "criterion with its own rounds (one; SynFlow's default 100)"
                        if iterative else "") + ".*\n")
    for arch in sorted({r["arch"] for r in rows}):
        at_98 = [r for r in rows if r["arch"] == arch and r["allocation"] == "global" and
                 r["method"] == "dlb" and r["sparsity"] == 0.98 and r["scorer"] != results.DENSE]
        seeds = sorted({r["seed"] for r in at_98})
        if not seeds:
            continue
        chosen = sorted((r for r in at_98 if r["seed"] == seeds[0]), key=lambda r: r["scorer"])
        reports = [results.pruning_report_path(r["directory"]) for r in chosen]
        path = plots.plot_layer_densities(
            reports, os.path.join(figures_dir, f"layer_density_{arch}_98.png"),
            labels=[r["scorer"] for r in chosen])
        written.append(path)
        text += (f"\n![Layer densities at 98 %, {arch}]({link(path)})\n\n*{arch} at 98 % "
                 f"(global, DLB, seed {seeds[0]}): fraction of each layer kept, per criterion.*\n")
    for arch in sorted({r["arch"] for r in rows}):
        top = [r for r in rows if r["arch"] == arch and r["method"] == "dlb" and
               r["sparsity"] == 0.98 and r.get("classifier_density") is not None]
        if top:
            path = plots.plot_points(
                [{"label": f"{r['scorer']}, {r['allocation']}", "x": r["classifier_density"],
                  "y": 100 * r["test_accuracy"]} for r in top],
                os.path.join(figures_dir, f"classifier_{arch}_98.png"),
                xlabel="fraction of the classifier's weights kept",
                ylabel="test accuracy (%)", title=f"{arch}, DLB, 98 %: one point per cell")
            written.append(path)
            text += (f"\n![Accuracy against the classifier kept, {arch}]({link(path)})\n\n*{arch} "
                     "at 98 % with DLB: each cell's test accuracy against the fraction of its "
                     "classifier's weights its mask kept (1.0: left dense).*\n")
    if accuracy_records:
        for arch in sorted({r["arch"] for r in accuracy_records}):
            chosen = [dict(r, label=f"{r['method']} {100 * r['sparsity']:g} % {r['allocation']}"
                           f" − {compare.baseline_label(r)}") for r in accuracy_records
                      if r["arch"] == arch and r["mean"] is not None]
            if chosen:
                path = plots.plot_paired_differences(
                    chosen, os.path.join(figures_dir, f"epsd_minus_baselines_{arch}.png"),
                    title=f"{arch}: EPSD − baseline, test accuracy", zoom=DIFFERENCE_ZOOM)
                written.append(path)
                text += (f"\n![EPSD minus each baseline, {arch}]({link(path)})\n\n*{arch}: "
                         "EPSD − baseline test accuracy per matched seed, mean and 95 % t "
                         f"interval; red: the interval excludes 0; right: the same within "
                         f"±{DIFFERENCE_ZOOM:g} pt (arrows: past the edge).*\n")
    for method, sparsity in sorted({(r["method"], r["sparsity"]) for r in landscape_rows
                                    if r["scorer"] != results.DENSE}):
        seed = min(r["seed"] for r in landscape_rows)
        chosen = [r for r in landscape_rows if r["seed"] == seed and r["method"] == method and
                  (r["scorer"] == results.DENSE or r["sparsity"] == sparsity)]
        curves = {f"{r['scorer']} + {r['method']}": read_landscape(r["directory"])
                  for r in chosen}
        path = plots.plot_landscape_overlay(
            curves, os.path.join(figures_dir, f"landscape_{method}_s{sparsity:g}.png"),
            title=f"{method}, sparsity {100 * sparsity:g} %, seed {seed}")
        written.append(path)
        text += (f"\n![Loss landscapes, {method}, {100 * sparsity:g} %]({link(path)})\n\n*Test "
                 "loss along one filter-normalised random direction around the trained "
                 f"weights, {100 * sparsity:g} % against dense, seed {seed}; log scale.*\n")
    logging.info("figures: %s", written)
    return text or "_No figure yet._\n", written


def render(results_dir: str, out_path: str, figures_dir: str) -> tuple[str, list[str]]:
    """The RESULTS.md text and the figures written."""
    all_rows = rows_lib.load(results_dir)
    main = [r for r in all_rows if not r["landscape_run"]]
    superseded = _load_superseded(results_dir)
    landscape_rows = [r for r in all_rows if r["landscape_run"]]
    accuracy = compare.comparisons(main)
    jsv = compare.comparisons(main, "mean_jsv_init")
    sharpness = compare.comparisons(landscape_rows, "landscape_sharpness")
    missing, done, planned = _missing(results_dir)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    figures_text, written = _figures(main, landscape_rows, accuracy, figures_dir, out_dir)
    status = ("**The study is complete**: every planned cell is committed." if done == planned
              else f"**The study is incomplete: {done} of {planned} planned cells are "
              "committed.** Every number below comes from the committed cells only; the "
              "cells still missing are listed under \"Missing cells\", and a group with fewer "
              "seeds than planned shows its own n.")
    text = f"""# Results: EPSD against the Simple Combination on Fashion-MNIST (issue 13)

<!-- Generated by `python tools/study.py report` from docs/results/study/ (the committed
cells); do not edit outside the hand-written block, re-run the command instead. -->

{status}

The question (Chen et al., "EPSD", AAAI 2024): does pruning at initialisation with
EPSD's score (ProsPr's meta-gradient of the self-distillation loss) give masks that
train better under self-distillation than the "Simple Combination" (another
pruning-at-initialisation criterion, then the same self-distillation), most at high
sparsity, across SD methods and networks? The method and every choice the paper leaves
open: `docs/METHOD.md`.

## Headline

{claims.headline(accuracy)}

## What was run

Fashion-MNIST: all 54 000 training images (6 000 of the 60 000 held out for
validation), the 10 000 test images. Every cell: prune at initialisation (scores in
float64, every layer keeps at least 0.2 %), then {plan.EPOCHS} epochs of SGD (Nesterov 0.9,
coupled L2 5e-4, lr 0.1, cosine, batch 128) with the cell's self-distillation method;
Mean-JSV at initialisation and after training. The configs are
`gin/study_resnet20.gin`, `gin/study_vgg16.gin` and `gin/study_landscape.gin`; each
committed cell keeps the exact `config.gin` it ran, its sweep entry (`cell_state.json`:
command bindings, attempts, wall time) and its per-epoch log, under
`docs/results/study/<family>/cells/<cell>/`.

{_what_was_run(all_rows, results_dir, superseded)}
## Notes

{HAND_BEGIN}
{_hand_written(out_path)}
{HAND_END}

## Test accuracy
{_tables(main)}
## EPSD against each baseline, paired over seeds

Per matched seed, EPSD's test accuracy minus the baseline's (points); the 95 % interval
is Student's t over the seeds; "real" when it excludes 0 and has some width (the
same difference on every seed estimates no spread), "noise" when it does not, and
"every seed one way" when it does not but all of at least 5 seeds differ in the same
direction (a collapse on some seeds widens a t interval; the sign test is then the
better reading). The sign test is exact; with 5 seeds it cannot go below
p = 0.0625.

{compare.markdown(accuracy)}
## Mean-JSV (trainability)
{_field_tables(main, "mean_jsv_init", "Mean-JSV at initialisation", 3)}{
_field_tables(main, "mean_jsv_trained", "Mean-JSV after training", 3)}
EPSD − baseline, Mean-JSV at initialisation:

{compare.markdown(jsv, scale=1.0, unit="JSV", digits=3)}
## Layers left at the per-layer floor
{_field_tables(main, "floor_layers", "Layers at the 0.2 % floor", 1)}
{_field_tables(main, "classifier_density", "Fraction of the classifier kept", 3)}
## Loss landscapes

Sharpness: the mean loss rise at α = ±0.5 along one filter-normalised direction
(`gin/study_landscape.gin`; family r20-landscape, re-runs of r20 cells).
{_field_tables(landscape_rows, "landscape_sharpness", "Sharpness", 3)}
{compare.markdown(sharpness, scale=1.0, unit="loss", digits=3)}
## Training cost

{_cost(main)}
## Figures
{figures_text}
## What this says about the paper's claims

{claims.discussion(main, accuracy, jsv, sharpness)}
## Superseded cells

Cells taken out of the study because a code fix made them wrong
(`python tools/study.py supersede`); kept under `docs/results/study/superseded/`
for the record, and run again by the plan.
{_superseded(superseded, main)}
## Cells run twice

The same cell (seed, mask and data order fixed) run again, kept by
`python tools/study.py collect --repeats=<tag>` under `docs/results/study/repeats/`:
how far one cell's accuracy moves from run to run, against the spread over seeds.
{repeats.markdown(repeats.pairs(results_dir, all_rows))}
## Missing cells

{missing}
## Convergence check (schedule length)

{_convergence(results_dir)}
## The previous short CPU study

`{CPU_SHORT}`: 3 epochs on 8 000 images (186 optimizer steps), 2 seeds, on a 2-core
CPU (issue 6). It is kept for its layer-collapse analysis at 98 % (global ranking
empties stage-3 layers of ResNet-20); its accuracies are far from convergence and are
superseded by this study.
"""
    return text, written


def write(results_dir: str, out_path: str, figures_dir: str | None = None) -> list[str]:
    """Writes RESULTS.md and its figures; returns the files written.

    Raises:
        FileNotFoundError: `results_dir` does not exist.
    """
    if not os.path.isdir(results_dir):
        raise FileNotFoundError(f"{results_dir!r} does not exist: commit cells first "
                                "(python tools/study.py collect)")
    figures_dir = figures_dir or os.path.join(results_dir, "figures")
    text, written = render(results_dir, out_path, figures_dir)
    return [files.write_text(out_path, text), *written]
