"""`epsd-export`: exports an already trained `model.keras` to edge artifacts.

Usage (after `pip install .`; or `python tools/export.py`):
  epsd-export --model=runs/quickstart/model.keras
  epsd-export --model=runs/x/model.keras --out=/tmp/x_export --formats=keras,int8

Writes what `epsd_tf.export.export_all` writes (the `.keras`, SavedModel and
TFLite files, each checked against the Keras model, `export_report.json`/`.txt`
naming the file to ship, and `MODEL_CARD.md`) into `--out` (default: `export/`
beside the model). The data (int8 calibration and parity images: the first
512 test images, as `epsd-run`'s export stage uses) come from the run's gin
config: `config.gin` beside the model unless `--gin_file` is given. The run's
`metrics.json`, when present, fills the model card's accuracy and method. A
model trained on another machine or backend exports here on TensorFlow.
"""

import os
import shlex
import sys

from absl import app, flags, logging

from epsd_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The trained model (.keras), e.g. runs/x/model.keras.")
flags.DEFINE_string("out", None, "Output directory (default: export/ beside the model).")
flags.DEFINE_multi_string("gin_file", [], "Gin config(s) that define the data "
                          "(default: config.gin beside the model).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. 'load.data_dir = ...'.")
flags.DEFINE_list("formats", None, "Formats to write (default: all of "
                  "epsd_tf.export.FORMATS).")
flags.DEFINE_integer("latency_runs", 50, "Timed LiteRT runs per latency setting (0: skip).")
flags.DEFINE_bool("overwrite", False, "Replace existing artifacts in --out.")
flags.mark_flag_as_required("model")

PARITY_EXAMPLES = 512


def _gin_files(model_path: str) -> list:
    if FLAGS.gin_file:
        return list(FLAGS.gin_file)
    config = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.gin")
    if not os.path.isfile(config):
        raise app.UsageError(f"{config} does not exist: pass --gin_file=<the gin config that "
                             "defines the run's data> (e.g. --gin_file=quickstart)")
    return [config]


def _about(model_path: str, info, config_text: str) -> dict:
    """The model card's facts: the run's metrics.json (if any), data, config, command."""
    import json

    from epsd_tf.train import experiment
    about = {"dataset": experiment.describe_data(info), "config": config_text,
             "command": shlex.join(["epsd-export", *sys.argv[1:]])}
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            metrics = json.load(f)
        about.update({key: metrics[key] for key in ("method", "epochs", "pruning", "test")
                      if key in metrics})
    return about


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not os.path.isfile(FLAGS.model):
        raise FileNotFoundError(f"--model={FLAGS.model!r} does not exist (a trained .keras file, "
                                "e.g. runs/quickstart/model.keras)")
    import gin
    import keras

    from epsd_tf import backends
    backends.require_tensorflow(
        "epsd-export", "Run it on a machine with TensorFlow (pip install -r requirements.txt; "
        "KERAS_BACKEND unset or 'tensorflow'): a model.keras trained on JAX exports there.")
    from epsd_tf import export
    from epsd_tf.train import config as config_lib
    formats = FLAGS.formats or export.FORMATS
    unknown = sorted(set(formats) - set(export.FORMATS))
    if unknown:
        raise app.UsageError(f"unknown --formats {unknown}; valid: {list(export.FORMATS)}")
    out = FLAGS.out or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model)), "export")
    config_text = config_lib.parse(_gin_files(FLAGS.model), FLAGS.gin_bindings)
    splits = gin.get_configurable("load")()
    model = keras.models.load_model(FLAGS.model, compile=False)
    images, labels = next(iter(splits.test.unbatch().batch(PARITY_EXAMPLES)))
    report = export.export_all(
        model, out, formats=formats, representative_data=splits.train,
        eval_batch=(images, labels), overwrite=FLAGS.overwrite,
        latency_runs=FLAGS.latency_runs, about=_about(FLAGS.model, splits.info, config_text))
    ship = report["ship"]
    logging.info("export written to %s", out)
    sys.stdout.write(f"ship {ship['artifact']}: {ship['path']} ({ship['bytes']} bytes); "
                     f"report and MODEL_CARD.md in {out}\n")


def main():
    """Console-script entry point of `epsd-export`."""
    cli.run_app(_main, __name__)


if __name__ == "__main__":
    main()
