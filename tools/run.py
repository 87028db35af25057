"""Runs one EPSD experiment from gin files.

Usage:
  python tools/run.py --gin_file=gin/quickstart.gin --workdir=runs/quickstart
  python tools/run.py --gin_file=gin/cifar10_resnet20_epsd_dlb.gin \
      --gin_bindings="prune_at_init.sparsity = 0.95" --workdir=runs/c10_95

Gin files include each other as `include 'gin/base.gin'` (the repository root
is on gin's search path, so this works from any directory). Re-running with the same workdir resumes the run; a
finished run is reported, not repeated (use --overwrite to start again).
"""

import os
import sys

# Make `import epsd_tf` work from a source checkout without installation.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from epsd_tf.train import config as config_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'run.epochs = 3'.")
flags.DEFINE_string("workdir", None, "Directory for every output of the run.")
flags.DEFINE_bool("overwrite", False, "Delete the workdir's contents and start again.")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config_text = config_lib.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    metrics = config_lib.run_from_config(FLAGS.workdir, config_text, overwrite=FLAGS.overwrite)
    logging.info("finished; metrics in %s", os.path.join(FLAGS.workdir, "metrics.json"))
    test = metrics.get("test", {})
    # The one line a user looks for at the end (absl logs go to stderr).
    sys.stdout.write(
        f"test accuracy {test.get('accuracy', float('nan')):.4f}, "
        f"test loss {test.get('loss', float('nan')):.4f}, "
        f"sparsity {metrics.get('parameters', {}).get('sparsity_trainable', 0.0):.4f}, "
        f"{metrics.get('seconds', {}).get('total', 0.0):.0f} s -> {FLAGS.workdir}\n")


if __name__ == "__main__":
    app.run(main)
