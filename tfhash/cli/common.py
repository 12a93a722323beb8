"""Flags and helpers shared by the commands: data sources and splits, model options, run records."""

import argparse
import functools
import json
import math
import os

from tfhash.data.dataset import PROTOCOLS
from tfhash.defaults import BITS, OPTIMIZERS
from tfhash.identity import run_split  # noqa: F401 (the CLI's commands import it from here)


def _number(kind, text, low, strict):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}; received {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; received {text}")
    if value < low or (strict and value == low):
        bound = "greater than" if strict else "at least"
        raise argparse.ArgumentTypeError(f"must be {bound} {low}; received {text}")
    return value


def positive_int(text):
    """argparse type: an integer >= 1 (every count, size and step flag of every command)."""
    return _number(int, text, 1, False)


def nonnegative_int(text):
    """argparse type: an integer >= 0 (seeds, Hamming radii)."""
    return _number(int, text, 0, False)


def positive_float(text):
    """argparse type: a finite number > 0 (learning rates, tolerances, time budgets)."""
    return _number(float, text, 0.0, True)


def nonnegative_float(text):
    """argparse type: a finite number >= 0 (loss weights)."""
    return _number(float, text, 0.0, False)


def add_split_arguments(parser, split_seed_default=0):
    """--queries-per-class, --split-seed, --protocol and --image-size: how a source is split."""
    parser.add_argument("--queries-per-class", type=positive_int, help="queries per class for pooled sources")
    parser.add_argument(
        "--split-seed",
        type=nonnegative_int,
        default=split_seed_default,
        help="seed of the query/database split (default: "
        + ("0, the protocol's)" if split_seed_default == 0 else "the run's, else 0)"),
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None if split_seed_default is None else "pooled",
        help="pooled: per-class queries from the pooled source, label ground truth (default); "
        "train-test: the source's test part as queries, ground truth the 50 Euclidean nearest "
        "database items (GMAN's protocol)",
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        default=None,
        help="model selection: replace the queries with held-out database items "
        "(RetrievalData.validation_data), so that a setting chosen on the figures never saw a query",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="image folders: resize every image to H x W (default: the size most files have)",
    )


def add_data_arguments(parser, split_seed_default=0):
    parser.add_argument(
        "--data",
        default="digits",
        help="digits, a keras.datasets name, or a path to an npz / mat file, a TFRecord folder, "
        "a cifar-10-batches-py folder or an image folder (one subfolder per class) (default: digits)",
    )
    add_split_arguments(parser, split_seed_default)


def load_data_from_args(args, run=None, read_rows=True):
    """The data set of a command's data flags; `run` (`run_split`) fills the split flags left unset.
    `read_rows=False`: an image folder's files and a shard folder's features are left for Beam's
    workers to read."""
    from tfhash.data import load_data
    from tfhash.data.images import is_image_folder

    run = run or {}
    seed = args.split_seed if args.split_seed is not None else (run.get("split_seed") or 0)
    image_size = args.image_size
    if (
        image_size is None
        and run.get("image_shape")
        and os.path.isdir(args.data)
        and is_image_folder(args.data)
    ):
        image_size = run["image_shape"][:2]  # the folder's images, resized as in training
    data = load_data(
        args.data,
        args.queries_per_class if args.queries_per_class is not None else run.get("queries_per_class"),
        seed=seed,
        protocol=args.protocol or run.get("protocol") or "pooled",
        image_size=image_size,
        read_rows=read_rows,
    )
    if args.validation or run.get("validation"):
        data = data.validation_data()
        print(
            f"note: validation split: {len(data.query)} queries held out of the database; "
            "the query split is not used"
        )
    for note in data.notes:
        print(f"note: {note}")
    return data


@functools.lru_cache(maxsize=1)
def default_optimisers_text():
    """Which optimiser each method trains with by default, from the registered configs (paper
    settings): "sgd with momentum for bihalf, hashnet, ...; adam for the others"."""
    from tfhash.registry import get_method, method_names

    sgd = []
    for name in method_names():
        method = get_method(name)
        if not method.is_baseline and method.get_config(BITS, "paper")["train"].get("optimizer") == "sgd":
            sgd.append(name)
    return f"SGD with momentum for {', '.join(sgd)}; Adam for the others" if sgd else "Adam"


def add_training_arguments(parser, every_method=False, steps=None):
    """The training flags `tfhash train` and `tfhash bench` share, with one help text each:
    --steps (into `steps`, e.g. a mutually exclusive group, when given), --learning-rate,
    --batch-size, --optimizer, --augment and --labelled-per-class. `every_method`: the bench's
    wording (the value applies to every deep method of the grid)."""
    each = " of every deep method" if every_method else ""
    (steps or parser).add_argument(
        "--steps", type=positive_int, help=f"training steps{each} (default: the method's preset's)"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        help=f"base learning rate of every optimiser{each} (default: the method's preset's; "
        "`tfhash methods NAME` shows it)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help=f"batch size{each} (default: the method's preset's)"
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"optimiser of every role{each} (default: the method's own: {default_optimisers_text()})",
    )
    parser.add_argument(
        "--augment",
        help="image models: crop (pad 4, random crop), flip (left-right; not for digits) or crop,flip "
        "(seeded; default: none)",
    )
    parser.add_argument(
        "--labelled-per-class",
        type=positive_int,
        help="train on this many items per class, drawn from the database: supervised methods always "
        "do (default: 500; 50 on digits), other methods when given (BGAN's protocol: 1000)",
    )


def augment_from_args(args):
    """--augment as a list of augmentations, or None."""
    if not args.augment:
        return None
    from tfhash.data.augmentation import parse_augment

    return list(parse_augment(args.augment))


def add_model_option_argument(parser, help_text):
    parser.add_argument(
        "--model-option",
        action="append",
        type=_model_option,
        default=[],
        metavar="KEY=VALUE",
        help=f"{help_text}, e.g. hidden_dim=512; VALUE is JSON or a string (repeatable)",
    )


# flags that are documented aliases of `--model-option KEY=VALUE` (`tfhash train`): one code path
OPTION_FLAGS = ("backbone", "threshold", "beta", "kappa", "kappa_fraction", "binary_posterior")


def model_options_from_args(args, method=None):
    """The model options of a command line: --model-option KEY=VALUE and its aliases
    (`OPTION_FLAGS`). With `method` (a registry entry), an alias the method lacks is a ValueError
    that names the flag and the methods that have the option."""
    options = dict(args.model_option)
    for key in OPTION_FLAGS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if method is not None and key not in method.get_config(BITS, "digits")["model"]:
            from tfhash.registry import get_method, method_names

            owners = [n for n in method_names() if key in get_method(n).get_config(BITS, "digits")["model"]]
            raise ValueError(
                f"--{key.replace('_', '-')} sets the model option {key}, which {method.name} does not "
                f"have (methods that do: {', '.join(owners)})"
            )
        options[key] = value
    return options


def names_list(value):
    return [name for part in value.split(",") for name in [part.strip()] if name]


def method_name(value):
    """An argparse type: a registered method name; an unknown one is a usage error (exit 2, before
    TensorFlow is imported) with the nearest names."""
    from tfhash.registry import METHODS, unknown_method_message

    if value not in METHODS:
        raise argparse.ArgumentTypeError(unknown_method_message(value))
    return value


def method_names_list(value):
    """An argparse type: space- or comma-separated method names, each checked as `method_name`."""
    return [method_name(name) for name in names_list(value)]


def _model_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. hidden_dim=512; received {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def data_slug(source):
    return os.path.splitext(os.path.basename(os.path.normpath(str(source))))[0] or "data"


def add_ties_argument(parser):
    parser.add_argument(
        "--ties",
        choices=("expected", "index", "random"),
        default="expected",
        help="items at equal Hamming distance in mAP and precision@N: expected (default: the exact "
        "expectation over random orders), index (database order, as most published code), random",
    )


def add_preset_argument(parser):
    parser.add_argument(
        "--preset",
        choices=("auto", "paper"),
        default="auto",
        help="training budgets: auto (default: a quick preset on digits; on feature sources without "
        "images, ours chosen on validation curves (docs/reproduction.md); the paper's elsewhere) or "
        "paper (the paper's on every source)",
    )


def kind_text(value, spec=""):
    """A config setting for people: "32", or "32 (images 16)" when it depends on the input kind
    (`tfhash.configs.common.for_input_kind`); `spec` formats the numbers ("g")."""
    if isinstance(value, dict):
        return f"{value['features']:{spec}} (images {value['images']:{spec}})"
    return f"{value:{spec}}"


def add_engine_arguments(parser, what):
    """--engine, --workers, --shards: where an inference job runs (`tfhash.beam`)."""
    parser.add_argument(
        "--engine",
        choices=("local", "beam"),
        default="local",
        help=f"local: this process writes one file (default); beam: an Apache Beam pipeline writes {what} "
        "as a folder of part-NNNNN-of-NNNNN.npz shards (a re-run skips finished shards; needs "
        'pip install "tfhash[beam]"). Beam pipeline options (e.g. a cluster --runner) go after --',
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="--engine beam: worker processes of the local runner (default: one per CPU core)",
    )
    parser.add_argument(
        "--shards",
        type=positive_int,
        help="--engine beam: output shards (default: one per worker, at least one per 100,000 rows)",
    )


def load_beam(args):
    """`tfhash.beam` for --engine beam, after checking that --out can be a folder of shards; or a
    one-line error naming the extra to install."""
    import logging

    if os.path.isfile(args.out):
        raise ValueError(f"{args.out} is a file; --engine beam writes a folder of shards: give a folder path")

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # apache_beam warns at import about optional cloud clients
    try:
        from tfhash import beam
    except ImportError as err:
        if "apache_beam" not in str(err):
            raise
        raise ValueError(
            '--engine beam needs Apache Beam, which is not installed: pip install "tfhash[beam]"'
        ) from None
    finally:
        root.setLevel(level)
    return beam
