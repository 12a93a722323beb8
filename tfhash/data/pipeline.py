"""tf.data pipelines for training."""

import numpy as np
import tensorflow as tf

BATCH_KEYS = ("features", "images", "labels", "index")
PARALLEL_CALLS = 2  # batches gathered at once: each is a small gather, two keep a step fed
PREFETCH = 2  # batches ready ahead of the step


def _prefetched(dataset):
    """`dataset` with `PREFETCH` batches ready ahead, and tf.data's autotuning off.

    The autotuner's thread sleeps between passes, doubling the sleep up to a
    minute, and destroying an iterator (as every `fit` does when it returns)
    waits for that thread to wake: `fit` returned up to a minute after its
    last step (measured: 4.8 s after a 5.4 s run). Fixed parallelism and a
    fixed buffer cost nothing here (a batch is one gather).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH).with_options(options)


def _check_batch_size(n, batch_size):
    if n < batch_size:
        raise ValueError(
            f"the training set has {n} items, fewer than batch_size={batch_size}; lower --batch-size"
        )


def epoch_permutation(n, seed, epoch):
    """The order of the training items in epoch `epoch`: a permutation of range(n) seeded by
    (seed, epoch), so any epoch's order can be rebuilt without replaying the ones before."""
    return np.random.default_rng([int(seed) % 2**32, int(epoch)]).permutation(n)


def train_dataset(features, batch_size, seed=0, repeat=True, start_batch=0):
    """Fixed-size batches of float32 features, each epoch a fresh seeded permutation of every item.

    Every epoch visits all items in the order `epoch_permutation(n, seed,
    epoch)` (not a bounded shuffle buffer, which over a class-sorted file
    fills each batch with a few classes), cut into batches of exactly
    `batch_size` (drop_remainder per epoch: TBH builds its graph over the
    batch). Batches are gathered in TensorFlow from one in-memory copy.
    The stream starts at batch number `start_batch` of that sequence (a
    resumed run continues exactly where it stopped: `tfhash.run`); with
    `repeat=False` it is the epoch holding that batch, from it to the end.

    Raises:
        ValueError: if there are fewer items than one batch.
    """
    features = np.asarray(features, np.float32)
    _check_batch_size(len(features), batch_size)
    table = tf.constant(features)
    rows = _row_batches(len(features), batch_size, seed, repeat, start_batch)
    gather = rows.map(lambda r: tf.gather(table, r), num_parallel_calls=PARALLEL_CALLS, deterministic=True)
    return _prefetched(gather)


def _row_batches(n, batch_size, seed, repeat, start_batch=0):
    """A dataset of int64 (batch_size,) row indices: epoch e in `epoch_permutation` order, its
    last incomplete batch dropped; the permutation of each epoch is drawn once, in NumPy. It starts
    at batch `start_batch` of the whole sequence (epoch start_batch // batches per epoch)."""
    usable = n - n % batch_size
    per_epoch = usable // batch_size

    def epoch_batches(epoch):
        order = tf.numpy_function(lambda e: epoch_permutation(n, seed, e)[:usable], [epoch], tf.int64)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order, (usable // batch_size, batch_size)))

    first, skip = divmod(int(start_batch), per_epoch)
    epochs = tf.data.Dataset.counter(first) if repeat else tf.data.Dataset.range(first, first + 1)
    return epochs.flat_map(epoch_batches).skip(skip)


def _batch_arrays(split, keys):
    """{key: the split's array for it}; a clear error for a part the split lacks."""
    arrays = {}
    for key in keys:
        if key == "features":
            arrays[key] = np.asarray(split.features, np.float32)
        elif key == "images":
            if split.images is None:
                raise ValueError(
                    "this model trains on images, but the split holds features only; pass an image source "
                    "(an npz of uint8 images, a CIFAR-10 or image folder)"
                )
            arrays[key] = split.images
        elif key == "labels":
            if split.labels is None:
                raise ValueError(
                    "this model trains on labels, but the split has none; pass a labelled source or "
                    "an unsupervised method"
                )
            arrays[key] = np.asarray(split.labels, np.float32)
        else:
            arrays[key] = np.arange(len(split), dtype=np.int64)
    return arrays


def _permuted_batches(arrays, batch_size, seed, repeat, start_batch=0):
    """A dataset of dict batches of NumPy `arrays` (rows as `_row_batches` gives them).

    The arrays are indexed in NumPy, so images are never copied into the
    tf.data graph (the batches are small next to a convolutional step).
    """
    keys = list(arrays)

    def gather(rows):
        return [arrays[key][rows] for key in keys]

    def to_dict(rows):
        out = tf.numpy_function(gather, [rows], [tf.as_dtype(arrays[key].dtype) for key in keys])
        for tensor, key in zip(out, keys, strict=True):
            tensor.set_shape((batch_size, *arrays[key].shape[1:]))
        return dict(zip(keys, out, strict=True))

    rows = _row_batches(len(arrays[keys[0]]), batch_size, seed, repeat, start_batch)
    return rows.map(to_dict, num_parallel_calls=PARALLEL_CALLS, deterministic=True)


def batch_dataset(split, keys, batch_size, seed=0, repeat=True, augment=None, start_batch=0):
    """Seeded training batches holding exactly what a model declares (`HashingModel.batch_keys`).

    A model that consumes features only gets `train_dataset`'s bare feature
    batches. Otherwise each batch is a dict with `keys` among:

    - "features": float32 (B, D), the split's flat view;
    - "images": float32 (B, H, W, C) in [0, 1], made per batch from the
      split's uint8 images (which stay uint8 in memory; grey gets C = 1);
    - "labels": float32 (B, classes);
    - "index": int64 (B,), the item's position in `split`.

    Epoch e takes the items in `epoch_permutation(n, seed, e)` order (a
    class-sorted file mixes as well as any other), cut into batches of fixed
    size (drop_remainder), repeated, and prefetched. Batches are gathered
    from the split's NumPy arrays (`tf.numpy_function`), so the data is
    never copied into the tf.data graph: 60,000 CIFAR-sized images cost
    their 184 MB once, not three times.

    Args:
        split: a `tfhash.data.Split`.
        keys: the keys to yield, e.g. ("images", "labels").
        batch_size, seed, repeat, start_batch: as in `train_dataset`.
        augment: a function (float images (B, H, W, C), batch number) ->
            images of the same shape (`tfhash.data.augmentation`), or None.
            Batch numbers count from 0 at the first batch of epoch 0 (a
            stream from `start_batch` numbers its first batch `start_batch`).

    Raises:
        ValueError: on an unknown key, a missing part (no images, no
            labels), or fewer items than one batch.
    """
    keys = tuple(keys)
    unknown = set(keys) - set(BATCH_KEYS)
    if unknown:
        raise ValueError(f"unknown batch keys {sorted(unknown)}; valid keys: {', '.join(BATCH_KEYS)}")
    _check_batch_size(len(split), batch_size)
    if keys == ("features",) and augment is None:
        return train_dataset(split.features, batch_size, seed, repeat, start_batch)
    dataset = _permuted_batches(_batch_arrays(split, keys), batch_size, seed, repeat, start_batch)
    if augment is not None and "images" not in keys:
        raise ValueError(f"augmentation applies to images; this model trains on {keys[0]}: drop --augment")
    if "images" in keys:
        scale = 1.0 / split.pixel_max
        grey = split.images.ndim == 3

        def to_float(number, batch):
            images = tf.cast(batch["images"], tf.float32) * scale
            images = images[..., None] if grey else images
            return {**batch, "images": augment(images, number) if augment else images}

        dataset = dataset.enumerate(int(start_batch)).map(
            to_float, num_parallel_calls=PARALLEL_CALLS, deterministic=True
        )
    return _prefetched(dataset)
