"""Data sources: digits, Keras-layout npz, MATLAB mat, TBH TFRecords, CIFAR-10, keras.datasets."""

import os
import pickle

import numpy as np

from tfhash.data.dataset import RetrievalData, Split, one_hot, pool_split
from tfhash.data.tfrecord import is_tfrecord_folder, load_tfrecord_folder

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
SOURCES = (
    "digits",
    *KERAS_DATASETS,
    "<file>.npz",
    "<file>.mat",
    "<TFRecord folder>",
    "<cifar-10-batches-py folder>",
)


def _scaled(images):
    """Flattens images to float32 rows; 8-bit data is scaled to [0, 1]."""
    images = np.asarray(images)
    rows = images.reshape(len(images), -1).astype(np.float32)
    return rows / 255.0 if images.dtype == np.uint8 else rows


def load_digits(queries_per_class=30, seed=0):
    """scikit-learn's 8x8 digits, split as protocols.md says (features / 16)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    features = (bunch.data / 16.0).astype(np.float32)
    return pool_split("digits", features, bunch.target, queries_per_class, seed, image_shape=(8, 8))


def load_npz(path, queries_per_class=100, seed=0):
    """A Keras-layout npz (x_train, y_train, x_test, y_test), pooled and split."""
    with np.load(path) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(
                f"{path}: expected the Keras load_data layout (x_train, y_train, x_test, y_test); "
                f"missing {sorted(missing)}, found {f.files}"
            )
        images = np.concatenate([f["x_train"], f["x_test"]])
        labels = np.concatenate(
            [
                np.asarray(f["y_train"]).reshape(len(f["x_train"]), -1),
                np.asarray(f["y_test"]).reshape(len(f["x_test"]), -1),
            ]
        )
    shape = images.shape[1:] if images.ndim > 2 else None
    return pool_split(
        str(path),
        _scaled(images),
        labels.squeeze(-1) if labels.shape[1] == 1 else labels,
        queries_per_class,
        seed,
        image_shape=shape,
    )


def load_mat(path):
    """The TBH authors' MATLAB layout.

    train_data / train_label are the training set and database; test_data /
    test_label the queries. Labels are one-/multi-hot rows or class ids.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except NotImplementedError:
        raise ValueError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with `save(..., '-v7')`") from None
    missing = {"train_data", "train_label", "test_data", "test_label"} - set(mat)
    if missing:
        raise ValueError(
            f"{path}: missing variables {sorted(missing)}; "
            "expected train_data, train_label, test_data, test_label"
        )
    num_classes = int(max(np.max(mat["train_label"]), np.max(mat["test_label"]))) + 1

    def split(data, label):
        label = np.asarray(label)
        label = one_hot(label, num_classes) if min(label.shape) == 1 else label.astype(np.float32)
        return Split(np.asarray(data, np.float32), label, np.arange(len(data), dtype=np.int64))

    train = split(mat["train_data"], mat["train_label"])
    return RetrievalData(str(path), train, split(mat["test_data"], mat["test_label"]), train)


def load_cifar10_folder(path, queries_per_class=100, seed=0):
    """The CIFAR-10 python batch folder: all 60,000 images pooled and split."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images, labels = [], []
    for name in names:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            raise ValueError(f"{path} is not a cifar-10-batches-py folder: {name} is missing")
        with open(file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8))
        labels.append(np.asarray(batch[b"labels"]))
    images = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return pool_split(
        str(path), _scaled(images), np.concatenate(labels), queries_per_class, seed, (32, 32, 3)
    )


def load_keras_dataset(name, queries_per_class=100, seed=0):
    """A `keras.datasets` name; needs the network or Keras' download cache."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as err:  # network errors come in many types
        raise ValueError(
            f"could not load keras.datasets.{name} ({type(err).__name__}: {err}). Offline? "
            f"Pass a local file instead, e.g. --data path/to/{name}.npz (Keras layout)."
        ) from None
    images = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train.reshape(-1), y_test.reshape(-1)])
    return pool_split(name, _scaled(images), labels, queries_per_class, seed, images.shape[1:])


def load_data(source, queries_per_class=None, seed=0):
    """Loads any supported source into a `RetrievalData` (see `SOURCES`).

    Args:
        source: "digits", a keras.datasets name, or a path to an npz / mat file,
            a TFRecord folder or a cifar-10-batches-py folder.
        queries_per_class: queries drawn per class for pooled sources (default
            30 for digits, 100 otherwise, as protocols.md says).
        seed: seed of the split.
    """
    source = str(source)
    pooled = {} if queries_per_class is None else {"queries_per_class": queries_per_class}
    if source == "digits":
        return load_digits(seed=seed, **pooled)
    if source in KERAS_DATASETS:
        return load_keras_dataset(source, seed=seed, **pooled)
    if os.path.isdir(source):
        if is_tfrecord_folder(source):
            return load_tfrecord_folder(source)
        if os.path.exists(os.path.join(source, "data_batch_1")):
            return load_cifar10_folder(source, seed=seed, **pooled)
        raise ValueError(
            f"{source} is a folder but neither a TFRecord folder (train.tfrecords, "
            "test.tfrecords) nor a cifar-10-batches-py folder"
        )
    if os.path.isfile(source):
        if source.endswith(".npz"):
            return load_npz(source, seed=seed, **pooled)
        if source.endswith(".mat"):
            return load_mat(source)
        raise ValueError(f"{source}: unknown file type; expected .npz or .mat (or a folder)")
    raise ValueError(
        f"unknown data source {source!r}: not a file or folder; valid sources: {', '.join(SOURCES)}"
    )
