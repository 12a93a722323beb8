"""Helpers for tfhash's tests (shipped with the package, as keras-hub ships its harness)."""

from tfhash.evaluation import mean_average_precision


def random_code_map(data, bits, seed=0):
    """mAP@all of uniformly random {0, 1} codes on `data` (query against database, label ground truth):
    the floor a trained model must clear by a clear margin."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return mean_average_precision(
        rng.integers(0, 2, (len(data.query), bits)),
        rng.integers(0, 2, (len(data.database), bits)),
        data.query.labels,
        data.database.labels,
    )


def query_map(model, data, k=None):
    """mAP@k (None: @all) of `model`'s codes, `data.query` against `data.database`, label ground truth."""
    return mean_average_precision(
        model.encode(data.query.features),
        model.encode(data.database.features),
        data.query.labels,
        data.database.labels,
        k=k,
    )


def assert_export_round_trip(model, features, folder):
    """Exports `model` to `folder`, loads the SavedModel with TensorFlow alone and asserts that its
    `serving_default` signature gives the same uint8 codes as `model.encode(features)`."""
    import numpy as np
    import tensorflow as tf

    from tfhash.export import export_encoder

    loaded = tf.saved_model.load(str(export_encoder(model, folder)))
    codes = loaded.signatures["serving_default"](features=tf.constant(features, tf.float32))["codes"].numpy()
    expected = model.encode(features)
    assert codes.dtype == np.uint8 and np.array_equal(codes, expected), (codes, expected)
    return codes
