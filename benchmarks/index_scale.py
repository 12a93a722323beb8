"""How the Hamming index scales (issue 31): the flat scan against the multi-hash tables, exact both.

    python benchmarks/index_scale.py [--sizes 1000000 10000000] [--bits 64] [--queries 200] [--tables N]

Codes with the skew of learned ones: 64-d clustered Gaussian data (200 clusters) through a random
projection and a sign, so that bits correlate and neighbours are near, as with real codes, not
uniform bits. Queries are further points of the same clusters. For each size: the seconds to build
each structure, the index memory, and for radius 0-3 and top-10 / top-100 the queries per second
of the flat scan (faiss IndexBinaryFlat) and of the multi-hash tables (`--tables` substrings, by default
the number `tfhash index --structure auto` builds for the size; top-k by a growing radius, the flat
scan for queries still short), their ratio, and the recall of the multi-hash answers against the
flat ones (exact modes: must be 1.0); then the seconds to save and load the index and the load's
peak memory beside the codes and ids it holds. Prints a Markdown table.
"""

import argparse
import time

import numpy as np


def skewed_codes(n, bits, rng, centres):
    from tfhash.evaluation import pack_codes

    out = np.empty((n, bits // 8), np.uint8)
    projection = np.random.default_rng(7).normal(size=(centres.shape[1], bits)).astype(np.float32)
    for start in range(0, n, 1 << 20):
        size = min(1 << 20, n - start)
        x = centres[rng.integers(0, len(centres), size)] + 0.5 * rng.normal(size=(size, centres.shape[1]))
        out[start : start + size] = pack_codes((x.astype(np.float32) @ projection > 0).astype(np.uint8))
    return out


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--tables", type=int, help="multi-hash tables (default: what --structure auto builds for the size)"
    )
    args = parser.parse_args(argv)
    from tfhash.index import HammingIndex, multihash_tables

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 64)).astype(np.float32)
    print("| items | search | flat q/s | multi-hash q/s | ratio | recall |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in map(int, args.sizes):
        codes = skewed_codes(size, args.bits, rng, centres)
        queries = skewed_codes(args.queries, args.bits, rng, centres)
        tables = args.tables or multihash_tables(size, args.bits)
        flat, build_flat = timed(_built, HammingIndex(args.bits, "faiss"), codes)
        multi, build_multi = timed(_built, HammingIndex(args.bits, "faiss", tables), codes)
        _, build_tables = timed(multi.range_search, queries[:1], 0)  # the tables are built on first use
        print(f"| {size:,} | build: flat {build_flat:.1f} s, multi-hash ({tables} tables) "
              f"{build_multi + build_tables:.1f} s; {flat.memory_bytes / 2**20:,.0f} MiB of codes and ids "
              "| | | | |")  # fmt: skip
        searches = [(f"radius {r}", "range", r) for r in range(min(4, tables))] + [
            (f"top-{k}", "knn", k) for k in (10, 100)
        ]
        for label, kind, value in searches:
            if kind == "range":
                (lims_f, _, ids_f), t_flat = timed(flat.range_search, queries, value)
                (lims_m, _, ids_m), t_multi = timed(multi.range_search, queries, value)
                recall = _range_recall(lims_f, ids_f, lims_m, ids_m)
            else:
                (_, ids_f), t_flat = timed(flat.search, queries, value)
                (_, ids_m), t_multi = timed(multi.search, queries, value)
                recall = float(np.mean(ids_f == ids_m))
            q = len(queries)
            rates = f"{q / t_flat:,.0f} | {q / t_multi:,.0f} | {t_flat / t_multi:.2f}x"
            print(f"| {size:,} | {label} | {rates} | {recall:.3f} |")
        print(f"| {size:,} | {save_and_load(flat)} | | | | |")
        del flat, multi, codes


def save_and_load(index):
    """Saves the index to a temporary file and loads it back: seconds of each, and the load's peak
    memory beside the codes and ids it holds (Linux: the peak is reset before the load)."""
    import os
    import tempfile

    from tfhash.index import HammingIndex

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.npz")
        _, save_seconds = timed(index.save, path)
        held = index.memory_bytes
        before = _memory("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM, the peak, to the current size
        except OSError:
            before = None
        loaded, load_seconds = timed(HammingIndex.load, path)
        assert len(loaded) == len(index)
        peak = "" if before is None else f", {(_memory('VmHWM') - before) / 2**20:,.0f} MiB peak"
        del loaded
    held = f"{held / 2**20:,.0f} MiB of codes and ids"
    return f"save {save_seconds:.1f} s, load {load_seconds:.1f} s{peak} for {held}"


def _memory(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _built(index, codes):
    index.add(codes)
    return index


def _range_recall(lims_f, ids_f, lims_m, ids_m):
    found = total = 0
    for i in range(len(lims_f) - 1):
        truth = set(ids_f[lims_f[i] : lims_f[i + 1]].tolist())
        got = set(ids_m[lims_m[i] : lims_m[i + 1]].tolist())
        found, total = found + len(truth & got), total + len(truth)
    return found / total if total else 1.0


if __name__ == "__main__":
    main()
