"""Paper settings per method, as plain dicts (`get_config(bits, data)`)."""

from tfhash.configs import baselines, classifier, common, gman, hashnet, jmlh, sgh, tbh, tbh_vae

__all__ = ["baselines", "classifier", "common", "gman", "hashnet", "jmlh", "sgh", "tbh", "tbh_vae"]
