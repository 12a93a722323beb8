"""Helpers for tfhash's tests (shipped with the package, as keras-hub ships its harness)."""

from tfhash.evaluation import mean_average_precision


def query_map(model, data, k=None):
    """mAP@k (None: @all) of `model`'s codes, `data.query` against `data.database`, label ground truth."""
    return mean_average_precision(
        model.encode(data.query.features),
        model.encode(data.database.features),
        data.query.labels,
        data.database.labels,
        k=k,
    )
