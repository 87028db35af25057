"""epsd_tf.pruning: masks, pruning-at-init scorers, masks from scores, report.

Step 1 of EPSD (Chen et al., AAAI 2024) as a library for any Keras 3 model.
Weight names in score and mask dicts: see `model_masks`.
"""

from epsd_tf.pruning.model_masks import (get_masks, get_prunable_weights, has_masks,
                                         prune_low_magnitude, set_masks, strip_masks,
                                         strip_pruning, wrap)
from epsd_tf.pruning.wrapper import MaskConstraint, PruneLowMagnitude
from epsd_tf.pruning.scorers import (DEFAULT_ROUNDS, PRUNE_HIGHEST, SCORERS, make_scorer,
                                     score)
