"""Training: data -> model -> fit -> evaluate -> export -> metrics.json."""

import contextlib
import json
import math
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash.callbacks import RetrievalEvaluation
from tfhash.data import train_dataset, validation_split
from tfhash.evaluation import euclidean_relevance, label_relevance, retrieval_metrics
from tfhash.export import export_encoder
from tfhash.models import TBH

MODELS = {"tbh": TBH}


def mixed_precision_policy():
    """mixed_float16 on a GPU, mixed_bfloat16 on a CPU."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def build_model(config, input_dim, seed):
    method = config["method"]
    if method not in MODELS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(sorted(MODELS))}")
    model = MODELS[method](input_dim=input_dim, seed=seed, **config["model"])
    model.compile(
        learning_rate=config["train"]["learning_rate"], jit_compile=config["train"].get("jit_compile", False)
    )
    return model


def evaluate(model, data, eval_config):
    """Test metrics: encode queries and database, label (or Euclidean) ground truth."""
    query_codes, database_codes = model.encode(data.query.features), model.encode(data.database.features)
    if data.has_labels:
        relevance = label_relevance(data.query.labels, data.database.labels)
    else:
        relevance = euclidean_relevance(data.query.features, data.database.features, k=50)
    top_k = (None, eval_config["top_k"]) if len(data.database) > eval_config["top_k"] else (None,)
    return retrieval_metrics(
        query_codes,
        database_codes,
        relevance,
        top_k=top_k,
        radius=eval_config["radius"],
        precision_at=(100,),
        empty_queries=eval_config["empty_queries"],
    )


def write_json(obj, path):
    """Writes JSON atomically (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def fit(config, data, out, seed=0, mixed_precision=False, strategy=None, verbose="auto"):
    """Trains `config["method"]` on `data`, evaluates, exports, writes metrics.json.

    Everything goes under `out`: `export/` (SavedModel), `metrics.json`,
    `checkpoints/` (resumes an interrupted run; removed when training
    finishes) and `logs/` (TensorBoard).

    Returns:
        (model, metrics) with metrics the dict written to metrics.json.
    """
    train_cfg = config["train"]
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    policy = mixed_precision_policy() if mixed_precision else None
    with dtype_policy(policy), strategy.scope():
        model = build_model(config, data.feature_dim, seed)
        batch_size = train_cfg["batch_size"]
        dataset = train_dataset(data.train.features, batch_size, seed, train_cfg["shuffle_buffer"])
        steps_per_epoch = max(1, min(train_cfg["steps"], train_cfg["steps_per_epoch"]))
        epochs = math.ceil(train_cfg["steps"] / steps_per_epoch)
        callbacks = []
        if data.has_labels:
            val_query, val_database = validation_split(data.train, train_cfg["validation_size"], seed)
            callbacks.append(RetrievalEvaluation(val_query, val_database, every=train_cfg["eval_every"]))
        callbacks += [
            keras.callbacks.BackupAndRestore(os.path.join(out, "checkpoints")),
            keras.callbacks.TensorBoard(os.path.join(out, "logs"), update_freq="epoch"),
        ]
        start = time.time()
        model.fit(
            dataset,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
        train_seconds = time.time() - start
        metrics = evaluate(model, data, config["eval"])
        export_encoder(model, os.path.join(out, "export"))
    record = {
        "method": config["method"],
        "data": data.name,
        "bits": model.bits,
        "seed": seed,
        "steps": int(epochs * steps_per_epoch),
        "batch_size": batch_size,
        "mixed_precision": policy or "float32",
        "train_seconds": round(train_seconds, 2),
        "num_queries": len(data.query),
        "num_database": len(data.database),
        "ground_truth": "labels" if data.has_labels else "euclidean_top_50",
        "empty_queries": config["eval"]["empty_queries"],
        "config": config,
        **{k: v for k, v in metrics.items() if np.isscalar(v)},
    }
    write_json(record, os.path.join(out, "metrics.json"))
    return model, record
