"""Paper settings per method, as plain dicts (`get_config(bits, data)`)."""

from tfhash.configs import baselines, bgan, classifier, common, gman, hashnet, jmlh, sgh, tbh, tbh_vae

__all__ = ["baselines", "bgan", "classifier", "common", "gman", "hashnet", "jmlh", "sgh", "tbh", "tbh_vae"]
