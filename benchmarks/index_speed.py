"""HammingIndex speed: faiss vs the NumPy fallback vs a naive NumPy brute force, one run.

    python benchmarks/index_speed.py [--database 1000000] [--queries 10000] [--bits 64] [--k 10]

Random codes (seed 0). Prints, per backend: build time, index memory
(codes + ids), queries per second for top-k and for radius-2 search, and
whether its top-k ids equal the faiss ones. The NumPy fallback and the
naive brute force (np.unpackbits distances + a full stable argsort per
query) are timed on a prefix of the queries (--numpy-queries,
--naive-queries) and reported as queries per second.
"""

import argparse
import resource
import time

import numpy as np

from tfhash.index import HammingIndex, faiss_available


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def naive_top_k(queries, database, k):
    ids = []
    for q in queries:
        dist = np.unpackbits(q[None, :] ^ database, axis=1).sum(1)
        ids.append(np.argsort(dist, kind="stable")[:k])
    return np.array(ids)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--numpy-queries", type=int, default=1000)
    parser.add_argument("--naive-queries", type=int, default=20)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    database = rng.integers(0, 256, (args.database, args.bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.queries, args.bits // 8), dtype=np.uint8)
    print(f"{args.database:,} random {args.bits}-bit codes, {args.queries:,} queries, k={args.k}")
    print("| backend | build s | index MB | queries timed | top-k q/s | radius-2 q/s | same ids as faiss |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    for backend, n_query in (("faiss", args.queries), ("numpy", args.numpy_queries)):
        if backend == "faiss" and not faiss_available():
            print("| faiss | not installed (pip install faiss-cpu) |")
            continue
        index = HammingIndex(args.bits, backend)
        _, build = timed(lambda index=index: index.add(database))
        (_, ids), knn = timed(lambda index=index, n=n_query: index.search(queries[:n], args.k))
        _, radius = timed(lambda index=index, n=n_query: index.range_search(queries[:n], 2))
        reference = ids if reference is None else reference
        same = np.array_equal(ids, reference[: len(ids)])
        print(
            f"| {backend} | {build:.2f} | {index.memory_bytes / 2**20:.1f} | {n_query:,} "
            f"| {n_query / knn:,.0f} | {n_query / radius:,.0f} | {same} |",
            flush=True,
        )
    if faiss_available():  # exact radius search through 3 multi-hash tables (radius 2 < 3)
        index = HammingIndex(args.bits, "faiss", radius_hashes=3)
        index.add(database)
        _, build = timed(lambda: index._faiss_index_for(2))  # the tables are built on first use
        (_, _, found), radius = timed(lambda: index.range_search(queries, 2))
        flat = HammingIndex(args.bits, "faiss")
        flat.add(database)
        same = np.array_equal(found, flat.range_search(queries, 2)[2])
        print(
            f"| faiss + 3 multi-hash tables | {build:.2f} (tables) | {2 * index.memory_bytes / 2**20:.1f} "
            f"| {args.queries:,} | - | {args.queries / radius:,.0f} | {same} (radius 2) |",
            flush=True,
        )
    ids, naive = timed(lambda: naive_top_k(queries[: args.naive_queries], database, args.k))
    same = reference is not None and np.array_equal(ids, reference[: len(ids)])
    print(
        f"| naive NumPy | 0 | {database.nbytes / 2**20:.1f} | {args.naive_queries} "
        f"| {args.naive_queries / naive:,.1f} | - | {same} |"
    )
    print(
        "peak resident memory of the process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
