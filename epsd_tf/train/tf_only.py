"""Stand-ins for the TensorFlow-only stages when Keras runs on another backend.

`run.export = @export_all` and `run.pqat = @run_pqat` must still parse in a
gin file on JAX (the same configs serve both backends), but SavedModel/TFLite
export and TF-MOT PQAT need TensorFlow. `gin_registry.py` registers these
stand-ins under the same names there; `experiment.run` calls their
`backend_check` before any work, so such a run fails at once with what to do:
train without the stage, then export the trained `model.keras` on a machine
with TensorFlow (`epsd-export`).
"""

from __future__ import annotations

from epsd_tf import backends

_ARGUMENT = {"export_all": "run.export", "run_pqat": "run.pqat"}
_INSTEAD = {
    "export_all": "Train here without run.export, then export the trained model on a "
                  "TensorFlow machine: " + backends.EXPORT_COMMAND + ".",
    "run_pqat": "Train here without run.pqat; PQAT (TF-MOT) retrains the exported model "
                "on a TensorFlow machine (epsd_tf.export.run_pqat).",
}


def stand_in(name: str):
    """A callable named `name` that raises the TensorFlow-needed error when used."""
    if name not in _INSTEAD:
        raise ValueError(f"no TensorFlow-only stage {name!r}; valid: {sorted(_INSTEAD)}")

    def check(*unused_args, **unused_kwargs):
        backends.require_tensorflow(f"{_ARGUMENT[name]} = @{name}", _INSTEAD[name])

    def stage(*args, **kwargs):
        check()

    stage.__name__ = stage.__qualname__ = name
    stage.__doc__ = f"`{name}` needs TensorFlow; raises ValueError saying what to do."
    stage.backend_check = check
    stage.preflight = check
    return stage
