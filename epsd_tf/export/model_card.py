"""`MODEL_CARD.md`: what an exported EPSD model is, how good, how made, what to cite.

Written by `export_all` beside the artifacts, from the export report (sizes,
parity, latency, the file to ship) and the facts of the run that trained the
model (`about`: data, method, pruning, test metrics, command, config), in the
spirit of Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019).
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys

from epsd_tf.export import files

MODEL_CARD = "MODEL_CARD.md"
ABOUT_KEYS = ("dataset", "method", "epochs", "pruning", "test", "command", "config")
EPSD_BIBTEX = """@inproceedings{chen2024epsd,
  title     = {{EPSD}: Early Pruning with Self-Distillation for Efficient Model Compression},
  author    = {Chen, Dong and Liu, Ning and Zhu, Yichen and Che, Zhengping and Ma, Rui and
               Zhang, Fachao and Mou, Xiaofeng and Chang, Yi and Tang, Jian},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2024},
  note      = {arXiv:2402.00084}
}"""


def check_about(about: dict | None) -> dict:
    """Validates the run facts before any export work; returns a copy.

    Raises:
        ValueError: an unknown key (the valid ones are `ABOUT_KEYS`).
    """
    about = dict(about or {})
    unknown = sorted(set(about) - set(ABOUT_KEYS))
    if unknown:
        raise ValueError(f"unknown model-card facts {unknown}; valid: {list(ABOUT_KEYS)}")
    return about


def write(report: dict, workdir: str, about: dict | None, overwrite: bool) -> str:
    """Writes `MODEL_CARD.md` into `workdir` atomically; returns its path."""
    path = os.path.join(workdir, MODEL_CARD)
    files.write_text(path, render(report, about), overwrite)
    return path


def render(report: dict, about: dict | None) -> str:
    """The card's Markdown text (see the module docstring)."""
    about = check_about(about)
    architecture = report.get("architecture", {})
    stats = report["sparsity"]
    lines = [f"# Model card: {report['model']}", "",
             f"Exported by epsd_tf {_version()} on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "## Model", "",
             f"- Architecture: `{report['model']}`, input {architecture.get('input_shape')}, "
             f"{architecture.get('outputs')} outputs (logits), "
             f"{stats['parameters']:,} prunable-kernel weights of which "
             f"{stats['nonzero_parameters']:,} are nonzero.",
             f"- Sparsity of the prunable kernels: **{100 * stats['sparsity']:.2f} %** "
             "(exact zeros, counted in the exported weights).",
             f"- Method: {_method(about)}", "",
             "## Data", "", f"- {about.get('dataset', 'not recorded')}", "",
             "## Accuracy", ""]
    test = about.get("test")
    if test:
        lines.append("- Test set (the trained Keras model): " + ", ".join(
            f"{key} {value:.4f}" for key, value in sorted(test.items())))
    else:
        lines.append("- Test set: not recorded.")
    if "keras_accuracy" in report:
        lines.append(f"- The {report['eval_examples']} parity images: Keras model "
                     f"{report['keras_accuracy']:.4f}; each file's accuracy is in the table.")
    lines += ["", "## Files", "", _files_table(report), "", "## Which file to ship", ""]
    lines += _ship(report)
    lines += ["", "## How it was made", "",
              "```sh", about.get("command") or _this_command(), "```"]
    if about.get("config"):
        lines += ["", "Configuration (gin):", "", "```", about["config"].strip(), "```"]
    lines += ["", "## Citation", "",
              "The method (cite this when you use the model):", "", "```bibtex",
              EPSD_BIBTEX, "```", "",
              "The software: epsd_tf (see `CITATION.cff` in its repository).", ""]
    return "\n".join(lines)


def _method(about: dict) -> str:
    if "pruning" not in about:
        prune = "pruning not recorded"
    elif about["pruning"]:
        pruning = about["pruning"]
        prune = (f"pruned at initialisation by `{pruning.get('scorer')}` scores to "
                 f"{100 * pruning.get('target_sparsity', 0):.1f} % sparsity")
    else:
        prune = "not pruned at initialisation (dense training)"
    if "method" not in about:
        return f"{prune}; training method not recorded."
    epochs = about.get("epochs")
    trained = f"trained with self-distillation method `{about['method']}`" + (
        f" for {epochs} epochs" if epochs else "")
    return f"{prune}; {trained} (EPSD, Chen et al., AAAI 2024)."


def _files_table(report: dict) -> str:
    rows = ["| file | bytes | gzip bytes | parity (top-1 agreement) | max abs logit diff "
            "| accuracy | latency, XNNPACK 1 thread | loads under default delegate |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, artifact in report["artifacts"].items():
        parity = artifact["parity"]
        latency = (artifact.get("latency") or {}).get("xnnpack_1t", {}).get("median_ms")
        accuracy = artifact.get("accuracy")
        loads = ("-" if not name.startswith(("float", "int8"))
                 else "no" if "xnnpack_error" in artifact else "yes")
        rows.append(
            f"| `{os.path.basename(artifact['path'])}` | {artifact['bytes']:,} "
            f"| {artifact['gzip_bytes']:,} "
            f"| {parity['top1_agreement']:.4f} ({'passed' if parity['passed'] else 'FAILED'}) "
            f"| {parity['max_abs_logit_diff']:.3g} "
            f"| {'-' if accuracy is None else f'{accuracy:.4f}'} "
            f"| {'-' if latency is None else f'{latency:.3f} ms'} | {loads} |")
    return "\n".join(rows)


def _ship(report: dict) -> list[str]:
    ship = report.get("ship")
    if not ship or ship["artifact"] is None:
        return [f"No file: {ship['reason'] if ship else 'not decided'}."]
    lines = [f"**`{os.path.basename(ship['path'])}`** ({ship['bytes']:,} bytes): "
             f"{ship['reason']}."]
    lines += [f"- not `{name}`: {why}" for name, why in ship["rejected"].items()]
    return lines


def _this_command() -> str:
    return shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + \
        "   # this process's command line"


def _version() -> str:
    import epsd_tf
    return epsd_tf.__version__
