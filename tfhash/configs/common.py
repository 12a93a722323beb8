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


PRESETS = ("auto", "paper")


def settings_for(data, preset="auto"):
    """Which settings a source gets: the `data` argument of every method's `get_config`.

    "digits": the quick preset of the 1,797-item digits (a minute or so per method on 2 cores);
    "features": a source of feature vectors without images (e.g. `tfhash features` output), whose
    budget and learning rate are ours, chosen on the validation curves of docs/reproduction.md
    (CIFAR-10 EfficientNet-Lite0 features, 32 bits) where the paper's do not converge or take
    hours; "paper": every other source, and any source under `preset="paper"`.

    Args:
        data: a `tfhash.data.RetrievalData`, or a source string ("digits", a path, ...): a string
            other than "digits" cannot say whether it holds images, and gets the paper's settings.
        preset: "auto" (the above) or "paper" (the papers' settings on every source, digits too).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}; received preset={preset!r}")
    name = getattr(data, "name", data)
    if preset == "paper":
        return "paper"
    if name == "digits":
        return "digits"
    if not isinstance(data, str) and getattr(data, "image_shape", ()) is None:
        return "features"
    return "paper"


# training steps per second on CIFAR-10 EfficientNet-Lite0 features (1,280-d), 32 bits, at each method's
# feature-source batch, 2 AMD EPYC cores, TF 2.21: the curves' (`benchmarks/feature_curves.py choose`);
# `tfhash methods NAME` turns its feature-source budget into minutes with them
STEPS_PER_SECOND_ON_FEATURES = {
    "tbh": 15.6,
    "tbh-vae": 1.65,
    "sgh": 131.0,
    "deep-sgh": 84.0,
    "rsgh": 102.0,
    "greedyhash": 370.0,
    "bihalf": 853.0,
    "bgan-ln": 68.3,
    "gman": 58.0,
}


# the training settings a command line may override, for `tfhash train` and `tfhash bench` alike
TRAIN_OVERRIDES = ("steps", "steps_per_epoch", "batch_size", "learning_rate", "optimizer", "augment")


def with_overrides(method, config, train=None, model=None):
    """`config` (of the registry entry `method`, changed in place and returned) with a command
    line's settings: the `train` ones (`TRAIN_OVERRIDES`; None means "the method's own") on a deep
    method, none on a baseline (fitted in closed form, it has no training settings), and each
    `model` option the method has (the caller checks that every key is some method's:
    `registry.check_model_options`). The one place where `tfhash train` and `tfhash bench` apply
    their flags."""
    train = {key: value for key, value in (train or {}).items() if value is not None}
    unknown = sorted(set(train) - set(TRAIN_OVERRIDES))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; valid: {', '.join(TRAIN_OVERRIDES)}")
    if not method.is_baseline:
        config["train"].update(train)
    config["model"].update({key: value for key, value in (model or {}).items() if key in config["model"]})
    return config


# what every deep method's config["train"] must hold (the rest have defaults: optimizer adam, ...)
REQUIRED_TRAIN = ("steps", "steps_per_epoch", "batch_size", "learning_rate", "eval_every", "validation_size")


def check_train_config(method, train):
    """A ValueError naming the keys a deep method's `config["train"]` lacks (`REQUIRED_TRAIN`)."""
    missing = [key for key in REQUIRED_TRAIN if key not in train]
    if missing:
        raise ValueError(
            f"{method}: config['train'] lacks {', '.join(missing)}; a deep method's training settings "
            f"need {', '.join(REQUIRED_TRAIN)} (docs/adding-a-method.md)"
        )


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
