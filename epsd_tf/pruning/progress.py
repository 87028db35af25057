"""Progress of long scoring steps: a Keras progress bar on a terminal, log lines elsewhere.

Scoring can take minutes (SynFlow's 100 rounds, iterative rounds, EPSD's
unrolled second-order meta-gradient, whose first call also traces and compiles
the graph). On a terminal `keras.utils.Progbar` shows the rounds; when stdout is
not a terminal (log files, CI) each round is one `absl.logging` line instead of
thousands of bar redraws.
"""

from __future__ import annotations

import sys
import time

import keras
from absl import logging


def _is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


class RoundProgress:
    """Reports `total` scoring rounds of `label`, one `update` per finished round."""

    def __init__(self, total: int, label: str, tty: bool | None = None):
        self.total = int(total)
        self.label = label
        self.start = time.perf_counter()
        tty = _is_tty() if tty is None else tty
        self.bar = (keras.utils.Progbar(self.total, unit_name="round")
                    if tty and self.total > 1 else None)
        logging.info("%s: %d round(s); the first call traces (and compiles) the scoring "
                     "graph", label, self.total)

    def update(self, done: int, sparsity: float) -> None:
        """Marks round `done` (1-based) as finished at `sparsity`."""
        seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.update(done, values=[("sparsity", sparsity)], finalize=done >= self.total)
        else:
            logging.info("%s: round %d/%d done, sparsity %.4f, %.1f s elapsed", self.label,
                         done, self.total, sparsity, seconds)
