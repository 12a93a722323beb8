"""The method registry: one entry per method, mapping its name to what runs it.

Adding a method is one `Method(...)` entry in `METHODS`: the model class
(a `HashingModel` trained with `fit`, or a NumPy `Baseline`), the function
returning its paper configuration, and a one-line summary for `--help` and
the benchmark table.
"""

import dataclasses
import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable

from tfhash import configs
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


def _baseline(name, cls, summary):
    config = functools.partial(configs.baselines.get_config, variant=name)
    return Method(name, f"tfhash.baselines:{cls}", config, summary)


TBH_VAE = {
    "both": "TBH with a beta-TC binary VAE and a GECO continuous VAE (Verwilst et al.)",
    "binary": "TBH-VAE ablation: the binary VAE change only",
    "geco": "TBH-VAE ablation: the GECO continuous VAE change only",
    "none": "TBH-VAE ablation: neither change (TBH under TBH-VAE's settings)",
}

BGAN = {
    "bgan": "codes from a neighbour graph, a generator fed by them, a discriminator (Song et al. 2018)",
    "bgan-app": "BGAN with app(beta z) = clip(beta z, -1, 1) continuation instead of tanh",
    "bgan-two-step": "BGAN ablation: train tanh(z), take the sign afterwards (the paper's Table 3 model)",
    "bgan-ln": "BGAN ablation: the neighbour structure loss alone",
    "bgan-ln-lc": "BGAN ablation: neighbour + content losses (no discriminator)",
    "bgan-ln-la": "BGAN ablation: neighbour + adversarial losses",
    "bgan-authors": "BGAN as the authors' final code trains it: a VAE-GAN with feature matching",
}

METHODS = {
    method.name: method
    for method in (
        Method(
            "tbh",
            "tfhash.models.tbh:TBH",
            configs.tbh.get_config,
            "Auto-Encoding Twin-Bottleneck Hashing (Shen et al. 2020)",
            configs.tbh.SHORT_BUDGET_NOTE,
        ),
        Method(
            "sgh",
            "tfhash.models.sgh:SGH",
            configs.sgh.get_config,
            "stochastic generative hashing, linear (Dai et al. 2017)",
        ),
        Method(
            "deep-sgh",
            "tfhash.models.sgh:SGH",
            functools.partial(configs.sgh.get_config, variant="deep-sgh"),
            "SGH with [D-K-K-K] / [K-K-K-D] networks",
        ),
        Method(
            "rsgh",
            "tfhash.models.sgh:SGH",
            functools.partial(configs.sgh.get_config, variant="rsgh"),
            "redundancy-resistant SGH (Du et al. 2018)",
        ),
        Method(
            "hashnet",
            "tfhash.models.hashnet:HashNet",
            configs.hashnet.get_config,
            "HashNet: weighted pairwise likelihood, continuation (Cao et al. 2017; supervised)",
            config_note=configs.hashnet.config_note,
        ),
        Method(
            "hashnet-w",
            "tfhash.models.hashnet:HashNet",
            functools.partial(configs.hashnet.get_config, variant="hashnet-w"),
            "HashNet ablation: all pair weights 1 (supervised)",
            config_note=configs.hashnet.config_note,
        ),
        Method(
            "hashnet-c",
            "tfhash.models.hashnet:HashNet",
            functools.partial(configs.hashnet.get_config, variant="hashnet-c"),
            "HashNet ablation: no continuation, tanh then sign (supervised)",
            config_note=configs.hashnet.config_note,
        ),
        Method(
            "jmlh",
            "tfhash.models.jmlh:JMLH",
            configs.jmlh.get_config,
            "a classifier on stochastic binary codes with a KL prior (Shen et al. 2019; supervised)",
        ),
        Method(
            "classifier",
            "tfhash.models.classifier:ClassifierHash",
            configs.classifier.get_config,
            "reference point: a cross-entropy classifier, its penultimate features hashed by ITQ "
            "(supervised)",
        ),
        Method(
            "gman",
            "tfhash.models.gman:GMAN",
            configs.gman.get_config,
            "auto-encoder against a pair and a code discriminator (Wang, Liu and Zhao 2018)",
            config_note=configs.gman.config_note,
        ),
        Method(
            "gman-no-aegan",
            "tfhash.models.gman:GMAN",
            functools.partial(configs.gman.get_config, variant="gman-no-aegan"),
            "GMAN ablation: L2 reconstruction instead of the AE-GAN",
            config_note=configs.gman.config_note,
        ),
        Method(
            "gman-no-bgan",
            "tfhash.models.gman:GMAN",
            functools.partial(configs.gman.get_config, variant="gman-no-bgan"),
            "GMAN ablation: ||sign(h) - h||_2 instead of the B-GAN",
            config_note=configs.gman.config_note,
        ),
        *(
            Method(
                name,
                "tfhash.models.bgan:BGAN",
                functools.partial(configs.bgan.get_config, variant=name),
                summary,
                config_note=configs.bgan.config_note,
            )
            for name, summary in BGAN.items()
        ),
        Method(
            "greedyhash",
            "tfhash.models.similarity_hash:GreedyHash",
            functools.partial(configs.similarity_hash.get_config, variant="greedyhash"),
            "a hash layer keeping cosine similarities, straight-through sign (Su et al. 2018)",
        ),
        Method(
            "bihalf",
            "tfhash.models.similarity_hash:BiHalf",
            functools.partial(configs.similarity_hash.get_config, variant="bihalf"),
            "a hash layer keeping cosine similarities, per-batch median split (Li and van Gemert 2021)",
        ),
        Method(
            "sgman",
            "tfhash.models.gman:SGMAN",
            functools.partial(configs.gman.get_config, variant="sgman"),
            "GMAN with a classifier on the codes (supervised)",
            config_note=configs.gman.config_note,
        ),
        *(
            Method(
                name,
                "tfhash.models.tbh_vae:TBHVAE",
                functools.partial(configs.tbh_vae.get_config, variant=arm),
                TBH_VAE[arm],
                configs.tbh_vae.SHORT_BUDGET_NOTE,
            )
            for arm, name in configs.tbh_vae.ABLATION_METHODS.items()
        ),
        _baseline("lsh", "LSH", "random projections, sign(x W) (Charikar 2002)"),
        _baseline("pcah", "PCAH", "PCA then sign"),
        _baseline("itq", "ITQ", "PCA then a learned orthogonal rotation (Gong & Lazebnik 2011)"),
        _baseline("sh", "SH", "spectral hashing along PCA directions (Weiss et al. 2008)"),
    )
}


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
