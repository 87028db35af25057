"""The classes of a dataset are declared, never guessed from the labels.

A model's output width is `num_classes`, so a wrong count is silent: labels
1..10 would give an 11-way model, a stray label 1000 a 1001-way one, a class
seen only in the test set an untrained output. Every source therefore says
which classes it has, from (whichever are present, and they must agree):

* the known-datasets table (`known.KNOWN_DATASETS`: `num_classes`, names),
* the source itself: image-folder class directories, a `.npz` file's optional
  `num_classes` / `class_names` arrays, synthetic data's `num_classes`, TFDS
  label metadata,
* the `num_classes` argument of `data.load`.

An `.npz` without a declaration may still be used when its training labels
are exactly `0 .. K-1` (all present): then `K` classes. IDX files carry no
class list: they need a known dataset name or `num_classes`.
`check_labels` then rejects, before any pipeline is built: fewer than two
classes, labels outside `0 .. num_classes-1`, and validation or test labels
that never occur in the training split.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from absl import logging


def declared(dataset: str, *, known=None, source_classes: Optional[int] = None,
             class_names: Optional[Sequence[str]] = None,
             requested: Optional[int] = None, where: str = "the source"
             ) -> tuple[Optional[int], Optional[tuple]]:
    """Reconciles every declaration of the class count.

    Args:
        dataset: dataset name, for messages.
        known: the `KnownDataset` entry of `dataset`, or None.
        source_classes: the class count the source states, or None.
        class_names: label names the source states, or None.
        requested: `data.load(num_classes=...)`, or None.
        where: what `source_classes`/`class_names` came from, for messages.

    Returns:
        `(num_classes or None when nothing declares it, class_names or None)`.

    Raises:
        ValueError: two declarations disagree.
    """
    claims = []
    if known is not None:
        claims.append((f"the known dataset {dataset!r}", known.num_classes))
    if class_names is not None:
        class_names = tuple(str(name) for name in class_names)
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"{where} lists duplicate class names: {list(class_names)}")
        claims.append((f"the class names of {where}", len(class_names)))
    if source_classes is not None:
        claims.append((where, int(source_classes)))
    if requested is not None:
        claims.append(("num_classes=", int(requested)))
    counts = {count for _, count in claims}
    if len(counts) > 1:
        stated = "; ".join(f"{who}: {count}" for who, count in claims)
        raise ValueError(f"dataset {dataset!r}: the class counts disagree ({stated})")
    if class_names is None and known is not None:
        class_names = known.class_names
    return (counts.pop() if counts else None), class_names


def check_labels(labels: Mapping[str, np.ndarray], num_classes: Optional[int],
                 dataset: str, how_to_declare: str) -> int:
    """Checks integer labels per split against the declared classes.

    Args:
        labels: `{"train": [N], "validation": [M] (optional), "test": [T]}`.
        num_classes: the declared count, or None to accept training labels
            that are exactly `0 .. K-1`.
        dataset: dataset name, for messages.
        how_to_declare: how the user declares the classes of this source.

    Returns:
        The number of classes (>= 2).

    Raises:
        ValueError: undeclared non-contiguous labels, fewer than two classes,
            a label out of range, or validation/test labels absent from train.
    """
    train = np.unique(labels["train"])
    if num_classes is None:
        if not np.array_equal(train, np.arange(len(train))):
            raise ValueError(
                f"dataset {dataset!r}: the training labels {_show(train)} are not "
                f"0 .. K-1 and no class list is declared; {how_to_declare}")
        num_classes = len(train)
    at_least_two(num_classes, dataset)
    for split, values in labels.items():
        present = np.unique(values)
        outside = present[(present < 0) | (present >= num_classes)]
        if outside.size:
            raise ValueError(
                f"dataset {dataset!r}: {split} labels {_show(outside)} are outside the "
                f"{num_classes} declared classes (valid: 0 .. {num_classes - 1})")
        unseen = np.setdiff1d(present, train)
        if split != "train" and unseen.size:
            raise ValueError(
                f"dataset {dataset!r}: {split} labels {_show(unseen)} never occur in the "
                f"training split, so those classes would be untrained; training has "
                f"{_show(train)}")
    missing = np.setdiff1d(np.arange(num_classes), train)
    if missing.size:
        logging.warning("dataset %r: classes %s have no training example", dataset,
                        _show(missing))
    return int(num_classes)


def at_least_two(num_classes: int, dataset: str) -> None:
    """Raises ValueError unless `num_classes >= 2`."""
    if num_classes < 2:
        raise ValueError(
            f"dataset {dataset!r} has {num_classes} class(es); classification needs "
            f">= 2 (labels 0 .. K-1 with K >= 2)")


def _show(values: np.ndarray, limit: int = 12) -> str:
    values = [int(v) for v in values]
    return str(values) if len(values) <= limit else f"{values[:limit]}... ({len(values)})"
