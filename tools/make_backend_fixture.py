"""The cross-backend reference: TensorFlow's scores and training steps on a tiny net.

Both backends cannot run in one process, so this script, run under TensorFlow,
writes `tests/fixtures/backend_reference.npz`: a tiny conv+BN+dense network's
initial weights, the batches, and what TensorFlow computes from them — every
scorer's scores (SNIP, GraSP, SynFlow, ProsPr and EPSD with DLB/CS-KD/PS-KD,
full and first order), the masks they give, two `SelfDistillationModel`
training steps of each SD method on a pruned copy (losses and weights),
Mean-JSV per example and a 1-D loss landscape.

    python -m tools.make_backend_fixture      # from the repository root, on TF

`tests/jax/test_backend_equivalence.py` recomputes everything under JAX from
the stored weights and batches and compares; `tests/test_backend_fixture.py`
recomputes it under TensorFlow, so a change to either side fails a test.
`compute()` is the one definition of what is compared.
"""

from __future__ import annotations

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

FIXTURE = os.path.join(_REPO, "tests", "fixtures", "backend_reference.npz")
IMAGE_SHAPE = (6, 6, 2)
NUM_CLASSES = 4
BATCH = 4
INNER_STEPS = 2
SPARSITY = 0.5
# Scorer cases: name -> (scorer, settings, batch kind of the inputs).
SCORER_CASES = {
    "snip": ("snip", {}, "plain"),
    "grasp": ("grasp", {}, "plain"),
    "synflow": ("synflow", {}, "plain"),
    "prospr": ("prospr", {"inner_steps": INNER_STEPS}, "plain"),
    "prospr_first_order": ("prospr", {"inner_steps": INNER_STEPS, "first_order": True},
                           "plain"),
    **{f"epsd_{m}{suffix}": ("epsd", {"method": m, "inner_steps": INNER_STEPS,
                                      "first_order": bool(suffix)}, "all")
       for m in ("dlb", "cskd", "pskd") for suffix in ("", "_first_order")},
}
METHODS = ("none", "dlb", "cskd", "pskd")


@keras.saving.register_keras_serializable(package="epsd_tf_fixture")
class ExactMomentsBN(keras.layers.BatchNormalization):
    """BatchNormalization with `keras.ops` moments on both backends.

    TensorFlow's `tf.nn.moments` stops the gradient through the mean inside
    the variance (harmless for first derivatives, not for second); JAX's
    moments are exact. The reference compares the autodiff seams, so both
    sides use the same moments here.
    """

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        mean = keras.ops.mean(inputs, axis=self._reduction_axes, keepdims=True)
        variance = keras.ops.mean(keras.ops.square(inputs - mean),
                                  axis=self._reduction_axes, keepdims=True)
        return (keras.ops.squeeze(mean, self._reduction_axes),
                keras.ops.squeeze(variance, self._reduction_axes))


def build_model() -> keras.Model:
    """Conv + BN + ReLU + pooling + Dense, 6x6x2 -> 4 logits."""
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = ExactMomentsBN(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="fc")(x), name="tiny")


def reference_inputs(seed: int = 0) -> dict:
    """Initial weights (a fixed draw) and batches, as numpy arrays."""
    rng = np.random.default_rng(seed)
    model = build_model()
    weights = [rng.normal(0, 0.5, w.shape).astype("float32") if w.ndim > 1 else
               (np.ones(w.shape, "float32") if "variance" in w.name or "gamma" in w.name
                else rng.normal(0, 0.1, w.shape).astype("float32"))
               for w in model.weights]
    n = 4 * BATCH
    return {
        "weights": weights,
        "image": rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32"),
        "image_view1": rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32"),
        "pair_image": rng.normal(size=(n, *IMAGE_SHAPE)).astype("float32"),
        "label": (np.arange(n) % NUM_CLASSES).astype("int32"),
        "table": rng.dirichlet(np.ones(NUM_CLASSES), size=n).astype("float16"),
    }


def _batches(inputs: dict, kind: str) -> list:
    batches = []
    for i in range(len(inputs["label"]) // BATCH):
        rows = slice(i * BATCH, (i + 1) * BATCH)
        x = {"image": inputs["image"][rows], "image_view1": inputs["image_view1"][rows],
             "pair_image": inputs["pair_image"][rows],
             "example_id": np.arange(len(inputs["label"]), dtype="int32")[rows]}
        batches.append((x["image"] if kind == "plain" else x, inputs["label"][rows]))
    return batches


def _model(inputs: dict) -> keras.Model:
    model = build_model()
    model.set_weights(inputs["weights"])
    return model


def _train(inputs: dict, method: str, masks: dict) -> dict:
    """Two SGD-momentum steps of `method` on a pruned copy: losses, weights."""
    from epsd_tf import pruning
    from epsd_tf.distill.model import SelfDistillationModel

    student = pruning.prune_low_magnitude(_model(inputs))
    pruning.set_masks(student, masks)
    trainer = SelfDistillationModel(student, method, batch_size=BATCH,
                                    num_examples=len(inputs["label"]), epochs=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    if method == "pskd":  # epoch 1 of 4: a_t > 0, teacher rows from the table
        trainer.epoch.assign(1)
        trainer.method_step.predictions.assign(inputs["table"])
    batches = _batches(inputs, "plain" if method == "none" else "all")
    out = {}
    for step, (x, y) in enumerate(batches[:2]):
        logs = trainer.train_on_batch(x, y, return_dict=True)
        for key in ("loss", "ce_loss", "sd_loss"):
            out[f"train/{method}/step{step}/{key}"] = np.float32(logs[key])
    for i, weight in enumerate(student.weights):
        out[f"train/{method}/weight{i}"] = keras.ops.convert_to_numpy(weight)
    return out


def _analysis(inputs: dict) -> dict:
    """Mean-JSV per example (both BN modes) and a 1-D loss landscape."""
    from epsd_tf.analysis import jsv, landscape

    model = _model(inputs)
    images, labels = inputs["image"][:8], inputs["label"][:8]
    direction = landscape.random_direction(model, seed=0)
    return {
        "analysis/jsv_inference": jsv.mean_jsv(model, images, batch_size=4)["per_example"],
        "analysis/jsv_training": jsv.mean_jsv(model, images, training=True,
                                              batch_size=4)["per_example"],
        "analysis/landscape_loss": landscape.landscape_1d(
            model, [(images, labels)], direction, [-0.5, 0.0, 0.5])["loss"],
    }


def compute(inputs: dict) -> dict:
    """Everything compared across backends, as `{key: numpy array}`."""
    from epsd_tf import pruning
    from epsd_tf.pruning import scorers

    out = _analysis(inputs)
    masks_for_training = None
    for case, (scorer, settings, kind) in SCORER_CASES.items():
        scores = scorers.score(_model(inputs), _batches(inputs, kind), scorer, **settings)
        keep = "lowest" if scorer == "grasp" else "highest"
        masks = pruning.masks_from_scores(scores, SPARSITY, keep=keep)
        for name in sorted(scores):
            out[f"score/{case}/{name}"] = scores[name]
            out[f"mask/{case}/{name}"] = masks[name]
        if case == "snip":
            masks_for_training = masks
    for method in METHODS:
        out.update(_train(inputs, method, masks_for_training))
    return out


def main() -> None:
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"Run this under TensorFlow (KERAS_BACKEND=tensorflow); the "
                         f"backend is {keras.backend.backend()!r}")
    inputs = reference_inputs()
    arrays = {f"input/weight{i}": w for i, w in enumerate(inputs.pop("weights"))}
    arrays.update({f"input/{k}": v for k, v in inputs.items()})
    arrays.update(compute(reference_inputs()))
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    np.savez_compressed(FIXTURE, **arrays)
    sys.stdout.write(f"wrote {FIXTURE}: {len(arrays)} arrays, "
                     f"{os.path.getsize(FIXTURE)} bytes\n")


def load() -> tuple[dict, dict]:
    """`(inputs, expected)` from the fixture file."""
    with np.load(FIXTURE) as data:
        arrays = {k: data[k] for k in data.files}
    weights = [arrays.pop(f"input/weight{i}")
               for i in range(sum(k.startswith("input/weight") for k in arrays))]
    inputs = {"weights": weights}
    for key in [k for k in arrays if k.startswith("input/")]:
        inputs[key[len("input/"):]] = arrays.pop(key)
    return inputs, arrays


if __name__ == "__main__":
    main()
