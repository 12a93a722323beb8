"""Retrieval data sets: sources, splits, TFRecords and tf.data pipelines.

The names below are imported on first use (PEP 562), so that reading a
split's metadata or parsing a command line never imports TensorFlow.
"""

import importlib

_WHERE = {
    "PROTOCOLS": "dataset",
    "RetrievalData": "dataset",
    "Split": "dataset",
    "one_hot": "dataset",
    "validation_split": "dataset",
    "batch_dataset": "pipeline",
    "train_dataset": "pipeline",
    "pool_split": "protocols",
    "split_pool": "protocols",
    "SOURCES": "sources",
    "load_data": "sources",
    "load_digits": "sources",
    "load_npz": "sources",
    "load_tfrecord_folder": "tfrecord",
    "write_tfrecord_folder": "tfrecord",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'tfhash.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tfhash.data.{_WHERE[name]}"), name)
