"""tf.data pipelines for training."""

import numpy as np
import tensorflow as tf

BATCH_KEYS = ("features", "images", "labels", "index")


def _check_batch_size(n, batch_size):
    if n < batch_size:
        raise ValueError(
            f"the training set has {n} items, fewer than batch_size={batch_size}; lower --batch-size"
        )


def train_dataset(features, batch_size, seed=0, shuffle_buffer=10000, repeat=True):
    """Seeded shuffle -> repeat -> fixed-size batches of float32 features.

    Batches always hold exactly `batch_size` items (drop_remainder), because
    TBH builds its graph over the batch. Items: the feature batch only.

    Raises:
        ValueError: if there are fewer items than one batch.
    """
    features = np.asarray(features, np.float32)
    _check_batch_size(len(features), batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(features).cache()
    dataset = dataset.shuffle(min(shuffle_buffer, len(features)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


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


def _permuted_batches(arrays, batch_size, seed, repeat):
    """A dataset of dict batches gathered from NumPy `arrays`, one seeded permutation per epoch."""
    n = len(next(iter(arrays.values())))

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(n)
            for start in range(0, n - batch_size + 1, batch_size):
                rows = order[start : start + batch_size]
                yield {key: array[rows] for key, array in arrays.items()}
            if not repeat:
                return

    signature = {
        key: tf.TensorSpec((batch_size, *array.shape[1:]), tf.as_dtype(array.dtype))
        for key, array in arrays.items()
    }
    return tf.data.Dataset.from_generator(batches, output_signature=signature)


def batch_dataset(split, keys, batch_size, seed=0, shuffle_buffer=10000, repeat=True, augment=None):
    """Seeded training batches holding exactly what a model declares (`HashingModel.batch_keys`).

    A model that consumes features only gets `train_dataset`'s bare feature
    batches (the same stream, so seeded figures do not change). Otherwise
    each batch is a dict with `keys` among:

    - "features": float32 (B, D), the split's flat view;
    - "images": float32 (B, H, W, C) in [0, 1], made per batch from the
      split's uint8 images (which stay uint8 in memory; grey gets C = 1);
    - "labels": float32 (B, classes);
    - "index": int64 (B,), the item's position in `split`.

    Each epoch is a full seeded permutation of the split (not a shuffle
    buffer: a class-sorted file mixes as well as any other), cut into
    batches of fixed size (drop_remainder), repeated, and prefetched. Batches
    are gathered from the split's NumPy arrays by a generator, so the data
    is never copied into the tf.data graph: 60,000 CIFAR-sized images cost
    their 184 MB once, not three times.

    Args:
        split: a `tfhash.data.Split`.
        keys: the keys to yield, e.g. ("images", "labels").
        batch_size, seed, repeat: as in `train_dataset`; `shuffle_buffer`
            applies to the feature-only stream (the others permute fully).
        augment: a function (float images (B, H, W, C), batch number) ->
            images of the same shape (`tfhash.data.augmentation`), or None.

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
        return train_dataset(split.features, batch_size, seed, shuffle_buffer, repeat)
    dataset = _permuted_batches(_batch_arrays(split, keys), batch_size, seed, repeat)
    if augment is not None and "images" not in keys:
        raise ValueError(f"augmentation applies to images; this model trains on {keys[0]}: drop --augment")
    if "images" in keys:
        scale = 1.0 / split.pixel_max
        grey = split.images.ndim == 3

        def to_float(number, batch):
            images = tf.cast(batch["images"], tf.float32) * scale
            images = images[..., None] if grey else images
            return {**batch, "images": augment(images, number) if augment else images}

        dataset = dataset.enumerate().map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
