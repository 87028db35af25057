"""`epsd-run`: runs one EPSD experiment from gin files.

Usage (after `pip install .`, from any directory; or `python tools/run.py`):
  epsd-run --gin_file=gin/quickstart.gin --workdir=runs/quickstart
  epsd-run --gin_file=cifar10_resnet20_epsd_dlb \
      --gin_bindings="prune_at_init.sparsity = 0.95" --workdir=runs/c10_95

A gin file is a path, or the name of a config shipped with the package
(`quickstart`, `quickstart.gin` and `gin/quickstart.gin` all name
`epsd_tf/gin/quickstart.gin`; `epsd-run --list_configs` lists them). Shipped
configs include each other as `include 'gin/base.gin'`, which resolves from
any directory. Re-running with the same workdir resumes the run; a finished run
is reported, not repeated (use --overwrite to start again).

Scale out (README "Scale out"): `--distribution=data_parallel` (every local
GPU), `--distribution=multi_worker` (one command per host, with TF_CONFIG or
KERAS_DISTRIBUTION_* set), `--tpu=<name|grpc://host:port|local>` (TensorFlow
TPUStrategy). Each flag is the gin binding `run.distribution` / `run.tpu`.
"""

import os
import sys

from absl import app, flags, logging

from epsd_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config file(s) or shipped config names, "
                          "applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'run.epochs = 3'.")
flags.DEFINE_string("workdir", None, "Directory for every output of the run.")
flags.DEFINE_bool("overwrite", False, "Delete the workdir's contents and start again.")
flags.DEFINE_enum("distribution", None, ["data_parallel", "multi_worker", "tpu"],
                  "How to spread training (gin: run.distribution); default: the config's "
                  "(one device).")
flags.DEFINE_string("tpu", None, "TPU address for TensorFlow's TPUClusterResolver (a name, "
                    "grpc://host:port, or 'local'); implies --distribution=tpu (gin: run.tpu).")
flags.DEFINE_bool("list_configs", False, "List the gin configs shipped with the package; "
                  "run nothing.")


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Imported here so that `--help` and `--list_configs` answer without TensorFlow work.
    from epsd_tf.train import config as config_lib
    if FLAGS.list_configs:
        sys.stdout.write("\n".join(config_lib.available_gin_files()) + "\n")
        return
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (the directory for the run's outputs)")
    config_text = config_lib.parse(FLAGS.gin_file, FLAGS.gin_bindings + _distribution_bindings())
    metrics = config_lib.run_from_config(FLAGS.workdir, config_text, overwrite=FLAGS.overwrite)
    if "worker" in metrics:  # a multi_worker run's other worker: the chief reports
        sys.stdout.write(f"worker {metrics['worker']} finished; the chief writes "
                         f"{FLAGS.workdir}\n")
        return
    logging.info("finished; metrics in %s", os.path.join(FLAGS.workdir, "metrics.json"))
    test = metrics.get("test", {})
    # The one line a user looks for at the end (absl logs go to stderr).
    sys.stdout.write(
        f"test accuracy {test.get('accuracy', float('nan')):.4f}, "
        f"test loss {test.get('loss', float('nan')):.4f}, "
        f"sparsity {metrics.get('parameters', {}).get('sparsity_trainable', 0.0):.4f}, "
        f"{metrics.get('seconds', {}).get('total', 0.0):.0f} s -> {FLAGS.workdir}\n")


def _distribution_bindings() -> list[str]:
    """Gin bindings for --distribution and --tpu (they override the gin files)."""
    name = FLAGS.distribution
    if FLAGS.tpu is not None:
        if name not in (None, "tpu"):
            raise app.UsageError(f"--tpu needs --distribution=tpu (or none), got {name!r}")
        name = "tpu"
    bindings = [f"run.distribution = {name!r}"] if name else []
    if FLAGS.tpu is not None:
        bindings.append(f"run.tpu = {FLAGS.tpu!r}")
    return bindings


def main():
    """Console-script entry point of `epsd-run`."""
    cli.run_app(_main, __name__)


if __name__ == "__main__":
    main()
