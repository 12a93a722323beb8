"""Argument and input checks shared by models, baselines and the index (NumPy only, no TensorFlow)."""

import numpy as np


def check_positive_int(name, value):
    """Returns `value` if it is a positive int, else raises a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}")
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


__all__ = ["check_features", "check_positive_int"]
