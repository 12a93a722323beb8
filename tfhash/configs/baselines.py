"""Settings of the classic baselines (LSH, PCAH, ITQ, SH): their papers' only knobs."""

from tfhash.configs.common import eval_config

DEFAULTS = {
    "lsh": {"centre": False},
    "pcah": {},
    "itq": {"iterations": 50},
    "sh": {},
}


def get_config(method, bits=32, data="digits"):
    """Config of baseline `method`; `tfhash train itq --bits 32`.

    Baselines have no training budget: `fit` is one pass over the training
    features (ITQ: PCA plus 50 alternations, as in Gong & Lazebnik).
    """
    del data  # the same settings on every data set
    return {"method": method, "model": {"bits": bits, **DEFAULTS[method]}, "train": {}, "eval": eval_config()}
