"""Benchmarks: ratios measured side by side in one run, written as JSON.

Usage:
  python tools/bench.py                       # every suite
  python tools/bench.py --suite=pipeline --suite=pruning
  python tools/bench.py --quick               # fewer steps, for a fast look

Suites (each a `run(quick) -> dict` in tools/benchmarks/):
  pipeline  input-pipeline images/s against ResNet-20 training images/s on
            Fashion-MNIST (target: pipeline >= 3x training)
  pruning   masked/unmasked train-step time (target <= 1.10); EPSD scoring
            time / one train step (full second order <= 15, first order <= 8);
            peak memory of scoring against a train step
  distill   images/s of each SD method against stock model.fit doing the same
            forward/backward work (target overhead <= 1.15)
  export    dense vs sparse TFLite size and latency (ResNet-20, MobileNetV2)
  input     DLB batches/s of the TF-free numpy input path against tf.data
  gpu       Keras-JAX on a GPU (not in the default list; `--smoke`: tiny sizes on
            CPU): SD step / stock fit, EPSD scoring / train step, TF-free input
            path / data on the device, DLB with a run's callbacks / without,
            epsd_tf DLB / PyTorch eager DLB, peak
            memory of ResNet-18 scoring (tools/benchmarks/gpu.py); `--only=sd_vs_fit,
            scoring` and `--methods=dlb` run a subset (device time)

Timings on a shared or busy machine are noisy; the ratios are measured
back to back in one process so that load affects both sides alike.
"""

import importlib
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import (
    app,  # noqa: E402
    flags,  # noqa: E402
    logging,  # noqa: E402
)

from epsd_tf import files  # noqa: E402

SUITES = ("pipeline", "pruning", "distill", "export", "input", "gpu")
DEFAULT_SUITES = ("pipeline", "pruning", "distill", "export", "input")  # gpu: by name, on a GPU

FLAGS = flags.FLAGS
flags.DEFINE_multi_enum("suite", list(DEFAULT_SUITES), SUITES, "Suites to run.")
flags.DEFINE_bool("smoke", False, "gpu suite only: tiny sizes, to check it runs on CPU.")
flags.DEFINE_list("only", None, "gpu suite only: the parts to run (memory, sd_vs_fit, "
                  "scoring, input_path, callbacks, torch_dlb; default all), to save device time.")
flags.DEFINE_integer("input_workers", None, "gpu suite only: worker threads of the "
                     "input_path part (default: the library's, CPU count up to 8).")
flags.DEFINE_list("methods", None, "gpu suite only: the SD methods of sd_vs_fit "
                  "(none, dlb, cskd, pskd; default all).")
flags.DEFINE_bool("quick", False, "Fewer steps: a fast, noisier look.")
flags.DEFINE_string("output", "runs/bench.json", "Where to write the JSON results.")


def main(argv):
    del argv
    import keras  # pylint: disable=g-import-not-at-top

    from epsd_tf import backends
    versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    for name in ("tensorflow", "jax"):  # whichever is installed (JAX machines lack TF)
        if backends.installed(name):
            versions[name] = importlib.import_module(name).__version__
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), **versions},
        "quick": FLAGS.quick,
    }
    for suite in FLAGS.suite:
        logging.info("running benchmark suite %r", suite)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{suite}")
        extra = {}
        if suite == "gpu":
            extra = {"smoke": FLAGS.smoke}
            if FLAGS.only:
                extra["parts"] = tuple(FLAGS.only)
            if FLAGS.methods:
                extra["methods"] = tuple(FLAGS.methods)
            if FLAGS.input_workers:
                extra["input_workers"] = FLAGS.input_workers
        results[suite] = module.run(quick=FLAGS.quick, **extra)
        results[suite]["suite_seconds"] = time.perf_counter() - start
        sys.stdout.write(f"{suite}: {json.dumps(results[suite], indent=2)}\n")
        sys.stdout.flush()
    files.write_json(FLAGS.output, results, sort_keys=False)
    logging.info("wrote %s", FLAGS.output)


if __name__ == "__main__":
    app.run(main)
