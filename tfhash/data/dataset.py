"""One description of a retrieval data set (`Split`, `RetrievalData`) and its checks."""

import dataclasses

import numpy as np

from tfhash.checks import check_positive_int
from tfhash.shards import ShardRows


class Split:
    """One part of a retrieval data set.

    A split made of images keeps them as they came (uint8) and builds the
    flat float32 view that feature methods use on first access (`features`
    = images / pixel_max, flattened), so image models never pay for it.

    Attributes:
        features: float32 (n, D), finite (for an image split: the flat view).
        labels: float32 (n, C) one-hot or multi-hot, or None when unlabelled.
        ids: int64 (n,) item ids (pool indices or the ids stored in the file).
        images: uint8 (n, H, W) grey or (n, H, W, 3) colour, or None.
        pixel_max: the value of a white pixel in `images` (255; 16 for digits).
    """

    def __init__(self, features, labels, ids, images=None, pixel_max=255.0):
        if features is None and images is None:
            raise ValueError("a Split needs features or images")
        self._features = features
        self.labels = labels
        self.ids = ids
        self.images = images
        self.pixel_max = float(pixel_max)

    @property
    def features(self):
        if self._features is None:
            flat = self.images.reshape(len(self.images), -1).astype(np.float32)
            flat /= self.pixel_max
            self._features = flat
        return self._features

    @property
    def feature_dim(self):
        source = self.images if self._features is None else self._features
        return int(np.prod(source.shape[1:]))

    def __len__(self):
        return len(self.images if self._features is None else self._features)

    def subset(self, index):
        labels = None if self.labels is None else self.labels[index]
        features = None if self._features is None else self._features[index]
        images = None if self.images is None else self.images[index]
        return Split(features, labels, self.ids[index], images, self.pixel_max)


PROTOCOLS = ("pooled", "train-test")


@dataclasses.dataclass(frozen=True)
class RetrievalData:
    """Train / query / database parts of a retrieval data set.

    Attributes:
        name: where it came from ("digits", a file path, ...).
        train, query, database: `Split`s; `database` may be the same object as
            `train` (unsupervised protocols train on the database).
        image_shape: shape of one item as an image ((H, W) grey, (H, W, 3)
            colour), or None.
        split_seed: the seed of the split (protocols.md: 0).
        protocol: "pooled" (queries drawn per class from the pooled source,
            label ground truth) or "train-test" (the source's test part as
            queries, its training part as database, ground truth the 50
            Euclidean nearest database items; GMAN's protocol).
        queries_per_class: queries drawn per class ("pooled"), or None.
        labelled_per_class: default size per class of the supervised
            training subset (`labelled`): 50 for digits, 500 otherwise.
        rng_state: the split generator's state after the queries were drawn
            (`labelled` continues from it), or None for a fresh
            `default_rng(split_seed)`.
        notes: lines a command prints about how the data was read.
        test_start: for a pooled source, the pool index (= item id) of its
            first test item, or None without a test part.
        class_ids: the source's own class id of each label column, when its
            ids are not 0..C-1 (e.g. {0, 2, 4}), or None. Codes files and
            messages use them.
        validation: True for the model-selection split of `validation_data()`,
            whose queries are held-out database items.

    Raises:
        ValueError: on an empty part, mismatched feature or label widths,
            non-finite features, or labels present in some parts only.
    """

    name: str
    train: Split
    query: Split
    database: Split
    image_shape: tuple | None = None
    split_seed: int = 0
    protocol: str = "pooled"
    queries_per_class: int | None = None
    labelled_per_class: int = 500
    rng_state: dict | None = dataclasses.field(default=None, repr=False)
    notes: tuple = ()
    test_start: int | None = None
    class_ids: tuple | None = None
    validation: bool = False

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}; received protocol={self.protocol!r}")
        parts = {"train": self.train, "query": self.query, "database": self.database}
        for part, split in parts.items():
            check_split(split, f"{self.name} {part}")
        widths = {part: s.feature_dim for part, s in parts.items()}
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
        return self.train.feature_dim

    def euclidean_neighbours(self, k=50):
        """(n_query, k) int64: each query's k nearest database items in input space
        (`tfhash.evaluation.euclidean_neighbours`), computed once per k and kept, so that every
        run evaluated on this object (a benchmark's cells) shares them."""
        from tfhash.evaluation import euclidean_neighbours

        cache = self.__dict__.setdefault("_euclidean_neighbours", {})  # frozen: not a field
        if k not in cache:
            cache[k] = euclidean_neighbours(self.query.features, self.database.features, k)
        return cache[k]

    def euclidean_relevance(self, k=50):
        """The ground truth "among the query's k nearest database items in input space"
        (`tfhash.evaluation.euclidean_relevance`) over the kept neighbour lists."""
        from tfhash.evaluation import euclidean_relevance

        return euclidean_relevance(
            self.query.features, self.database.features, neighbours=self.euclidean_neighbours(k)
        )

    def validation_data(self):
        """The model-selection split: the same data with its query part replaced by held-out
        database items, so that a setting chosen on it never saw a query.

        The validation queries are drawn from the database as the pooled
        protocol draws them from the pool (per class, `queries_per_class`
        each, else as many as the real queries; without labels a seeded
        uniform draw of as many as the real queries, at most a fifth of the
        database), with the generator `default_rng([split_seed, 1])`; they
        leave the database and the training part, and the supervised subset
        (`labelled`) continues from that generator. The ground truth is the
        protocol's. Calling it again on the result is an error.
        """
        if self.validation:
            raise ValueError(f"{self.name}: this is already the validation split")
        rng = np.random.default_rng([self.split_seed, 1])
        if self.has_labels:
            per_class = self.queries_per_class or max(1, len(self.query) // self.num_classes)
            picks = draw_per_class(
                f"{self.name} database (validation queries)",
                self.database.labels.argmax(1),
                self.num_classes,
                per_class,
                rng,
                "queries",
                self.class_ids,
            )
        else:
            count = min(len(self.query), len(self.database) // 5)
            if count < 1:
                raise ValueError(f"{self.name}: the database is too small for a validation split")
            picks = rng.choice(len(self.database), count, replace=False)
        query = self.database.subset(np.sort(picks))
        held_out = np.isin(self.database.ids, query.ids)
        database = self.database.subset(np.flatnonzero(~held_out))
        train = (
            database
            if self.train is self.database
            else self.train.subset(np.flatnonzero(~np.isin(self.train.ids, query.ids)))
        )
        return dataclasses.replace(
            self,
            train=train,
            query=query,
            database=database,
            rng_state=rng.bit_generator.state,
            validation=True,
        )

    @property
    def has_labels(self):
        return self.train.labels is not None

    @property
    def has_images(self):
        return self.train.images is not None

    @property
    def num_classes(self):
        return int(self.train.labels.shape[1]) if self.has_labels else 0

    def require_labels(self, purpose):
        """Raises a clear error when the data set has no labels."""
        if not self.has_labels:
            raise ValueError(
                f"{purpose} needs labels, but {self.name} has none. Use a source with labels "
                "(TFRecord `label`, npz y_train/y_test, mat *_label, an image folder) or the "
                "Euclidean ground truth."
            )

    def require_images(self, purpose, fix):
        """Raises a clear error when the data set holds features, not images."""
        if not self.has_images:
            raise ValueError(
                f"{purpose} needs images, but {self.name} holds features (a .mat, TFRecord or "
                f"feature npz source). {fix}"
            )

    def labelled(self, per_class=None):
        """The supervised training subset (protocols.md): `per_class` items per class of the database.

        Drawn class by class (classes in order; an item's class is its
        first label) with `rng.choice(database items of c, per_class,
        replace=False)`, `rng` continuing the split's generator after the
        queries (a fresh `default_rng(split_seed)` for sources with their
        own query part). The same for every method and model seed, and
        disjoint from the queries. Returned in database order.

        Raises:
            ValueError: without labels, or when a class has too few items.
        """
        self.require_labels("a supervised method")
        per_class = check_positive_int(
            "labelled_per_class", self.labelled_per_class if per_class is None else per_class
        )
        rng = np.random.default_rng(self.split_seed)
        if self.rng_state is not None:
            rng.bit_generator.state = self.rng_state
        class_ids = self.database.labels.argmax(1)
        picks = draw_per_class(
            f"{self.name} database", class_ids, self.num_classes, per_class, rng, "labelled", self.class_ids
        )
        return self.database.subset(np.sort(picks))


def check_split(split, what):
    """Validates one split (see `RetrievalData`); an image split is checked without its float view."""
    if split.images is not None and split._features is None:
        images = split.images
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"{what}: images must be uint8 (items, H, W) or (items, H, W, 3); "
                f"got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            raise ValueError(f"{what}: the split is empty; check the source file and the split sizes")
    else:
        _check_features(split.features, what)  # `ShardRows`: by shape here, by value where read
    if split.labels is not None:
        if split.labels.ndim != 2 or len(split.labels) != len(split):
            raise ValueError(
                f"{what}: labels must be (items, classes) with one row per item; "
                f"got {split.labels.shape} for {len(split)} items"
            )
    if len(split.ids) != len(split):
        raise ValueError(f"{what}: {len(split.ids)} ids for {len(split)} items")


def _check_features(features, what):
    if features.ndim != 2:
        raise ValueError(f"{what}: features must be 2-D (items, dim); got shape {features.shape}")
    if len(features) == 0:
        raise ValueError(f"{what}: the split is empty; check the source file and the split sizes")
    if isinstance(features, ShardRows):
        return
    bad = ~np.isfinite(features)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(
            f"{what}: {len(rows)} items have NaN or infinite features (first rows {rows[:5].tolist()}); "
            "clean or drop them before hashing"
        )


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


def draw_per_class(name, class_ids, num_classes, per_class, rng, what, names=None):
    """`rng.choice(items of c, per_class, replace=False)` for each class c in order, concatenated.

    `names` (the user's class ids, or None for 0..C-1) name the classes in messages.

    Raises:
        ValueError: naming the class and the flag to lower when a class is too small.
    """
    picks = []
    for c in range(num_classes):
        members = np.flatnonzero(class_ids == c)
        if len(members) < per_class:
            flag = "queries-per-class" if what == "queries" else "labelled-per-class"
            raise ValueError(
                f"{name}: class {c if names is None else names[c]} has {len(members)} items"
                f", fewer than {per_class} {what} per class; "
                f"lower --{flag}"
            )
        picks.append(rng.choice(members, per_class, replace=False))
    return np.concatenate(picks)
