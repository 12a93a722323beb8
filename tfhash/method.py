"""What a registered method is (`Method`): each method's config module declares its own entries in a
`REGISTRY` list, and `tfhash.registry` gathers them. No TensorFlow here: listing methods stays fast."""

import dataclasses
import functools
import importlib
import inspect
import re
from collections.abc import Callable

from tfhash.defaults import BITS


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered hashing method.

    Attributes:
        name: the command-line name (`tfhash train <name>`).
        model_ref: the class, or "module:Class" (imported on first use of
            `model`, so that listing methods never imports TensorFlow);
            `HashingModel` subclasses are deep methods trained by
            `model.fit`, `Baseline` subclasses (in `tfhash.baselines`) are
            fitted in closed form.
        get_config: `(bits, data) -> config dict` with the paper's defaults
            (`method`, `model` constructor kwargs, `train`, `eval`).
        summary: one line: what the method is.
        short_budget_note: what worked in our own tables when the steps are
            far under the paper's budget (printed by `tfhash train`), or None.
        config_note: `(config) -> str or None`: a warning about a config
            that our own runs found to fail (printed by `tfhash train`), or None.
    """

    name: str
    model_ref: object
    get_config: Callable
    summary: str
    short_budget_note: str | None = None
    config_note: Callable | None = None

    @property
    def model(self):
        """The model class (imported here on first use)."""
        if isinstance(self.model_ref, str):
            module, _, name = self.model_ref.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.model_ref

    @property
    def is_baseline(self):
        if isinstance(self.model_ref, str):
            return self.model_ref.startswith("tfhash.baselines:")
        from tfhash.baselines import Baseline

        return issubclass(self.model_ref, Baseline)

    def options(self):
        """[(key, default, description)] of the method's model options, from its config and the
        "Args:" section of its class docstring (the one place each option is described)."""
        described = argument_descriptions(self.model)
        defaults = self.get_config(BITS, "digits")["model"]
        return [(key, value, described.get(key, "")) for key, value in defaults.items() if key != "bits"]


def variants(module, get_config, summaries, model=None, **options):
    """The `Method` entries of a config module's variants, each configured by
    `get_config(variant=name)`: `summaries` maps each name to its summary, or to (model class
    name, summary) where variants differ in class; `model` is the class name otherwise; `module`
    holds the classes ("tfhash.models.sgh"). `options`: the other `Method` fields (config_note,
    short_budget_note), the same for every variant."""
    entries = []
    for name, summary in summaries.items():
        cls, summary = summary if isinstance(summary, tuple) else (model, summary)
        entries.append(
            Method(name, f"{module}:{cls}", functools.partial(get_config, variant=name), summary, **options)
        )
    return entries


def argument_descriptions(cls):
    """{argument: first sentence of its description} from the "Args:" sections of `cls` and its bases."""
    found = {}
    for klass in reversed(inspect.getmro(cls)):
        doc = inspect.getdoc(klass) or ""
        section = re.search(r"^Args:\n(.*?)(?:^\S|\Z)", doc, re.S | re.M)
        if not section:
            continue
        for block in re.split(r"^    (?=[a-z_][a-z0-9_, ]*:)", section.group(1), flags=re.M):
            name, sep, text = block.partition(":")
            if sep:
                line = " ".join(text.split())
                for key in name.split(","):
                    found[key.strip()] = line.split(". ")[0].rstrip(".")
    return found
