"""`run`: the one gin root that wires an EPSD experiment end to end.

data -> model -> (prune at init) -> fit (self-distillation) -> evaluate ->
(landscape) -> (export) -> (PQAT) -> metrics. Every stage's output lands in the
workdir (layout in `workdir.py`), each stage's result is recorded as soon as it
finishes, and re-running on the same workdir resumes at the first unfinished
stage: a failure after training never trains again. One run holds a workdir
at a time (`workdir.lock`).

The stages are passed in as callables so that gin (or a Python caller) decides
what runs: `run.load_data = @load`, `run.build_model = @build`,
`run.prune = @prune_at_init`, `run.method = @DLB()`, ... (see gin/base.gin).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from typing import Any, Callable

import gin
import keras
from absl import logging

from epsd_tf import (
    analysis,
    data,
    distill,
    files,
    pruning,  # noqa: F401  (registers the mask wrapper for load_model)
)
from epsd_tf.distill import methods as methods_lib
from epsd_tf.pruning import scorers as scorers_lib
from epsd_tf.pruning import summaries as pruning_summaries
from epsd_tf.train import callbacks as callbacks_lib
from epsd_tf.train import distribution as distribution_lib
from epsd_tf.train import workdir as workdir_lib

PARITY_EXAMPLES = 512


def _jit_compile(setting: bool | str) -> bool:
    """Resolves `run.jit_compile`: "auto" is on for JAX and off for TensorFlow."""
    if setting == "auto":
        return keras.backend.backend() == "jax"
    if not isinstance(setting, bool):
        raise ValueError(f"run.jit_compile must be True, False or 'auto', got {setting!r}")
    if not setting and keras.backend.backend() == "jax":
        logging.warning("run.jit_compile = False on JAX runs every train step op by op "
                        "(very slow); use 'auto' or True")
    return setting


@gin.configurable(denylist=["workdir", "config_text", "overwrite"])
def run(workdir: str, *,
        load_data: Callable[[], Any],
        build_model: Callable[..., keras.Model],
        make_optimizer: Callable[..., keras.optimizers.Optimizer],
        method: methods_lib.SelfDistillationMethod | str | None = None,
        prune: Callable | None = None,
        epochs: int = 1,
        steps_per_epoch: int | None = None,
        jit_compile: bool | str = "auto",
        backup_every_steps: int | None = None,
        export: Callable | None = None,
        pqat: Callable | None = None,
        landscape: Callable | None = None,
        mean_jsv_examples: int = 0,
        seed: int = 0,
        distribution: str | None = None,
        tpu: str | None = None,
        verbose: int | str = "auto",
        config_text: str = "",
        overwrite: bool = False) -> dict:
    """Runs one experiment and returns its metrics (also in `metrics.json`).

    Args:
        workdir: where every output goes; re-running resumes.
        load_data: `() -> epsd_tf.data.DataSplits`.
        build_model: `(input_shape=, num_classes=) -> keras.Model`.
        make_optimizer: `(steps_per_epoch=, epochs=) -> keras Optimizer`.
        method: the self-distillation method of step 2 (and of the EPSD score);
            None or "none" trains with plain cross-entropy.
        prune: `(model, splits, method=, seed=) -> (pruned model, report)`,
            e.g. `epsd_tf.pruning.prune_at_init`, given the run's `DataSplits`
            (it scores the seed-keyed view `pruning.scoring_view` of them);
            None trains the dense model.
        epochs: training epochs.
        steps_per_epoch: cap on steps per epoch (None: one pass over the data).
        jit_compile: compile the train step with XLA. "auto" (default): on JAX
            (where an uncompiled step runs op by op, orders of magnitude slower),
            on TensorFlow off, because on this project's reference CPU XLA
            trains ResNet-20 slower than oneDNN (set True on a TF GPU).
        backup_every_steps: also checkpoint every N steps, so a run killed
            mid-epoch resumes mid-epoch; None checkpoints once per epoch.
        export: `(model, directory, representative_data=, eval_batch=,
            overwrite=) -> report`, e.g. `epsd_tf.export.export_all`; None skips.
            Post-training stages (export, pqat, landscape) are checked before
            training: their directory must be writable, and a stage's own
            `preflight(directory)` attribute, if any, is called.
        pqat: `(model, directory, train_data, test_data, overwrite=) -> report`,
            e.g. `epsd_tf.export.run_pqat` (TF-MOT pruning-preserving QAT to
            int8, in its own process); None skips.
        landscape: `(model, test_data, directory) -> summary`, e.g.
            `epsd_tf.analysis.loss_landscape` (1-D/2-D loss landscape of the
            trained network, files in `<workdir>/landscape/`); None skips.
        mean_jsv_examples: if > 0, Mean-JSV (METHOD.md §5) of the network on
            this many test images, at initialisation (after pruning; BN in
            training mode, as the first training step sees it) and after
            training (inference mode, as deployed).
        seed: global seed (weights, data order, augmentation, scoring).
        distribution: None (one device), "data_parallel", "multi_worker" or
            "tpu" (`distribution.py`: the one place it is decided). The batch
            size of the config is the global batch. Pruning scores once per
            process, outside the distribution; the pruned network is then
            rebuilt inside it. Under "multi_worker" only the chief writes
            `workdir`; the other workers write into a temporary directory
            (deleted at the end) and resume from the chief's backup, so the
            workdir must be on a filesystem every host sees.
        tpu: the TPU of `distribution="tpu"` on TensorFlow (a name,
            `grpc://host:port` or "local"; None: `$TPU_NAME`, else "local").
        verbose: Keras progress output (1 = progress bar, 2 = one line/epoch,
            0 = none); "auto" is 1 on a terminal and 2 when stdout is a file
            or pipe, so logs get one line per epoch, not every bar update.
        config_text: the gin config of this run, stored in the workdir so a
            different experiment is never resumed into it.
        overwrite: delete the workdir's contents first.

    Returns:
        The metrics dict written to `metrics.json`.

    Raises:
        epsd_tf.files.LockHeldError: another live run holds the workdir.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if mean_jsv_examples < 0:
        raise ValueError(f"mean_jsv_examples must be >= 0, got {mean_jsv_examples!r}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch!r}")
    if backup_every_steps is not None and (not isinstance(backup_every_steps, int)
                                           or backup_every_steps < 1):
        raise ValueError(f"backup_every_steps must be an int >= 1 or None (epoch ends only), "
                         f"got {backup_every_steps!r}")
    method = methods_lib.get(method)
    verbose = callbacks_lib.progress_verbosity(verbose)
    for stage in (export, pqat, landscape):  # TensorFlow-only stages on another backend
        getattr(stage, "backend_check", lambda: None)()
    # Before any other work: strategies and jax.distributed must exist first.
    plan = distribution_lib.plan(distribution, tpu=tpu)
    if plan.name is not None:
        logging.info("distribution %s", plan.describe)
    # One run per workdir: a second run on it is refused here, before any work.
    # Workers other than the chief write into a scratch directory instead.
    with _output_directory(plan, workdir) as out:
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()

        # Everything that can fail on bad input happens before the workdir is written.
        splits = load_data()
        info = splits.info
        model = build_model(input_shape=info.image_shape, num_classes=info.num_classes)
        logging.info("data: %s; model: %s with %d parameters; method: %r",
                     info, model.name, model.count_params(), method)

        train_batches = data.for_method(splits, method, seed=seed)
        steps = steps_per_epoch or _steps_per_epoch(train_batches, info.num_train)
        if steps < 1:
            raise ValueError(f"the training set yields no full batch of {info} "
                             "(lower the batch size)")
        make_optimizer(steps_per_epoch=steps, epochs=epochs)  # checked now, built in scope
        plan.check_batches(_batch_size(train_batches), getattr(splits, "eval_batch_size", None),
                           (info.num_validation, info.num_test))
        plan.local_batches(train_batches)  # this process's share can be fed (or raises)

        # Where this process resumes from: the chief's workdir (a fresh start with
        # --overwrite: nothing of it, the chief is deleting it).
        resume_dir = out if overwrite else workdir
        if not plan.is_chief:
            if files.is_finished(resume_dir) or "trained" in workdir_lib.Stages(resume_dir):
                logging.info("worker %d: the chief's workdir %s is past training; nothing "
                             "to do", plan.worker, workdir)
                return {"worker": plan.worker}
        elif workdir_lib.prepare(workdir, config_text, overwrite=overwrite):
            metrics = files.read_json(os.path.join(workdir, files.METRICS))
            logging.info("workdir %s already holds a finished run; returning its metrics "
                         "(pass --overwrite to run again)", workdir)
            return metrics

        stages = workdir_lib.Stages(out)
        # What each post-training stage needs is checked before training starts.
        post_training = _post_training_stages(workdir, stages, splits, landscape=landscape,
                                              export=export, pqat=pqat,
                                              config_text=config_text) if plan.is_chief else {}
        model_path = os.path.join(out, files.MODEL)
        if "trained" in stages:
            logging.info("resuming after training: loading the trained network from %s",
                         model_path)
            model = keras.models.load_model(model_path)
        else:
            pruning_seconds, pruning_report, earlier_seconds = 0.0, None, 0.0
            if prune is not None:
                # The splits, not a pipeline: `prune_at_init` scores its own view
                # (`pruning.scoring_view`), whose batches depend on the seed only.
                model, pruning_report, pruning_seconds, scored_before = _pruned_model(
                    out, model, prune, splits, method, seed, stages, reuse_from=resume_dir)
                earlier_seconds += pruning_seconds if scored_before else 0.0

            jsv_images = _test_images(splits, mean_jsv_examples)
            if mean_jsv_examples and plan.is_chief:
                # Recorded before training, so a resumed run never measures it again.
                stages.run("mean_jsv_init", lambda: _mean_jsv(model, jsv_images, training=True))

            with plan.scope():
                # The network, optimizer and trainer live in the distribution.
                student = _in_scope(model, plan)
                trainer = distill.SelfDistillationModel(
                    student, method, batch_size=_batch_size(train_batches),
                    num_examples=info.num_train, epochs=epochs)
                trainer.compile(optimizer=make_optimizer(steps_per_epoch=steps, epochs=epochs),
                                jit_compile=_jit_compile(jit_compile))
                backup = os.path.join(resume_dir, files.BACKUP)
                # Earlier attempts' training time (up to their last backup) counts too.
                trained_before = callbacks_lib.Backup.training_seconds(backup)
                earlier_seconds += trained_before
                fit_start = time.perf_counter() - trained_before
                _fit(trainer, out, splits, method, seed, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, backup_every_steps=backup_every_steps,
                     verbose=verbose, plan=plan, restore_from=backup)
                training_seconds = time.perf_counter() - fit_start
                test_metrics = trainer.evaluate(plan.local_batches(splits.test),
                                                return_dict=True, verbose=0)
            test_metrics = {k: float(v) for k, v in test_metrics.items()}
            if not plan.is_chief:
                logging.info("worker %d finished training; test metrics %s (the chief "
                             "writes %s)", plan.worker, test_metrics, workdir)
                return {"test": test_metrics, "worker": plan.worker}
            if student is not model:  # later stages run outside the distribution
                model.set_weights(student.get_weights())
            # The trained model first, then its record: the record marks training done,
            # and only then may the backup (the way back into training) go.
            files.save_model(model, model_path)
            mean_jsv = {}
            if mean_jsv_examples:
                mean_jsv = {"init": stages.get("mean_jsv_init"),
                            "trained": _mean_jsv(model, jsv_images, training=False)}
            stages.record("trained", {
                "test": test_metrics,
                "parameters": _parameter_counts(model),
                "method": method.name,
                "epochs": epochs,
                "pruning": _pruning_summary(pruning_report),
                "mean_jsv": mean_jsv or None,
                "cost": _cost(pruning_report, method, epochs, steps),
                **_distribution_summary(plan),
                # total: this attempt's wall time, plus the scoring and training
                # of the earlier attempts it resumed from (not their other work).
                "seconds": {
                    "pruning": pruning_seconds,
                    "training": training_seconds,
                    "total": time.perf_counter() - start + earlier_seconds,
                },
            })
            files.remove(os.path.join(workdir, files.BACKUP))

        post_start = time.perf_counter()
        metrics = dict(stages.get("trained"))
        for name, stage in post_training.items():
            metrics[name] = stages.run(name, functools.partial(stage, model))
        metrics["seconds"] = dict(metrics["seconds"], total=metrics["seconds"]["total"] +
                                  time.perf_counter() - post_start)
        files.write_json(os.path.join(workdir, files.METRICS), metrics)
        logging.info("test metrics: %s", metrics["test"])
        return metrics


@contextlib.contextmanager
def _output_directory(plan: distribution_lib.Plan, workdir: str):
    """The directory this process writes: the locked workdir (the chief), or scratch.

    A worker other than the chief writes what the chief writes (Keras callbacks
    and saves run on every worker) into a temporary directory that is deleted
    at the end, as TensorFlow's multi-worker `BackupAndRestore` does with its
    `workertemp_<i>` directories: nothing a reader could mistake for results.
    """
    if plan.is_chief:
        with workdir_lib.lock(workdir):
            yield workdir
        return
    scratch = tempfile.mkdtemp(prefix=f"epsd-worker{plan.worker}-")
    logging.info("worker %d of %d: the chief writes %s; this worker writes into %s "
                 "(deleted at the end)", plan.worker, plan.workers, workdir, scratch)
    try:
        yield scratch
    finally:
        files.remove(scratch)


def _in_scope(model: keras.Model, plan: distribution_lib.Plan) -> keras.Model:
    """A copy of `model` (same weights and masks) built in the current distribution scope.

    The network (pruned or not) is built and scored outside the distribution
    (the same mask whatever the distribution); its copy's variables are
    mirrored (tf.distribute) or laid out on the device mesh
    (keras.distribution). With `plan.sync_batchnorm` (tf.distribute) the
    copy's BatchNormalization layers use the statistics of the global batch,
    as the single-device step and the JAX program do. Only `model` itself is
    saved (`run` copies the trained weights back), so saved files carry no
    TensorFlow-only setting.
    """
    if plan.name is None:
        return model

    def clone(layer):
        config = layer.get_config()
        if plan.sync_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _distribution_summary(plan: distribution_lib.Plan) -> dict:
    """`{"distribution": ...}` for the metrics of a distributed run, else nothing."""
    if plan.name is None:
        return {}
    return {"distribution": {"name": plan.name, "replicas": plan.replicas,
                             "workers": plan.workers}}


def _fit(trainer, workdir, splits, method, seed, *, epochs, steps_per_epoch,
         backup_every_steps, verbose, plan=distribution_lib.ONE_DEVICE,
         restore_from=None) -> None:
    """Trains from the last backup's position on exactly the batches not yet seen.

    The pipeline is keyed by epoch (`data.EpochClock`): epoch e draws the same
    order and augmentation whether or not the run was interrupted before it. A
    backup taken mid-epoch (`backup_every_steps`) resumes with one `fit` over
    the rest of that epoch's batches (`skip`), then the later epochs. With op
    determinism on, a killed and resumed run ends with the weights of an
    uninterrupted one (tests/train/test_determinism.py). A `steps_per_epoch`
    cap makes Keras continue one iterator across epochs: there the pipeline
    reshuffles per iteration and a resumed run sees other batches.

    `restore_from` is the backup to resume from (default: this workdir's); a
    multi-worker run's other workers write into their scratch `workdir` but
    resume from the chief's backup, so that all start at the same step.
    `plan.local_batches` gives this process's share of the global batches.
    """
    restore_from = restore_from or os.path.join(workdir, files.BACKUP)
    epoch, done = callbacks_lib.Backup.position(restore_from)
    clock = data.EpochClock() if steps_per_epoch is None else None
    batches = data.for_method(splits, method, seed=seed, epoch=clock)
    images_per_step = _batch_size(batches) * analysis.passes_per_step(method)

    resume = [restore_from]  # only the first fit resumes from there; later ones from own

    def fit(dataset, first, last, steps, first_done=0):
        callbacks = callbacks_lib.standard_callbacks(
            workdir, images_per_step, backup_every_steps, start=(first, first_done),
            restore_from=resume.pop() if resume else None)
        trainer.fit(plan.local_batches(dataset),
                    validation_data=plan.local_batches(splits.validation), initial_epoch=first,
                    epochs=last, steps_per_epoch=steps, verbose=verbose,
                    callbacks=callbacks + ([clock] if clock else []))

    if done and epoch < epochs:  # the rest of the interrupted epoch
        fit(batches.skip(done), epoch, epoch + 1,
            steps_per_epoch - done if steps_per_epoch else None, first_done=done)
        epoch += 1
    if epoch < epochs:
        fit(batches, epoch, epochs, steps_per_epoch)
    elif resume:
        # Killed after the last epoch's backup but before training was recorded (in the
        # evaluation or Mean-JSV): a fit of no epochs builds the trainer and restores that
        # backup (Backup.on_train_begin) without training, so what is evaluated and saved
        # next is the trained network, not the pruned initial one.
        fit(batches, epochs, epochs, steps_per_epoch)


def _post_training_stages(workdir, stages, splits, *, landscape, export, pqat,
                          config_text="") -> dict:
    """The post-training stages of this run, `{name: (model) -> result}`, checked now.

    Before training starts, the directory of each stage still to run must be
    writable, and a stage callable may define `preflight(directory)` to check
    its own needs (`run_pqat` checks that TF-MOT is importable): a run must not
    train for hours and then fail on something knowable at the start.
    """
    chosen = {
        files.LANDSCAPE: (landscape, lambda model, directory: landscape(
            model, splits.test, directory)),
        files.EXPORT: (export, lambda model, directory: _export(
            directory, model, export, splits, about=_about(
                stages.get("trained"), splits.info, config_text))),
        # A resumed run replaces a crashed attempt's partial files.
        files.PQAT: (pqat, lambda model, directory: pqat(
            model, directory, splits.train, splits.test, overwrite=True)),
    }
    result = {}
    for name, (given, stage) in chosen.items():
        if given is None:
            continue
        directory = os.path.join(workdir, name)
        if name not in stages:
            files.ensure_writable_directory(directory)
            preflight = getattr(given, "preflight", None)
            if preflight is not None:
                preflight(directory)
        result[name] = functools.partial(stage, directory=directory)
    return result


def _batch_size(batches) -> int:
    return int(data.batch_info.batch_size(batches))


def _steps_per_epoch(batches, num_train: int) -> int:
    steps = data.batch_info.num_batches(batches)
    # Streamed (TFDS) pipelines may not know their length; the schedule only
    # needs it to convert epochs to steps.
    return steps if steps is not None else num_train // _batch_size(batches)


def _pruned_model(workdir, model, prune, batches, method, seed, stages, reuse_from=None):
    """Runs the pruning stage once; on resume, reloads its saved result.

    Returns the pruned network, its report, the scoring seconds (recorded in
    `stages` when scored, so that a resumed run reports the time of the
    attempt that scored; 0.0 when no attempt recorded it) and whether an
    earlier attempt (or the chief) scored it rather than this call. `reuse_from` (a
    multi-worker run's other workers: the chief's workdir) is looked in
    first; scoring is deterministic, so a worker that scores itself gets the
    chief's mask.
    """
    for directory in dict.fromkeys([reuse_from or workdir, workdir]):
        path = os.path.join(directory, files.PRUNED_INIT)
        report_path = os.path.join(directory, files.PRUNING_REPORT)
        if os.path.exists(path) and os.path.exists(report_path):
            logging.info("resuming: loading the pruned initial network from %s", path)
            seconds = (stages.get("pruning") or {}).get("seconds", 0.0)
            return keras.models.load_model(path), files.read_json(report_path), seconds, True
    path = os.path.join(workdir, files.PRUNED_INIT)
    report_path = os.path.join(workdir, files.PRUNING_REPORT)
    start = time.perf_counter()
    pruned, report = prune(model, batches, method=method, seed=seed)
    seconds = time.perf_counter() - start
    # The report first: the network's presence marks the stage as done.
    files.write_json(report_path, report)
    files.save_model(pruned, path)
    pruning_summaries.write_summaries(os.path.join(workdir, files.TENSORBOARD, "pruning"),
                                      report)
    stages.record("pruning", {"seconds": seconds})
    return pruned, report, seconds, False


def _test_images(splits, count: int):
    if count <= 0:
        return None
    return data.batch_info.first_examples(splits.test, count)[0]


def _mean_jsv(model, images, training: bool) -> dict:
    result = analysis.mean_jsv(model, images, training=training)
    return {"mean": float(result["mean"]), "std": float(result["std"]),
            "training_mode": training, "examples": int(images.shape[0])}


def _cost(report, method, epochs: int, steps: int) -> dict:
    """Passes spent on scoring vs training, against Prune-then-Distill (METHOD.md §5)."""
    settings = (report or {}).get("settings", {})
    scorer = scorers_lib.SCORERS.get(settings.get("scorer"))
    meta = scorer is not None and scorer.meta_gradient
    return analysis.training_cost(
        epochs=epochs, steps_per_epoch=steps, method=method,
        # Non-meta-gradient scorers cost about one pass per round (SNIP-like).
        inner_steps=int(settings.get("inner_steps", 0)) if meta else 0,
        rounds=int(settings.get("rounds", 1)) if report else 1,
        first_order=bool(settings.get("first_order", False)) if meta else True)


def _pruning_summary(report) -> dict | None:
    if report is None:
        return None
    summary = {"scorer": report["settings"]["scorer"],
               "target_sparsity": report["target_sparsity"], **report["totals"]}
    if report.get("score_stability"):
        summary["score_stability"] = report["score_stability"]
    return summary


def _parameter_counts(model) -> dict:
    zeros, total = files.count_zeros(model.trainable_weights)
    return {"trainable": total, "nonzero_trainable": total - zeros,
            "sparsity_trainable": zeros / max(total, 1)}


def describe_data(info) -> str:
    """One line about a dataset (`DatasetInfo`), for the model card."""
    return (f"{info.name}: {info.num_train} training, {info.num_validation} validation and "
            f"{info.num_test} test images of shape {tuple(info.image_shape)}, "
            f"{info.num_classes} classes")


def _about(trained: dict, info, config_text: str) -> dict:
    """The facts of this run that the export's MODEL_CARD.md records."""
    return {"dataset": describe_data(info), "config": config_text,
            **{key: trained[key] for key in ("method", "epochs", "pruning", "test")}}


def _export(directory, model, export, splits, about=None):
    """Runs the export stage on the trained model (it strips the masks itself).

    Calibration data for int8 comes from the training pipeline; parity is
    checked on the first `PARITY_EXAMPLES` test images (one disagreement in a
    small batch would already break the 97 % int8 bar). A run resumed after a
    crash during export replaces the partial artifacts (`overwrite=True` inside
    the run's own workdir). `about` (the run's data, method, pruning, test
    metrics and config) goes into the export's MODEL_CARD.md.
    """
    images, labels = data.batch_info.first_examples(splits.test, PARITY_EXAMPLES)
    return export(model, directory, representative_data=splits.train,
                  eval_batch=(images, labels), overwrite=True, about=about)
