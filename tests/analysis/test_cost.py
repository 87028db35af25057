"""Tests for epsd_tf.analysis.cost (METHOD.md §5 training-cost account)."""

import pytest

from epsd_tf.analysis import passes_per_step, training_cost


def test_hand_example_dlb_iterative_second_order():
    # DLB: 2 passes per step. Scoring: 2 rounds x (3 + 1) steps x 2 = 16 passes, plus
    # 2 second-order backwards at 6 passes each = 28 pass-equivalents = 0.28 epochs
    # of 100 steps. Training: 10 epochs x 100 steps x 2 = 2000 passes = 20 epochs.
    cost = training_cost(epochs=10, steps_per_epoch=100, method="dlb", inner_steps=3,
                         rounds=2, second_order_cost=6.0)
    assert cost["passes_per_step"] == 2
    assert cost["scoring_forward_backward_passes"] == 16
    assert cost["scoring_second_order_backward_passes"] == 2
    assert cost["scoring_pass_equivalents"] == 28.0
    assert cost["scoring_epoch_equivalents"] == pytest.approx(0.28)
    assert cost["training_passes"] == 2000
    assert cost["training_epoch_equivalents"] == pytest.approx(20.0)
    assert cost["epsd_epoch_equivalents"] == pytest.approx(20.28)
    assert cost["scoring_fraction"] == pytest.approx(0.28 / 20.28)
    # Prune-then-Distill: 200 teacher + 7 x 130 IMP + 200 KD = 1310 epochs.
    assert cost["ptd_imp_epoch_equivalents"] == 910.0
    assert cost["ptd_epoch_equivalents"] == 1310.0
    assert cost["ptd_over_epsd"] == pytest.approx(1310 / 20.28)


def test_first_order_pskd_and_default_second_order_cost():
    first = training_cost(epochs=1, steps_per_epoch=10, method="pskd", inner_steps=2,
                          first_order=True)
    assert first["passes_per_step"] == 1
    assert first["scoring_forward_backward_passes"] == 3
    assert first["scoring_second_order_backward_passes"] == 0
    assert first["scoring_pass_equivalents"] == 3.0
    second = training_cost(epochs=1, steps_per_epoch=10, method="pskd", inner_steps=2)
    assert second["scoring_pass_equivalents"] == 3.0 + 2 * 2  # default: 2 * inner_steps


def test_passes_per_step_by_method():
    assert [passes_per_step(m) for m in ("none", "dlb", "cskd", "pskd", None)] == [1, 2, 2, 1, 1]


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 1, "steps_per_epoch": 0}, "steps_per_epoch must be an int >= 1, got 0"),
    ({"epochs": -1, "steps_per_epoch": 5}, "epochs must be an int >= 0"),
    ({"epochs": 1, "steps_per_epoch": 5, "rounds": 0}, "rounds must be an int >= 1"),
    ({"epochs": 1, "steps_per_epoch": 5, "method": "kd"}, "valid names"),
    ({"epochs": 1, "steps_per_epoch": 5, "second_order_cost": -1.0}, "second_order_cost"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError) as error:
        training_cost(**kwargs)
    assert message in str(error.value)
