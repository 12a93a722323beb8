"""tf.data pipelines for training."""

import numpy as np
import tensorflow as tf


def train_dataset(features, batch_size, seed=0, shuffle_buffer=10000, repeat=True):
    """Seeded shuffle -> repeat -> fixed-size batches of float32 features.

    Batches always hold exactly `batch_size` items (drop_remainder), because
    TBH builds its graph over the batch. Items: the feature batch only.

    Raises:
        ValueError: if there are fewer items than one batch.
    """
    features = np.asarray(features, np.float32)
    if len(features) < batch_size:
        raise ValueError(
            f"the training set has {len(features)} items, fewer than batch_size={batch_size}; "
            "lower --batch-size"
        )
    dataset = tf.data.Dataset.from_tensor_slices(features).cache()
    dataset = dataset.shuffle(min(shuffle_buffer, len(features)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
