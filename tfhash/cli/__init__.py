"""The `tfhash` command: train, bench, encode, index, search, eval, serve, features, convert, methods, info.

One module per group of commands (`train`, `bench`, `serve`, `data`); each
adds its subparsers and sets `handler`, the function that runs the command.
Parsing imports neither TensorFlow nor the models (`tfhash --help` is
instant); a handler imports what it needs. Commands that use TensorFlow get
it imported quietly (`quiet_tensorflow`).
"""

import argparse
import os
import signal
import sys

from tfhash.cli import bench, data, serve, server, train

DEBUG_ENV = "TFHASH_DEBUG"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfhash",
        description="Learning to hash with Keras 3.",
        epilog=f"Errors print one line; --debug (anywhere on the line) or {DEBUG_ENV}=1 shows the "
        "traceback. Exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parser(sub)
    bench.add_parser(sub)
    serve.add_parser(sub)
    server.add_parser(sub)
    data.add_parsers(sub)
    return parser


def run(argv=None):
    """Runs a command; returns its result (the metrics record for `train`)."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]
    passed = argv.index("--") if "--" in argv else len(argv)  # after --: Beam's pipeline options
    args = build_parser().parse_args(argv[:passed])
    args.pipeline_args = argv[passed + 1 :]
    if args.pipeline_args and getattr(args, "engine", None) != "beam":
        raise ValueError(
            f"arguments after -- ({' '.join(args.pipeline_args)}) are Apache Beam pipeline options, "
            "for `tfhash features` or `tfhash encode` with --engine beam"
        )
    needs = getattr(args, "needs_tensorflow", True)
    if needs(args) if callable(needs) else needs:
        quiet_tensorflow()
    return args.handler(args)


def main(argv=None):
    """Console entry point: runs a command; returns 0 when it is done.

    An error exits with status 1 and one line, `error: ...`, on stderr (a
    `SystemExit` carrying that line; argparse's usage errors exit 2); Ctrl-C
    prints one line saying where the run stopped and exits 130. With
    --debug or TFHASH_DEBUG=1 the exception propagates with its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        run(argv)
        return 0
    previous = _terminate_as_interrupt()
    try:
        run(argv)
    except BrokenPipeError:  # `tfhash methods | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as err:
        print(one_line(err) or "interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:  # every error is one line; --debug shows the traceback
        raise SystemExit(f"error: {describe(err)}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate_as_interrupt():
    """SIGTERM (kill, a job scheduler's stop) is handled as Ctrl-C: the run says where it stopped
    and how to resume, and exits 130, instead of dying without a word. Returns the previous
    handler (None where no handler can be set: not the main thread)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # signals are set from the main thread only
        return None


def one_line(err):
    return " ".join(str(err).split())


def describe(err):
    """One line for an exception: its message; a file error names the path; an unexpected type is
    named, with the way to see its traceback."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.strerror or one_line(err)}: {err.filename}"
    if isinstance(err, (ValueError, RuntimeError, OSError)):
        return one_line(err)
    return f"{type(err).__name__}: {one_line(err)} (re-run with --debug for the traceback)"


def quiet_tensorflow():
    """Imports TensorFlow without its start-up lines (oneDNN, CUDA, CPU features: noise on every
    command) unless the user set TF_CPP_MIN_LOG_LEVEL. Its C++ libraries print some before any log
    level applies, so stderr is pointed at /dev/null during the import."""
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
