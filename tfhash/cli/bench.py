"""`tfhash bench`: methods x bits x seeds on one data set -> a results folder."""

import os

from tfhash.cli.common import (
    add_data_arguments,
    add_model_option_argument,
    add_preset_argument,
    add_ties_argument,
    add_training_arguments,
    augment_from_args,
    data_slug,
    load_data_from_args,
    method_names_list,
    model_options_from_args,
    nonnegative_int,
    positive_float,
    positive_int,
)
from tfhash.defaults import BIT_GRID, SEEDS
from tfhash.registry import check_model_options, get_method, method_names


def add_bench_arguments(parser):
    add_data_arguments(parser)
    parser.add_argument(
        "--methods",
        nargs="+",
        type=method_names_list,
        help=f"methods to run, space or comma separated (default: all: {' '.join(method_names())})",
    )
    grid, seeds = " ".join(map(str, BIT_GRID)), " ".join(map(str, SEEDS))
    parser.add_argument(
        "--bits", type=positive_int, nargs="+", default=list(BIT_GRID), help=f"code lengths (default: {grid})"
    )
    parser.add_argument(
        "--seeds", type=nonnegative_int, nargs="+", default=list(SEEDS), help=f"seeds (default: {seeds})"
    )
    add_training_arguments(parser, every_method=True)
    parser.add_argument(
        "--budget-seconds",
        type=positive_float,
        help="also stop each deep method's training after this many seconds",
    )
    add_model_option_argument(parser, "a constructor argument for every method that has it")
    add_preset_argument(parser)
    add_ties_argument(parser)
    parser.add_argument("--out", help="results folder (default: runs/bench-<data>)")
    parser.add_argument("--export", action="store_true", help="keep every cell's SavedModel / model.npz")
    parser.add_argument(
        "--euclidean",
        action="store_true",
        help="also evaluate under the Euclidean ground truth (50 nearest neighbours in input space)",
    )


def bench_command(args):
    from tfhash.bench import run_benchmark

    methods = [name for group in args.methods for name in group] if args.methods else None
    for name in methods or ():
        get_method(name)  # unknown names fail before the data is loaded
    options = model_options_from_args(args)
    check_model_options(options, [get_method(name) for name in methods or method_names()])
    data = load_data_from_args(args)
    out = args.out or os.path.join("runs", f"bench-{data_slug(args.data)}")
    records = run_benchmark(
        data,
        methods,
        args.bits,
        args.seeds,
        args.steps,
        args.budget_seconds,
        out,
        export=args.export,
        euclidean=args.euclidean,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        model_options=options,
        labelled_per_class=args.labelled_per_class,
        augment=augment_from_args(args),
        ties=args.ties,
        preset=args.preset,
        optimizer=args.optimizer,
    )
    with open(os.path.join(out, "results.md")) as f:
        print("\n" + f.read())
    print(f"results: {out}/results.csv, results.json, results.md, *.png")
    return records


def add_parser(sub):
    bench = sub.add_parser("bench", help="train and evaluate methods x bits x seeds; write a results table")
    add_bench_arguments(bench)
    bench.set_defaults(handler=bench_command)
