"""Benchmark methods on one data set: `python run/benchmark.py --help`.

With no arguments, a first table in minutes rather than hours: `QUICK` (ITQ,
LSH, SGH, GreedyHash and TBH, each deep method with its preset's budget) on
scikit-learn's digits at 32 bits, seed 0, into runs/bench-digits-quick/. Any
argument is passed to `tfhash bench` as it is, whose defaults are every
registered method x 16/32/64 bits x seeds 0, 1, 2 (270 cells on digits:
hours). Both write results.csv / results.json / results.md and PNG plots;
re-running skips finished cells.
"""

import sys

from tfhash.cli import main as cli_main
from tfhash.cli import run

QUICK = ["--methods", "itq", "lsh", "sgh", "greedyhash", "tbh", "--bits", "32", "--seeds", "0",
         "--out", "runs/bench-digits-quick"]  # fmt: skip


def arguments(argv):
    if not argv:
        print("a quick table (5 methods, 32 bits, seed 0); pass flags for more (see --help)")
        return QUICK
    return argv


def main(argv=None):
    return run(["bench", *arguments(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli_main(["bench", *arguments(sys.argv[1:])]))
