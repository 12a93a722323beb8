"""`tfhash features`: images through a pretrained backbone, written as a feature source.

The output is a Keras-layout npz whose 2-D `x_train` / `x_test` hold the
features of the source's training and test parts in the source's own order
(with `y_train` / `y_test`, `ids_train` / `ids_test` and a JSON `meta`), so
that `--data feats.npz` pools and splits exactly as the images did. With
`format="tfrecord"` the data set's split is written in the TBH authors'
TFRecord layout instead (train.tfrecords = database, test.tfrecords =
queries), by the writer `tfhash convert` uses. Either way the file appears
whole or not at all.
"""

import os
import time

import numpy as np

from tfhash.files import atomic_folder, write_npz

FORMAT = "tfhash-features-1"
FEATURE_BACKBONES = ("vgg16", "resnet50", "mobilenetv3small")


def pool_in_source_order(data):
    """(images, labels, ids) of every item of a pooled image source, in pool (= id) order."""
    parts = [data.query] + ([data.database] if data.database is not data.query else [])
    ids = np.concatenate([p.ids for p in parts])
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(len(ids))):
        raise ValueError(
            f"{data.name}: the parts do not cover a pool 0..n-1; cannot restore the source order"
        )
    images = np.concatenate([p.images for p in parts])[order]
    labels = np.concatenate([p.labels for p in parts])[order]
    return images, labels, ids[order]


def _labels_out(labels):
    """Class ids (n,) for single-label rows, the rows themselves for multi-hot ones."""
    return labels.argmax(1).astype(np.int64) if np.all(labels.sum(1) == 1) else labels


def extract(data, backbone, weights="imagenet", input_size=224, batch_size=64, progress=True):
    """(features (n, D) float32, labels, ids) of every item in pool order, and images/s.

    The rate leaves out the first batch (graph tracing) when there are more.

    Args:
        data: a `RetrievalData` of an image source.
        backbone: "vgg16" (fc7, 4096-d), "resnet50" (2048-d) or "mobilenetv3small".
        weights: "imagenet" (from Keras' cache; never downloaded), a weights
            file, or None (random; for tests).
        input_size: side the images are resized to inside the graph.
        batch_size: images per forward pass.
    """
    import keras
    import tensorflow as tf

    from tfhash.backbones import build_backbone

    if backbone not in FEATURE_BACKBONES:
        raise ValueError(f"backbone must be one of {FEATURE_BACKBONES}; received {backbone!r}")
    data.require_images("tfhash features", "Its input must be images, not features already.")
    images, labels, ids = pool_in_source_order(data)
    shape = images.shape[1:] + (1,) * (images.ndim == 3)
    network = build_backbone(backbone, shape, weights=weights, input_size=input_size)
    scale = 1.0 / data.query.pixel_max

    @tf.function(input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.uint8)])
    def forward(batch):
        x = tf.cast(batch, tf.float32) * scale
        x = tf.reshape(x, (-1, *shape))
        return tf.cast(network(x, training=False), tf.float32)

    out = np.zeros((len(images), network.output_dim), np.float32)
    bar = keras.utils.Progbar(len(images), unit_name="image") if progress else None
    start, timed = time.perf_counter(), len(images)
    for i in range(0, len(images), batch_size):
        out[i : i + batch_size] = forward(images[i : i + batch_size]).numpy()
        if i == 0 and len(images) > batch_size:  # the first batch traces the graph: rate the rest
            start, timed = time.perf_counter(), len(images) - batch_size
        if bar:
            bar.update(min(i + batch_size, len(images)))
    return out, labels, ids, timed / max(time.perf_counter() - start, 1e-9)


def write_features(data, features, labels, ids, path, meta):
    """Writes pool-order features as a Keras-layout npz (see the module docstring)."""
    if not np.all(np.isfinite(features)):
        raise ValueError("the backbone produced NaN or infinite features; nothing was written")
    cut = len(features) if data.test_start is None else data.test_start
    labels = _labels_out(labels)
    arrays = {
        "x_train": features[:cut],
        "y_train": labels[:cut],
        "x_test": features[cut:],
        "y_test": labels[cut:],
        "ids_train": ids[:cut],
        "ids_test": ids[cut:],
    }
    return write_npz(path, {"format": FORMAT, **meta}, **arrays)


def write_feature_tfrecords(data, features, path):
    """Writes the data set's split (queries / database) of these pool-order features as TBH TFRecords."""
    from tfhash.data import RetrievalData, Split, write_tfrecord_folder

    def part(split):
        return Split(features[split.ids], split.labels, split.ids)

    database = part(data.database)
    train = database if data.train is data.database else part(data.train)
    feature_data = RetrievalData(f"{data.name} features", train, part(data.query), database)
    if os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"{path} exists and is not empty; give a new folder for the TFRecords")
    with atomic_folder(path, prefix=".features-") as tmp:  # both files, or no folder
        write_tfrecord_folder(feature_data, tmp)
    return path
