"""Settings shared by every method."""


def eval_config():
    """Test evaluation: mAP@all and @1000, precision within Hamming radius 2, empty queries count 0,
    ties at equal Hamming distance scored as their expectation over random orders.

    `precision_at` lists the N of precision@N; `pr_curve` adds the
    precision-recall curve over Hamming radii to metrics.json (under `curves`).
    """
    return {
        "top_k": 1000,
        "radius": 2,
        "empty_queries": "zero",
        "precision_at": [100],
        "pr_curve": False,
        "ties": "expected",
    }


FEATURE_BACKBONES = ("none", "mlp")  # the backbones that take flat features; every other takes images


def takes_images(backbone):
    """Whether a model's `backbone` setting makes it take images: the one answer, asked by the
    models, the backbones and the configs. "none" (a head straight on the features) and "mlp"
    take features; "conv" and every keras.applications / EfficientNet-Lite0 network take images."""
    return backbone not in FEATURE_BACKBONES


PER_INPUT_KIND = ("batch_size", "learning_rate")


def for_input_kind(train_config, input_kind):
    """`train_config` with its per-input-kind settings resolved for a model taking `input_kind`
    ("features" or "images"). `batch_size` and `learning_rate` are a number, or {input kind: number}
    for methods whose settings differ between vectors and images (GMAN's batch: 32 vectors, 16
    images; HashNet's base rate: 1e-2 on vectors, 3e-3 on an image backbone)."""
    resolved = dict(train_config)
    for key in PER_INPUT_KIND:
        if isinstance(resolved.get(key), dict):
            resolved[key] = resolved[key][input_kind]
    return resolved
