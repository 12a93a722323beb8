"""Image augmentation for convolutional training, in the tf.data pipeline, seeded and reproducible.

Keras' random preprocessing layers (RandomCrop, RandomFlip) draw from
stateful generators that do not repeat inside tf.data (two runs with the same
seed crop differently), so the same crops and flips are written here with
TensorFlow's stateless random ops, keyed by (seed, batch number): a run and
its repeat see the same augmented batches.
"""

import tensorflow as tf

AUGMENTATIONS = ("crop", "flip")


def parse_augment(augment):
    """A tuple of augmentation names from a list or a comma-separated string; unknown names fail."""
    if isinstance(augment, str):
        augment = [part.strip() for part in augment.split(",") if part.strip()]
    augment = tuple(augment or ())
    unknown = set(augment) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation {sorted(unknown)}; valid ones: {', '.join(AUGMENTATIONS)}")
    return augment


def image_augmentation(augment, crop_padding=4, seed=0):
    """A function (float images (B, H, W, C), batch number) -> augmented images, or None.

    Args:
        augment: names from `AUGMENTATIONS` (a list or "crop,flip"):
            "crop" zero-pads by `crop_padding` pixels on every side and cuts a
            random H x W window per image; "flip" mirrors an image left-right
            with probability 0.5 (only where the data allows it: not digits).
            Empty or None: no augmentation.
        crop_padding: the padding of "crop" (4, as usual for CIFAR-10).
        seed: seed of the crops and flips.
    """
    augment = parse_augment(augment)
    if not augment:
        return None

    def apply(images, batch_number):
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_number, tf.int64)])
        batch = tf.shape(images)[0]
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        if "crop" in augment:
            p = crop_padding
            padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]])
            offsets = tf.random.stateless_uniform((batch, 2), key, 0, 2 * p + 1, dtype=tf.int32)
            rows = offsets[:, :1] + tf.range(height)[None]  # (B, H)
            cols = offsets[:, 1:] + tf.range(width)[None]  # (B, W)
            images = tf.gather(padded, rows, axis=1, batch_dims=1)
            images = tf.gather(images, cols, axis=2, batch_dims=1)
        if "flip" in augment:
            flip = tf.random.stateless_uniform((batch,), key + [0, 1 << 40]) < 0.5
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return images

    return apply
