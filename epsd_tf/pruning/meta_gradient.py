"""ProsPr and EPSD scores: the meta-gradient through unrolled SGD steps.

ProsPr (Alizadeh et al., "Prospect Pruning", ICLR 2022) and EPSD (Chen et al.,
AAAI 2024), METHOD.md §2:

    θ_0     = m ⊙ θ_init
    θ_{k+1} = θ_k - inner_lr · ∇_θ L(θ_k; batch_k),   k = 0 .. i-1
    Δ       = ∂ L(θ_i; batch_i) / ∂ m = θ_init ⊙ ∂ L(θ_i; batch_i) / ∂ θ_0
    s       = |Δ| / Σ |Δ|

ProsPr uses L = cross-entropy; EPSD uses the loss of the self-distillation
method that will train the sparse network: its `objective` (the same function
`SelfDistillationModel.train_step` minimises), with the method's `carry`
threaded through the inner steps from the zero `initial_carry`. That gives the
teachers of METHOD.md §2: DLB the previous inner step's logits on the previous
batch, CS-KD the current network on a same-class partner, PS-KD the previous
inner step's prediction on the same batch (one batch reused).
`first_order=True` stops the gradient through the inner gradients
(∂θ_i/∂θ_0 = I). Inner steps update every trainable variable; all of it, and
BatchNorm statistics, is thrown away.
"""

from __future__ import annotations

from keras import ops

from epsd_tf.distill import batch_kinds, methods
from epsd_tf.pruning import autodiff
from epsd_tf.pruning.model_state import ModelState


def batches_needed(method: methods.SelfDistillationMethod, inner_steps: int) -> int:
    """PS-KD reuses one batch for every inner step; the others take a fresh one."""
    return 1 if method.scoring_reuses_batch else inner_steps + 1


def check_batch_kind(method: methods.SelfDistillationMethod, x) -> None:
    """Raises ValueError if a batch input lacks what `method` needs."""
    batch_kinds.features(method, x)


def initial_carry(state: ModelState, method: methods.SelfDistillationMethod, batch) -> dict:
    """The method's zero carry for scoring batches shaped like `batch`."""
    image = batch_kinds.features(method, batch[0])["image"]
    return method.initial_carry(int(image.shape[0]), tuple(image.shape[1:]),
                                int(state.model.output_shape[-1]))


def make_objective(state: ModelState, method: methods.SelfDistillationMethod):
    """`objective(trainable, batch, carry) -> (loss, new carry)`: the method's objective.

    The network is `state.logits` (stateless, BatchNorm in training mode) at the
    parameters `trainable`; the loss is `mean(ce) + mean(sd)` of
    `method.objective`, exactly what `SelfDistillationModel.train_step`
    minimises for the same carry.
    """
    def objective(trainable, batch, carry):
        x, y = batch

        def forward(images):
            return state.logits(trainable, images, training=True)
        # DLB's two forwards as one batched call on JAX (exact: nothing is carried
        # out of `state.logits`); two calls on TF.
        forward.pair = autodiff.pair(forward)

        ce, sd, _, new_carry = method.objective(
            forward, batch_kinds.features(method, x), y, carry)
        return ops.mean(ce) + ops.mean(sd), new_carry
    return objective


def _scoring_batches(method, batches: list, inner_steps: int) -> list:
    return [batches[0]] * (inner_steps + 1) if method.scoring_reuses_batch else batches


def _unroll(step_grad, trainable, batches, carry, inner_steps: int, inner_lr: float):
    """θ_0 -> (θ_i, carry for the last loss, [L_0 .. L_{i-1}]) by SGD steps."""
    values = []
    for k in range(inner_steps):  # static and small: unrolled in the graph
        (value, carry), grads = step_grad(trainable, batches[k], carry)
        values.append(value)
        trainable = [p - inner_lr * g for p, g in zip(trainable, grads)]
    return trainable, carry, values


def inner_losses(state: ModelState, batches: list, method: methods.SelfDistillationMethod,
                 inner_steps: int, inner_lr: float, mask_list: list | None = None) -> list:
    """`[L(θ_0; batch_0), ..., L(θ_i; batch_i)]`: the objective along the unroll.

    The values the meta-gradient differentiates (the last is the meta-loss),
    for checks against training (tests/distill/test_objective_parity.py).
    """
    batches = _scoring_batches(method, batches, inner_steps)
    objective = make_objective(state, method)
    step_grad = autodiff.value_and_grad(objective, has_aux=True)
    trainable = (state.trainable_init if mask_list is None
                 else state.initial_trainable(mask_list))
    trainable, carry, values = _unroll(step_grad, trainable, batches,
                                       initial_carry(state, method, batches[0]),
                                       inner_steps, inner_lr)
    return values + [objective(trainable, batches[inner_steps], carry)[0]]


def build_meta_gradient(state: ModelState, batches: list,
                        method: methods.SelfDistillationMethod, inner_steps: int,
                        inner_lr: float, first_order: bool, jit_compile: bool = False):
    """Returns compiled `compute(mask_list) -> [s per prunable kernel]`.

    `s = |∂L(θ_i)/∂m| / Σ|∂L(θ_i)/∂m|` in `state.names` order. One trace serves
    every call (iterative rounds pass new masks, not new graphs).

    Args:
        state: the model's parameters (θ_init and the other variables).
        batches: `batches_needed(method, inner_steps)` `(x, y)` batches.
        method: the SD method whose objective is differentiated
            (NoDistillation = ProsPr).
        inner_steps: number of unrolled SGD steps `i` (>= 0).
        inner_lr: inner SGD learning rate.
        first_order: drop the second-order terms.
        jit_compile: compile the computation with XLA.
    """
    batches = _scoring_batches(method, batches, inner_steps)

    def compute(state, mask_list, batches):
        carry0 = initial_carry(state, method, batches[0])
        objective = make_objective(state, method)
        step_grad = autodiff.value_and_grad(objective, has_aux=True)

        def full_meta_gradient(trainable, batches):
            def meta_loss(trainable, batches):
                trainable, carry, _ = _unroll(step_grad, trainable, batches, carry0,
                                              inner_steps, inner_lr)
                return objective(trainable, batches[inner_steps], carry)[0]
            return autodiff.value_and_grad(meta_loss)(trainable, batches)[1]

        def first_order_meta_gradient(trainable, batches):
            # With the inner gradients stopped, ∂θ_i/∂θ_0 = I, so the meta-gradient is
            # the plain gradient at θ_i: no outer tape over the inner steps needed.
            trainable, carry, _ = _unroll(step_grad, trainable, batches, carry0,
                                          inner_steps, inner_lr)
            _, grads = step_grad(trainable, batches[inner_steps], carry)
            return grads

        meta = first_order_meta_gradient if first_order else full_meta_gradient
        grads = meta(state.initial_trainable(mask_list), batches)
        # θ_0 = m ⊙ θ_init, so ∂L/∂m = θ_init ⊙ ∂L/∂θ_0.
        deltas = [ops.abs(g * theta)
                  for g, theta in zip(state.prunable(grads), state.theta_init)]
        total = sum(ops.sum(d) for d in deltas)
        return [d / total for d in deltas]

    # The weights are arguments of the compiled program (ModelState.compile), so
    # every seed of one configuration compiles the same program.
    compiled = state.compile(compute, jit_compile=jit_compile)
    return lambda mask_list: compiled(mask_list, batches)
