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

import json
import os
import time
import typing

import numpy as np

from tfhash import __version__
from tfhash.files import (
    array_fingerprint,
    atomic_folder,
    atomic_path,
    file_sha256,
    is_temporary,
    open_npy,
    write_json,
    write_npz,
)

FORMAT = "tfhash-features-1"
PARTIAL_FORMAT = "tfhash-features-partial-2"
# tfhash.backbones.applications.NETWORKS (a test keeps them equal); this module does not import Keras
FEATURE_BACKBONES = ("vgg16", "resnet50", "mobilenetv3small", "efficientnet-lite0")


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


def check_backbone(backbone):
    if backbone not in FEATURE_BACKBONES:
        raise ValueError(f"backbone must be one of {FEATURE_BACKBONES}; received {backbone!r}")


def job_rows(data, backbone):
    """(images, labels, ids) of a features job in pool order, after its checks: a known backbone,
    an image source."""
    check_backbone(backbone)
    data.require_images("tfhash features", "Its input must be images, not features already.")
    return pool_in_source_order(data)


class JobRows(typing.NamedTuple):
    """The rows of a `--engine beam` features job, in pool order: `images` an array, or
    `ImageFiles` that each worker decodes its slice of; `labels` as `labels_out` gives them;
    `cut` the first test row (None: no test part); `pixel_max` the pixels' scale."""

    images: object
    labels: np.ndarray
    ids: np.ndarray
    cut: int | None
    pixel_max: float


def data_rows(data, backbone):
    """`JobRows` of a loaded image source (`job_rows`, labels as `labels_out` gives them)."""
    images, labels, ids = job_rows(data, backbone)
    return JobRows(images, labels_out(labels), ids, data.test_start, data.query.pixel_max)


def folder_rows(path, backbone, image_size=None):
    """`JobRows` of an image folder without decoding it: the folder's item order is its pool
    order, so row i is file i, labelled by its class folder; only the files' headers are read
    here (`scan_image_folder`), and each worker decodes its own rows (by absolute path: the
    folder must be at the same path on every worker). The rows equal what
    `data_rows(load_data(path, image_size=image_size), backbone)` gives, pixels decoded the same."""
    from tfhash.data.images import PIXEL_MAX, scan_image_folder

    check_backbone(backbone)
    files, class_ids, _, test_start, _ = scan_image_folder(os.path.abspath(path), image_size)
    return JobRows(files, class_ids, np.arange(len(files), dtype=np.int64), test_start, PIXEL_MAX)


def labels_out(labels):
    """Class ids (n,) for single-label rows, the rows themselves for multi-hot ones."""
    return labels.argmax(1).astype(np.int64) if np.all(labels.sum(1) == 1) else labels


def partial_path(out):
    """The folder where `tfhash features` keeps the rows done so far of a run writing `out`."""
    return os.path.abspath(os.fspath(out)).rstrip(os.sep) + ".partial"


def save_segment(folder, job, start, rows):
    """Adds rows start..start + len(rows) to a progress folder (each save writes only its new rows;
    every file appears whole or not at all). The folder's job.json names the job."""
    os.makedirs(folder, exist_ok=True)
    if not os.path.isfile(os.path.join(folder, "job.json")):
        write_json(job, os.path.join(folder, "job.json"))
    name = os.path.join(folder, f"rows-{start:012d}-{start + len(rows):012d}.npy")
    with atomic_path(name, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(rows, np.float32))


def load_partial(folder, job, count, width):
    """(rows done, their features) from a progress folder of the same job, or (0, None).

    A progress folder of another job (other images, backbone, weights file contents,
    size, precision, tfhash version) is removed and the work starts over; the rows are
    read in order up to the first missing or unreadable segment.
    """
    if folder is None or not os.path.lexists(folder):
        return 0, None
    saved = _partial_job(folder)
    if saved != job:
        print(f"{folder} belongs to another features job; starting over")
        remove_partial(folder)
        return 0, None
    parts, done = [], 0
    for name in sorted(n for n in os.listdir(folder) if n.startswith("rows-") and n.endswith(".npy")):
        start, stop = (int(v) for v in name[5:-4].split("-"))
        try:
            rows = open_npy(os.path.join(folder, name), "progress segment") if start == done else None
        except ValueError:
            rows = None
        if rows is None or rows.shape != (stop - start, width) or stop > count:
            break
        parts.append(rows)
        done = stop
    return done, (np.concatenate(parts) if parts else None)


def features_job(images, backbone, weights, input_size, dtype):
    """What a progress folder must have been made by to be continued: the images, backbone,
    weights (the file's contents, the ImageNet one resolved), size, precision, tfhash version."""
    from tfhash.backbones.applications import imagenet_weights_path

    weights_file = imagenet_weights_path(backbone) if weights == "imagenet" else os.fspath(weights)
    return {
        "format": PARTIAL_FORMAT,
        "tfhash": __version__,
        "images": array_fingerprint(images),
        "backbone": backbone,
        "weights": os.fspath(weights),
        "weights_sha256": file_sha256(weights_file),
        "input_size": int(input_size),
        "dtype": str(dtype),
    }


def _partial_job(folder):
    """The job.json of a progress folder tfhash made; a ValueError for any other path (a user's own
    folder or file of that name is never continued nor removed)."""
    try:
        if os.path.islink(folder) or not os.path.isdir(folder):
            raise ValueError
        with open(os.path.join(folder, "job.json")) as f:
            job = json.load(f)
        if not isinstance(job, dict) or not str(job.get("format", "")).startswith("tfhash-features-partial"):
            raise ValueError
    except (OSError, ValueError):
        raise ValueError(
            f"{folder} exists and is not a progress folder of tfhash features; it is left as it is: "
            "move it, or choose another --out (or --save-every 0 for no progress folder)"
        ) from None
    return job


def _is_partial_file(name):
    return name == "job.json" or (name.startswith("rows-") and name.endswith(".npy"))


def remove_partial(folder):
    """Removes a progress folder of tfhash features (once the output is written, or when it
    belongs to another job): only its own files, then the folder if that left it empty."""
    if folder is None or not os.path.lexists(folder):
        return
    _partial_job(folder)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        ours = _is_partial_file(name) or is_temporary(path)
        if ours and os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    if not os.listdir(folder):
        os.rmdir(folder)


def extract(
    data,
    backbone,
    weights="imagenet",
    input_size=224,
    batch_size=64,
    progress=True,
    partial=None,
    save_every=5000,
):
    """(features (n, D) float32, labels, ids) of every item in pool order, and images/s.

    The rate counts the images this call ran, less the first batch (graph tracing) when
    there are more.

    Args:
        data: a `RetrievalData` of an image source.
        backbone: one of `FEATURE_BACKBONES`: "vgg16" (fc7, 4096-d), "resnet50" (2048-d),
            "mobilenetv3small" (576-d) or "efficientnet-lite0" (1280-d).
        weights: "imagenet" (from Keras' cache, or for efficientnet-lite0 from the
            `tfhash[pretrained]` package; never downloaded), a weights file, or None
            (random; for tests).
        input_size: side the images are resized to inside the graph.
        batch_size: images per forward pass.
        partial: a progress folder (`partial_path(out)`): the rows done are saved there every
            `save_every` images, and a later call of the same job (same images, backbone,
            weights and weights file contents, size, precision) starts where it stopped.
            None: no progress file. Random weights (None) never use one: a second random
            network would not continue the first.
        save_every: images between saves of the progress file.
    """
    import keras

    from tfhash.encoder import encode_batch

    images, labels, ids = job_rows(data, backbone)
    network = FeatureExtractor(
        backbone, images.shape[1:], images.dtype, data.query.pixel_max, weights, input_size
    )
    partial = None if weights is None else partial
    job = partial and features_job(images, backbone, weights, input_size, network.compute_dtype)

    out = np.zeros((len(images), network.output_dim), np.float32)
    first, rows = load_partial(partial, job, len(images), network.output_dim)
    if first:
        out[:first] = rows
        print(f"resuming at image {first:,} of {len(images):,} from {partial}")
    bar = keras.utils.Progbar(len(images), unit_name="image") if progress else None
    start, timed, saved = time.perf_counter(), len(images) - first, first
    for i in range(first, len(images), batch_size):
        end = min(i + batch_size, len(images))
        out[i:end] = encode_batch(network, images[i:end])
        if i == first and len(images) > end:  # the first batch traces the graph: rate the rest
            start, timed = time.perf_counter(), len(images) - end
        if partial is not None and end < len(images) and end - saved >= save_every:
            save_segment(partial, job, saved, out[saved:end])
            saved = end
        if bar:
            bar.update(end)
    return out, labels, ids, timed / max(time.perf_counter() - start, 1e-9)


class FeatureExtractor:
    """A pretrained backbone as an encoder of image rows: `encode(images)` -> float32 features
    (n, output_dim), the pixels scaled by 1 / pixel_max and resized inside the graph. What both
    engines call (`tfhash.encoder.encode_batch`): the local loop and each Beam worker.

    Args:
        backbone, weights, input_size: as `extract` takes them.
        image_shape: (H, W) or (H, W, C) of the rows; dtype: theirs.
        pixel_max: the source's largest pixel value.
        policy: a Keras dtype policy name to build the network under (None: the current one).
    """

    def __init__(self, backbone, image_shape, dtype, pixel_max, weights, input_size, policy=None):
        import contextlib

        import tensorflow as tf

        from tfhash.backbones import build_backbone
        from tfhash.precision import dtype_policy

        image_shape = tuple(image_shape)
        shape = image_shape + (1,) * (len(image_shape) == 2)
        with dtype_policy(policy) if policy else contextlib.nullcontext():
            network = build_backbone(backbone, shape, weights=weights, input_size=input_size)
        self.output_dim, self.compute_dtype = network.output_dim, network.compute_dtype
        scale = 1.0 / pixel_max

        @tf.function(input_signature=[tf.TensorSpec((None, *image_shape), dtype)])
        def forward(batch):
            x = tf.cast(batch, tf.float32) * scale
            x = tf.reshape(x, (-1, *shape))
            return tf.cast(network(x, training=False), tf.float32)

        self._forward = forward

    def encode(self, images):
        return self._forward(images).numpy()


def feature_arrays(features, labels, ids, cut):
    """The Keras-layout arrays of pool rows whose test part starts at row `cut` (None: no test
    part), `labels` as `labels_out` gives them; also what one shard of rows start..stop holds,
    with `cut` - start."""
    cut = len(features) if cut is None else min(max(cut, 0), len(features))
    return {
        "x_train": features[:cut],
        "y_train": labels[:cut],
        "x_test": features[cut:],
        "y_test": labels[cut:],
        "ids_train": ids[:cut],
        "ids_test": ids[cut:],
    }


def write_features(data, features, labels, ids, path, meta):
    """Writes pool-order features as a Keras-layout npz (see the module docstring)."""
    if not np.all(np.isfinite(features)):
        raise ValueError("the backbone produced NaN or infinite features; nothing was written")
    arrays = feature_arrays(features, labels_out(labels), ids, data.test_start)
    return write_npz(path, {"format": FORMAT, **meta}, **arrays)


def check_tfrecord_out(path):
    """A TFRecord output must be a new path or an empty folder (a ValueError otherwise)."""
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"{path} exists and is not an empty folder; give a new folder for the TFRecords")


def write_feature_tfrecords(data, features, path):
    """Writes the data set's split (queries / database) of these pool-order features as TBH TFRecords."""
    from tfhash.data import RetrievalData, Split, write_tfrecord_folder

    def part(split):
        return Split(features[split.ids], split.labels, split.ids)

    database = part(data.database)
    train = database if data.train is data.database else part(data.train)
    feature_data = RetrievalData(f"{data.name} features", train, part(data.query), database)
    check_tfrecord_out(path)
    with atomic_folder(path) as tmp:  # both files, or no folder
        write_tfrecord_folder(feature_data, tmp)
    return path
