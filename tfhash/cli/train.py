"""`tfhash train`: one method on one data set -> metrics.json, export, checkpoints, logs."""

import os

import numpy as np

from tfhash.cli.common import (
    OPTION_FLAGS,
    add_data_arguments,
    add_model_option_argument,
    add_preset_argument,
    add_ties_argument,
    add_training_arguments,
    augment_from_args,
    data_slug,
    kind_text,
    load_data_from_args,
    method_name,
    model_options_from_args,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from tfhash.configs.common import TRAIN_OVERRIDES, settings_for, with_overrides
from tfhash.defaults import BITS
from tfhash.registry import check_model_options, get_method, method_names


def _threshold(value):
    return value if value == "uniform" else float(value)


def add_train_arguments(parser):
    add_data_arguments(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train again into an --out that holds a finished run of this method (refused otherwise)",
    )
    parser.add_argument("--bits", type=positive_int, default=BITS, help=f"code length (default: {BITS})")
    budget = parser.add_mutually_exclusive_group()
    add_training_arguments(parser, steps=budget)
    budget.add_argument("--epochs", type=positive_int, help="training epochs of --steps-per-epoch steps each")
    parser.add_argument(
        "--steps-per-epoch", type=positive_int, help="steps between logs, evaluations and checkpoints"
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=0,
        help="model seed: weights, sampling, shuffling (default: 0; the split has --split-seed)",
    )
    add_preset_argument(parser)
    add_model_option_argument(parser, "a constructor argument of the method (see `tfhash methods NAME`)")
    parser.add_argument(
        "--backbone",
        help="encoder backbone of methods that have one: mlp (flat features), conv, vgg16, resnet50, "
        "mobilenetv3small, efficientnet-lite0 (images); same as --model-option backbone=NAME",
    )
    parser.add_argument("--out", help="output folder (default: saved_models/<method>-<data>-<bits>bit)")
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 on GPU, mixed_bfloat16 on CPU (losses stay float32)",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        help='binary neuron training threshold: "uniform" '
        "(eps ~ U(0,1), the paper) or a number such as 0.5 (the authors' code)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    add_ties_argument(parser)
    vae = parser.add_argument_group("TBH-VAE (tbh-vae methods only)")
    vae.add_argument(
        "--beta", type=nonnegative_float, help="weight of the codes' total correlation (default: 4)"
    )
    vae.add_argument(
        "--kappa", type=positive_float, help="GECO tolerance on the per-item squared error (default: data)"
    )
    vae.add_argument(
        "--kappa-fraction",
        type=positive_float,
        help="default kappa = this x the mean squared distance of the items to their mean (default: 0.25)",
    )
    vae.add_argument(
        "--binary-posterior",
        choices=("bernoulli", "gaussian"),
        help="binary VAE posterior: Bernoulli codes (default) or the authors' Gaussian-then-sign",
    )
    parser.add_argument(
        "--figure",
        nargs="?",
        const=True,
        help="models with a decoder or generator, image data: write a PNG of query images and their "
        "reconstructions to FIGURE (default: reconstructions.png in the run folder)",
    )


DEEP_ONLY_FLAGS = (
    "batch_size",
    "steps",
    "epochs",
    "steps_per_epoch",
    "learning_rate",
    "optimizer",
    "figure",
    "augment",
    *(key for key in OPTION_FLAGS if key != "backbone"),  # the model-option aliases of deep models
)


def config_from_args(method, args, data):
    """`method`'s config (a registry entry, or its name) for `data` (a `RetrievalData`: its kind
    picks the preset, `settings_for`) with the command line's settings."""
    method = get_method(method) if isinstance(method, str) else method
    settings = settings_for(data, getattr(args, "preset", "auto"))
    options = model_options_from_args(args, method)
    check_model_options(options, [method])
    config = method.get_config(args.bits, settings)
    default_steps = config["train"].get("steps")  # the preset's, before the flags
    train = {key: getattr(args, key, None) for key in TRAIN_OVERRIDES if key != "augment"}
    with_overrides(method, config, {**train, "augment": augment_from_args(args)}, options)
    config["eval"]["ties"] = args.ties
    if method.is_baseline:
        ignored = [f"--{k.replace('_', '-')}" for k in DEEP_ONLY_FLAGS if getattr(args, k) is not None]
        ignored += ["--mixed-precision"] * args.mixed_precision + ["--jit-compile"] * args.jit_compile
        if ignored:
            print(f"note: {method.name} is fitted in closed form; ignoring {' '.join(ignored)}")
        return config
    train = config["train"]
    if args.epochs is not None:
        train["steps"] = args.epochs * train["steps_per_epoch"]
    short = 0 < train["steps"] < 0.1 * default_steps and settings == "paper"
    if short and args.learning_rate is None and method.short_budget_note:
        print(f"note: {train['steps']:,} steps of the paper's {default_steps:,}: {method.short_budget_note}")
    note = method.config_note and method.config_note(config)
    if note:
        print(f"note: {note}")
    train["jit_compile"] = args.jit_compile
    return config


def train_command(args):
    from tfhash.train import finished_method, fit

    method = get_method(args.method)  # resolved once for the command
    data = load_data_from_args(args)
    config = config_from_args(method, args, data)
    out = args.out or os.path.join("saved_models", f"{args.method}-{data_slug(args.data)}-{args.bits}bit")
    if finished_method(out) == args.method and not getattr(args, "overwrite", False):
        raise ValueError(
            f"{out} holds a finished {args.method} run (metrics.json); pass --overwrite to train it again, "
            "or give a new --out (`tfhash info` shows what it holds)"
        )  # another method's finished run is refused by fit, --overwrite or not
    if args.figure is True:
        args.figure = os.path.join(out, "reconstructions.png")
    if args.figure:
        from tfhash.models.base import HashingModel

        cls = method.model
        if not (isinstance(cls, type) and issubclass(cls, HashingModel) and cls.can_reconstruct()):
            raise ValueError(
                f"--figure draws reconstructions; {args.method} has no decoder or generator to show"
            )
        if data.image_shape is None:
            raise ValueError(
                f"--figure needs image data (digits, mnist, CIFAR-10); {data.name} has no image shape"
            )
    model, record = fit(
        config,
        data,
        out,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        labelled_per_class=args.labelled_per_class,
    )
    print_table(record)
    saved = "model.npz" if method.is_baseline else "export"
    print(f"model: {os.path.join(out, saved)}\nmetrics: {os.path.join(out, 'metrics.json')}")
    if args.figure:
        reconstruction_figure(args, data, model, out)
    return record


def reconstruction_figure(args, data, model, out):
    """Draws query images and the model's reconstructions of them (one model; R-SGH's Fig. 2, SGH
    beside R-SGH, is benchmarks/rsgh_figure.py)."""
    from tfhash.visualize import reconstruction_grid

    picks = np.unique(np.linspace(0, len(data.query) - 1, 10).astype(int))  # spread over the classes
    images = data.query.features[picks]
    rows = [("original", images), (args.method, model.reconstruct(images))]
    reconstruction_grid(args.figure, rows, data.image_shape, title=f"{args.bits}-bit codes, {data.name}")
    print(f"figure: {args.figure}")


def print_table(record):
    keys = ("map_at_all", "map_at_1000", "precision_radius_2", "precision_at_100")
    if record.get("protocol") == "train-test":  # the protocol's own ground truth first
        keys = ("euclidean_precision_radius_2", "euclidean_map_at_1000", "euclidean_map_at_all", *keys)
    keys = [k for k in keys if k in record]
    budget = f"{record['steps']} steps, " if record.get("steps") else ""
    print(
        f"\n{record['method']} on {record['data']}, {record['bits']} bits, seed {record['seed']}, "
        f"{budget}{record['num_queries']} {'validation queries' if record.get('validation') else 'queries'}"
        f" x {record['num_database']} database "
        f"({record.get('protocol', 'pooled')} protocol, split seed {record.get('split_seed', 0)}, "
        f"{record['ground_truth']} ground truth, ties: {record.get('ties', 'index')}"
        + ("; euclidean_*: the 50 nearest database items in input space)" if keys[0].startswith("e") else ")")
    )
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    print("| " + " | ".join(f"{record[k]:.4f}" for k in keys) + " |")
    if "dead_bits" in record:
        print(
            f"bits (database codes): {record['dead_bits']} dead of {record['bits']}, mean entropy "
            f"{record['bit_entropy_mean']:.3f} bit, redundancy ||r_k||^2/n "
            f"min {record['bit_redundancy_min']:.4f} mean {record['bit_redundancy_mean']:.4f}"
        )


def training_defaults():
    """One line per deep method: its steps, batch and learning rate on digits, on feature sources and
    on other data (`tfhash.configs.common.settings_for`)."""
    from tfhash.registry import METHODS

    lines = ["default budgets (digits | feature sources | other data: the paper's): steps x batch at "
             "learning rate; --preset paper gives the last on every source"]  # fmt: skip
    for name in method_names():
        if METHODS[name].is_baseline:
            continue
        parts = []
        for data in ("digits", "features", "paper"):
            train = METHODS[name].get_config(BITS, data)["train"]
            batch = kind_text(train["batch_size"])
            parts.append(f"{train['steps']:,} x {batch} at {kind_text(train['learning_rate'], 'g')}")
        lines.append(f"  {name:15} {parts[0]:>22} | {parts[1]:>22} | {parts[2]}")
    return "\n".join(lines + ["baselines (" + ", ".join(n for n in method_names() if METHODS[n].is_baseline)
                               + ") are fitted in closed form"])  # fmt: skip


def add_parser(sub):
    import argparse

    train = sub.add_parser(
        "train",
        help="train a hashing method, evaluate it and export it",
        epilog=training_defaults(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("method", type=method_name, help=f"one of: {', '.join(method_names())}")
    add_train_arguments(train)
    train.set_defaults(handler=train_command)  # argparse has checked the name (`method_name`)
