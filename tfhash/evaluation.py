"""Retrieval metrics over bit-packed binary codes.

Everything here is NumPy and works on chunks of queries, so memory stays
O(chunk x database) of small integers whatever the database size. Codes are
{0, 1} arrays of shape (n, bits); `pack_codes` turns them into the
`np.packbits` layout (uint8, most significant bit first, zero padded).

Conventions (see protocols.md):

* The database is ranked by Hamming distance. Items at the same distance are
  tied; ``ties="expected"`` (default) scores mAP@all, mAP@k and precision@N
  as their exact expectation over a random order of the tied items
  (`tfhash.ties`), so no figure depends on how the database is stored;
  ``"index"`` breaks ties by database index (what most published evaluation
  code does); ``"random"`` by one seeded random order.
  Precision / recall within a radius and the PR curve over radii take whole
  shells and do not depend on tie order. With expected ties and
  ``empty_queries="drop"``, mAP is sum_q E[AP_q] / sum_q P(q finds a relevant
  item): for one query, its expected AP over the orders in which it is kept.
* AP@k divides by the number of relevant items within the top k (the usual
  hashing convention); k=None means the whole database.
* A query with no relevant item (in its top k for mAP@k) contributes 0 when
  ``empty_queries="zero"`` (default) and is left out of the mean when
  ``empty_queries="drop"`` (the TBH authors' habit).
* Precision within Hamming radius r is 0 for a query that retrieves nothing.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfhash.ties import expected_average_precision, expected_precision_at, harmonic_numbers

EMPTY_QUERY_POLICIES = ("zero", "drop")
TIES = ("expected", "index", "random")
_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def as_binary_codes(codes, name="codes"):
    """Checks that `codes` is a 2-D {0, 1} array and returns it as uint8."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, bits); received shape {codes.shape}")
    if codes.dtype == bool:
        valid = True
    elif np.issubdtype(codes.dtype, np.integer):  # min / max: no temporary the size of the codes
        valid = codes.size == 0 or (codes.min() >= 0 and codes.max() <= 1)
    else:
        valid = codes.size == 0 or bool(((codes == 0) | (codes == 1)).all())
    if not valid:
        raise ValueError(
            f"{name} must hold only 0 and 1; received values such as "
            f"{np.unique(codes)[:5].tolist()}. Threshold real-valued outputs first "
            "(for example codes = (scores > 0))."
        )
    return codes.astype(np.uint8)


def pack_codes(codes):
    """Packs {0, 1} codes (n, bits) into uint8 bytes (n, ceil(bits / 8))."""
    return np.packbits(as_binary_codes(codes), axis=1)


def unpack_codes(packed_codes, bits):
    """Inverse of `pack_codes`: uint8 (n, bytes) -> {0, 1} uint8 (n, bits)."""
    return np.unpackbits(np.asarray(packed_codes, np.uint8), axis=1, count=bits)


def _as_words(packed_codes):
    """Views packed bytes as uint64 words, zero padding to a multiple of 8."""
    packed_codes = np.ascontiguousarray(packed_codes, dtype=np.uint8)
    pad = (-packed_codes.shape[1]) % 8
    if pad:
        packed_codes = np.pad(packed_codes, ((0, 0), (0, pad)))
    return packed_codes.view(np.uint64)


def _popcount(words):
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _POPCOUNT_TABLE[words.view(np.uint8)].reshape(*words.shape, 8).sum(-1)


def _popcount_into(words, out):
    """Writes the popcount of each uint64 of `words` (1-D) into `out` (uint8 / uint16, same length)."""
    if hasattr(np, "bitwise_count"):
        np.bitwise_count(words, out=out)
    else:
        out[:] = _popcount(words)


def hamming_distance(query_packed, database_packed):
    """Hamming distances (q, n) between packed code sets, by popcount of XOR.

    Returns uint8 when codes have fewer than 256 bits, else uint16. Memory is
    q x n x words; call it on chunks of queries for large databases.
    """
    q_words, db_words = _as_words(query_packed), _as_words(database_packed)
    if q_words.shape[1] != db_words.shape[1]:
        raise ValueError(
            "query and database codes have different widths: "
            f"{query_packed.shape[1]} vs {database_packed.shape[1]} bytes"
        )
    return _hamming_words(q_words, _word_columns(db_words))


def _hamming_words(q_words, db_columns):
    """`hamming_distance` of query words (q, words) against the database's `_word_columns`.

    One query row at a time: the row's XOR with the database (n x 8 bytes) stays in
    cache, and the popcount goes straight into the row of the result, word by word.
    """
    words, n = db_columns.shape
    dtype = np.uint8 if words * 64 < 256 else np.uint16
    dist = (np.zeros if words == 0 else np.empty)((q_words.shape[0], n), dtype)
    xor, count = np.empty(n, np.uint64), np.empty(n, dtype)
    for i in range(q_words.shape[0]):
        for w in range(words):
            np.bitwise_xor(db_columns[w], q_words[i, w], out=xor)
            _popcount_into(xor, dist[i] if w == 0 else count)
            if w:
                dist[i] += count
    return dist


def _word_columns(db_words):
    """The database's uint64 words (n, words) as (words, n), each word's column contiguous."""
    return np.ascontiguousarray(np.asarray(db_words, np.uint64).T)


def shell_histograms(dist, relevant, bits):
    """(counts, relevant counts), each (rows, bits + 1) int64: per query row, how many database items
    sit at each Hamming distance, and how many of them are relevant.

    Each row's key, distance + (bits + 1) x relevant, holds both histograms in one
    `np.bincount` (no weights, no row offsets over the whole chunk). Up to 127 bits two rows
    share one bincount, keyed by key_a x width + key_b, whose two marginals are the rows'
    histograms: half the calls over the same elements (measured 45 against 56 us a row at
    64 bits and 50,000 items).
    """
    rows, n = dist.shape
    shells = bits + 1
    width = 2 * shells
    histograms = np.empty((rows, width), np.int64)
    flags = np.ascontiguousarray(relevant, bool).view(np.uint8)
    key = np.empty((2, n), np.uint16)  # keys reach width - 1 (a row) or width^2 - 1 (a pair, width <= 256)
    paired = 0 if width > 256 else rows - rows % 2
    for i in range(0, paired, 2):
        np.multiply(flags[i : i + 2], np.uint16(shells), out=key)
        key += dist[i : i + 2]
        key[0] *= np.uint16(width)
        joint = np.bincount(key[0] + key[1], minlength=width * width).reshape(width, width)
        histograms[i], histograms[i + 1] = joint.sum(1), joint.sum(0)
    for i in range(paired, rows):  # every row when unpaired, else the odd last one
        np.multiply(flags[i], np.uint16(shells), out=key[0])
        key[0] += dist[i]
        histograms[i] = np.bincount(key[0], minlength=width)
    relevant_counts = histograms[:, shells:]
    return histograms[:, :shells] + relevant_counts, np.ascontiguousarray(relevant_counts)


def label_relevance(query_labels, database_labels):
    """Ground truth "shares at least one label".

    Labels are class ids (n,) or one-/multi-hot (n, classes). Returns a function
    `(start, stop) -> bool (stop - start, n_database)` over query rows.
    """
    q, db = np.asarray(query_labels), np.asarray(database_labels)
    if q.ndim != db.ndim or (q.ndim == 2 and q.shape[1] != db.shape[1]):
        raise ValueError(
            f"query labels {q.shape} and database labels {db.shape} do not match; "
            "pass both as class ids (n,) or both as one-/multi-hot (n, classes)"
        )
    if q.ndim == 1:
        return lambda start, stop: q[start:stop, None] == db[None, :]
    q, db_t = (q > 0).astype(np.float32), (db > 0).astype(np.float32).T
    return lambda start, stop: (q[start:stop] @ db_t) > 0


def euclidean_neighbours(query_features, database_features, k=50, chunk=256):
    """(n_query, k) int64: each query's k nearest database items in input space, in index order.

    Distances are squared Euclidean in float64, computed `chunk` queries at a
    time (memory chunk x n_database); ties at the k-th distance are broken
    by database index, so exactly k items are chosen.
    """
    q = np.asarray(query_features, np.float64)
    db = np.asarray(database_features, np.float64)
    if not 0 < k <= len(db):
        raise ValueError(f"k must be in [1, {len(db)}] (database size); received k={k}")
    db_sq = np.einsum("ij,ij->i", db, db)
    out = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), chunk):
        d = db_sq[None, :] - 2.0 * q[start : start + chunk] @ db.T  # the query norm ranks nothing
        out[start : start + chunk] = k_smallest(d, k)
    return out


def k_smallest(values, k):
    """(rows, k) int64: per row, the columns of the k smallest `values`, ties at the k-th value
    broken by column index, listed in column order."""
    kth = np.partition(values, k - 1, axis=1)[:, k - 1 : k]
    ties = values == kth
    need = k - (values < kth).sum(1, keepdims=True)
    chosen = (values < kth) | (ties & (np.cumsum(ties, axis=1) <= need))
    return np.nonzero(chosen)[1].reshape(-1, k)  # exactly k per row


def euclidean_relevance(query_features, database_features, k=50, neighbours=None):
    """Ground truth "among the query's k nearest database items" (input space), as a chunk function.

    `neighbours`: the lists of `euclidean_neighbours` when already computed
    (`RetrievalData.euclidean_neighbours` keeps them, so a benchmark computes
    them once); else they are computed here.
    """
    if neighbours is None:
        neighbours = euclidean_neighbours(query_features, database_features, k)
    n_database = len(database_features)

    def relevance(start, stop):
        rows = neighbours[start:stop]
        mask = np.zeros((len(rows), n_database), bool)
        np.put_along_axis(mask, rows, True, axis=1)
        return mask

    return relevance


def _check_policy(empty_queries):
    if empty_queries not in EMPTY_QUERY_POLICIES:
        raise ValueError(f"empty_queries must be one of {EMPTY_QUERY_POLICIES}; received {empty_queries!r}")


def _chunk_size(n_database, words, budget_bytes=16 << 20):
    """Queries per chunk: each chunk's distances, relevance and selection stay near `budget_bytes`."""
    return int(max(1, min(1024, budget_bytes // max(1, n_database * (10 + 8 * words)))))


def evaluation_threads():
    """Threads for evaluating chunks of queries: the cores this process may use, at most 8. The
    index-order path's sorts and selections release the GIL, so its chunks run side by side."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _ranking_depth(ks, precision_at, n_db):
    """How deep the ranking must go: the largest k or N asked for."""
    depths = [n_db if k == "all" else k for k in ks] + [min(n, n_db) for n in precision_at]
    return max(depths)


def distance_histogram(dist, bits):
    """Per-row counts of each Hamming distance 0..bits: (rows, bits + 1) int64."""
    rows = dist.shape[0]
    offsets = (np.arange(rows)[:, None] * (bits + 1) + dist).ravel()
    return np.bincount(offsets, minlength=rows * (bits + 1)).reshape(rows, bits + 1)


def nearest_positions(dist, depth, counts):
    """Positions of the `depth` nearest items of each row, ordered by (distance, position).

    A full stable (radix) sort when depth is the whole row; otherwise a
    selection: the cut-off distance comes from the per-row distance histogram
    `counts` (`distance_histogram`), items below it are all taken, items at
    it are taken in position order until the row has `depth`, and only those
    are sorted.
    """
    rows, n_db = dist.shape
    if depth >= n_db:
        return np.argsort(dist, axis=1, kind="stable")
    cumulative = np.cumsum(counts, axis=1)
    cutoff = np.argmax(cumulative >= depth, axis=1).astype(dist.dtype)[:, None]
    below = np.take_along_axis(cumulative - counts, cutoff.astype(np.int64), axis=1)
    at_cutoff = dist == cutoff
    take = (dist < cutoff) | (at_cutoff & (np.cumsum(at_cutoff, axis=1, dtype=np.int32) <= depth - below))
    cols = np.nonzero(take)[1].reshape(rows, depth)  # position order within each row
    order = np.argsort(np.take_along_axis(dist, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def retrieval_metrics(
    query_codes,
    database_codes,
    relevance,
    top_k=(None, 1000),
    radius=2,
    precision_at=(),
    pr_curve=False,
    empty_queries="zero",
    chunk_size=None,
    ties="expected",
    seed=0,
    threads=None,
):
    """Computes the standard hashing retrieval metrics in one pass.

    Args:
        query_codes, database_codes: {0, 1} codes (n, bits).
        relevance: a function `(start, stop) -> bool (rows, n_database)` from
            `label_relevance` or `euclidean_relevance`; chunks call it from several
            threads at once, so one of your own must be thread-safe (pure).
        top_k: the k of each mAP@k; None means mAP@all. A k at or above the
            database size is the same as mAP@all.
        radius: Hamming radius for precision/recall within radius (None: skip).
        precision_at: the N of each precision@N.
        pr_curve: also return precision and recall at every Hamming radius.
        empty_queries: "zero" or "drop" (see the module docstring).
        chunk_size: queries per chunk; default keeps each chunk near 16 MB (per thread).
        ties: "expected" (default), "index" or "random" (module docstring).
        seed: the seed of the tie order with ties="random".
        threads: chunks of queries evaluated at once. Default: 1 with ties="expected"
            (its per-row histograms are small calls that hold the GIL: two threads were
            slower, 1.32 s against 1.12 s in `benchmarks/eval_speed.py`), else
            `evaluation_threads()` (the usable cores, at most 8: the selection's large
            sorts release the GIL, 3.45 s against 4.34 s). The results do not depend on it.

    Returns:
        A dict with `map_at_all` / `map_at_<k>`, `precision_radius_<r>`,
        `recall_radius_<r>`, `precision_at_<n>`, and with `pr_curve` the arrays
        `pr_precision` / `pr_recall` indexed by radius 0..bits.
    """
    _check_policy(empty_queries)
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}; received ties={ties!r}")
    top_k = tuple(top_k)
    if not top_k:
        raise ValueError("top_k is empty; give at least one k, e.g. top_k=(None,) for mAP@all")
    for name, values in (("top_k", [k for k in top_k if k is not None]), ("precision_at", precision_at)):
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} holds {value!r}; each of its values must be a positive int")
    if radius is not None and (
        isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0
    ):
        raise ValueError(f"radius must be an int >= 0 (or None to skip); received radius={radius!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise ValueError(
            f"threads must be a positive int (or None: the usable cores); received threads={threads!r}"
        )
    q_codes = as_binary_codes(query_codes, "query_codes")
    db_codes = as_binary_codes(database_codes, "database_codes")
    if q_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(
            f"query codes have {q_codes.shape[1]} bits but database codes have "
            f"{db_codes.shape[1]}; encode both with the same model"
        )
    n_query, bits = q_codes.shape
    n_db = db_codes.shape[0]
    if n_query == 0 or n_db == 0:
        raise ValueError(f"need at least one query and one database item; got {n_query} and {n_db}")
    q_packed, db_packed = np.packbits(q_codes, axis=1), np.packbits(db_codes, axis=1)
    ks = {("all" if k is None or k >= n_db else int(k)) for k in top_k}
    q_words, db_words = _as_words(q_packed), _as_words(db_packed)  # padded once, not per chunk
    chunk = chunk_size or _chunk_size(n_db, db_words.shape[1])
    db_columns = _word_columns(db_words)

    ap = {k: np.zeros(n_query) for k in ks}
    has_rel = {k: np.zeros(n_query) for k in ks}  # 1/0, or the probability under expected ties
    prec_n = {n: np.zeros(n_query) for n in precision_at}
    shell_precision = np.zeros((n_query, 2))  # precision and recall within `radius`, per query
    pr_sums = np.zeros((2, bits + 1))  # sums over queries of precision and recall at each radius
    depth = _ranking_depth(ks, precision_at, n_db)
    harmonic = harmonic_numbers(n_db) if ties == "expected" else None
    order = np.random.default_rng(seed).permutation(n_db) if ties == "random" else None

    def evaluate(start):
        """One chunk of queries: its histograms, and its AP / precision@N per k and N."""
        stop = min(start + chunk, n_query)
        dist = _hamming_words(q_words[start:stop], db_columns)
        rel = np.asarray(relevance(start, stop), bool)
        if order is not None:  # one random order of the database breaks every tie
            dist, rel = dist[:, order], rel[:, order]
        counts, rel_counts = shell_histograms(dist, rel, bits)
        retrieved, rel_retrieved = np.cumsum(counts, axis=1), np.cumsum(rel_counts, axis=1)
        precision = np.where(retrieved > 0, rel_retrieved / np.maximum(retrieved, 1), 0.0)
        recall = rel_retrieved / np.maximum(rel_retrieved[:, -1:], 1)
        r = bits if radius is None else min(int(radius), bits)
        part = {
            "radius": np.stack([precision[:, r], recall[:, r]], 1),
            "pr": np.stack([precision, recall]).sum(1),
        }
        if harmonic is not None:
            for k in ks:
                cut = None if k == "all" else k
                expected = expected_average_precision(counts, rel_counts, cut, harmonic)
                part["ap", k], part["found", k] = expected
            for n in precision_at:
                part["precision", n] = expected_precision_at(counts, rel_counts, min(n, n_db))
            return start, stop, part
        ranked = np.take_along_axis(rel, nearest_positions(dist, depth, counts), axis=1)  # (rows, depth)
        del dist, rel
        hits = np.cumsum(ranked, axis=1, dtype=np.int32)
        ranks = np.arange(1, depth + 1, dtype=np.float32)
        contrib = np.where(ranked, hits.astype(np.float32) / ranks, np.float32(0))
        for k in ks:
            kk = n_db if k == "all" else k
            n_rel = hits[:, kk - 1]
            part["ap", k] = contrib[:, :kk].sum(1) / np.maximum(n_rel, 1)
            part["found", k] = n_rel > 0
        for n in precision_at:
            part["precision", n] = hits[:, min(n, n_db) - 1] / min(n, n_db)
        return start, stop, part

    starts = range(0, n_query, chunk)
    if threads is None:  # the expected-ties path is many small GIL-bound calls: one thread is faster
        threads = 1 if ties == "expected" else evaluation_threads()
    with ThreadPoolExecutor(min(threads, len(starts))) as pool:
        for start, stop, part in pool.map(evaluate, starts):
            shell_precision[start:stop] = part["radius"]
            pr_sums += part["pr"]
            for k in ks:
                ap[k][start:stop], has_rel[k][start:stop] = part["ap", k], part["found", k]
            for n in precision_at:
                prec_n[n][start:stop] = part["precision", n]

    out = {}
    for k in ks:
        key = "map_at_all" if k == "all" else f"map_at_{k}"
        if empty_queries == "drop":  # the mean over the queries (expected number of them) that are kept
            kept = has_rel[k].sum()
            out[key] = float(ap[k].sum() / kept) if kept > 0 else 0.0
        else:
            out[key] = float(ap[k].mean())
    for n in precision_at:
        out[f"precision_at_{n}"] = float(prec_n[n].mean())
    if radius is not None:
        out[f"precision_radius_{radius}"] = float(shell_precision[:, 0].mean())
        out[f"recall_radius_{radius}"] = float(shell_precision[:, 1].mean())
    if pr_curve:
        out["pr_precision"], out["pr_recall"] = pr_sums / n_query
    return {key: out[key] for key in metric_order(out)}


def metric_order(keys):
    """The one order of metric columns in every table and file: mAP@all, mAP@k by k, precision and
    recall within the radius, precision@N by N, then anything else by name."""

    def rank(key):
        for position, prefix in enumerate(
            ("map_at_", "precision_radius_", "recall_radius_", "precision_at_")
        ):
            if key.startswith(prefix):
                tail = key[len(prefix) :]
                return (position, -1 if tail == "all" else int(tail) if tail.isdigit() else 10**9, key)
        return (9, 0, key)

    return sorted(keys, key=rank)


def mean_average_precision(
    query_codes, database_codes, query_labels, database_labels, k=None, empty_queries="zero", ties="expected"
):
    """mAP@k (k=None: mAP@all) under the label ground truth."""
    relevance = label_relevance(query_labels, database_labels)
    metrics = retrieval_metrics(
        query_codes,
        database_codes,
        relevance,
        top_k=(k,),
        radius=None,
        empty_queries=empty_queries,
        ties=ties,
    )
    return next(v for key, v in metrics.items() if key.startswith("map_at_"))
