"""Settings of the classic baselines (LSH, PCAH, ITQ, SH): their papers' only knobs."""

from tfhash.configs.common import eval_config
from tfhash.defaults import BITS
from tfhash.method import variants

DEFAULTS = {
    "lsh": {"centre": False},
    "pcah": {},
    "itq": {"iterations": 50},
    "sh": {},
}


def get_config(bits=BITS, data="digits", variant="itq"):
    """Config of the baseline `variant` ("lsh", "pcah", "itq" or "sh"); `tfhash train itq --bits 32`.

    Baselines have no training budget: `fit` is one pass over the training
    features (ITQ: PCA plus 50 alternations, as in Gong & Lazebnik).
    """
    del data  # the same settings on every data set
    if variant not in DEFAULTS:
        raise ValueError(f"variant must be one of {sorted(DEFAULTS)}; received variant={variant!r}")
    model = {"bits": bits, **DEFAULTS[variant]}
    return {"method": variant, "model": model, "train": {}, "eval": eval_config()}


SUMMARIES = {
    "lsh": ("LSH", "random projections, sign(x W) (Charikar 2002)"),
    "pcah": ("PCAH", "PCA then sign"),
    "itq": ("ITQ", "PCA then a learned orthogonal rotation (Gong & Lazebnik 2011)"),
    "sh": ("SH", "spectral hashing along PCA directions (Weiss et al. 2008)"),
}
REGISTRY = variants("tfhash.baselines", get_config, SUMMARIES)
