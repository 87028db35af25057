"""Seeds share one scoring program: the weights are its arguments, not constants.

`ModelState.compile` passes the scoring copy's tensors to the compiled scorer
as arguments. On JAX two seeds of one configuration therefore lower to the
same program text (what the persistent compilation cache of a sweep,
`<root>/.jax_cache`, keys on: a sweep compiles EPSD's scorer once, not once
per seed); on TensorFlow the graph captures no tensor, so nothing of a seed is
baked into it. Iterative rounds (new masks) reuse the one trace.

Runs on both backends (`jax` mark). The scores themselves are checked against
the cross-backend reference (tests/test_backend_fixture.py,
tests/jax/test_backend_equivalence.py).
"""

import keras
import numpy as np
import pytest

from epsd_tf.pruning import autodiff, scorers
from tools import make_backend_fixture as fixture

pytestmark = pytest.mark.jax

CASES = {
    "snip": ("snip", {}, "plain"),
    "grasp": ("grasp", {}, "plain"),
    "synflow": ("synflow", {}, "plain"),
    "prospr": ("prospr", {"inner_steps": 1}, "plain"),
    "epsd_dlb": ("epsd", {"method": "dlb", "inner_steps": 1}, "all"),
}


def _program(compiled, args):
    """What a compiled scorer is, beyond its arguments' values: the lowered JAX
    program (debug information stripped, as the persistent cache's key), or the
    tensors a TF graph captures from outside."""
    if keras.backend.backend() == "jax":
        return compiled.lower(*args).as_text()
    return [tuple(t.shape) for t in compiled.get_concrete_function(*args).captured_inputs]


@pytest.fixture
def compiled_scorers(monkeypatch):
    """Records, per scorer compiled through `autodiff.function`, its traces and programs."""
    records = []
    real = autodiff.function

    def recording(fn, jit_compile=False):
        record = {"traces": 0, "programs": []}
        records.append(record)

        def traced(*args):
            record["traces"] += 1  # a Python side effect: runs once per trace
            return fn(*args)

        compiled = real(traced, jit_compile=jit_compile)

        def call(*args):
            if not record["programs"]:  # later calls reuse the trace (record["traces"])
                record["programs"].append(_program(compiled, args))
            return compiled(*args)
        return call

    monkeypatch.setattr(autodiff, "function", recording)
    return records


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_seeds_compile_one_scoring_program_traced_once_per_scorer(compiled_scorers, case):
    scorer, settings, kind = CASES[case]
    first_scores = []
    for seed in (0, 1):
        inputs = fixture.reference_inputs(seed)
        score = scorers.make_scorer(fixture._model(inputs), fixture._batches(inputs, kind),
                                    scorer, **settings)
        dense = score(None)
        rng = np.random.default_rng(seed)
        score({name: rng.random(v.shape) < 0.5 for name, v in dense.items()})  # a 2nd round
        first_scores.append(dense)
    assert len(compiled_scorers) == 2  # one compiled function per make_scorer
    for record in compiled_scorers:
        assert record["traces"] == 1, record["traces"]  # both rounds, one trace
    programs = [p for record in compiled_scorers for p in record["programs"]]
    if keras.backend.backend() == "jax":
        assert programs[0] == programs[1]
    else:
        assert programs == [[], []]
    # The seeds' weights did reach the shared program.
    assert any(not np.array_equal(first_scores[0][n], first_scores[1][n])
               for n in first_scores[0])
