"""Argument and input checks shared by models, baselines and the index (NumPy only, no TensorFlow)."""

import numpy as np


def check_positive_int(name, value):
    """Returns `value` if it is a positive int, else raises a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}")
    return int(value)


def check_nonnegative_int(name, value):
    """Returns `value` if it is an int >= 0, else raises a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0; received {name}={value!r}")
    return int(value)


def check_features(features, input_dim, owner):
    """Returns `features` as a float array (n, input_dim); raises a ValueError naming the problem.

    Args:
        features: array-like (n, D).
        input_dim: the width `owner` expects (None: any width).
        owner: the model's name, for the message.
    """
    features = np.asarray(features)
    if not np.issubdtype(features.dtype, np.number) or features.dtype == bool:
        raise ValueError(f"{owner} expects numeric features; received dtype {features.dtype}")
    if features.ndim != 2 or (input_dim is not None and features.shape[1] != input_dim):
        width = input_dim if input_dim is not None else "D"
        raise ValueError(
            f"{owner} expects features of shape (n, {width}); received {features.shape}. "
            "Use the same feature extractor as in training."
        )
    if not np.all(np.isfinite(features)):
        rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ValueError(
            f"{owner}: features contain NaN or infinite values in {len(rows)} rows "
            f"(first: {rows[:5].tolist()}); clean or impute them before encoding"
        )
    return features


def class_label_rows(labels, where):
    """Labels as float32 rows (n, C) and the user's class ids; a ValueError names `where` and the row.

    Class ids (n,) or (n, 1) must be integers >= 0 (integral floats are
    accepted); they need not be contiguous: ids {0, 2, 4} become columns
    0, 1, 2, and the user's ids come back as `class_ids` (column c is class
    `class_ids[c]`). Rows (n, C) must be one- or multi-hot 0/1 values, and
    come back with `class_ids` None.

    Args:
        labels: array-like of class ids or 0/1 rows.
        where: "FILE: KEY" for the messages.
    """
    labels = check_class_labels(labels, where)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.astype(np.float32), None
    class_ids, columns = np.unique(labels.reshape(-1).astype(np.int64), return_inverse=True)
    rows = np.zeros((len(columns), len(class_ids)), np.float32)
    rows[np.arange(len(columns)), columns] = 1.0
    return rows, class_ids


def check_class_labels(labels, where):
    """Returns `labels` as an array after the checks of `class_label_rows` (ValueErrors naming
    `where` and the first bad row)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        values = labels.astype(np.float64, copy=False)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad.any(1))[0])
            raise ValueError(
                f"{where}: label rows must be one- or multi-hot 0/1 values; row {row} holds "
                f"{labels[row][bad[row]][:3].tolist()}"
            )
        return labels
    if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
        raise ValueError(
            f"{where}: expected class ids (n,) or 0/1 rows (n, C); received shape {labels.shape}"
        )
    ids = labels.reshape(-1)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.number):
        raise ValueError(f"{where}: class ids must be integers; received dtype {ids.dtype}")
    if np.issubdtype(ids.dtype, np.floating):
        bad = ~np.isfinite(ids) | (ids != np.round(ids))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: class ids must be integers; row {row} holds {ids[row]!r} "
                f"({int(bad.sum())} such rows). Give integer class ids or 0/1 label rows"
            )
    negative = ids < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise ValueError(
            f"{where}: class ids must be >= 0; row {row} holds {ids[row]!r} ({int(negative.sum())} "
            "such rows). Drop unlabelled items or give them a class"
        )
    return labels


def check_row_index(index, what):
    """A slice, or a 1-D integer array of rows (as `what` takes them); a TypeError otherwise."""
    if isinstance(index, slice):
        return index
    index = np.asarray(index)
    if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
        raise TypeError(f"{what} take a slice or a 1-D array of indices")
    return index


def check_real_numbers(array, where):
    """Refuses an array that does not hold real numbers (complex, boolean, strings, objects) with a
    ValueError naming `where`."""
    dtype = array.dtype if hasattr(array, "dtype") else np.asarray(array).dtype
    if dtype.kind not in "iuf":  # signed, unsigned, float: not bool (b), complex (c), str, object
        raise ValueError(f"{where} is {dtype}; give real numbers (uint8 images or float features)")


def check_finite_rows(arrays, where):
    """Raises a ValueError counting every row with NaN or inf in each named array (float arrays only),
    with the first row numbers as they are in the user's array.

    Args:
        arrays: {name: array (n, ...)}, e.g. {"x_train": ..., "x_test": ...}.
        where: the file, for the message.
    """
    found = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
            continue
        rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
        if len(rows):
            s = "s" * (len(rows) > 1)
            found.append(f"{len(rows)} row{s} of {name} (row{s} {', '.join(map(str, rows[:5]))}"
                         + (", ..." if len(rows) > 5 else "") + ")")  # fmt: skip
    if found:
        raise ValueError(
            f"{where}: NaN or infinite values in {' and '.join(found)}; clean or drop those rows first"
        )


__all__ = [
    "check_class_labels",
    "check_features",
    "check_finite_rows",
    "check_nonnegative_int",
    "check_positive_int",
    "check_real_numbers",
    "class_label_rows",
]
