"""Paper settings per method, as plain dicts."""

from tfhash.configs import tbh

METHODS = {"tbh": tbh}

__all__ = ["METHODS", "tbh"]
