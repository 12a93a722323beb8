"""Time and memory of mAP evaluation on random 64-bit codes, against two yardsticks measured in the same run.

    python benchmarks/eval_speed.py [--queries 10000] [--database 50000] [--bits 64] [--threads 2]

Prints, in this order:

1. tfhash's `retrieval_metrics`: mAP@1000 and mAP@all (each with precision within radius
   2), with ties="expected" (the default: exact expectation over tie orders) and
   ties="index" (ties broken by database index). The first line that contains
   `mAP@1000` gives tfhash's default time as `...: X.XX s`.
2. The yardstick: a plain NumPy mAP@1000 written for this benchmark: popcount distances as
   uint8, then per query a stable counting-sort selection of the 1,000 nearest (the
   distance histogram gives the cut-off distance; the items up to it are ordered by
   distance, then index), chunks of queries on a thread pool of `--threads`.
3. faiss' `IndexBinaryFlat` top-1000 search plus the same mAP@1000, where faiss is
   installed.
4. The ratios tfhash / yardstick and tfhash / faiss, and the peak resident memory of the
   whole process.

The three mAP@1000 figures must agree (to the tie order: the yardstick and faiss break
ties by index and heap order, tfhash's default takes the expectation over tie orders, so
they agree to about 1e-3 on random codes; ties="index" agrees with the yardstick exactly).
"""

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfhash.evaluation import label_relevance, retrieval_metrics


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def average_precision_rows(relevant):
    """AP of each row of a (rows, k) bool ranking, over the relevant items within it (0 if none)."""
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    return np.where(relevant, precision, 0.0).sum(1) / np.maximum(hits[:, -1], 1)


def yardstick_map(query, database, q_labels, db_labels, k, threads, chunk=64):
    """Plain NumPy mAP@k: uint8 popcount distances and a stable counting-sort selection per query."""

    def words(codes):  # packed bytes, zero padded to whole uint64 words (byte order: popcount ignores it)
        packed = np.packbits(codes, axis=1)
        return np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))).view(np.uint64)

    q_words, db_words, bits = words(query), words(database), query.shape[1]

    def run(start):
        stop = min(start + chunk, len(query))
        dist = np.zeros((stop - start, len(database)), np.uint8)
        for w in range(q_words.shape[1]):
            dist += np.bitwise_count(q_words[start:stop, w, None] ^ db_words[None, :, w])
        ranked = np.empty((stop - start, k), bool)
        for i, row in enumerate(dist):
            cumulative = np.cumsum(np.bincount(row, minlength=bits + 1))
            cutoff = int(np.searchsorted(cumulative, k))  # the first distance whose shell reaches rank k
            near = np.flatnonzero(row <= cutoff)
            top = near[np.argsort(row[near], kind="stable")[:k]]  # by distance, then index
            ranked[i] = db_labels[top] == q_labels[start + i]
        return average_precision_rows(ranked)

    with ThreadPoolExecutor(threads) as pool:
        return float(np.concatenate(list(pool.map(run, range(0, len(query), chunk)))).mean())


def faiss_map(query, database, q_labels, db_labels, k, chunk=1000):
    """faiss IndexBinaryFlat top-k in chunks of queries, then the same mAP@k."""
    import faiss

    index = faiss.IndexBinaryFlat(query.shape[1])
    index.add(np.packbits(database, axis=1))
    q_packed, aps = np.packbits(query, axis=1), []
    for start in range(0, len(query), chunk):
        _, top = index.search(q_packed[start : start + chunk], k)
        aps.append(average_precision_rows(db_labels[top] == q_labels[start : start + chunk, None]))
    return float(np.concatenate(aps).mean())


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=50_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of the yardstick (tfhash: its default)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    query = rng.integers(0, 2, (args.queries, args.bits), dtype=np.uint8)
    database = rng.integers(0, 2, (args.database, args.bits), dtype=np.uint8)
    q_labels = rng.integers(0, args.classes, args.queries)
    db_labels = rng.integers(0, args.classes, args.database)
    relevance = label_relevance(q_labels, db_labels)
    base = peak_mb()
    shape = f"{args.queries} x {args.database} at {args.bits} bits"
    seconds = {}
    for top_k in [(1000,), (None,)]:
        name = "mAP@all" if top_k[0] is None else f"mAP@{top_k[0]}"
        for ties in ("expected", "index"):
            metrics, seconds[name, ties] = timed(
                retrieval_metrics, query, database, relevance, top_k=top_k, radius=2, ties=ties
            )
            rounded = {k: round(v, 4) for k, v in metrics.items()}
            print(f"{shape}, {name} + precision@r2, ties={ties}: {seconds[name, ties]:.2f} s ({rounded})")
        print(f"  expected / index time: {seconds[name, 'expected'] / seconds[name, 'index']:.2f}x")
    tfhash_peak = peak_mb()
    value, seconds["yardstick"] = timed(
        yardstick_map, query, database, q_labels, db_labels, 1000, args.threads
    )
    print(f"yardstick (plain NumPy radix selection, {args.threads} threads) mAP@1000 {value:.4f}: "
          f"{seconds['yardstick']:.2f} s")  # fmt: skip
    ours = seconds["mAP@1000", "expected"]
    print(f"tfhash mAP@1000 / yardstick time: {ours / seconds['yardstick']:.2f}x (target <= 0.8x)")
    print(f"tfhash mAP@all / mAP@1000 time: {seconds['mAP@all', 'expected'] / ours:.2f}x (target <= 2x)")
    try:
        value, seconds["faiss"] = timed(faiss_map, query, database, q_labels, db_labels, 1000)
    except ImportError:
        print("faiss is not installed: no faiss figure")
    else:
        print(f"faiss IndexBinaryFlat top-1000 + mAP@1000 {value:.4f}: {seconds['faiss']:.2f} s")
        print(f"tfhash mAP@1000 / faiss time: {ours / seconds['faiss']:.2f}x")
    print(
        f"peak RSS {tfhash_peak:.0f} MB after tfhash's evaluations (target < 150 MB), {peak_mb():.0f} MB "
        f"after the yardsticks (data and interpreter before evaluating: {base:.0f} MB)"
    )


if __name__ == "__main__":
    main()
