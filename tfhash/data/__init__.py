"""Retrieval data sets: sources, splits, TFRecords and tf.data pipelines."""

from tfhash.data.dataset import PROTOCOLS, RetrievalData, Split, one_hot, validation_split
from tfhash.data.pipeline import batch_dataset, train_dataset
from tfhash.data.protocols import pool_split, split_pool
from tfhash.data.sources import SOURCES, load_data, load_digits, load_npz
from tfhash.data.tfrecord import load_tfrecord_folder, write_tfrecord_folder

__all__ = [
    "PROTOCOLS",
    "batch_dataset",
    "split_pool",
    "RetrievalData",
    "SOURCES",
    "Split",
    "load_data",
    "load_digits",
    "load_npz",
    "load_tfrecord_folder",
    "one_hot",
    "pool_split",
    "train_dataset",
    "validation_split",
    "write_tfrecord_folder",
]
