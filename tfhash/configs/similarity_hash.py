"""GreedyHash and BiHalf: the papers' settings where reference-notes.md gives them, ours elsewhere."""

from tfhash.configs.common import eval_config
from tfhash.defaults import BITS
from tfhash.method import variants

METHODS = ("greedyhash", "bihalf")
# ours on feature sources: `python benchmarks/feature_curves.py choose` (docs/reproduction.md)
FEATURES = {
    "greedyhash": {"steps": 8000, "steps_per_epoch": 1000},
    "bihalf": {"steps": 150_000, "learning_rate": 1e-3, "steps_per_epoch": 15_000},
}


def get_config(bits=BITS, data="digits", variant="greedyhash"):
    """GreedyHash (Su et al. 2018) or BiHalf (Li and van Gemert 2021); `tfhash train greedyhash`.

    Both: one Dense layer on the features (`backbone="none"`), codes in {-1,
    +1}, a loss that keeps the features' cosine similarities.

    GreedyHash: alpha = 0.1 (the authors'); the optimiser is ours (the notes
    give none): Adam at 1e-3, batch 32, 2,000 steps (digits: the same).

    BiHalf: gamma = 6, SGD at 1e-4 with weight decay 5e-4, batch 32 (the
    authors'; momentum 0.9 is ours); 10,000 steps on other data. Digits
    preset (ours): Adam at 1e-3 and 2,000 steps, since SGD at 1e-4 barely
    moves a freshly initialised layer in that budget (docs/methods.md).

    Feature sources (ours, from the validation curves of docs/reproduction.md,
    CIFAR-10 Lite0 features at 32 bits): GreedyHash 8,000 steps (validation
    mAP@1000 0.687, level from there to 100,000 steps; 0.668 at 2,000);
    BiHalf SGD at 1e-3 for 150,000 steps (0.762; 0.751 at 33,000, then
    within 0.01 of it to 200,000; at the paper's 1e-4 it still rose at
    200,000 steps: 0.741). Seconds and 3 minutes of training on 2 CPU cores.
    """
    if variant not in METHODS:
        raise ValueError(f"variant must be one of {METHODS}; received variant={variant!r}")
    model = {"bits": bits, "backbone": "none", "backbone_options": {}}
    if variant == "greedyhash":
        model["alpha"] = 0.1
        train = {"batch_size": 32, "steps": 2000, "optimizer": "adam", "learning_rate": 1e-3}
    else:
        model.update({"gamma": 6.0, "objective": "similarity", "decoder_units": [256]})
        train = {
            "batch_size": 32,
            "steps": 10_000,
            "optimizer": "sgd",
            "learning_rate": 1e-4,
            "momentum": 0.9,
            "weight_decay": 5e-4,
        }
        if data == "digits":
            train.update({"steps": 2000, "optimizer": "adam", "learning_rate": 1e-3, "weight_decay": None})
            train.pop("momentum")
    train.update({"steps_per_epoch": 500, "eval_every": 2, "validation_size": 1000})
    if data == "features":
        train.update(FEATURES[variant])
    if data == "digits":
        train["validation_size"] = 200
    return {"method": variant, "model": model, "train": train, "eval": eval_config()}


SUMMARIES = {
    "greedyhash": (
        "GreedyHash",
        "a hash layer keeping cosine similarities, straight-through sign (Su et al. 2018)",
    ),
    "bihalf": (
        "BiHalf",
        "a hash layer keeping cosine similarities, per-batch median split (Li and van Gemert 2021)",
    ),
}
REGISTRY = variants("tfhash.models.similarity_hash", get_config, SUMMARIES)
