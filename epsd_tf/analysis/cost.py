"""Training-cost account of EPSD against Prune-then-Distill (METHOD.md §5).

Chen et al. (EPSD, AAAI 2024) argue that EPSD's pruning step is almost free
next to the teacher pre-training and iterative magnitude pruning (IMP) of
Prune-then-Distill (Park & No, "Prune Your Model Before Distill It", ECCV 2022).

Unit: one *pass* = one forward + backward of the network on one batch; one
*epoch-equivalent* = `steps_per_epoch` passes (one epoch of plain training).

* Scoring (EPSD, per round): `inner_steps + 1` forward/backward steps, each
  costing the SD method's passes per step, plus one second-order backward (the
  meta-gradient through the unrolled steps; none with `first_order=True`).
* SD training: `epochs × steps_per_epoch × passes_per_step`, where
  passes_per_step (the batch-kind table, `epsd_tf.distill.batch_kinds`) is 2
  for DLB (current batch + previous batch's second view) and CS-KD (sample +
  same-class partner), 1 for PS-KD (teacher from a table) and plain CE.
* Prune-then-Distill: teacher `teacher_epochs` (200) + up to
  `imp_rounds × imp_epochs` (7 × 130) IMP + `kd_epochs` (200) of KD, counted
  as one epoch-equivalent per epoch; KD's extra teacher forward passes are not
  counted, so this is a lower bound for Prune-then-Distill.
"""

from __future__ import annotations

from epsd_tf.distill import methods


def passes_per_step(method) -> int:
    """Forward/backward passes per step of an SD method (name, object or None).

    From the batch-kind table (`epsd_tf.distill.batch_kinds`).
    """
    return methods.get(method).passes_per_step


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def training_cost(
    *,
    epochs: int,
    steps_per_epoch: int,
    method="dlb",
    inner_steps: int = 3,
    rounds: int = 1,
    first_order: bool = False,
    second_order_cost: float | None = None,
    teacher_epochs: int = 200,
    imp_rounds: int = 7,
    imp_epochs: int = 130,
    kd_epochs: int = 200,
) -> dict:
    """Counts the passes of EPSD (score + SD training) and Prune-then-Distill.

    Args:
        epochs: SD training epochs of the sparse network.
        steps_per_epoch: optimizer steps (batches) per training epoch.
        method: SD method name or object (`none`, `dlb`, `cskd`, `pskd`).
        inner_steps: EPSD inner SGD steps `i` (METHOD.md §2).
        rounds: iterative EPSD rounds `R`.
        first_order: first-order meta-gradient (no second-order backward).
        second_order_cost: cost of one second-order backward in passes.
            None: `2 · inner_steps` [ours] — the double back-prop traverses each
            unrolled step's backward graph once more, about two passes each.
        teacher_epochs, imp_rounds, imp_epochs, kd_epochs: the
            Prune-then-Distill budget (Park & No 2022 defaults).

    Returns:
        A flat dict of counts (passes) and epoch-equivalents; see the keys.
    """
    _check_count("epochs", epochs, 0)
    _check_count("steps_per_epoch", steps_per_epoch, 1)
    _check_count("inner_steps", inner_steps, 0)
    _check_count("rounds", rounds, 1)
    for name, value in (("teacher_epochs", teacher_epochs), ("imp_rounds", imp_rounds),
                        ("imp_epochs", imp_epochs), ("kd_epochs", kd_epochs)):
        _check_count(name, value, 0)
    if second_order_cost is None:
        second_order_cost = 2.0 * inner_steps
    if second_order_cost < 0:
        raise ValueError(f"second_order_cost must be >= 0, got {second_order_cost!r}")

    method = methods.get(method)
    per_step = method.passes_per_step
    scoring_passes = rounds * (inner_steps + 1) * per_step
    second_order_passes = 0 if first_order else rounds
    scoring_equivalent = scoring_passes + second_order_cost * second_order_passes
    training_passes = epochs * steps_per_epoch * per_step

    scoring_epochs = scoring_equivalent / steps_per_epoch
    training_epochs = training_passes / steps_per_epoch
    epsd_epochs = scoring_epochs + training_epochs
    ptd_imp = imp_rounds * imp_epochs
    ptd_epochs = float(teacher_epochs + ptd_imp + kd_epochs)
    return {
        "method": method.name,
        "passes_per_step": per_step,
        "scoring_forward_backward_passes": scoring_passes,
        "scoring_second_order_backward_passes": second_order_passes,
        "scoring_pass_equivalents": float(scoring_equivalent),
        "scoring_epoch_equivalents": scoring_epochs,
        "training_passes": training_passes,
        "training_epoch_equivalents": training_epochs,
        "epsd_epoch_equivalents": epsd_epochs,
        "scoring_fraction": scoring_epochs / epsd_epochs if epsd_epochs else 0.0,
        "ptd_teacher_epoch_equivalents": float(teacher_epochs),
        "ptd_imp_epoch_equivalents": float(ptd_imp),
        "ptd_kd_epoch_equivalents": float(kd_epochs),
        "ptd_epoch_equivalents": ptd_epochs,
        "ptd_over_epsd": ptd_epochs / epsd_epochs if epsd_epochs else float("inf"),
    }
