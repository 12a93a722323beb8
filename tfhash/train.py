"""Training: data -> model -> fit -> evaluate -> export -> metrics.json."""

import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash import lifecycle
from tfhash.callbacks import RetrievalEvaluation
from tfhash.configs.common import check_train_config, for_input_kind
from tfhash.data import batch_dataset, validation_split
from tfhash.data.augmentation import image_augmentation
from tfhash.diagnostics import BitDiagnostics, bit_statistics
from tfhash.diagnostics import summary as bit_summary
from tfhash.encoder import encode_features
from tfhash.evaluation import label_relevance, retrieval_metrics
from tfhash.export import export_encoder
from tfhash.files import write_json
from tfhash.models import HashingModel
from tfhash.optimizers import build_role_optimizers
from tfhash.precision import dtype_policy, mixed_precision_policy, mixed_precision_warning
from tfhash.registry import get_method


def build_model(config, input_dim, seed, image_shape=None, num_classes=None, method=None):
    """The registered model of `config["method"]`; deep models come compiled.

    Args:
        config: a method config.
        input_dim: the flat feature width.
        seed: the model seed.
        image_shape: one item as an image, (H, W) or (H, W, C), or None;
            deep models get it with its channel axis (`HashingModel.image_shape`).
        num_classes: the data's number of classes, passed to models with
            `needs_num_classes` (a classifier head).
        method: the registry entry of `config["method"]`, when the caller has resolved it.
    """
    method = method or get_method(config["method"])
    if method.is_baseline:
        return method.model(seed=seed, **config["model"])
    if image_shape is not None:
        image_shape = tuple(image_shape) + (1,) * (len(image_shape) == 2)
    options = dict(config["model"])
    if method.model.needs_num_classes:
        options["num_classes"] = num_classes
    model = method.model(input_dim=input_dim, seed=seed, image_shape=image_shape, **options)
    train_cfg = for_input_kind(config["train"], model.input_kind)
    model.compile(
        optimizers=build_role_optimizers(train_cfg, model.roles),
        jit_compile=train_cfg.get("jit_compile", False),
    )
    return model


def evaluate(model, data, eval_config):
    """Test metrics: encode queries and database, label (or Euclidean) ground truth.

    Returns `retrieval_metrics`' dict (with `pr_precision` / `pr_recall`
    arrays when `eval_config["pr_curve"]`) plus `encode_items_per_second`,
    the throughput of `model.encode` over queries and database together, the
    database codes' bit diagnostics (`dead_bits`, `bit_entropy_mean`,
    `bit_redundancy_min`, `bit_redundancy_mean`) and their per-bit arrays
    under `bits_per_bit` (see `tfhash.diagnostics.bit_statistics`). With
    `eval_config["euclidean"]` on labelled data, the same retrieval metrics
    under the Euclidean ground truth (the 50 nearest database items in input
    space, R-SGH's and GMAN's protocol) are added with a `euclidean_` prefix;
    the train-test protocol always adds them (without labels, the main
    metrics are already Euclidean and are repeated under the prefix).
    """
    start = time.perf_counter()
    query_codes = encode_features(model, data.query, progress=False)
    database_codes = encode_features(model, data.database, progress=False)
    rate = (len(data.query) + len(data.database)) / max(time.perf_counter() - start, 1e-9)
    if data.has_labels:
        relevance = label_relevance(data.query.labels, data.database.labels)
    else:
        relevance = data.euclidean_relevance(50)
    top_k = (None, eval_config["top_k"]) if len(data.database) > eval_config["top_k"] else (None,)
    options = {
        "top_k": top_k,
        "radius": eval_config["radius"],
        "precision_at": [n for n in eval_config.get("precision_at", (100,)) if n <= len(data.database)],
        "empty_queries": eval_config["empty_queries"],
        "ties": eval_config.get("ties", "expected"),
    }
    metrics = retrieval_metrics(
        query_codes, database_codes, relevance, pr_curve=eval_config.get("pr_curve", False), **options
    )
    if eval_config.get("euclidean") or data.protocol == "train-test":
        extra = metrics
        if data.has_labels:
            extra = retrieval_metrics(query_codes, database_codes, data.euclidean_relevance(50), **options)
        metrics.update({f"euclidean_{key}": value for key, value in extra.items() if np.isscalar(value)})
    bits = bit_statistics(database_codes)
    per_bit = {k: np.round(bits[k], 4).tolist() for k in ("ones_fraction", "entropy", "redundancy")}
    return {
        **metrics,
        **bit_summary(bits),
        "bits_per_bit": per_bit,
        "encode_items_per_second": round(rate, 1),
    }


class DurationEstimate(keras.callbacks.Callback):
    """Prints, once, how long the whole run should take, timed over steps `after`..`after + window`
    (the first steps trace the graph and would overstate it)."""

    def __init__(self, total_steps, after=5, window=20, printer=print):
        super().__init__()
        self.total_steps, self.after, self.window, self.printer = total_steps, after, window, printer
        self.seen, self.start, self.done = 0, None, total_steps <= after + window

    def on_train_batch_end(self, batch, logs=None):
        if self.done:
            return
        self.seen += 1
        if self.seen == self.after:
            self.start = time.perf_counter()
        elif self.seen == self.after + self.window:
            per_step = (time.perf_counter() - self.start) / self.window
            self.printer(
                f"\nabout {per_step * 1000:.0f} ms per step: {self.total_steps:,} steps take about "
                f"{per_step * self.total_steps / 60:.1f} min (evaluations not included)"
            )
            self.done = True


def fit(
    config,
    data,
    out,
    seed=0,
    mixed_precision=False,
    strategy=None,
    verbose="auto",
    budget_seconds=None,
    export=True,
    labelled_per_class=None,
    callbacks=(),
):
    """Trains `config["method"]` on `data`, evaluates, exports, writes metrics.json.

    Everything goes under `out`: `metrics.json` (written last: its presence
    means the run finished) and, for deep methods, `export/` (SavedModel),
    `checkpoints/` and `logs/` (TensorBoard); for baselines, `model.npz`
    (`tfhash.baselines.load`). A deep run checkpoints after every epoch and
    resumes exactly where a killed run stopped when called again with the
    same arguments; its checkpoints are removed once metrics.json is
    written (`tfhash.lifecycle`).

    Args:
        config: a method config (`tfhash.registry.get_method(name).get_config(bits, data)`).
        data: a `tfhash.data.RetrievalData`.
        out: output folder.
        seed: the model seed: weights, sampling and shuffling (the split and
            its seed are `data`'s; metrics.json records both).
        mixed_precision: mixed_float16 on GPU, mixed_bfloat16 on CPU (deep methods).
        strategy: a `tf.distribute.Strategy` (deep methods).
        verbose: Keras `fit` verbosity.
        budget_seconds: stop a deep method's training after this many seconds
            (at most `config["train"]["steps"]` steps either way).
        export: write the SavedModel / model.npz.
        labelled_per_class: size per class of the training subset drawn from
            the database (`RetrievalData.labelled`). Models that train on
            labels always train on it (default: the data's, 500 or 50 on
            digits); any other method trains on it when given (BGAN's
            protocol: 1,000), else on the whole training part.
        callbacks: more Keras callbacks for a deep method's `model.fit`, called after the
            validation evaluation of each epoch (their epoch-end logs hold its `val_*`
            figures) and before the epoch's checkpoint.

    Returns:
        (model, record) with record the dict written to metrics.json.

    Raises:
        TrainingDiverged: a loss term became NaN or infinite (nothing is
            exported, the last good checkpoint is kept).
        RunInterrupted: Ctrl-C during training (the checkpoints are kept).
    """
    method = get_method(config["method"])
    check_run_folder(out, config["method"])
    created = not os.path.exists(os.path.abspath(out))
    lifecycle.prepare_folder(out)
    try:
        return _fit(config, data, out, method, seed, mixed_precision, strategy, verbose, budget_seconds,
                    export, labelled_per_class, callbacks)  # fmt: skip
    except BaseException:
        if created:  # a run that failed before its first checkpoint leaves no folder
            remove_failed_run(out)
        raise


def remove_failed_run(out):
    """Removes the folder of a failed run that this call created, when it holds nothing but
    TensorBoard logs (a run that diverged or stopped before its first checkpoint): nothing in it
    can be resumed. A folder with a checkpoint or any other file stays."""
    out = os.path.abspath(out)
    for root, _, names in os.walk(out):
        relative = os.path.relpath(root, out).split(os.sep)[0]
        if names and relative != "logs":
            return False
    shutil.rmtree(out, ignore_errors=True)
    return True


def finished_method(out):
    """The method of the finished run in `out` (its metrics.json), or None."""
    try:
        with open(os.path.join(os.path.abspath(out), "metrics.json")) as f:
            return json.load(f).get("method")
    except (OSError, ValueError, AttributeError):
        return None


def check_run_folder(out, method):
    """Refuses an `out` holding a finished run of another method: its export or model.npz would
    stay beside the new run's files (and `tfhash encode RUN` could take the old model)."""
    previous = finished_method(out)
    if previous is not None and previous != method:
        raise ValueError(
            f"{out} holds a finished {previous} run (metrics.json); train {method} into a new --out, "
            f"or remove {out} first"
        )


def _fit(config, data, out, method, seed, mixed_precision, strategy, verbose, budget_seconds, export,
         labelled_per_class, callbacks):  # fmt: skip
    """`fit` once its folder is prepared."""
    if mixed_precision and not method.is_baseline:  # before seeding: the probe's layers draw numbers
        warning = mixed_precision_warning(mixed_precision_policy())
        if warning:
            print(warning)
    keras.utils.set_random_seed(seed)
    if method.is_baseline:
        start = time.time()
        model = build_model(config, data.feature_dim, seed, method=method)
        train, train_split = training_split(model, data, labelled_per_class)
        model.fit(train.features)
        run = {
            "train_seconds": time.time() - start,
            "steps": None,
            "precision": "float64 (NumPy, closed form)",
        }
        metrics = evaluate(model, data, config["eval"])
        if export:
            model.save(os.path.join(out, "model.npz"))
    else:
        policy = mixed_precision_policy() if mixed_precision else None
        with dtype_policy(policy), (strategy or tf.distribute.get_strategy()).scope():
            model, run, train_split, checkpoints = _fit_deep(
                config,
                method,
                data,
                out,
                seed,
                verbose,
                budget_seconds,
                labelled_per_class,
                policy,
                callbacks,
            )
            run["mixed_precision"] = policy or "float32"
            try:
                lifecycle.fault_point("evaluate")
                metrics = evaluate(model, data, config["eval"])
                if export:
                    lifecycle.fault_point("export")
                    export_encoder(model, os.path.join(out, "export"), data.train.pixel_max, config["method"])
            except KeyboardInterrupt:
                raise lifecycle.RunInterrupted(
                    f"interrupted after training, while evaluating or exporting; the trained model is "
                    f"checkpointed in {checkpoints.folder}: re-run the same command to evaluate and export it"
                ) from None
    record = run_record(config, data, model, seed, run, train_split, metrics)
    lifecycle.fault_point("metrics")
    write_json(record, os.path.join(out, "metrics.json"))
    if not method.is_baseline:
        lifecycle.fault_point("cleanup")
        checkpoints.remove()
    return model, record


def run_record(config, data, model, seed, run, train_split, metrics):
    """The metrics.json record of a finished run: what ran, on which split, and every scalar metric."""
    metrics = dict(metrics)
    curves = {k: np.asarray(metrics.pop(k)).tolist() for k in ("pr_precision", "pr_recall") if k in metrics}
    record = {
        "method": config["method"],
        "data": data.name,
        "bits": model.bits,
        "seed": seed,
        "split_seed": data.split_seed,
        "protocol": data.protocol,
        "validation": data.validation,
        "queries_per_class": data.queries_per_class,
        "train_split": train_split,
        **run,
        "train_seconds": round(run["train_seconds"], 2),
        "num_queries": len(data.query),
        "num_database": len(data.database),
        "ground_truth": "labels" if data.has_labels else "euclidean_top_50",  # of the unprefixed metrics
        "image_shape": None if data.image_shape is None else list(data.image_shape),
        "empty_queries": config["eval"]["empty_queries"],
        "ties": config["eval"].get("ties", "expected"),
        "config": config,
        **{k: v for k, v in metrics.items() if np.isscalar(v)},
        "bits_per_bit": metrics["bits_per_bit"],
    }
    if curves:
        record["curves"] = curves
    return record


def require_inputs(model_class, options, data):
    """Fails before anything is built when an image model is given features, or a supervised one
    (`needs_labels`) data without labels."""
    if model_class.needs_labels:
        data.require_labels(f"{model_class.__name__} (a supervised method)")
    if model_class.takes_images(options):
        data.require_images(
            model_class.__name__,
            "Pass an image source (an npz of uint8 images, a CIFAR-10 folder, an image folder), or "
            "train on the features with --backbone mlp.",
        )


def training_split(model, data, labelled_per_class=None):
    """(split, description) a model trains on: a per-class subset of the database (`RetrievalData.
    labelled`) for models that need labels, and for any model given `labelled_per_class` (BGAN's
    protocol trains on 1,000 per class; the labels only choose the items), else the training part."""
    name = type(model).__name__
    if not getattr(model, "needs_labels", False) and labelled_per_class is None:
        return data.train, {"part": "train", "items": len(data.train)}
    if getattr(model, "needs_labels", False):
        data.require_labels(f"{name} (a supervised method)")
    else:
        data.require_labels(f"a per-class training subset (--labelled-per-class) for {name}")
    split = data.labelled(labelled_per_class)
    per_class = labelled_per_class or data.labelled_per_class
    return split, {"part": "labelled", "per_class": per_class, "items": len(split)}


def _fit_deep(
    config, method, data, out, seed, verbose, budget_seconds, labelled_per_class=None, policy=None, extra=()
):
    """model.fit with validation retrieval, per-epoch checkpoints (exact resume), TensorBoard and an
    optional time budget; returns (model, run, train_split, checkpoints)."""
    train_cfg = config["train"]
    check_train_config(config["method"], train_cfg)
    require_inputs(method.model, config["model"], data)
    model = build_model(config, data.feature_dim, seed, data.image_shape, data.num_classes, method)
    train, train_split = training_split(model, data, labelled_per_class)
    if type(model).adapt is not HashingModel.adapt:  # the float view of images only when asked for
        model.adapt(train.features)
    batch_size = for_input_kind(train_cfg, model.input_kind)["batch_size"]
    total_steps = train_cfg["steps"] + model.pretrain_steps  # pre-training steps are counted apart
    steps_per_epoch = max(1, min(total_steps, train_cfg["steps_per_epoch"]))
    epochs = math.ceil(total_steps / steps_per_epoch)
    identity = lifecycle.fingerprint(
        config, seed, policy, data.name, data.split_seed, data.protocol, train_split, len(data.train)
    )
    checkpoints = lifecycle.Checkpoints(out, identity)
    state = checkpoints.restore(model) or {"epoch": 0, "steps": 0, "train_seconds": 0.0, "resumes": -1}
    resumes = state.get("resumes", -1) + 1  # how many times this run has been resumed
    if state["epoch"] and verbose != 0:
        print(
            f"resuming from the checkpoint of epoch {state['epoch']} (step {state['steps']:,}) in "
            f"{checkpoints.folder}"
            + ("; training had finished, so evaluating and exporting" if state.get("finished") else "")
        )
    run_callback = lifecycle.RunCallback(
        checkpoints,
        epochs,
        state["train_seconds"],
        budget_seconds,
        resumes,
        saved_step=state["steps"] if state["epoch"] else None,
    )
    if not state.get("finished"):
        augment = image_augmentation(train_cfg.get("augment"), train_cfg.get("crop_padding", 4), seed)
        dataset = batch_dataset(
            train, model.batch_keys, batch_size, seed, augment=augment, start_batch=state["steps"]
        )
        callbacks = []
        if verbose != 0:
            callbacks.append(DurationEstimate(total_steps - state["steps"]))
        sample = train.subset(np.sort(np.random.default_rng(seed).permutation(len(train))[:2000]))
        callbacks.append(BitDiagnostics(sample, train_cfg["eval_every"], os.path.join(out, "logs", "bits")))
        if data.has_labels:
            val_query, val_database = validation_split(train, train_cfg["validation_size"], seed)
            ties = config["eval"].get("ties", "expected")
            callbacks.append(
                RetrievalEvaluation(val_query, val_database, every=train_cfg["eval_every"], ties=ties)
            )
        callbacks += [
            *extra,
            run_callback,
            keras.callbacks.TensorBoard(os.path.join(out, "logs"), update_freq="epoch"),
        ]
        try:
            model.fit(
                dataset,
                epochs=epochs,
                initial_epoch=state["epoch"],
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,
            )
        except KeyboardInterrupt:
            step = int(model.train_steps.numpy())
            raise lifecycle.RunInterrupted(
                lifecycle.interrupted_message(out, step, total_steps, run_callback.saved_step)
            ) from None
    model.finalize(train)
    run = {
        "train_seconds": run_callback.train_seconds(),
        "steps": int(model.train_steps.numpy()),
        "batch_size": batch_size,
        "resumes": resumes,
    }
    return model, run, train_split, checkpoints
