"""The `tfhash` command: `tfhash train <method>`, `tfhash bench`, `tfhash convert`."""

import argparse
import os
import sys

from tfhash.registry import get_method, method_names


def _threshold(value):
    return value if value == "uniform" else float(value)


def add_data_arguments(parser):
    parser.add_argument(
        "--data",
        default="digits",
        help="digits, a keras.datasets name, or a path to an "
        "npz / mat file, a TFRecord folder or a cifar-10-batches-py folder (default: digits)",
    )
    parser.add_argument("--queries-per-class", type=int, help="queries per class for pooled sources")


def add_train_arguments(parser):
    add_data_arguments(parser)
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


DEEP_ONLY_FLAGS = ("batch_size", "steps", "epochs", "steps_per_epoch", "learning_rate", "threshold")


def config_from_args(method, args, data_name):
    if args.bits <= 0:
        raise SystemExit(f"error: --bits must be a positive integer; received {args.bits}")
    method = get_method(method)
    config = method.get_config(args.bits, data_name)
    if method.is_baseline:
        ignored = [f"--{k.replace('_', '-')}" for k in DEEP_ONLY_FLAGS if getattr(args, k) is not None]
        ignored += ["--mixed-precision"] * args.mixed_precision + ["--jit-compile"] * args.jit_compile
        if ignored:
            print(f"note: {method.name} is fitted in closed form; ignoring {' '.join(ignored)}")
        return config
    train = config["train"]
    for key in ("batch_size", "steps", "steps_per_epoch", "learning_rate"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    if args.epochs is not None:
        train["steps"] = args.epochs * train["steps_per_epoch"]
    if args.threshold is not None:
        config["model"]["threshold"] = args.threshold
    train["jit_compile"] = args.jit_compile
    for key in ("batch_size", "steps", "steps_per_epoch"):
        value = train[key]
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
    saved = "model.npz" if get_method(args.method).is_baseline else "export"
    print(f"model: {os.path.join(out, saved)}\nmetrics: {os.path.join(out, 'metrics.json')}")
    return record


def print_table(record):
    keys = [k for k in ("map_at_all", "map_at_1000", "precision_radius_2", "precision_at_100") if k in record]
    budget = f"{record['steps']} steps, " if record.get("steps") else ""
    print(
        f"\n{record['method']} on {record['data']}, {record['bits']} bits, seed {record['seed']}, "
        f"{budget}{record['num_queries']} queries x {record['num_database']} database "
        f"({record['ground_truth']} ground truth)"
    )
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    print("| " + " | ".join(f"{record[k]:.4f}" for k in keys) + " |")


def convert_command(args):
    from tfhash.data import load_data, write_tfrecord_folder

    data = load_data(args.source, args.queries_per_class, seed=args.seed)
    write_tfrecord_folder(data, args.out)
    print(f"wrote {len(data.train)} train, {len(data.query)} query items to {args.out}")


def _names(value):
    return [name for part in value.split(",") for name in [part.strip()] if name]


def add_bench_arguments(parser):
    add_data_arguments(parser)
    parser.add_argument(
        "--methods",
        nargs="+",
        type=_names,
        help=f"methods to run, space or comma separated (default: all: {' '.join(method_names())})",
    )
    parser.add_argument(
        "--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default: 16 32 64)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument(
        "--steps", type=int, help="training steps of each deep method (default: its preset's)"
    )
    parser.add_argument(
        "--budget-seconds", type=float, help="also stop each deep method's training after this many seconds"
    )
    parser.add_argument("--out", help="results folder (default: runs/bench-<data>)")
    parser.add_argument("--export", action="store_true", help="keep every cell's SavedModel / model.npz")


def bench_command(args):
    from tfhash.bench import run_benchmark
    from tfhash.data import load_data

    methods = [name for group in args.methods for name in group] if args.methods else None
    for name in methods or ():
        get_method(name)  # unknown names fail before the data is loaded
    data = load_data(args.data, args.queries_per_class, seed=0)
    out = args.out or os.path.join("runs", f"bench-{data_slug(args.data)}")
    records = run_benchmark(
        data, methods, args.bits, args.seeds, args.steps, args.budget_seconds, out, export=args.export
    )
    with open(os.path.join(out, "results.md")) as f:
        print("\n" + f.read())
    print(f"results: {out}/results.csv, results.json, results.md, *.png")
    return records


def build_parser():
    parser = argparse.ArgumentParser(prog="tfhash", description="Learning to hash with Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a hashing method, evaluate it and export it")
    train.add_argument("method", help=f"one of: {', '.join(method_names())}")
    add_train_arguments(train)
    bench = sub.add_parser("bench", help="train and evaluate methods x bits x seeds; write a results table")
    add_bench_arguments(bench)
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
        get_method(args.method)  # an unknown name fails before the data is loaded
        return train_command(args)
    if args.command == "bench":
        return bench_command(args)
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
