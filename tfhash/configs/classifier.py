"""Settings of the `classifier` baseline: JMLH's budget and optimiser, so the two compare directly."""

from tfhash.configs.common import eval_config


def get_config(bits=32, data="digits"):
    """The classifier baseline (`tfhash.models.ClassifierHash`); `tfhash train classifier --bits 32`.

    The encoder, optimiser and budget are JMLH's (Adam 1e-4, batch 400,
    100,000 steps; 2,000 on digits), so that the table shows what JMLH's
    binary bottleneck and HashNet's pairwise loss add over a plain
    classifier whose features are hashed by ITQ afterwards.
    """
    config = {
        "method": "classifier",
        "model": {"bits": bits, "itq_iterations": 50, "backbone": "mlp", "backbone_options": {}},
        "train": {
            "batch_size": 400,
            "steps": 100_000,
            "steps_per_epoch": 1000,
            "learning_rate": 1e-4,
            "eval_every": 5,
            "validation_size": 1000,
        },
        "eval": eval_config(),
    }
    if data == "digits":
        config["train"].update({"steps": 2000, "steps_per_epoch": 100, "validation_size": 200})
    return config
