"""Paper settings per method, as plain dicts (`get_config(bits, data)`)."""

from tfhash.configs import baselines, common, tbh

__all__ = ["baselines", "common", "tbh"]
