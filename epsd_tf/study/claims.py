"""The claims of Chen et al. (AAAI 2024) and the committed numbers that bear on each.

Generated conservatively: each claim lists the paired comparisons that test it
(`compare.describe`: mean difference, 95 % interval, seeds, verdict) and counts
how many say EPSD is ahead, behind, or indistinguishable. No interpretation
beyond that is generated; the hand-written block of RESULTS.md is for it.
"""

from __future__ import annotations

from typing import Sequence

from epsd_tf.analysis import stats
from epsd_tf.analysis.results import DENSE
from epsd_tf.study import compare
from epsd_tf.study import rows as rows_lib

MAIN = {"arch": "resnet20", "allocation": "global", "method": "dlb"}


def _where(records, **where):
    return [r for r in records if all(r[k] == v for k, v in where.items())]


def tally(records: Sequence[dict]) -> str:
    """`Of 6 comparisons: EPSD ahead in 1, behind in 2, indistinguishable in 3.`"""
    if not records:
        return "No comparison is possible yet (no common seed committed)."
    ahead = sum(r["verdict"] == "real" and compare.epsd_ahead(r) for r in records)
    behind = sum(r["verdict"] == "real" and not compare.epsd_ahead(r) for r in records)
    one_way = [r for r in records if r["verdict"] == stats.ONE_WAY]
    noise = sum(r["verdict"] == "noise" for r in records) + len(one_way)
    few = sum(r["verdict"] == "too few seeds" for r in records)
    text = (f"Of {len(records)} comparisons, the 95 % interval puts EPSD ahead in {ahead}, "
            f"behind in {behind}, and includes 0 in {noise}")
    if one_way:
        behind_all = sum(not compare.epsd_ahead(r) for r in one_way)
        text += (f" (in {len(one_way)} of these every seed points one way: EPSD behind in "
                 f"{behind_all}, ahead in {len(one_way) - behind_all})")
    return text + (f"; {few} have fewer than 2 matched seeds." if few else ".")


def _listing(records, scale=100.0, unit=" pt", digits=2) -> str:
    """One line per record; the allocation is named where it is not global and
    `compare.describe` does not name it (EPSD and baseline under the same one)."""
    def where(r):
        named = r["allocation"] != "global" and r["allocation"] == r["baseline_allocation"]
        return ((f", {r['arch']}" if r["arch"] != "resnet20" else "") +
                (f", {r['allocation']}" if named else ""))
    return "".join(f"- {100 * r['sparsity']:g} %, {r['method']}{where(r)}: "
                   f"{compare.describe(r, scale, unit, digits)}\n" for r in records)


def _by_sparsity(records) -> str:
    """Per baseline, the mean difference at each sparsity (is the gap largest at 98 %?)."""
    lines = []
    for baseline in sorted({r["baseline"] for r in records}):
        points = sorted((r["sparsity"], r["mean"]) for r in records
                        if r["baseline"] == baseline and r["mean"] is not None)
        if points:
            lines.append(f"- EPSD − {baseline}: " + ", ".join(
                f"{100 * s:g} %: {100 * m:+.2f}" for s, m in points) + " pt")
    return "\n".join(lines) + "\n" if lines else ""


def headline(accuracy: Sequence[dict]) -> str:
    """EPSD − each baseline on ResNet-20 with DLB at the highest sparsity committed;
    baselines with fewer than 2 matched seeds are only named (they test nothing yet)."""
    main = _where(accuracy, **MAIN)
    if not main:
        return "_No paired comparison committed yet._"
    top = max(r["sparsity"] for r in main)
    records = _where(main, sparsity=top)
    few = [r for r in records if r["n"] < 2]
    text = (f"ResNet-20, DLB, global ranking, {100 * top:g} % sparsity (test accuracy):\n\n" +
            _listing([r for r in records if r["n"] >= 2]))
    if few:
        text += ("\nWith fewer than 2 matched seeds so far (see the paired table): " +
                 ", ".join(f"{r['baseline']} ({r['n']} seed{'s' if r['n'] != 1 else ''})"
                           for r in few) + ".\n")
    return text


def _section(title: str, claim: str, records, scale=100.0, unit=" pt", digits=2,
             extra: str = "", whose: str = "The paper") -> str:
    body = (_listing(records, scale, unit, digits) + "\n" + tally(records)) if records else \
        "No committed cells test this yet."
    return f"### {title}\n\n*{whose}:* {claim}\n\n{body}\n{extra}\n"


def _cost(rows) -> str:
    epsd = [r for r in rows if r["scorer"] == "epsd" and r.get("pruning_seconds")]
    if not epsd:
        return "No EPSD cell committed yet."

    def mean(field):
        values = [r[field] for r in epsd if r.get(field) is not None]
        return sum(values) / len(values) if values else None

    scoring, training, ratio = mean("pruning_seconds"), mean("training_seconds"), \
        mean("ptd_over_epsd")
    text = (f"Over {len(epsd)} EPSD cells, scoring took {scoring:.1f} s on average (XLA "
            f"compilation included) against {training:.1f} s of training "
            f"({100 * scoring / training:.1f} %).")
    if ratio is not None:
        text += (f" Counted in epoch-equivalents of batch passes, Prune-then-Distill "
                 f"(teacher, iterative magnitude pruning, distillation) would cost "
                 f"{ratio:.1f}× EPSD's scoring plus training (a lower bound, see \"Training "
                 "cost\").")
    return text


def ablation_gains(rows, field: str = "test_accuracy") -> list[dict]:
    """Each criterion with the classifier dense against itself with global ranking.

    Per (arch, method, sparsity, scorer) present in both, `stats.paired_difference`
    of the ablation's values minus the global ones over matched seeds, with
    `scorer`, `sparsity`, `arch`, `method`. Not matched in weights: the ablation
    keeps the classifier's weights on top of its sparsity's share of the rest.
    """
    out = []
    dense = [r for r in rows if r["allocation"].endswith(" dense") and r["scorer"] != DENSE]
    groups = sorted({(r["arch"], r["allocation"], r["method"], r["sparsity"], r["scorer"])
                     for r in dense})
    for arch, allocation, method, sparsity, scorer in groups:
        where = {"arch": arch, "method": method, "sparsity": sparsity, "scorer": scorer}
        ablated = rows_lib.by_seed(rows_lib.matching(rows, allocation=allocation, **where),
                                   field)
        base = rows_lib.by_seed(rows_lib.matching(rows, allocation="global", **where), field)
        if set(ablated) & set(base):
            out.append({**where, "allocation": allocation,
                        **stats.paired_difference(ablated, base)})
    return out


def _gains_listing(records) -> str:
    if not records:
        return ""
    lines = ["\nEach criterion with its classifier dense against itself with global "
             "ranking (paired over seeds; the ablation also keeps more weights):\n"]
    for r in records:
        ci = "" if r["low"] is None else \
            f", 95 % CI [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]"
        lines.append(f"- {r['scorer']}, {100 * r['sparsity']:g} %, {r['method']}"
                     f"{'' if r['arch'] == 'resnet20' else ', ' + r['arch']}: "
                     f"{r['allocation']} − global = {100 * r['mean']:+.2f} pt{ci} over "
                     f"{r['n']} matched seed{'s' if r['n'] != 1 else ''} (ahead on "
                     f"{r['wins']}, behind on {r['losses']}): {r['verdict']}")
    return "\n".join(lines) + "\n"


def discussion(rows, accuracy, jsv, sharpness) -> str:
    """One subsection per claim, each with its comparisons and their tally."""
    main = _where(accuracy, **MAIN)
    methods = [r for r in accuracy if r["arch"] == "resnet20" and r["allocation"] == "global"
               and r["method"] != "dlb"]
    networks = [r for r in accuracy if r["arch"] != "resnet20"]
    ablation = [r for r in accuracy if r["allocation"].endswith(" dense")]
    allocation = [r for r in accuracy if r["allocation"] != "global" and r not in ablation]
    high = [r for r in main if r["sparsity"] >= 0.9]
    return "".join([
        _section("EPSD beats the Simple Combination, most at high sparsity",
                 "at ≥ 90 % sparsity EPSD's masks train clearly better under SD than every "
                 "other criterion's, and the gap grows with sparsity.", high,
                 extra=("\nMean difference by sparsity (every sparsity committed):\n\n" +
                        _by_sparsity(main)) if main else ""),
        _section("Across self-distillation methods",
                 "the advantage holds with CS-KD and PS-KD (EPSD scored with each "
                 "method's loss).", methods),
        _section("Across networks", "the advantage holds on other networks.", networks),
        _section("Allocation (layer-wise ERK, iterative EPSD)",
                 "iterative EPSD beats one-shot EPSD (the ERK comparison is ours: it "
                 "equalises the layer-wise allocation).", allocation),
        _section("The classifier left dense (our ablation)",
                 "if EPSD trails at 98 % because global ranking starves its classifier, "
                 "EPSD with the classifier dense should match or beat the baselines with "
                 "theirs dense.", ablation, whose="Our question",
                 extra=_gains_listing(ablation_gains(rows))),
        _section("Higher Mean-JSV", "EPSD's pruned networks have a higher Mean-JSV at "
                 "initialisation (better trainability).",
                 [r for r in jsv if r["arch"] == "resnet20" and r["allocation"] == "global"],
                 scale=1.0, unit="", digits=3),
        _section("Flatter loss landscapes", "EPSD's trained networks sit in flatter "
                 "regions (here: a negative difference in sharpness means EPSD is flatter, and "
                 "counts as EPSD ahead).",
                 sharpness, scale=1.0, unit="", digits=3),
        f"### Lower training cost than Prune-then-Distill\n\n*The paper:* EPSD's overhead is "
        f"a few scoring passes, far below Prune-then-Distill's teacher and iterative "
        f"pruning.\n\n{_cost([r for r in rows if r['scorer'] != DENSE])}\n",
    ])
