"""The seeded protocol splits of protocols.md: pooled per-class queries, or the source's train/test parts.

A pooled source (digits, a Keras-layout npz, the CIFAR-10 batch folder, an
image folder, a keras.datasets name) is read as one pool: its training
part, then its test part. `split_pool` turns the pool into a
`RetrievalData` under a protocol:

- "pooled" (default): for each class c in order, `rng.choice(indices of c,
  queries_per_class, replace=False)` with `rng = default_rng(split_seed)`;
  the database (and training set) is every other item in pool order; label
  ground truth. The generator's state after the queries is kept, so the
  supervised subset (`RetrievalData.labelled`) continues from it.
- "train-test" (GMAN's): the test part is the queries, the training part
  the database and training set; ground truth the 50 Euclidean nearest
  database items in input space. A source without a test part fails.
"""

import numpy as np

from tfhash.data.dataset import PROTOCOLS, RetrievalData, Split, draw_per_class, one_hot
from tfhash.shards import ShardRows


def split_pool(
    name,
    items,
    labels,
    queries_per_class=100,
    split_seed=0,
    protocol="pooled",
    test_start=None,
    image_shape=None,
    pixel_max=255.0,
    labelled_per_class=500,
    notes=(),
    class_ids=None,
):
    """A `RetrievalData` from a pool of items under `protocol` (see the module docstring).

    Args:
        name: the source's name.
        items: uint8 images (n, H, W) / (n, H, W, 3), kept as images, or
            float features (n, D).
        labels: class ids (n,) or one-/multi-hot rows (n, C).
        queries_per_class: queries per class ("pooled").
        split_seed: seed of the split.
        protocol: "pooled" or "train-test".
        test_start: index of the pool's first test item, None without a test part.
        image_shape: shape of one item as an image, or None.
        pixel_max: value of a white pixel in uint8 images (255; 16 for digits).
        labelled_per_class: default size of the supervised subset per class.
        notes: lines about how the data was read, for the command to print.
        class_ids: the user's class id of each label column, when they are
            not 0..C-1 (`tfhash.checks.class_label_rows`), or None.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; received protocol={protocol!r}")
    labels = one_hot(labels)
    if len(labels) and np.all(labels == labels[:1]):
        raise ValueError(
            f"{name}: every item has the same label; retrieval is scored by labels, so the data needs "
            "at least two classes"
        )
    is_images = items.dtype == np.uint8 and items.ndim >= 3
    pool = Split(
        None if is_images else items if isinstance(items, ShardRows) else np.asarray(items, np.float32),
        labels,
        np.arange(len(items), dtype=np.int64),
        items if is_images else None,
        pixel_max,
    )
    common = {
        "image_shape": image_shape,
        "split_seed": split_seed,
        "protocol": protocol,
        "labelled_per_class": labelled_per_class,
        "notes": tuple(notes),
        "test_start": test_start,
        "class_ids": None if class_ids is None else tuple(int(c) for c in class_ids),
    }
    if protocol == "train-test":
        if test_start is None:
            raise ValueError(
                f"{name} has no test part, so the train-test protocol cannot apply; use --protocol "
                "pooled, or a source with one (an npz with x_test, an image folder with train/ and test/)"
            )
        database = pool.subset(np.arange(test_start))
        return RetrievalData(
            name, database, pool.subset(np.arange(test_start, len(items))), database, **common
        )
    rng = np.random.default_rng(split_seed)
    query_index = draw_per_class(
        name, labels.argmax(1), labels.shape[1], queries_per_class, rng, "queries", common["class_ids"]
    )
    database = pool.subset(np.setdiff1d(np.arange(len(items)), query_index))
    return RetrievalData(
        name,
        database,
        pool.subset(query_index),
        database,
        queries_per_class=queries_per_class,
        rng_state=rng.bit_generator.state,
        **common,
    )


def pool_split(name, features, labels, queries_per_class, seed=0, image_shape=None):
    """The "pooled" protocol over float features (see `split_pool`)."""
    return split_pool(
        name, np.asarray(features, np.float32), labels, queries_per_class, seed, image_shape=image_shape
    )
