"""Paper settings per method, as plain dicts (`get_config(bits, data)`)."""

from tfhash.configs import (
    baselines,
    bgan,
    classifier,
    common,
    gman,
    hashnet,
    jmlh,
    sgh,
    similarity_hash,
    tbh,
    tbh_vae,
)

__all__ = [
    "baselines",
    "bgan",
    "classifier",
    "common",
    "gman",
    "hashnet",
    "jmlh",
    "sgh",
    "similarity_hash",
    "tbh",
    "tbh_vae",
]
