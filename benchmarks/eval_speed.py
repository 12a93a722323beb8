"""Time and memory of mAP evaluation on random 64-bit codes.

    python benchmarks/eval_speed.py [--queries 10000] [--database 50000] [--bits 64]

Prints the seconds for mAP@1000 and mAP@all (with precision within radius 2)
with ties="expected" (the default: exact expectation over tie orders) and
ties="index" (ties broken by database index), their ratio measured in the
same run, and the peak resident memory of the process.
"""

import argparse
import resource
import time

import numpy as np

from tfhash.evaluation import label_relevance, retrieval_metrics


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=50_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    query = rng.integers(0, 2, (args.queries, args.bits), dtype=np.uint8)
    database = rng.integers(0, 2, (args.database, args.bits), dtype=np.uint8)
    relevance = label_relevance(
        rng.integers(0, args.classes, args.queries), rng.integers(0, args.classes, args.database)
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for top_k in [(1000,), (None,)]:
        seconds = {}
        for ties in ("expected", "index"):
            start = time.perf_counter()
            metrics = retrieval_metrics(query, database, relevance, top_k=top_k, radius=2, ties=ties)
            seconds[ties] = time.perf_counter() - start
            name = "mAP@all" if top_k[0] is None else f"mAP@{top_k[0]}"
            print(
                f"{args.queries} x {args.database} at {args.bits} bits, {name} + precision@r2, ties={ties}: "
                f"{seconds[ties]:.2f} s ({ {k: round(v, 4) for k, v in metrics.items()} })"
            )
        print(f"  expected / index time: {seconds['expected'] / seconds['index']:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (data and interpreter before evaluating: {base:.0f} MB)")


if __name__ == "__main__":
    main()
