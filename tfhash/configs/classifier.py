"""Settings of the `classifier` baseline: JMLH's, so the two compare directly."""

from tfhash.configs import jmlh
from tfhash.defaults import BITS
from tfhash.method import Method


def get_config(bits=BITS, data="digits"):
    """The classifier baseline (`tfhash.models.ClassifierHash`); `tfhash train classifier --bits 32`.

    The encoder, optimiser, budget and evaluation are JMLH's (Adam 1e-4,
    batch 400, 100,000 steps; 2,000 on digits), so that the table shows what
    JMLH's binary bottleneck and HashNet's pairwise loss add over a plain
    classifier whose features are hashed by ITQ afterwards.
    """
    config = jmlh.get_config(bits, data)
    model = config["model"]
    config["method"] = "classifier"
    config["model"] = {
        "bits": bits,
        "itq_iterations": 50,
        "backbone": model["backbone"],
        "backbone_options": model["backbone_options"],
    }
    return config


REGISTRY = [
    Method(
        "classifier",
        "tfhash.models.classifier:ClassifierHash",
        get_config,
        "reference point: a cross-entropy classifier, its penultimate features hashed by ITQ (supervised)",
    )
]
