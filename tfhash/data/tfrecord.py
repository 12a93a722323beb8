"""The TBH authors' TFRecord layout: `id` int64, `feat` float list, `label` float list.

A folder holds `train.tfrecords` (training set, also the database unless
`database.tfrecords` is present) and `test.tfrecords` (the queries).
"""

import os

import numpy as np
import tensorflow as tf

from tfhash.data.dataset import RetrievalData, Split
from tfhash.files import atomic_path

PART_FILES = {"train": "train.tfrecords", "query": "test.tfrecords", "database": "database.tfrecords"}
_SPEC = {
    "id": tf.io.FixedLenFeature([], tf.int64),
    "feat": tf.io.VarLenFeature(tf.float32),
    "label": tf.io.VarLenFeature(tf.float32),
}


def read_split(path):
    """Reads one TFRecord file into a `Split`. Raises ValueError if it is corrupt."""
    ids, feats, labels = [], [], []
    dataset = tf.data.TFRecordDataset(path).batch(4096).map(lambda r: tf.io.parse_example(r, _SPEC))
    try:
        for batch in dataset:
            ids.append(batch["id"].numpy())
            feats.append(tf.sparse.to_dense(batch["feat"]).numpy())
            labels.append(tf.sparse.to_dense(batch["label"]).numpy())
            _check_ragged(path, batch)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(
            f"{path} is not a readable TFRecord file in the TBH layout (id int64, feat float "
            f"list, label float list): {err.message.splitlines()[0]}. Re-create it with "
            "`tfhash convert`."
        ) from None
    if not ids:
        raise ValueError(f"{path} holds no records")
    labels = np.concatenate(labels).astype(np.float32)
    return Split(
        np.concatenate(feats).astype(np.float32),
        labels if labels.shape[1] else None,
        np.concatenate(ids).astype(np.int64),
    )


def _check_ragged(path, batch):
    for key in ("feat", "label"):
        lengths = tf.math.bincount(
            tf.cast(batch[key].indices[:, 0], tf.int32), minlength=tf.shape(batch["id"])[0]
        )
        if tf.reduce_min(lengths) != tf.reduce_max(lengths):
            raise ValueError(
                f"{path}: records have `{key}` lists of different lengths; every item needs the same width"
            )


def is_tfrecord_folder(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, PART_FILES["train"]))


def load_tfrecord_folder(path, image_shape=None):
    """Reads a folder in the TBH layout into a `RetrievalData`."""
    missing = [
        f for p, f in PART_FILES.items() if p != "database" and not os.path.exists(os.path.join(path, f))
    ]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; a TFRecord folder needs train.tfrecords and test.tfrecords"
        )
    train = read_split(os.path.join(path, PART_FILES["train"]))
    query = read_split(os.path.join(path, PART_FILES["query"]))
    db_path = os.path.join(path, PART_FILES["database"])
    database = read_split(db_path) if os.path.exists(db_path) else train
    return RetrievalData(str(path), train, query, database, image_shape)


def _example(item_id, feat, label):
    feature = {
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(item_id)])),
        "feat": tf.train.Feature(float_list=tf.train.FloatList(value=feat)),
        "label": tf.train.Feature(float_list=tf.train.FloatList(value=label)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(split, path):
    """Writes a `Split` to one TFRecord file, atomically (temp file + rename)."""
    empty = np.zeros(0, np.float32)
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for i in range(len(split)):
            label = empty if split.labels is None else split.labels[i]
            writer.write(_example(split.ids[i], split.features[i], label))


def write_tfrecord_folder(data, path):
    """Writes a `RetrievalData` in the TBH TFRecord layout (see module docstring)."""
    os.makedirs(path, exist_ok=True)
    write_split(data.train, os.path.join(path, PART_FILES["train"]))
    write_split(data.query, os.path.join(path, PART_FILES["query"]))
    if data.database is not data.train:
        write_split(data.database, os.path.join(path, PART_FILES["database"]))
    return path
