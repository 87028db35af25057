"""Second runs of committed cells: how far one cell's result moves when it runs again.

A cell's seed fixes its initial weights, its scoring batches and its data
order, so two runs of it on one machine differ only where the machine is not
deterministic (GPU reductions in training; float64 scoring is deterministic,
`docs/METHOD.md`, "Reproducibility of masks"). `archive.collect(repeats=TAG)`
keeps such second runs under `<results>/repeats/<TAG>/`; `markdown` pairs each
with the committed run of the same cell, so the study can tell this run-to-run
noise from the seed-to-seed spread its paired comparisons test against.
"""

from __future__ import annotations

import json
import statistics
from typing import Sequence

from epsd_tf.analysis import results
from epsd_tf.study import archive
from epsd_tf.study import rows as rows_lib


def _kept(cell_dir: str) -> list[int] | None:
    """Each pruned layer's kept count (the mask's per-layer profile), None for dense."""
    path = results.pruning_report_path(cell_dir)
    if path is None:
        return None
    with open(path) as f:
        return [layer["kept"] for layer in json.load(f)["layers"]]


def pairs(results_dir: str, committed: Sequence[dict]) -> dict[str, list[dict]]:
    """`{tag: [pair]}`: each repeat with its committed run (`committed` rows by key).

    A pair holds `key`, `committed` and `repeat` (test accuracy), `difference`
    (repeat − committed), `same_profile` (equal per-layer kept counts; None for a
    dense cell) and `seed_std` (the sample std over the committed seeds of the
    cell's group, None with fewer than two). A repeat of a cell that is no
    longer committed (superseded since) is left out.
    """
    by_key = {row["key"]: row for row in committed}
    out = {}
    for tag, root in archive.repeat_roots(results_dir).items():
        found = []
        for repeat in rows_lib.load(root):
            first = by_key.get(repeat["key"])
            if first is None:
                continue
            group = [r["test_accuracy"] for r in committed
                     if all(r[k] == first[k] for k in ("family", *rows_lib.GROUP))]
            first_kept = _kept(first["directory"])
            found.append({
                "key": repeat["key"], "committed": first["test_accuracy"],
                "repeat": repeat["test_accuracy"],
                "difference": repeat["test_accuracy"] - first["test_accuracy"],
                "same_profile": (None if first_kept is None
                                 else first_kept == _kept(repeat["directory"])),
                "seed_std": statistics.stdev(group) if len(group) > 1 else None})
        if found:
            out[tag] = sorted(found, key=lambda p: p["key"])
    return out


def markdown(found: dict[str, list[dict]]) -> str:
    """One table per tag, and how the run-to-run differences compare with the seed spread."""
    if not found:
        return ("_No cell has run twice yet (`python tools/study.py collect --repeats=<tag>` "
                "keeps a second run of a committed cell)._\n")
    text = ""
    for tag, found_pairs in found.items():
        text += (f"\n### `{tag}`: {len(found_pairs)} cells run twice\n\n"
                 "| cell | committed (%) | repeat (%) | repeat − committed (pt) "
                 "| per-layer kept counts | seed std of its group (pt) |\n"
                 "|---|---:|---:|---:|---|---:|\n")
        for p in found_pairs:
            profile = {None: "dense", True: "same", False: "differ"}[p["same_profile"]]
            std = "–" if p["seed_std"] is None else f"{100 * p['seed_std']:.2f}"
            text += (f"| {p['key']} | {100 * p['committed']:.2f} | {100 * p['repeat']:.2f} "
                     f"| {100 * p['difference']:+.2f} | {profile} | {std} |\n")
        gaps = [abs(p["difference"]) for p in found_pairs]
        stds = [p["seed_std"] for p in found_pairs if p["seed_std"] is not None]
        text += (f"\nAbsolute run-to-run difference: median {100 * statistics.median(gaps):.2f} "
                 f"pt, largest {100 * max(gaps):.2f} pt, over {len(gaps)} cells")
        if stds:
            text += (f"; the seed-to-seed std of their groups: median "
                     f"{100 * statistics.median(stds):.2f} pt")
        text += ".\n"
    return text
