"""Scorer records: one table, derived views, settings that match the builders."""

import inspect

import numpy as np
import pytest

from epsd_tf import pruning
from epsd_tf.pruning import scorers
from tests.pruning.helpers import batches


@pytest.mark.parametrize("name", sorted(scorers.SCORERS))
def test_record_settings_are_exactly_the_builders_keywords(name):
    record = scorers.SCORERS[name]
    parameters = inspect.signature(record.build).parameters
    assert record.name == name
    assert record.settings == tuple(list(parameters)[2:])
    assert all(p.kind == p.KEYWORD_ONLY for p in list(parameters.values())[2:])
    assert record.keep in ("highest", "lowest")


def test_derived_views_follow_the_records():
    assert pruning.PRUNE_HIGHEST == {"grasp"}
    assert pruning.DEFAULT_ROUNDS == {"synflow": 100}
    assert {n for n, s in scorers.SCORERS.items() if s.meta_gradient} == {"epsd", "prospr"}
    assert {n for n, s in scorers.SCORERS.items() if s.data_free} == {
        "random", "magnitude", "synflow"}


@pytest.mark.parametrize("name,settings,expected", [
    ("random", {}, 0), ("synflow", {}, 0), ("snip", {}, 1), ("grasp", {"num_batches": 3}, 3),
    ("prospr", {}, 4), ("prospr", {"inner_steps": 1, "method": "pskd"}, 2),
    ("epsd", {"method": "dlb", "inner_steps": 2}, 3), ("epsd", {"method": "pskd"}, 1),
])
def test_batches_needed(name, settings, expected):
    assert scorers.batches_needed(name, settings) == expected


def test_a_record_is_its_scoring_function(model):
    data = batches(count=1)
    by_record = scorers.SCORERS["snip"](model, data)
    by_name = pruning.score(model, data, "snip")
    for name, value in by_name.items():
        np.testing.assert_array_equal(by_record[name], value)


def test_unknown_names_and_settings_are_rejected():
    for call in (lambda: scorers.get("lottery"), lambda: scorers.check_scorer("lottery"),
                 lambda: scorers.batches_needed("lottery", {}),
                 lambda: scorers.scorer_settings(3, {})):
        with pytest.raises(ValueError, match="Unknown scorer .*; valid scorers: \\['epsd'"):
            call()
    assert scorers.scorer_settings("snip", {"num_batches": 2, "inner_lr": 0.1}) == {
        "num_batches": 2}
    with pytest.raises(ValueError, match="does not take settings \\['inner_lr'\\]"):
        scorers.make_scorer(pruning.wrap, None, "snip", inner_lr=0.1)
