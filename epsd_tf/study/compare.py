"""EPSD against each Simple-Combination baseline, paired over matched seeds.

For every (network, allocation, SD method, sparsity) where EPSD was run, each
other scorer of that group is compared with EPSD seed by seed
(`analysis.stats.paired_difference`: mean difference, 95 % t interval, sign
test, "real"/"noise"). Iterative EPSD (an allocation with rounds) is compared
with every global-ranking scorer of its network, method and sparsity, each
with its own rounds (one-shot EPSD included; SynFlow prunes in 100 rounds by
default, and its label says so: `synflow (100 rounds)`). Chen et al. (AAAI
2024) claim EPSD − baseline > 0, most at high sparsity.
"""

from __future__ import annotations

from typing import Sequence

from epsd_tf.analysis import stats
from epsd_tf.analysis.results import DENSE
from epsd_tf.study import rows as rows_lib

EPSD = "epsd"
# Fields where a smaller value is the better one: a record of such a field counts
# EPSD ahead on the seeds where its value is lower.
LOWER_IS_BETTER = frozenset({"landscape_sharpness"})


def epsd_ahead(record: dict) -> bool:
    """Whether the record's mean difference favours EPSD (given the field's direction)."""
    if record["mean"] is None:
        return False
    return record["mean"] < 0 if record.get("field") in LOWER_IS_BETTER else record["mean"] > 0


def baseline_allocation(allocation: str) -> str:
    """The allocation EPSD's cells of `allocation` are compared under: the same one,
    or global ranking (each scorer's own rounds) for an iterative allocation."""
    return "global" if "rounds" in allocation else allocation


def baseline_label(record: dict) -> str:
    """A record's baseline, with its allocation where it is not EPSD's and its rounds
    where it pruned in rounds its allocation does not name: `epsd (global)`,
    `synflow (100 rounds)`, `synflow (global, 100 rounds)`."""
    notes = []
    if record["baseline_allocation"] != record["allocation"]:
        notes.append(record["baseline_allocation"])
    rounds = record.get("baseline_rounds") or 1
    if rounds > 1 and "rounds" not in record["baseline_allocation"]:
        notes.append(f"{rounds} rounds")
    return record["baseline"] + (f" ({', '.join(notes)})" if notes else "")


def comparisons(rows: Sequence[dict], field: str = "test_accuracy") -> list[dict]:
    """One record per (arch, allocation, method, sparsity, baseline) with EPSD present.

    Args:
        rows: `rows.load` rows of one kind (main cells, or landscape re-runs).
        field: the compared value (`test_accuracy`, `mean_jsv_init`,
            `landscape_sharpness`, ...).

    Returns:
        Records with `arch, allocation, method, sparsity, scorer` (EPSD's),
        `baseline`, `baseline_allocation`, `baseline_rounds` (the most rounds its
        cells pruned in, 1 for one shot), `field` and the `paired_difference`
        fields (`mean` is EPSD minus the baseline), sorted by arch, allocation,
        method, sparsity, baseline. `wins` and `losses` count the seeds where
        EPSD is better and worse: for a `LOWER_IS_BETTER` field, those where its
        value is lower and higher.
    """
    out = []
    epsd_groups = sorted({(r["arch"], r["allocation"], r["method"], r["sparsity"])
                          for r in rows if r["scorer"] == EPSD})
    for arch, allocation, method, sparsity in epsd_groups:
        epsd = rows_lib.by_seed(rows_lib.matching(
            rows, arch=arch, allocation=allocation, method=method, sparsity=sparsity,
            scorer=EPSD), field)
        against = baseline_allocation(allocation)
        iterative = against != allocation
        others = rows_lib.matching(rows, arch=arch, allocation=against, method=method,
                                   sparsity=sparsity)
        for baseline in sorted({r["scorer"] for r in others}):
            if baseline == DENSE or (baseline == EPSD and not iterative):
                continue
            chosen = rows_lib.matching(others, scorer=baseline)
            values = rows_lib.by_seed(chosen, field)
            difference = stats.paired_difference(epsd, values)
            if field in LOWER_IS_BETTER:
                difference["wins"], difference["losses"] = (difference["losses"],
                                                            difference["wins"])
            out.append({"arch": arch, "allocation": allocation, "method": method,
                        "sparsity": sparsity, "scorer": EPSD, "baseline": baseline,
                        "baseline_allocation": against,
                        "baseline_rounds": max(r.get("rounds") or 1 for r in chosen),
                        "field": field, **difference})
    return out


def describe(record: dict, scale: float = 100.0, unit: str = " pt", digits: int = 2) -> str:
    """One sentence: `EPSD − snip = +0.41 pt, 95 % CI [−0.2, 1.0], 5 seeds, 4/1, p = 0.38: noise`."""
    name = f"EPSD − {baseline_label(record)}"
    if record["allocation"] != record["baseline_allocation"]:
        name = f"EPSD ({record['allocation']}) − {baseline_label(record)}"
    if record["mean"] is None:
        return f"{name}: no matched seeds"
    text = f"{name} = {scale * record['mean']:+.{digits}f}{unit}"
    if record["low"] is not None:
        text += (f", 95 % CI [{scale * record['low']:+.{digits}f}, "
                 f"{scale * record['high']:+.{digits}f}]")
    text += (f" over {record['n']} matched seed{'s' if record['n'] != 1 else ''} "
             f"(EPSD ahead on {record['wins']}, behind on {record['losses']}; sign test "
             f"p = {record['sign_p']:.2f}): {record['verdict']}")
    return text


def markdown(records: Sequence[dict], scale: float = 100.0, unit: str = "pt",
             digits: int = 2) -> str:
    """A table of `comparisons` records (differences scaled by `scale`, e.g. to points)."""
    if not records:
        return "_No paired comparison yet (EPSD and a baseline with a common seed)._\n"
    lines = [f"| network | allocation | method | sparsity | EPSD − | n | mean ({unit}) | "
             "95 % CI | EPSD ahead / behind | sign p | verdict |",
             "|---|---|---|---:|---|---:|---:|---|---:|---:|---|"]
    for r in records:
        baseline = baseline_label(r)
        mean = "–" if r["mean"] is None else f"{scale * r['mean']:+.{digits}f}"
        ci = "–" if r["low"] is None else \
            f"[{scale * r['low']:+.{digits}f}, {scale * r['high']:+.{digits}f}]"
        sign = "–" if r["sign_p"] is None else f"{r['sign_p']:.2f}"
        lines.append(f"| {r['arch']} | {r['allocation']} | {r['method']} | "
                     f"{100 * r['sparsity']:g} % | {baseline} | {r['n']} | {mean} | {ci} | "
                     f"{r['wins']} / {r['losses']} | {sign} | {r['verdict']} |")
    return "\n".join(lines) + "\n"
