"""The `tfhash` command: `tfhash train <method>`, `tfhash convert`."""

import argparse
import os
import sys

from tfhash import configs


def _threshold(value):
    return value if value == "uniform" else float(value)


def add_train_arguments(parser):
    parser.add_argument(
        "--data",
        default="digits",
        help="digits, a keras.datasets name, or a path to an "
        "npz / mat file, a TFRecord folder or a cifar-10-batches-py folder (default: digits)",
    )
    parser.add_argument("--bits", type=int, default=32, help="code length (default: 32)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the method's, 400 for TBH)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    budget.add_argument("--epochs", type=int, help="training epochs of --steps-per-epoch steps each")
    parser.add_argument("--steps-per-epoch", type=int, help="steps between logs, evaluations and checkpoints")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate of every optimiser")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, weights and sampling (default: 0)"
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
    parser.add_argument("--queries-per-class", type=int, help="queries per class for pooled sources")


def config_from_args(method, args, data_name):
    config = configs.METHODS[method].get_config(args.bits, data_name)
    train = config["train"]
    for key in ("batch_size", "steps", "steps_per_epoch", "learning_rate"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    if args.epochs is not None:
        train["steps"] = args.epochs * train["steps_per_epoch"]
    if args.threshold is not None:
        config["model"]["threshold"] = args.threshold
    train["jit_compile"] = args.jit_compile
    for key in ("bits", "batch_size", "steps", "steps_per_epoch"):
        value = config["model"]["bits"] if key == "bits" else train[key]
        if value <= 0:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be a positive integer; received {value}")
    return config


def data_slug(source):
    return os.path.splitext(os.path.basename(os.path.normpath(str(source))))[0] or "data"


def train_command(args):
    from tfhash.data import load_data
    from tfhash.train import fit

    data = load_data(args.data, args.queries_per_class, seed=args.seed)
    config = config_from_args(args.method, args, "digits" if args.data == "digits" else data_slug(args.data))
    out = args.out or os.path.join("saved_models", f"{args.method}-{data_slug(args.data)}-{args.bits}bit")
    _, record = fit(config, data, out, seed=args.seed, mixed_precision=args.mixed_precision)
    print_table(record)
    print(f"export: {os.path.join(out, 'export')}\nmetrics: {os.path.join(out, 'metrics.json')}")
    return record


def print_table(record):
    keys = [k for k in ("map_at_all", "map_at_1000", "precision_radius_2", "precision_at_100") if k in record]
    print(
        f"\n{record['method']} on {record['data']}, {record['bits']} bits, seed {record['seed']}, "
        f"{record['steps']} steps, {record['num_queries']} queries x {record['num_database']} database "
        f"({record['ground_truth']} ground truth)"
    )
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    print("| " + " | ".join(f"{record[k]:.4f}" for k in keys) + " |")


def convert_command(args):
    from tfhash.data import load_data, write_tfrecord_folder

    data = load_data(args.source, args.queries_per_class, seed=args.seed)
    write_tfrecord_folder(data, args.out)
    print(f"wrote {len(data.train)} train, {len(data.query)} query items to {args.out}")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfhash", description="Learning to hash with Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a hashing method, evaluate it and export it")
    train.add_argument("method", help=f"one of: {', '.join(sorted(configs.METHODS))}")
    add_train_arguments(train)
    convert = sub.add_parser("convert", help="convert any data source to the TBH TFRecord layout")
    convert.add_argument("source", help="digits, a keras.datasets name, or a path")
    convert.add_argument("out", help="output folder (train.tfrecords, test.tfrecords)")
    convert.add_argument("--seed", type=int, default=0)
    convert.add_argument("--queries-per-class", type=int)
    return parser


def run(argv=None):
    """Runs a command; returns its result (the metrics record for `train`)."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        if args.method not in configs.METHODS:
            raise SystemExit(
                f"error: unknown method {args.method!r}; valid methods: {', '.join(sorted(configs.METHODS))}"
            )
        return train_command(args)
    return convert_command(args)


def main(argv=None):
    """Console entry point: runs a command; bad input exits with its message, no traceback."""
    try:
        run(argv)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
