"""The export report: JSON for machines, a fixed-width table for people.

It names the artifact to ship (`recommend`): the smallest file that passes
parity and loads under LiteRT's default (XNNPACK) delegate. A sparse file is
not better by being sparse: sparse int8 TFLite can be larger than dense int8
and may fail to load under XNNPACK (issue 12, defect 8).
"""

import json

from epsd_tf.export import files

REPORT_JSON = "export_report.json"
REPORT_TABLE = "export_report.txt"
# Pairs compared side by side: (sparse artifact, dense artifact).
COMPARISONS = (("float32_sparse", "float32"), ("int8_sparse", "int8"))


def add_comparisons(report: dict) -> None:
    """Adds sparse/dense size and latency ratios for pairs present in `report`."""
    artifacts = report["artifacts"]
    comparisons = {}
    for sparse, dense in COMPARISONS:
        if sparse not in artifacts or dense not in artifacts:
            continue
        entry = {"bytes_ratio": artifacts[sparse]["bytes"] / artifacts[dense]["bytes"],
                 "gzip_bytes_ratio": (artifacts[sparse]["gzip_bytes"]
                                      / artifacts[dense]["gzip_bytes"])}
        sparse_latency = artifacts[sparse].get("latency") or {}
        dense_latency = artifacts[dense].get("latency") or {}
        for key in sparse_latency:
            if "median_ms" in sparse_latency[key] and "median_ms" in dense_latency.get(key, {}):
                entry[f"latency_ratio_{key}"] = (sparse_latency[key]["median_ms"]
                                                 / dense_latency[key]["median_ms"])
        # Whether the sparse file is a better deliverable at all (defect 8).
        entry["sparse_is_smaller"] = artifacts[sparse]["bytes"] < artifacts[dense]["bytes"]
        comparisons[f"{sparse}_vs_{dense}"] = entry
    report["comparisons"] = comparisons


def recommend(report: dict) -> dict:
    """Names the artifact to ship and why each other one is not it.

    Candidates are the TFLite files (the edge deliverables; every artifact if
    there is none) that passed parity and run under LiteRT's default delegate;
    the smallest in bytes wins (ties: the earlier format).

    Returns:
        `{"artifact", "path", "bytes", "reason", "rejected": {name: reason}}`;
        `artifact` is None (with the reason) when no file qualifies.
    """
    artifacts = report["artifacts"]
    tflite = [name for name in artifacts if name.startswith(("float", "int8"))]
    pool = tflite or list(artifacts)
    rejected, eligible = {}, []
    for name in pool:
        artifact = artifacts[name]
        if not artifact["parity"]["passed"]:
            rejected[name] = "fails the parity check"
        elif "xnnpack_error" in artifact:
            rejected[name] = "does not load under LiteRT's default XNNPACK delegate"
        else:
            eligible.append(name)
    if not eligible:
        return {"artifact": None, "path": None, "bytes": None, "rejected": rejected,
                "reason": "no artifact passes parity and loads under the default delegate"}
    best = min(eligible, key=lambda name: (artifacts[name]["bytes"], pool.index(name)))
    for name in eligible:
        if name != best:
            rejected[name] = (f"larger ({artifacts[name]['bytes']:,} bytes vs "
                              f"{artifacts[best]['bytes']:,})")
    return {"artifact": best, "path": artifacts[best]["path"], "bytes": artifacts[best]["bytes"],
            "reason": ("the smallest file that passes parity and loads under LiteRT's "
                       "default delegate"),
            "rejected": rejected}


def format_table(report: dict) -> str:
    """Readable summary: one row per artifact, then ratios and XNNPACK notes."""
    stats = report["sparsity"]
    lines = [f"Export of {report['model']} (masks stripped: {report['masks_stripped']})",
             f"prunable-kernel sparsity {stats['sparsity']:.4f}; parameters "
             f"{stats['parameters']:,} ({stats['nonzero_parameters']:,} nonzero)", ""]
    header = (f"{'artifact':<16}{'bytes':>12}{'gzip':>12}{'sparse_t':>9}{'densify':>8}"
              f"{'w_sparsity':>11}{'top1_agree':>11}{'max|dlogit|':>12}{'acc':>7}"
              f"{'xnn1t_ms':>9}{'xnnNt_ms':>9}{'ref1t_ms':>9}{'refNt_ms':>9}")
    lines += [header, "-" * len(header)]
    for name, artifact in report["artifacts"].items():
        tflite = artifact.get("tflite") or {}
        latency = artifact.get("latency") or {}

        def cell(key, fmt, width, source=tflite):
            value = source.get(key)
            return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

        timing = "".join(
            f"{latency[key]['median_ms']:>9.3f}" if "median_ms" in latency.get(key, {})
            else f"{'-':>9}"
            for key in ("xnnpack_1t", "xnnpack_allt", "builtin_1t", "builtin_allt"))
        parity = artifact["parity"]
        lines.append(
            f"{name:<16}{artifact['bytes']:>12,}{artifact['gzip_bytes']:>12,}"
            + cell("sparse_tensors", "d", 9) + cell("densify_ops", "d", 8)
            + cell("weight_sparsity", ".4f", 11)
            + f"{parity['top1_agreement']:>11.4f}{parity['max_abs_logit_diff']:>12.4g}"
            + cell("accuracy", ".4f", 7, artifact) + timing)
    for name, entry in report.get("comparisons", {}).items():
        parts = ", ".join(f"{key} {value:.3f}" for key, value in entry.items()
                          if not isinstance(value, bool))
        verdict = "" if entry.get("sparse_is_smaller", True) else " (the sparse file is LARGER)"
        lines.append(f"{name}: {parts}{verdict}")
    for name, artifact in report["artifacts"].items():
        if "xnnpack_error" in artifact:
            lines.append(f"WARNING: {name} cannot run under LiteRT's default XNNPACK "
                         f"delegate ({artifact['xnnpack_error'].strip()}); load it with "
                         "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES. Parity and "
                         "latency above use the built-in kernels.")
    for name, artifact in report["artifacts"].items():
        verdict = (artifact.get("tflite") or {}).get("xnnpack_sparse")
        if verdict and name.startswith("float32_sparse"):
            lines.append(f"XNNPACK sparse inference ({name}): {verdict['summary']}")
            measured = report.get("comparisons", {}).get(
                "float32_sparse_vs_float32", {}).get("latency_ratio_xnnpack_1t")
            if measured is not None:
                lines.append(f"  measured XNNPACK 1-thread latency sparse/dense: {measured:.3f}"
                             + (" (sparse path engaged)" if measured < 0.8 else
                                " (no sparse speed-up)"))
            for layer, reason in verdict["ineligible_layers"][:8]:
                lines.append(f"  not sparse: {layer}: {reason}")
    ship = report.get("ship")
    if ship:
        lines.append("")
        if ship["artifact"] is None:
            lines.append(f"SHIP: nothing ({ship['reason']}).")
        else:
            lines.append(f"SHIP: {ship['artifact']} ({ship['path']}, {ship['bytes']:,} bytes): "
                         f"{ship['reason']}.")
        for name, why in ship["rejected"].items():
            lines.append(f"  not {name}: {why}")
    return "\n".join(lines) + "\n"


def write(report: dict, workdir: str, overwrite: bool) -> tuple:
    """Writes the JSON and table files atomically; returns their paths."""
    import os

    json_path = os.path.join(workdir, REPORT_JSON)
    table_path = os.path.join(workdir, REPORT_TABLE)
    files.write_text(json_path, json.dumps(report, indent=2, default=float), overwrite)
    files.write_text(table_path, format_table(report), overwrite)
    return json_path, table_path
