"""One description of a retrieval data set, and the seeded protocol splits."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One part of a retrieval data set.

    Attributes:
        features: float32 (n, D), finite.
        labels: float32 (n, C) one-hot or multi-hot, or None when unlabelled.
        ids: int64 (n,) item ids (pool indices or the ids stored in the file).
    """

    features: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray

    def __len__(self):
        return len(self.features)

    def subset(self, index):
        labels = None if self.labels is None else self.labels[index]
        return Split(self.features[index], labels, self.ids[index])


@dataclasses.dataclass(frozen=True)
class RetrievalData:
    """Train / query / database parts of a retrieval data set.

    Attributes:
        name: where it came from ("digits", a file path, ...).
        train, query, database: `Split`s; `database` may be the same object as
            `train` (unsupervised protocols train on the database).
        image_shape: shape of one item as an image (for pictures), or None.

    Raises:
        ValueError: on an empty part, mismatched feature or label widths,
            non-finite features, or labels present in some parts only.
    """

    name: str
    train: Split
    query: Split
    database: Split
    image_shape: tuple | None = None

    def __post_init__(self):
        parts = {"train": self.train, "query": self.query, "database": self.database}
        for part, split in parts.items():
            check_split(split, f"{self.name} {part}")
        widths = {part: s.features.shape[1] for part, s in parts.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(f"{self.name}: feature widths differ between parts: {widths}")
        labelled = {part: s.labels is not None for part, s in parts.items()}
        if len(set(labelled.values())) > 1:
            raise ValueError(f"{self.name}: labels are present in some parts only: {labelled}")
        if all(labelled.values()):
            classes = {part: s.labels.shape[1] for part, s in parts.items()}
            if len(set(classes.values())) > 1:
                raise ValueError(f"{self.name}: label widths differ between parts: {classes}")

    @property
    def feature_dim(self):
        return int(self.train.features.shape[1])

    @property
    def has_labels(self):
        return self.train.labels is not None

    @property
    def num_classes(self):
        return int(self.train.labels.shape[1]) if self.has_labels else 0

    def require_labels(self, purpose):
        """Raises a clear error when the data set has no labels."""
        if not self.has_labels:
            raise ValueError(
                f"{purpose} needs labels, but {self.name} has none. Use a source with labels "
                "(TFRecord `label`, npz y_train/y_test, mat *_label) or the Euclidean ground truth."
            )


def check_split(split, what):
    """Validates one split (see `RetrievalData`)."""
    features = split.features
    if features.ndim != 2:
        raise ValueError(f"{what}: features must be 2-D (items, dim); got shape {features.shape}")
    if len(features) == 0:
        raise ValueError(f"{what}: the split is empty; check the source file and the split sizes")
    bad = ~np.isfinite(features)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(
            f"{what}: {len(rows)} items have NaN or infinite features (first rows {rows[:5].tolist()}); "
            "clean or drop them before hashing"
        )
    if split.labels is not None:
        if split.labels.ndim != 2 or len(split.labels) != len(features):
            raise ValueError(
                f"{what}: labels must be (items, classes) with one row per item; "
                f"got {split.labels.shape} for {len(features)} items"
            )
    if len(split.ids) != len(features):
        raise ValueError(f"{what}: {len(split.ids)} ids for {len(features)} items")


def one_hot(labels, num_classes=None):
    """Class ids (n,) -> float32 one-hot (n, C); (n, C) arrays pass through as float32."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.astype(np.float32)
    labels = labels.reshape(-1).astype(np.int64)
    num_classes = num_classes or int(labels.max()) + 1
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def pool_split(name, features, labels, queries_per_class, seed=0, image_shape=None):
    """The protocols.md split: per-class queries, database = train = the rest.

    For each class c in order, `rng.choice(indices of c, queries_per_class,
    replace=False)` with `rng = numpy.random.default_rng(seed)`; the database
    (and training set) is every other item in pool order.
    """
    features = np.asarray(features, np.float32)
    labels = one_hot(labels)
    class_ids = labels.argmax(1)
    rng = np.random.default_rng(seed)
    queries = []
    for c in range(labels.shape[1]):
        members = np.flatnonzero(class_ids == c)
        if len(members) < queries_per_class:
            raise ValueError(
                f"{name}: class {c} has {len(members)} items, fewer than queries_per_class="
                f"{queries_per_class}; lower queries_per_class"
            )
        queries.append(rng.choice(members, queries_per_class, replace=False))
    query_index = np.concatenate(queries)
    rest = np.setdiff1d(np.arange(len(features)), query_index)
    pool = Split(features, labels, np.arange(len(features), dtype=np.int64))
    database = pool.subset(rest)
    return RetrievalData(name, database, pool.subset(query_index), database, image_shape)


def validation_split(split, size, seed=0):
    """Carves validation queries from training data, for model selection.

    Returns (val_queries, val_database): `size` seeded items of `split` and
    the rest of it. Never touches the test queries.
    """
    size = int(min(size, len(split) // 2))
    if size < 1:
        raise ValueError(f"the training split ({len(split)} items) is too small for a validation split")
    order = np.random.default_rng(seed).permutation(len(split))
    return split.subset(np.sort(order[:size])), split.subset(np.sort(order[size:]))
