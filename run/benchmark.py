"""Benchmark every method on one data set: `python run/benchmark.py --help`.

With no arguments: every registered method on scikit-learn's digits at 16, 32
and 64 bits, seeds 0, 1 and 2, each deep method with its preset's budget;
writes results.csv / results.json / results.md and PNG plots under
runs/bench-digits/. Re-running skips finished cells.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run


def main(argv=None):
    return run(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["bench", *sys.argv[1:]]))
