"""ProsPr and EPSD scores: the meta-gradient through unrolled SGD steps.

ProsPr (Alizadeh et al., "Prospect Pruning", ICLR 2022) and EPSD (Chen et al.,
AAAI 2024), METHOD.md §2:

    θ_0     = m ⊙ θ_init
    θ_{k+1} = θ_k - inner_lr · ∇_θ L(θ_k; batch_k),   k = 0 .. i-1
    Δ       = ∂ L(θ_i; batch_i) / ∂ m = θ_init ⊙ ∂ L(θ_i; batch_i) / ∂ θ_0
    s       = |Δ| / Σ |Δ|

ProsPr uses L = cross-entropy; EPSD uses the loss of the self-distillation
method that will train the sparse network, with the teachers of METHOD.md §2:
DLB the previous inner step's logits on the previous batch, CS-KD the current
network on a same-class partner, PS-KD the previous inner step's prediction on
the same batch. `first_order=True` stops the gradient through the inner
gradients (∂θ_i/∂θ_0 = I). Inner steps update every trainable variable; all of
it, and BatchNorm statistics, is thrown away.
"""

from __future__ import annotations

from keras import ops

from epsd_tf.distill import losses, methods
from epsd_tf.pruning import autodiff
from epsd_tf.pruning.model_state import ModelState, image_of

# Dict keys each SD batch kind must carry (see epsd_tf/distill/methods.py).
BATCH_KEYS = {"plain": (), "two_views": ("image", "image_view1"),
              "class_pairs": ("image", "pair_image"), "example_ids": ("image",)}


def batches_needed(method: methods.SelfDistillationMethod, inner_steps: int) -> int:
    """PS-KD reuses one batch for every inner step; the others take a fresh one."""
    return 1 if isinstance(method, methods.PSKD) else inner_steps + 1


def check_batch_kind(method: methods.SelfDistillationMethod, x) -> None:
    """Raises ValueError if a batch input lacks what `method` needs."""
    keys = BATCH_KEYS[method.batch_kind]
    if keys and not (hasattr(x, "keys") and all(k in x for k in keys)):
        got = sorted(x.keys()) if hasattr(x, "keys") else type(x).__name__
        raise ValueError(
            f"Method {method.name!r} (batch kind {method.batch_kind!r}) needs batch "
            f"inputs as a dict with keys {list(keys)}; got {got}.")


def _mean(values):
    return ops.mean(values)


def make_objective(state: ModelState, method: methods.SelfDistillationMethod):
    """`objective(trainable, batch, teacher) -> (loss, next teacher)` for a method.

    `teacher` is None at the first inner step; the returned teacher is detached.
    """
    def forward(trainable, images):
        return state.logits(trainable, images, training=True)

    if isinstance(method, methods.DLB):
        def objective(trainable, batch, teacher):
            (x, y) = batch
            if teacher is None:  # Step 0: nothing to distil from yet, CE only.
                logits = forward(trainable, x["image"])
                loss = _mean(losses.cross_entropy(y, logits))
            else:
                # One forward on [view 0 of x_t ; view 1 of x_{t-1}] as in DLB's code.
                previous_logits, previous_view1, previous_y = teacher
                size = ops.shape(x["image"])[0]
                both = forward(trainable, ops.concatenate([x["image"], previous_view1], 0))
                logits, student = both[:size], both[size:]
                loss = (_mean(losses.cross_entropy(y, logits))
                        + _mean(losses.cross_entropy(previous_y, student))
                        + _mean(method.distillation_loss(previous_logits, student)))
            return loss, (ops.stop_gradient(logits), x["image_view1"], y)
    elif isinstance(method, methods.CSKD):
        def objective(trainable, batch, teacher):
            (x, y) = batch
            logits = forward(trainable, x["image"])
            partner = ops.stop_gradient(forward(trainable, x["pair_image"]))
            loss = _mean(losses.cross_entropy(y, logits)
                         + method.distillation_loss(partner, logits))
            return loss, None
    elif isinstance(method, methods.PSKD):
        def objective(trainable, batch, teacher):
            (x, y) = batch
            logits = forward(trainable, image_of(x))
            if teacher is None:  # Step 0: one-hot targets, i.e. plain CE.
                loss = _mean(losses.cross_entropy(y, logits))
            else:
                targets = method.soft_targets(y, teacher, method.alpha)
                loss = _mean(method.loss(targets, logits))
            return loss, ops.stop_gradient(ops.softmax(logits, axis=-1))
    elif isinstance(method, methods.NoDistillation):
        def objective(trainable, batch, teacher):
            (x, y) = batch
            return _mean(losses.cross_entropy(y, forward(trainable, image_of(x)))), None
    else:
        raise ValueError(f"No EPSD objective for method {method!r}; valid: "
                         f"{sorted(methods.METHODS)}")
    return objective


def build_meta_gradient(state: ModelState, batches: list,
                        method: methods.SelfDistillationMethod, inner_steps: int,
                        inner_lr: float, first_order: bool, jit_compile: bool = False):
    """Returns compiled `compute(mask_list) -> [s per prunable kernel]`.

    `s = |∂L(θ_i)/∂m| / Σ|∂L(θ_i)/∂m|` in `state.names` order. One trace serves
    every call (iterative rounds pass new masks, not new graphs).

    Args:
        state: the model's parameters (θ_init and the other variables).
        batches: `batches_needed(method, inner_steps)` `(x, y)` batches.
        method: the SD method whose loss is differentiated (NoDistillation = ProsPr).
        inner_steps: number of unrolled SGD steps `i` (>= 0).
        inner_lr: inner SGD learning rate.
        first_order: drop the second-order terms.
        jit_compile: compile the computation with XLA.
    """
    objective = make_objective(state, method)
    step_grad = autodiff.value_and_grad(objective, has_aux=True)
    if isinstance(method, methods.PSKD):
        batches = [batches[0]] * (inner_steps + 1)

    def unroll(trainable, batches):
        """θ_0 -> (θ_i, teacher for the last loss) by `inner_steps` SGD steps."""
        teacher = None
        for k in range(inner_steps):  # static and small: unrolled in the graph
            (_, teacher), grads = step_grad(trainable, batches[k], teacher)
            trainable = [p - inner_lr * g for p, g in zip(trainable, grads)]
        return trainable, teacher

    def full_meta_gradient(trainable, batches):
        def meta_loss(trainable, batches):
            trainable, teacher = unroll(trainable, batches)
            return objective(trainable, batches[inner_steps], teacher)[0]
        return autodiff.value_and_grad(meta_loss)(trainable, batches)[1]

    def first_order_meta_gradient(trainable, batches):
        # With the inner gradients stopped, ∂θ_i/∂θ_0 = I, so the meta-gradient is
        # the plain gradient at θ_i: no outer tape over the inner steps needed.
        trainable, teacher = unroll(trainable, batches)
        _, grads = step_grad(trainable, batches[inner_steps], teacher)
        return grads

    meta = first_order_meta_gradient if first_order else full_meta_gradient

    def compute(mask_list, batches):
        grads = meta(state.initial_trainable(mask_list), batches)
        # θ_0 = m ⊙ θ_init, so ∂L/∂m = θ_init ⊙ ∂L/∂θ_0.
        deltas = [ops.abs(g * theta)
                  for g, theta in zip(state.prunable(grads), state.theta_init)]
        total = sum(ops.sum(d) for d in deltas)
        return [d / total for d in deltas]

    compiled = autodiff.function(compute, jit_compile=jit_compile)
    return lambda mask_list: compiled(mask_list, batches)
