"""epsd_tf.pruning: masks, pruning-at-init scorers, masks from scores, report.

Step 1 of EPSD (Chen et al., AAAI 2024) as a library for any Keras 3 model,
with TF-MOT's names (`prune_low_magnitude`, `strip_pruning`,
`get_prunable_weights`). Score and mask dicts are keyed by weight names
`"<layer path>/<variable name>"` (see `model_masks`).

No `UpdatePruningStep` callback is needed: masks are fixed after step 1 and
enforced by the wrapper's forward pass (`kernel * mask`, so pruned weights get
exactly zero gradients and stay 0), the same under TensorFlow and JAX, in
stock `fit` and in `SelfDistillationModel` (see `wrapper.py`).
"""

from epsd_tf.pruning.masks import LAYER_DENSITIES, SCOPES, exponential_schedule, masks_from_scores
from epsd_tf.pruning.model_masks import (
                                   get_masks,
                                   get_prunable_weights,
                                   has_masks,
                                   prune_low_magnitude,
                                   set_masks,
                                   strip_masks,
                                   strip_pruning,
                                   wrap,
)
from epsd_tf.pruning.prune import prune_at_init, scoring_view
from epsd_tf.pruning.report import build_report, format_report, log_report, write_report
from epsd_tf.pruning.sanity import SANITY_TRANSFORMS, invert, reinit, shuffle
from epsd_tf.pruning.scorers import (
                                   DEFAULT_ROUNDS,
                                   PRUNE_HIGHEST,
                                   SCORE_DTYPES,
                                   SCORERS,
                                   Scorer,
                                   make_scorer,
                                   score,
)
from epsd_tf.pruning.stability import kept_overlap
from epsd_tf.pruning.summaries import write_summaries
from epsd_tf.pruning.wrapper import PruneLowMagnitude
