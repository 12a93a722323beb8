"""The method registry: every method's name, mapped to what runs it.

A method is its own files: its model module (a `HashingModel` trained with `fit`, or a NumPy
`Baseline`) and its config module under `tfhash/configs/`, which holds `get_config` and a
`REGISTRY` list of `tfhash.method.Method` entries (name, model class, config function, one-line
summary). This module only gathers those lists: the families below first, in this order, then
any other config module that declares a `REGISTRY`, so that adding a method touches its new
files and its test, nothing here (docs/adding-a-method.md).
"""

import difflib
import importlib
import pkgutil

from tfhash import configs
from tfhash.defaults import BITS
from tfhash.method import Method, argument_descriptions

__all__ = ["METHODS", "Method", "argument_descriptions", "check_model_options", "get_method", "method_names"]

# the order of `tfhash methods`, of `--help` and of a bench's default grid
FAMILIES = ("tbh", "sgh", "hashnet", "jmlh", "classifier", "gman", "bgan", "similarity_hash", "tbh_vae",
            "baselines")  # fmt: skip


def gather(package=configs):
    """{name: Method} from the `REGISTRY` lists of `package`'s modules: `FAMILIES` first, then the
    others in name order. A name registered twice is an error (one would silently hide the other)."""
    found = [name for _, name, _ in pkgutil.iter_modules(package.__path__)]
    order = [name for name in FAMILIES if name in found] + sorted(set(found) - set(FAMILIES))
    methods = {}
    for module_name in order:
        module = importlib.import_module(f"{package.__name__}.{module_name}")
        for method in getattr(module, "REGISTRY", ()):
            if method.name in methods:
                raise ValueError(f"method {method.name!r} is registered twice (configs.{module_name})")
            methods[method.name] = method
    return methods


METHODS = gather()


def get_method(name):
    """The registered `Method` called `name`; a ValueError lists the valid names otherwise."""
    if name not in METHODS:
        raise ValueError(unknown_method_message(name))
    return METHODS[name]


def unknown_method_message(name):
    """'unknown method NAME (did you mean X?); valid methods: ...' (the suggestion when one is close)."""
    close = difflib.get_close_matches(str(name), list(METHODS), n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"unknown method {name!r}{hint}; valid methods: {', '.join(sorted(METHODS))}"


def method_names():
    """Registered names, deep methods first, then baselines, each group in registration order."""
    return [m.name for m in METHODS.values() if not m.is_baseline] + [
        m.name for m in METHODS.values() if m.is_baseline
    ]


def check_model_options(options, methods):
    """Checks `options` ({key: value}) against the model options of `methods`.

    Every key must be an option of at least one of the methods, else a
    ValueError lists the valid ones. Returns {method name: [keys it does not
    take]} for the methods that lack some, so that a caller can say so.
    """
    keys = {m.name: set(m.get_config(BITS, "digits")["model"]) - {"bits"} for m in methods}
    unknown = sorted(set(options) - set().union(*keys.values()))
    if unknown:
        names = " / ".join(m.name for m in methods)
        valid = ", ".join(sorted(set().union(*keys.values())))
        raise ValueError(
            f"{names} has no model option {unknown}; valid options: {valid} "
            "(`tfhash methods NAME` describes them)"
        )
    return {name: sorted(set(options) - own) for name, own in keys.items() if set(options) - own}
