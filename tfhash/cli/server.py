"""`tfhash serve`: an HTTP service that encodes and searches (tfhash.server)."""

from tfhash.cli.common import (
    add_data_arguments,
    load_data_from_args,
    nonnegative_float,
    positive_float,
    positive_int,
    run_split,
)


def serve_command(args):
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ValueError('tfhash serve needs FastAPI and uvicorn: pip install "tfhash[serve]"') from None
    from tfhash.server import SearchService, serve

    data = load_data_from_args(args, run_split(args.model)) if args.data else None
    service = SearchService(
        args.model,
        args.index,
        args.name,
        args.backend,
        args.allow_mismatch,
        max_rows=args.max_rows,
        data=data,
        batch_wait=args.batch_wait_ms / 1000,
    )
    serve(service, args.host, args.port, int(args.max_body_mb * (1 << 20)))


def add_parser(sub):
    from tfhash.server import MAX_BODY_BYTES, MAX_ROWS

    parser = sub.add_parser(
        "serve",
        help="an HTTP service: TF Serving's predict route, /search, /info and /health",
        description="Serves a trained model and a Hamming index over HTTP until SIGINT or SIGTERM "
        "(docs/search.md#tfhash-serve).",
    )
    parser.add_argument("model", help="a run folder, a SavedModel folder or a baseline model.npz")
    parser.add_argument("index", help="an index file from `tfhash index` of this model's codes")
    add_data_arguments(parser, split_seed_default=None)
    parser.set_defaults(data=None)  # optional: labels in results, the page's queries and images
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=positive_int, default=8500, help="port (default: 8500, TF Serving's REST)"
    )
    parser.add_argument("--name", help="model name of /v1/models/NAME:predict (default: the run folder's)")
    parser.add_argument("--backend", default="auto", help="index backend: faiss, numpy or auto")
    parser.add_argument(
        "--max-body-mb",
        type=positive_float,
        default=MAX_BODY_BYTES / (1 << 20),
        help=f"largest request body in MiB (default: {MAX_BODY_BYTES >> 20})",
    )
    parser.add_argument(
        "--max-rows",
        type=positive_int,
        default=MAX_ROWS,
        help=f"most query rows per request (default: {MAX_ROWS})",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=nonnegative_float,
        default=2.0,
        help="how long a request waits for concurrent ones to share its encoder call (default: 2; 0: none)",
    )
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="serve an index made by another model (refused by default: the codes would not match)",
    )
    parser.set_defaults(handler=serve_command)
