"""The `tfhash` command: train, bench, encode, index, search, eval, features, convert, methods.

One module per group of commands (`train`, `bench`, `serve`, `data`); each
adds its subparsers and sets `handler`, the function that runs the command.
"""

import argparse
import sys

from tfhash.cli import bench, data, serve, train


def build_parser():
    parser = argparse.ArgumentParser(prog="tfhash", description="Learning to hash with Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parser(sub)
    bench.add_parser(sub)
    serve.add_parser(sub)
    data.add_parsers(sub)
    return parser


def run(argv=None):
    """Runs a command; returns its result (the metrics record for `train`)."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


def main(argv=None):
    """Console entry point: runs a command; bad input exits with its message, no traceback."""
    try:
        run(argv)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
