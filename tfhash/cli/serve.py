"""`tfhash encode / index / search / eval`: codes, Hamming indexes, queries, metric tables."""

import numpy as np

from tfhash.cli.common import (
    add_data_arguments,
    add_engine_arguments,
    add_ties_argument,
    load_beam,
    load_data_from_args,
    nonnegative_int,
    positive_int,
    run_split,
)
from tfhash.files import check_output_file, open_npy


def encode_command(args):
    from tfhash.serve import encode_source

    beam = load_beam(args) if args.engine == "beam" else None
    if beam is None:
        check_output_file(args.out)  # before minutes of encoding, not after
    run = run_split(args.model)
    if args.data is None:  # the data the run was trained on, never a silent default
        if not run.get("data"):
            raise ValueError(
                f"{args.model} has no record of the data it was trained on (no metrics.json beside it); "
                "pass --data"
            )
        args.data = run["data"]
        print(f"note: encoding {args.data}, the data the run was trained on (--data to encode another)")
    data = load_data_from_args(args, run, read_rows=beam is None)  # Beam's workers decode their rows
    if beam is not None:
        computed, count, items, seconds = beam.encode_job(
            args.model, data, args.out, args.split, args.workers, args.shards, args.batch_size,
            getattr(args, "pipeline_args", ()),
        )  # fmt: skip
        rate = f" ({items / seconds:,.0f} items/s with {args.workers} workers)" if seconds else ""
        print(f"{args.out}: {count} shards of codes of {data.name}'s {args.split}, {computed} new{rate}")
        return {"path": args.out, "shards": count, "computed": computed}
    info = encode_source(args.model, data, args.out, split=args.split, batch_size=args.batch_size)
    print(
        f"wrote {info['items']} {info['bits']}-bit codes "
        f"({info['items_per_second']:,.0f} items/s) to {args.out}"
    )
    return info


def index_command(args):
    from tfhash.serve import build_index

    check_output_file(args.out)

    index = build_index(
        args.codes, args.out, backend=args.backend, radius_hashes=args.radius_hashes, structure=args.structure
    )
    tables = f"multi-hash, {index.radius_hashes} tables" if index.radius_hashes else "flat"
    print(
        f"indexed {len(index)} {index.bits}-bit codes "
        f"({index.backend}, {tables}, {index.memory_bytes:,} bytes of codes and ids) in {args.out}"
    )
    return index


def search_command(args):

    from tfhash import serve
    from tfhash.encoder import load_encoder
    from tfhash.identity import check_same_source
    from tfhash.index import HammingIndex

    if args.out:
        check_output_file(args.out)
    if args.grid:
        check_output_file(args.grid)
    encoder = load_encoder(args.model)
    index = HammingIndex.load(args.index, backend=args.backend)
    check_same_source(
        {"model": getattr(encoder, "identity", None)},
        index.source,
        (args.model, args.index),
        args.allow_mismatch,
        ("model",),
    )
    data = None
    if args.data:
        data = load_data_from_args(args, run_split(args.model))
        if index.source.get("split", "database") == "database" and not args.allow_mismatch:
            serve.database_rows(data, index.ids)  # every id the index can return is in --data's database
    if args.images:
        image_shape = data.image_shape if data else None
        features = serve.load_images(args.images, encoder.input_dim, image_shape)
        query_ids, query_labels = np.arange(len(features)), None
    elif args.features:
        features = open_npy(args.features, "--features")
        if features.ndim != 2 or features.shape[1] != encoder.input_dim:
            raise ValueError(
                f"--features {args.features} has shape {features.shape}; {args.model} encodes (n, "
                f"{encoder.input_dim}) features: make them with the extractor the model was trained on"
            )
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
    if args.out:
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

    if args.out:
        check_output_file(args.out)

    metrics = evaluate_codes(
        args.query_codes,
        args.database_codes,
        args.top_k,
        args.radius,
        args.empty_queries,
        args.ties,
        args.allow_mismatch,
    )
    print(f"(ties at equal Hamming distance: {args.ties}; empty queries: {args.empty_queries})")
    print("| " + " | ".join(metrics) + " |\n|" + "---|" * len(metrics))
    print("| " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |")
    if args.out:
        from tfhash.files import write_json

        write_json(metrics, args.out)
    return metrics


def add_parser(sub):
    """encode, index, search and eval."""
    encode = sub.add_parser("encode", help="encode a data split with a trained model -> codes file")
    encode.add_argument("model", help="a SavedModel folder, a baseline model.npz, or a run folder")
    add_data_arguments(encode, split_seed_default=None)
    encode.set_defaults(data=None)  # the run's data (its metrics.json), not digits
    encode.add_argument("--split", default="database", help="database (default), query or train")
    encode.add_argument(
        "--out", required=True, help="codes file to write (.npz; with --engine beam a folder of shards)"
    )
    encode.add_argument(
        "--batch-size", type=positive_int, default=8192, help="items per encoder call (default: 8192)"
    )
    add_engine_arguments(encode, "the codes")
    index = sub.add_parser("index", help="build a Hamming index from a codes file")
    index.add_argument("codes", help="codes file (or shard folder) from `tfhash encode`")
    index.add_argument("--out", required=True, help="index file to write (.npz)")
    index.add_argument("--backend", default="auto", help="faiss, numpy or auto (default: faiss if installed)")
    index.add_argument(
        "--structure",
        choices=("auto", "flat", "multihash"),
        default="auto",
        help="flat: every search scans the codes; multihash (faiss): hash tables on substrings of the "
        "codes also answer small radii and near top-k without a scan, exact; auto (default): multihash "
        "from 10,000,000 codes with faiss, else flat (docs/scale.md)",
    )
    index.add_argument(
        "--radius-hashes",
        type=positive_int,
        help="the number N of multi-hash tables (radius searches below N use them; default: about "
        "bits / log2(codes))",
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
    search.add_argument("--queries", type=positive_int, help="use only the first N queries of --data")
    search.add_argument("--k", type=positive_int, default=10, help="results per query (default: 10)")
    search.add_argument(
        "--radius", type=nonnegative_int, help="return every item within this Hamming radius instead"
    )
    search.add_argument(
        "--out", help="results file, .csv or .json (default: CSV on standard output, no file)"
    )
    search.add_argument("--grid", help="also write a PNG grid of queries and their top-k results")
    search.add_argument(
        "--grid-queries",
        type=positive_int,
        default=8,
        help="queries shown in the grid, spread over the queries (default: 8)",
    )
    search.add_argument("--backend", default="auto", help="faiss, numpy or auto")
    search.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="search an index made by another model (refused by default: the codes would not match)",
    )
    evaluate = sub.add_parser("eval", help="metric table of labelled query and database codes files")
    evaluate.add_argument("query_codes")
    evaluate.add_argument("database_codes")
    evaluate.add_argument("--top-k", type=positive_int, default=1000, help="N of mAP@N (default: 1000)")
    evaluate.add_argument(
        "--radius", type=nonnegative_int, default=2, help="Hamming radius of precision@radius (default: 2)"
    )
    evaluate.add_argument("--empty-queries", default="zero", help="zero (default) or drop")
    add_ties_argument(evaluate)
    evaluate.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="evaluate codes files made by different models, data or split seeds (refused by default)",
    )
    evaluate.add_argument("--out", help="also write the metrics as JSON")

    encode.set_defaults(handler=encode_command)
    index.set_defaults(handler=index_command)
    search.set_defaults(handler=search_command)
    evaluate.set_defaults(handler=eval_command, needs_tensorflow=False)
