"""The `tfhash` command: train, bench, encode, index, search, eval, convert."""

import argparse
import json
import os
import sys

import numpy as np

from tfhash.data.dataset import PROTOCOLS
from tfhash.models.base import HashingModel
from tfhash.models.sgh import VARIANTS as SGH_VARIANTS
from tfhash.registry import check_model_options, get_method, method_names


def _threshold(value):
    return value if value == "uniform" else float(value)


def add_data_arguments(parser, split_seed_default=0):
    parser.add_argument(
        "--data",
        default="digits",
        help="digits, a keras.datasets name, or a path to an npz / mat file, a TFRecord folder, "
        "a cifar-10-batches-py folder or an image folder (one subfolder per class) (default: digits)",
    )
    parser.add_argument("--queries-per-class", type=int, help="queries per class for pooled sources")
    parser.add_argument(
        "--split-seed",
        type=int,
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
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="image folders: resize every image to H x W (default: the first file's size)",
    )


def load_data_from_args(args, split_seed=None, protocol=None):
    """The data set of a command's data flags; `split_seed` / `protocol` fill flags left unset."""
    from tfhash.data import load_data

    seed = args.split_seed if args.split_seed is not None else (split_seed or 0)
    data = load_data(
        args.data,
        args.queries_per_class,
        seed=seed,
        protocol=args.protocol or protocol or "pooled",
        image_size=args.image_size,
    )
    for note in data.notes:
        print(f"note: {note}")
    return data


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
        "--seed",
        type=int,
        default=0,
        help="model seed: weights, sampling, shuffling (default: 0; the split has --split-seed)",
    )
    parser.add_argument(
        "--labelled-per-class",
        type=int,
        help="supervised methods: labelled training items per class, drawn from the database "
        "(default: 500; 50 on digits)",
    )
    add_model_option_argument(parser, "a constructor argument of the method (see `tfhash methods NAME`)")
    parser.add_argument(
        "--backbone",
        help="encoder backbone of methods that have one: mlp (flat features), conv, vgg16, resnet50, "
        "mobilenetv3small (images); same as --model-option backbone=NAME",
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
    parser.add_argument(
        "--augment",
        help="image models: crop (pad 4, random crop), flip (left-right; not for digits) or crop,flip "
        "(seeded; default: none)",
    )
    vae = parser.add_argument_group("TBH-VAE (tbh-vae methods only)")
    vae.add_argument("--beta", type=float, help="weight of the codes' total correlation (default: 4)")
    vae.add_argument(
        "--kappa", type=float, help="GECO tolerance on the per-item squared error (default: data)"
    )
    vae.add_argument(
        "--kappa-fraction",
        type=float,
        help="default kappa = this x the mean squared distance of the items to their mean (default: 0.25)",
    )
    vae.add_argument(
        "--binary-posterior",
        choices=("bernoulli", "gaussian"),
        help="binary VAE posterior: Bernoulli codes (default) or the authors' Gaussian-then-sign",
    )
    parser.add_argument(
        "--figure",
        help="models with a decoder or generator, image data: write a PNG of query images and their "
        "reconstructions (SGH variants: also train the other of sgh / rsgh, R-SGH's Fig. 2)",
    )


MODEL_FLAGS = ("beta", "kappa", "kappa_fraction", "binary_posterior")


def add_model_option_argument(parser, help_text):
    parser.add_argument(
        "--model-option",
        action="append",
        type=_model_option,
        default=[],
        metavar="KEY=VALUE",
        help=f"{help_text}, e.g. hidden_dim=512; VALUE is JSON or a string (repeatable)",
    )


def model_options_from_args(args):
    options = dict(args.model_option)
    if getattr(args, "backbone", None):
        options["backbone"] = args.backbone
    return options


DEEP_ONLY_FLAGS = (
    "batch_size",
    "steps",
    "epochs",
    "steps_per_epoch",
    "learning_rate",
    "threshold",
    "figure",
    "augment",
    *MODEL_FLAGS,
)


def config_from_args(method, args, data_name):
    if args.bits <= 0:
        raise SystemExit(f"error: --bits must be a positive integer; received {args.bits}")
    method = get_method(method)
    config = method.get_config(args.bits, data_name)
    options = model_options_from_args(args)
    check_model_options(options, [method])
    config["model"].update(options)
    if method.is_baseline:
        ignored = [f"--{k.replace('_', '-')}" for k in DEEP_ONLY_FLAGS if getattr(args, k) is not None]
        ignored += ["--mixed-precision"] * args.mixed_precision + ["--jit-compile"] * args.jit_compile
        ignored += ["--labelled-per-class"] * (args.labelled_per_class is not None)
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
    for key in MODEL_FLAGS:
        if getattr(args, key, None) is not None:
            if key not in config["model"]:
                raise SystemExit(
                    f"error: --{key.replace('_', '-')} applies to the tbh-vae methods, not {method.name}"
                )
            config["model"][key] = getattr(args, key)
    train["jit_compile"] = args.jit_compile
    if args.augment:
        from tfhash.data.augmentation import parse_augment

        train["augment"] = list(parse_augment(args.augment))
    for key in ("batch_size", "steps", "steps_per_epoch"):
        value = train[key]
        if value <= 0:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be a positive integer; received {value}")
    return config


def data_slug(source):
    return os.path.splitext(os.path.basename(os.path.normpath(str(source))))[0] or "data"


def train_command(args):
    from tfhash.train import fit

    config = config_from_args(args.method, args, "digits" if args.data == "digits" else data_slug(args.data))
    data = load_data_from_args(args)
    out = args.out or os.path.join("saved_models", f"{args.method}-{data_slug(args.data)}-{args.bits}bit")
    if args.figure:
        cls = get_method(args.method).model
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
    saved = "model.npz" if get_method(args.method).is_baseline else "export"
    print(f"model: {os.path.join(out, saved)}\nmetrics: {os.path.join(out, 'metrics.json')}")
    if args.figure:
        reconstruction_figure(args, data, model, out)
    return record


def reconstruction_figure(args, data, model, out):
    """Draws query images and the model's reconstructions of them; SGH variants also train the other
    of sgh / rsgh with the same flags and add its row (R-SGH's Fig. 2)."""
    from tfhash.train import fit
    from tfhash.visualize import reconstruction_grid

    picks = np.unique(np.linspace(0, len(data.query) - 1, 10).astype(int))  # spread over the classes
    images = data.query.features[picks]
    rows = [("original", images)]
    if args.method in SGH_VARIANTS:
        other = "sgh" if args.method == "rsgh" else "rsgh"
        config = config_from_args(other, args, "digits" if args.data == "digits" else data_slug(args.data))
        other_model, _ = fit(config, data, f"{out}-{other}", seed=args.seed, verbose=0)
        names = {"sgh": "SGH", "deep-sgh": "Deep-SGH", "rsgh": "R-SGH"}
        rows += [
            (names[m.variant], m.reconstruct(images))
            for m in sorted((model, other_model), key=lambda m: SGH_VARIANTS.index(m.variant))
        ]
        print(f"(the {other} run is in {out}-{other})")
    else:
        rows.append((args.method, model.reconstruct(images)))
    reconstruction_grid(args.figure, rows, data.image_shape, title=f"{args.bits}-bit codes, {data.name}")
    print(f"figure: {args.figure}")


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
    if "dead_bits" in record:
        print(
            f"bits (database codes): {record['dead_bits']} dead of {record['bits']}, mean entropy "
            f"{record['bit_entropy_mean']:.3f} bit, redundancy ||r_k||^2/n "
            f"min {record['bit_redundancy_min']:.4f} mean {record['bit_redundancy_mean']:.4f}"
        )


def convert_command(args):
    from tfhash.data import load_data, write_tfrecord_folder

    data = load_data(args.source, args.queries_per_class, seed=args.split_seed, protocol=args.protocol)
    write_tfrecord_folder(data, args.out)
    print(f"wrote {len(data.train)} train, {len(data.query)} query items to {args.out}")


def _names(value):
    return [name for part in value.split(",") for name in [part.strip()] if name]


def _model_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. hidden_dim=512; received {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate of every deep method")
    parser.add_argument("--batch-size", type=int, help="batch size of every deep method")
    add_model_option_argument(parser, "a constructor argument for every method that has it")
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
        model_options=model_options_from_args(args),
    )
    with open(os.path.join(out, "results.md")) as f:
        print("\n" + f.read())
    print(f"results: {out}/results.csv, results.json, results.md, *.png")
    return records


def run_split(model_path):
    """(split seed, protocol) recorded by the run that holds `model_path`, or (None, None)."""
    path = os.path.abspath(model_path)
    for folder in (path, os.path.dirname(path)):
        record = os.path.join(folder, "metrics.json")
        if os.path.isfile(record):
            with open(record) as f:
                info = json.load(f)
            return info.get("split_seed"), info.get("protocol")
    return None, None


def encode_command(args):
    from tfhash.serve import encode_source

    data = load_data_from_args(args, *run_split(args.model))
    info = encode_source(args.model, data, args.out, split=args.split)
    print(
        f"wrote {info['items']} {info['bits']}-bit codes "
        f"({info['items_per_second']:,.0f} items/s) to {args.out}"
    )
    return info


def index_command(args):
    from tfhash.serve import build_index

    index = build_index(args.codes, args.out, backend=args.backend, radius_hashes=args.radius_hashes)
    print(
        f"indexed {len(index)} {index.bits}-bit codes "
        f"({index.backend}, {index.memory_bytes:,} bytes) in {args.out}"
    )
    return index


def search_command(args):
    import numpy as np

    from tfhash import serve
    from tfhash.encoder import load_encoder
    from tfhash.index import HammingIndex

    encoder = load_encoder(args.model)
    index = HammingIndex.load(args.index, backend=args.backend)
    data = None
    if args.data:
        data = load_data_from_args(args, *run_split(args.model))
    if args.images:
        image_shape = data.image_shape if data else None
        features = serve.load_images(args.images, encoder.input_dim, image_shape)
        query_ids, query_labels = np.arange(len(features)), None
    elif args.features:
        features = np.load(args.features)
        query_ids, query_labels = np.arange(len(features)), None
    elif data is not None:
        query = data.query.subset(slice(0, args.queries))
        features, query_ids, query_labels = query.features, query.ids, query.labels
    else:
        raise ValueError(
            "give queries: --data SOURCE (its query split), --features FILE.npy or --images FILES"
        )
    results = serve.search(encoder, index, features, k=args.k, radius=args.radius)
    serve.write_search_results(args.out, query_ids, results)
    print(f"{len(features)} queries -> {args.out}")
    if args.grid:
        if args.radius is not None or data is None:
            raise ValueError(
                "--grid needs top-k results (no --radius) and --data (the images of the database)"
            )
        shown = np.unique(np.linspace(0, len(features) - 1, max(1, args.grid_queries)).astype(int))  # spread
        images = features[shown].reshape(-1, *(data.image_shape or (encoder.input_dim,)))
        labels = None if query_labels is None else query_labels[shown]
        matches = serve.write_grid(args.grid, data, images, labels, results[0][shown], results[1][shown])
        note = "" if matches is None else f", {matches.mean():.0%} of results share the query's label"
        print(f"grid of {images.shape[0]} queries x top {args.k} -> {args.grid}{note}")
    return results


def eval_command(args):
    from tfhash.serve import evaluate_codes

    metrics = evaluate_codes(
        args.query_codes, args.database_codes, args.top_k, args.radius, args.empty_queries
    )
    print("| " + " | ".join(metrics) + " |\n|" + "---|" * len(metrics))
    print("| " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |")
    if args.out:
        from tfhash.files import write_json

        write_json(metrics, args.out)
    return metrics


def add_serve_parsers(sub):
    encode = sub.add_parser("encode", help="encode a data split with a trained model -> codes file")
    encode.add_argument("model", help="a SavedModel folder, a baseline model.npz, or a run folder")
    add_data_arguments(encode, split_seed_default=None)
    encode.add_argument("--split", default="database", help="database (default), query or train")
    encode.add_argument("--out", required=True, help="codes file to write (.npz)")
    index = sub.add_parser("index", help="build a Hamming index from a codes file")
    index.add_argument("codes", help="codes file from `tfhash encode`")
    index.add_argument("--out", required=True, help="index file to write (.npz)")
    index.add_argument("--backend", default="auto", help="faiss, numpy or auto (default: faiss if installed)")
    index.add_argument(
        "--radius-hashes",
        type=int,
        help="faiss: exact radius searches below N through N multi-hash tables (fast on long codes)",
    )
    search = sub.add_parser("search", help="encode queries and search an index -> CSV/JSON (+ a PNG grid)")
    search.add_argument("model", help="the encoder that made the index's codes")
    search.add_argument("index", help="index file from `tfhash index`")
    add_data_arguments(search, split_seed_default=None)
    search.set_defaults(data=None)
    search.add_argument("--features", help="queries as a .npy array (n, D) instead of --data's query split")
    search.add_argument(
        "--images", nargs="+", help="queries as image files (resized to --data's image shape)"
    )
    search.add_argument("--queries", type=int, help="use only the first N queries of --data")
    search.add_argument("--k", type=int, default=10, help="results per query (default: 10)")
    search.add_argument("--radius", type=int, help="return every item within this Hamming radius instead")
    search.add_argument(
        "--out", default="search.csv", help="results file, .csv or .json (default: search.csv)"
    )
    search.add_argument("--grid", help="also write a PNG grid of queries and their top-k results")
    search.add_argument(
        "--grid-queries",
        type=int,
        default=8,
        help="queries shown in the grid, spread over the queries (default: 8)",
    )
    search.add_argument("--backend", default="auto", help="faiss, numpy or auto")
    evaluate = sub.add_parser("eval", help="metric table of labelled query and database codes files")
    evaluate.add_argument("query_codes")
    evaluate.add_argument("database_codes")
    evaluate.add_argument("--top-k", type=int, default=1000)
    evaluate.add_argument("--radius", type=int, default=2)
    evaluate.add_argument("--empty-queries", default="zero", help="zero (default) or drop")
    evaluate.add_argument("--out", help="also write the metrics as JSON")


def features_command(args):
    """Runs a source's images through a pretrained backbone; writes a feature npz (or TFRecords)."""
    from tfhash import features
    from tfhash.train import dtype_policy, mixed_precision_policy

    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be a positive integer; received {args.batch_size}")
    args.data = args.source
    if args.format == "npz" and args.queries_per_class is None:
        args.queries_per_class = 1  # the npz is in pool order: no split decides anything in it
    data = load_data_from_args(args)
    weights = None if args.weights == "none" else args.weights
    policy = mixed_precision_policy() if args.mixed_precision else None
    with dtype_policy(policy):
        values, labels, ids, seconds = features.extract(
            data, args.backbone, weights, args.input_size, args.batch_size, progress=not args.quiet
        )
    meta = {
        "source": data.name,
        "backbone": args.backbone,
        "weights": args.weights,
        "input_size": args.input_size,
        "precision": policy or "float32",
        "images_per_second": round(len(values) / seconds, 1),
    }
    if args.format == "tfrecord":
        features.write_feature_tfrecords(data, values, args.out)
    else:
        features.write_features(data, values, labels, ids, args.out, meta)
    print(
        f"wrote {values.shape[0]} x {values.shape[1]} {args.backbone} features of {data.name} to {args.out} "
        f"({meta['images_per_second']:,.1f} images/s, {meta['precision']})"
    )
    return meta


def methods_command(args):
    """Lists the methods, or one method's options with their defaults and one line each."""
    from tfhash.registry import METHODS

    if not args.name:
        lines = [f"{name:16} {'baseline' if METHODS[name].is_baseline else 'deep':9}{METHODS[name].summary}"
                 for name in method_names()]  # fmt: skip
        print("\n".join(lines) + "\n\n`tfhash methods NAME` lists a method's options.")
        return lines
    method = get_method(args.name)
    options = method.options()
    print(f"{method.name}: {method.summary}\noptions (tfhash train {method.name} --model-option KEY=VALUE):")
    for key, default, text in options:
        print(f"  {key}={json.dumps(default)}  {text}")
    return options


def build_parser():
    parser = argparse.ArgumentParser(prog="tfhash", description="Learning to hash with Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a hashing method, evaluate it and export it")
    train.add_argument("method", help=f"one of: {', '.join(method_names())}")
    add_train_arguments(train)
    bench = sub.add_parser("bench", help="train and evaluate methods x bits x seeds; write a results table")
    add_bench_arguments(bench)
    add_serve_parsers(sub)
    feats = sub.add_parser(
        "features", help="images -> deep features of a pretrained backbone (a feature npz)"
    )
    feats.add_argument("source", help="an image source: digits, an npz of images, a CIFAR-10 or image folder")
    feats.add_argument(
        "--backbone", default="vgg16", help="vgg16 (fc7, 4096-d; default), resnet50, mobilenetv3small"
    )
    feats.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (from Keras' cache; never downloaded), a weights file, or none (random)",
    )
    feats.add_argument("--input-size", type=int, default=224, help="images are resized to this side (224)")
    feats.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    feats.add_argument("--out", required=True, help="output: a .npz file, or a folder with --format tfrecord")
    feats.add_argument(
        "--format",
        choices=("npz", "tfrecord"),
        default="npz",
        help="npz: Keras layout in the source's order (default); tfrecord: the split, TBH authors' layout",
    )
    feats.add_argument(
        "--mixed-precision", action="store_true", help="mixed_float16 on GPU, mixed_bfloat16 on CPU"
    )
    feats.add_argument("--quiet", action="store_true", help="no progress bar")
    feats.add_argument("--queries-per-class", type=int, help="tfrecord: queries per class of the split")
    feats.add_argument("--split-seed", type=int, default=0, help="tfrecord: seed of the split (default: 0)")
    feats.add_argument(
        "--protocol", choices=PROTOCOLS, default="pooled", help="tfrecord: protocol of the split"
    )
    feats.add_argument(
        "--image-size", type=int, nargs=2, metavar=("H", "W"), help="image folders: resize to H x W"
    )
    methods = sub.add_parser("methods", help="list the methods, or one method's options")
    methods.add_argument("name", nargs="?", help="a method name: list its options and defaults")
    convert = sub.add_parser("convert", help="convert any data source to the TBH TFRecord layout")
    convert.add_argument("source", help="digits, a keras.datasets name, or a path")
    convert.add_argument("out", help="output folder (train.tfrecords, test.tfrecords)")
    convert.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=0, help="split seed")
    convert.add_argument("--queries-per-class", type=int)
    convert.add_argument("--protocol", choices=PROTOCOLS, default="pooled")
    return parser


def run(argv=None):
    """Runs a command; returns its result (the metrics record for `train`)."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        get_method(args.method)  # an unknown name fails before the data is loaded
        return train_command(args)
    commands = {
        "bench": bench_command,
        "encode": encode_command,
        "index": index_command,
        "search": search_command,
        "eval": eval_command,
        "convert": convert_command,
        "methods": methods_command,
        "features": features_command,
    }
    return commands[args.command](args)


def main(argv=None):
    """Console entry point: runs a command; bad input exits with its message, no traceback."""
    try:
        run(argv)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
