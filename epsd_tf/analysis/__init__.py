"""epsd_tf.analysis: the analyses of the EPSD paper (METHOD.md §5).

* `mean_jsv` — Mean Jacobian singular value (Lee et al., ICLR 2020).
* `random_direction`, `landscape_1d`, `landscape_2d`, `plot_landscape_1d`,
  `plot_landscape_2d`, `plot_landscape_overlay` — loss landscapes (Li et
  al., NeurIPS 2018);
  `loss_landscape` runs them as a stage of `run` (`run.landscape`).
* `training_cost` — EPSD vs Prune-then-Distill cost in epoch-equivalents.
* `collect`, `aggregate`, `write_csv`, `markdown_table`,
  `plot_accuracy_vs_sparsity`, `plot_layer_densities` — sweep results as the
  paper's tables (mean ± std over seeds) and plots.
"""

from epsd_tf.analysis.cost import passes_per_step, training_cost
from epsd_tf.analysis.jsv import mean_jsv
from epsd_tf.analysis.landscape import landscape_1d, landscape_2d, random_direction
from epsd_tf.analysis.landscape_stage import loss_landscape, read_landscape
from epsd_tf.analysis.plots import (
                                    plot_accuracy_vs_sparsity,
                                    plot_landscape_1d,
                                    plot_landscape_2d,
                                    plot_landscape_overlay,
                                    plot_layer_densities,
)
from epsd_tf.analysis.results import aggregate, collect, markdown_table, write_csv

__all__ = [
    "aggregate",
    "collect",
    "landscape_1d",
    "landscape_2d",
    "loss_landscape",
    "markdown_table",
    "mean_jsv",
    "passes_per_step",
    "plot_accuracy_vs_sparsity",
    "plot_landscape_1d",
    "plot_landscape_2d",
    "plot_landscape_overlay",
    "plot_layer_densities",
    "random_direction",
    "read_landscape",
    "training_cost",
    "write_csv",
]
