"""Is an EPSD mask reproducible? Score ResNet-20 twice, in float64 and float32, and compare.

Scores EPSD-DLB (3 inner steps, inner lr 0.1, the study's settings) of a
seeded ResNet-20 on Fashion-MNIST at 90 % sparsity (global, min density 0.2 %):
twice in float64 (same process: determinism) and once in float32. Prints, per
pair, the largest score difference (relative to its layer's largest score),
the mask entries that differ, the kept-set overlap and the largest per-layer
density gap; saves `float64.npz` / `float32.npz` (scores, masks and the
network's initial weights) under `--out`, and with `--against=DIR` compares
with another run's files (initial weights included): another core count,
another XLA flag, GPU against CPU.

  KERAS_BACKEND=jax taskset -c 0   python tools/repro/mask_reproducibility.py --out=/tmp/c1
  KERAS_BACKEND=jax taskset -c 0,1 python tools/repro/mask_reproducibility.py --out=/tmp/c2 --against=/tmp/c1
  # GPU: twice in one process, then with deterministic XLA ops, then against a
  # CPU run's files (copied to the device; --dtypes=float64 halves the time)
  KERAS_BACKEND=jax python tools/repro/mask_reproducibility.py --out=$OUT/gpu
  XLA_FLAGS=--xla_gpu_deterministic_ops=true KERAS_BACKEND=jax \\
      python tools/repro/mask_reproducibility.py --out=$OUT/gpu_det --against=$OUT/gpu
  # here, from the GPU's initial weights: is the CPU's float64 mask the GPU's?
  KERAS_BACKEND=jax python tools/repro/mask_reproducibility.py --out=/tmp/cg \\
      --dtypes=float64 --weights_from=<gpu files> --against=<gpu files>

What it showed on the 2-core CPU (jax 0.10.2, Keras 3.15.1; batch 32 on 2 048
images): in float64 the two core counts give identical masks (scores 2e-12
apart); before Keras was kept in float64 on JAX (`autodiff_jax.precision`),
16 380 of 270 608 entries differed. In float32, 1 and 2 cores differ in 22 426
entries (kept-set overlap 0.59), and either is as far from the float64 mask
(overlap 0.48) as an input perturbation of a few float32 ulps would make it:
the meta-gradient is ill-conditioned, so only float64 masks are reproducible
(docs/METHOD.md, "Reproducibility of masks").

On one H200 (jax 0.11.2, session 7): float64 twice in one process, scores
1e-13 to 3e-13 apart, identical masks, in two calls. GPU against the CPU's
files: 17 062 entries differ (overlap 0.68), but the networks did not start
equal: 186 212 of 273 754 initial weights differ (by up to 7e-7 of their
tensor's largest; JAX's initialisers round differently on the two
platforms). Scored on the CPU from the GPU's initial weights
(`--weights_from`), the float64 scores are 2.4e-12 from the GPU's and the
mask is identical: a seed fixes the mask on one platform, not across them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from epsd_tf import data, models  # noqa: E402
from epsd_tf.pruning import masks as masks_lib  # noqa: E402
from epsd_tf.pruning import prune, scorers  # noqa: E402
from epsd_tf.pruning.model_state import take_batches  # noqa: E402

SETTINGS = {"method": "dlb", "inner_steps": 3, "inner_lr": 0.1}


def compare(name: str, a: dict, b: dict) -> None:
    """Prints how far two runs' scores and masks are apart."""
    names = sorted(k[len("score:"):] for k in a if k.startswith("score:"))
    worst = max(float(np.abs(a["score:" + n] - b["score:" + n]).max()
                      / np.abs(b["score:" + n]).max()) for n in names)
    ma, mb = ([x["mask:" + n] for n in names] for x in (a, b))
    differ = sum(int((p != q).sum()) for p, q in zip(ma, mb))
    total = sum(p.size for p in ma)
    overlap = sum(float((p * q).sum()) for p, q in zip(ma, mb)) / sum(float(q.sum()) for q in mb)
    density = max(abs(float(p.mean()) - float(q.mean())) for p, q in zip(ma, mb))
    print(f"{name:34s} scores {worst:8.1e} | masks differ in {differ:6d} of {total} entries, "
          f"kept overlap {overlap:.4f}, largest layer-density gap {100 * density:.2f} pt")
    inits = sorted(k for k in a if k.startswith("init:") and k in b)
    if inits:
        apart = sum(int((a[k] != b[k]).sum()) for k in inits)
        largest = max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30))
                      for k in inits)
        print(f"{'':34s} initial weights: {apart} of {sum(a[k].size for k in inits)} differ, "
              f"largest {largest:.1e} of their tensor's largest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for float64.npz, float32.npz")
    parser.add_argument("--against", help="another run's --out directory to compare with")
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtypes", default="float64,float32",
                        help="score dtypes to run (float64 runs twice); float64 alone is faster")
    parser.add_argument("--weights_from",
                        help="another run's --out directory: start from its initial weights "
                             "(separates the platform's initialisers from its scoring)")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    unknown = sorted(set(dtypes) - {"float64", "float32"})
    if unknown:
        raise ValueError(f"--dtypes {unknown} unknown; valid: float64, float32")
    if args.weights_from:
        source = os.path.join(args.weights_from, f"{dtypes[0]}.npz")
        if not os.path.exists(source):
            raise FileNotFoundError(f"--weights_from: no {source}")
    os.makedirs(args.out, exist_ok=True)

    keras.utils.set_random_seed(args.seed)
    splits = data.load("fashion_mnist", batch_size=args.batch_size,
                       max_train_examples=args.examples, seed=args.seed)
    model = models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
    if args.weights_from:
        given = np.load(source)
        missing = [w.path for w in model.weights if "init:" + w.path not in given]
        if missing:
            raise ValueError(f"--weights_from: {source} has no initial weights for {missing[:3]} "
                             "(written before the files kept them?)")
        for w in model.weights:
            w.assign(given["init:" + w.path])
    initial = {"init:" + w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    taken = take_batches(prune.scoring_view(splits, "dlb", args.seed),
                         scorers.batches_needed("epsd", SETTINGS), "epsd")
    runs = {}
    for dtype in dtypes:
        repeats = 2 if dtype == "float64" else 1
        score_fn = scorers.make_scorer(model, taken, "epsd", score_dtype=dtype, **SETTINGS)
        for repeat in range(repeats):
            start = time.perf_counter()
            scores = score_fn()
            masks = masks_lib.masks_from_scores(scores, 0.9, min_density=0.002)
            runs[(dtype, repeat)] = {**{"score:" + n: v for n, v in scores.items()},
                                     **{"mask:" + n: m for n, m in masks.items()}, **initial}
            print(f"{dtype} scoring {repeat}: {time.perf_counter() - start:.1f} s")
        np.savez(os.path.join(args.out, f"{dtype}.npz"), **runs[(dtype, 0)])

    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if "float64" in dtypes:
        compare("float64, twice in this process", runs[("float64", 1)], runs[("float64", 0)])
    if len(dtypes) == 2:
        compare("float32 vs float64", runs[("float32", 0)], runs[("float64", 0)])
    if args.against:
        for dtype in dtypes:
            other = dict(np.load(os.path.join(args.against, f"{dtype}.npz")))
            compare(f"{dtype} vs {args.against}", runs[(dtype, 0)], other)


if __name__ == "__main__":
    main()
