"""Data sources: digits, Keras-layout npz, MATLAB mat, TBH TFRecords, CIFAR-10, image folders, keras.datasets.

Sources made of images (digits, an npz of uint8 images, the CIFAR-10 batch
folder, an image folder, keras.datasets) keep them as uint8 images; the
flat [0, 1] float view that feature methods use is `Split.features`.
Sources made of features (.mat, TFRecord, an npz of 2-D or float arrays)
stay features. See `tfhash.data.protocols` for the splits.
"""

import contextlib
import dataclasses
import os

import numpy as np

from tfhash.checks import check_class_labels, check_finite_rows, check_real_numbers, class_label_rows
from tfhash.data.cifar_batches import read_batch
from tfhash.data.dataset import RetrievalData, Split, one_hot
from tfhash.data.images import (
    PIXEL_MAX,
    check_image_folder,
    is_image_folder,
    read_image_folder,
    scan_image_folder,
)
from tfhash.data.protocols import split_pool
from tfhash.files import open_npz
from tfhash.shards import ShardRows, is_shard_folder

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
SOURCES = (
    "digits",
    *KERAS_DATASETS,
    "<file>.npz",
    "<folder of part-NNNNN-of-NNNNN.npz shards>",
    "<file>.mat",
    "<TFRecord folder>",
    "<cifar-10-batches-py folder>",
    "<image folder: one subfolder per class>",
)


def _tfrecord():
    from tfhash.data import tfrecord  # imports TensorFlow: only for TFRecord sources

    return tfrecord


def _pool_items(images):
    """uint8 images stay images ((n, H, W) grey, (n, H, W, 3) colour); anything else becomes float rows.

    Returns (items, image_shape): 8-bit 2-D data is scaled to [0, 1]; float
    arrays with more than two axes are flattened and keep their image shape.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    shape = tuple(images.shape[1:]) if images.ndim > 2 else None
    if images.dtype == np.uint8 and images.ndim in (3, 4):
        return images, shape
    rows = images.reshape(len(images), -1).astype(np.float32)
    return (rows / 255.0 if images.dtype == np.uint8 else rows), shape


def load_digits(queries_per_class=30, seed=0, protocol="pooled"):
    """scikit-learn's 8x8 digits, split as protocols.md says (features / 16)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = bunch.images.astype(np.uint8)  # values 0..16
    return split_pool(
        "digits", images, bunch.target, queries_per_class, seed, protocol,
        image_shape=(8, 8), pixel_max=16.0, labelled_per_class=50,
    )  # fmt: skip


def load_npz(path, queries_per_class=100, seed=0, protocol="pooled", read_rows=True):
    """A Keras-layout npz (x_train, y_train, x_test, y_test), or a shard folder of one, pooled and
    split. With `read_rows=False` a shard folder's float features are left unread (the splits
    hold `ShardRows`, which Beam's workers read and check batch by batch).

    Every problem is named with the file, the key and the first rows
    (`tfhash.checks`): missing keys, no items, labels not one per item,
    negative or fractional class ids, NaN / inf rows (all counted). Class ids
    need not be contiguous (they are kept as `RetrievalData.class_ids`).
    """
    if os.path.isdir(path):  # a shard folder of `tfhash features --engine beam`
        from tfhash.shards import read_shards

        files = read_shards(path, unread=() if read_rows else ("x_train", "x_test"))[1]
    else:
        files = open_npz(path, "the data file")
    with contextlib.closing(files) if hasattr(files, "close") else contextlib.nullcontext(files) as f:
        keys = list(f.keys())
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(keys)
        if missing:
            raise ValueError(
                f"{path}: expected the Keras load_data layout (x_train, y_train, x_test, y_test); "
                f"missing {sorted(missing)}, found {keys}"
            )
        x_train, x_test = f["x_train"], f["x_test"]
        y_train, y_test = np.asarray(f["y_train"]), np.asarray(f["y_test"])
    unread = isinstance(x_train, ShardRows) and (isinstance(x_test, ShardRows) or not len(x_test))
    if not unread:  # not float features throughout: read them, as a single file's are
        x_train, x_test = (x.decode() if isinstance(x, ShardRows) else x for x in (x_train, x_test))
    for x, key in ((x_train, "x_train"), (x_test, "x_test")):
        if x.ndim < 2 and not (key == "x_test" and x.size == 0):
            raise ValueError(
                f"{path}: {key} has shape {x.shape}: one value per item, not a feature vector or image; "
                "give (n, D) features or (n, H, W[, C]) images (a single feature: reshape to (n, 1))"
            )
        check_real_numbers(x, f"{path}: {key}")
    if len(x_train) == 0:
        raise ValueError(f"{path}: x_train holds no items; write the training items under x_train")
    for x, y, key in ((x_train, y_train, "y_train"), (x_test, y_test, "y_test")):
        if y.ndim == 0 or len(y) != len(x):
            count = "a scalar" if y.ndim == 0 else f"{len(y)} labels"
            raise ValueError(
                f"{path}: {key} holds {count} for {len(x)} items in x_{key[2:]}; give one label per item"
            )
    if not unread:
        check_finite_rows({"x_train": x_train, "x_test": x_test}, path)
    has_test = len(x_test) > 0  # `tfhash features` of a source without a test part writes none
    join = ShardRows.concat if unread else lambda a, b: np.concatenate([a, b])
    images = join(x_train, x_test) if has_test else x_train
    for y, key in ((y_train, "y_train"), (y_test, "y_test")):
        check_class_labels(y, f"{path}: {key}")  # names the key and row of a bad label
    flat = [y.reshape(len(y), -1) for y in ((y_train, y_test) if has_test else (y_train,))]
    if len({y.shape[1] for y in flat}) > 1:
        raise ValueError(f"{path}: y_train and y_test have different label widths; use one layout for both")
    labels, class_ids = class_label_rows(np.concatenate(flat), f"{path}: y_train / y_test")
    items, shape = (images, None) if unread else _pool_items(images)
    del images
    return split_pool(
        str(path),
        items,
        labels,
        queries_per_class,
        seed,
        protocol,
        test_start=len(x_train) if has_test else None,
        image_shape=shape,
        class_ids=class_ids,
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
    labels = {}
    for key in ("train_label", "test_label"):
        label = np.asarray(mat[key])
        if label.ndim == 2 and min(label.shape) == 1:  # class ids, as a column or a row (MATLAB's vectors)
            label = label.reshape(-1)
        labels[key] = check_class_labels(label, f"{path}: {key}")  # integers >= 0, or 0/1 rows
    for part in ("train", "test"):
        data, label = np.asarray(mat[f"{part}_data"]), labels[f"{part}_label"]
        if data.ndim != 2 or len(label) != len(data):
            raise ValueError(
                f"{path}: {part}_data has shape {data.shape} and {part}_label {len(label)} labels; "
                f"give (n, D) features and one label per row"
            )
        check_real_numbers(data, f"{path}: {part}_data")
    check_finite_rows({"train_data": mat["train_data"], "test_data": mat["test_data"]}, path)
    num_classes = max(int(y.max()) + 1 if y.ndim == 1 else y.shape[1] for y in labels.values() if y.size)

    def split(data, label):
        label = one_hot(label.astype(np.int64), num_classes) if label.ndim == 1 else label.astype(np.float32)
        if label.shape[1] != num_classes:
            raise ValueError(
                f"{path}: train_label and test_label have different label widths; use one layout for both"
            )
        return Split(np.asarray(data, np.float32), label, np.arange(len(data), dtype=np.int64))

    train = split(mat["train_data"], labels["train_label"])
    return RetrievalData(str(path), train, split(mat["test_data"], labels["test_label"]), train)


def load_cifar10_folder(path, queries_per_class=100, seed=0, protocol="pooled"):
    """The CIFAR-10 python batch folder: all 60,000 images pooled and split (the test batch last)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    files = [os.path.join(path, name) for name in names]
    missing = [name for name, file in zip(names, files, strict=True) if not os.path.isfile(file)]
    if missing:  # every file checked before any is read
        raise ValueError(f"{path} is not a cifar-10-batches-py folder: {', '.join(missing)} missing")
    images, labels = zip(*(read_batch(file) for file in files), strict=True)
    test_start = sum(len(x) for x in images[:-1])
    images = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return split_pool(
        str(path), np.ascontiguousarray(images), np.concatenate(labels), queries_per_class, seed,
        protocol, test_start=test_start, image_shape=(32, 32, 3),
    )  # fmt: skip


def load_image_folder(
    path, queries_per_class=None, seed=0, protocol="pooled", image_size=None, read_rows=True
):
    """A folder with one subfolder per class (or train/ and test/ ones), pooled and split.

    Without `queries_per_class`, 100 queries per class, or min(100,
    smallest class // 2) when a class is too small (the data's `notes` say so).
    With `read_rows=False` the splits hold `ImageFiles` (only the files' headers are
    read) for a Beam job whose workers decode their own rows.
    """
    if read_rows:
        folder = read_image_folder(path, image_size)
        images, class_ids, class_names, test_start = (
            folder.images, folder.class_ids, folder.class_names, folder.test_start
        )  # fmt: skip
    else:
        images, class_ids, class_names, test_start, _ = scan_image_folder(os.path.abspath(path), image_size)
    counts = np.bincount(class_ids, minlength=len(class_names))
    notes = [
        f"{'read' if read_rows else 'found'} {len(class_ids)} images of shape {images.shape[1:]} in "
        f"{len(class_names)} classes from {path}"
    ]
    if queries_per_class is None:
        queries_per_class = 100
        if protocol == "pooled" and counts.min() < 2 * queries_per_class:
            queries_per_class = max(1, min(100, int(counts.min()) // 2))
            notes.append(
                f"the smallest class has {counts.min()} images: {queries_per_class} queries per class "
                "(--queries-per-class to change)"
            )
    return split_pool(
        str(path), images, class_ids, queries_per_class, seed, protocol,
        test_start=test_start, image_shape=images.shape[1:], pixel_max=PIXEL_MAX, notes=notes,
    )  # fmt: skip


def load_keras_dataset(name, queries_per_class=100, seed=0, protocol="pooled"):
    """A `keras.datasets` name; needs the network or Keras' download cache."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as err:  # network errors come in many types
        raise ValueError(
            f"could not load keras.datasets.{name} ({type(err).__name__}: {err}). Offline? "
            f"Pass a local file instead, e.g. --data path/to/{name}.npz (Keras layout)."
        ) from None
    items, shape = _pool_items(np.concatenate([x_train, x_test]))
    labels = np.concatenate([y_train.reshape(-1), y_test.reshape(-1)])
    return split_pool(
        name, items, labels, queries_per_class, seed, protocol, test_start=len(x_train), image_shape=shape
    )


def load_data(source, queries_per_class=None, seed=0, protocol="pooled", image_size=None, read_rows=True):
    """Loads any supported source into a `RetrievalData` (see `SOURCES`).

    Args:
        source: "digits", a keras.datasets name, or a path to an npz / mat file,
            a TFRecord folder, a cifar-10-batches-py folder or an image folder.
        queries_per_class: queries drawn per class for pooled sources (default
            30 for digits, 100 otherwise, as protocols.md says).
        seed: seed of the split (the split seed, not a model's).
        protocol: "pooled" or "train-test" (`tfhash.data.protocols`). Sources
            with their own query part (.mat, TFRecord) keep it under both;
            "train-test" switches their ground truth to the Euclidean one.
        image_size: (H, W) that an image folder's images are resized to
            (default: the first file's size).
        read_rows: False: an image folder's splits hold its files undecoded
            (`ImageFiles`), and a shard folder's splits its float features unread
            (`ShardRows`), for `--engine beam`, whose workers read them.
    """
    source = str(source)
    pooled = {} if queries_per_class is None else {"queries_per_class": queries_per_class}
    common = {"seed": seed, "protocol": protocol, **pooled}
    if image_size is not None and not (os.path.isdir(source) and is_image_folder(source)):
        raise ValueError(f"--image-size applies to image folders; {source} is not one")
    if source == "digits":
        return load_digits(**common)
    if source in KERAS_DATASETS:
        return load_keras_dataset(source, **common)
    if os.path.isdir(source):
        if is_shard_folder(source):
            return load_npz(source, read_rows=read_rows, **common)
        if _tfrecord().is_tfrecord_folder(source):
            return _own_split(_tfrecord().load_tfrecord_folder(source), seed, protocol)
        if os.path.exists(os.path.join(source, "data_batch_1")):
            return load_cifar10_folder(source, **common)
        if is_image_folder(source):
            return load_image_folder(source, image_size=image_size, read_rows=read_rows, **common)
        with os.scandir(source) as entries:
            if any(e.is_dir() and not e.name.startswith(".") for e in entries):
                check_image_folder(source)  # laid out as an image folder: say what is wrong with it
        raise ValueError(
            f"{source} is a folder but neither a TFRecord folder (train.tfrecords, test.tfrecords), "
            "a cifar-10-batches-py folder, nor an image folder (one subfolder of PNG/JPEG files per class)"
        )
    if os.path.isfile(source):
        if source.endswith(".npz"):
            return load_npz(source, **common)
        if source.endswith(".mat"):
            return _own_split(load_mat(source), seed, protocol)
        raise ValueError(f"{source}: unknown file type; expected .npz or .mat (or a folder)")
    raise ValueError(
        f"unknown data source {source!r}: not a file or folder; valid sources: {', '.join(SOURCES)}"
    )


def _own_split(data, seed, protocol):
    """A source with its own query part: the protocol only sets the ground truth and the split seed."""
    return dataclasses.replace(data, split_seed=seed, protocol=protocol)
