"""BGAN's neighbour graph (Song et al. 2018, Sec. 3.1 and Alg. 1), sparse, for any number of items.

For item i, L_i is the list of its K1 nearest other items by cosine
similarity. The expansion ranks every item j by the overlap |L_i & L_j| of
the two lists (i itself first, then larger overlaps, ties by index), keeps
the top K2, and the neighbours of i are the union of their K1 lists (Eq. 4:
s_ij = 1 if j is in L_i or in the K1 list of one of i's K2 expansion items,
-1 otherwise; i's own list is in the union because i ranks first). On
CIFAR-10 the paper counts about 400 neighbours per image.

The graph is stored as CSR (`indptr`, `indices`: row i's neighbours are
indices[indptr[i]:indptr[i + 1]], sorted), never as a dense N x N matrix,
in `graph.npz` with K1, K2, the options and a fingerprint of the features.
NumPy, SciPy-free and TensorFlow-free, so `tfhash neighbours` starts fast
and stays small: the K1 search is chunked (faiss's exact inner-product
index when faiss is installed, else NumPy), and the expansion works on
chunks of rows through the inverted lists.

Options the paper leaves open (the authors' script does both):
    self_pairs: whether i counts as its own neighbour (default False: i is
        removed from its own row; True: it is added).
    symmetric: whether S is made symmetric, j in row i whenever i is in row
        j (default False: rows as Eq. 4 builds them).
"""

import json
import os

import numpy as np

from tfhash.evaluation import k_smallest
from tfhash.files import array_fingerprint, open_npz, write_npz
from tfhash.index import faiss_available

GRAPH_FORMAT = "tfhash-neighbour-graph-1"
BACKENDS = ("auto", "faiss", "numpy")


def features_fingerprint(features):
    """SHA-256 of the float32 features and their shape (what a cached graph was built from)."""
    return array_fingerprint(np.asarray(features, np.float32))


def cosine_knn(features, k, backend="auto", chunk=256):
    """(N, k) int64: each item's k most cosine-similar *other* items (exact search).

    NumPy: similarities of `chunk` rows at a time in float32 (memory chunk x
    N x 4 bytes), the item itself excluded, ties at the k-th similarity by
    index; each row sorted by index. faiss (`backend="faiss"`, or "auto" when
    it is installed): its exact inner-product index over the normalised
    rows, k + 1 results with the item itself dropped (faiss orders exact
    ties its own way). Zero rows have no direction: they are refused.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; received backend={backend!r}")
    x = np.ascontiguousarray(features, np.float32)
    n = len(x)
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, {n - 1}] (items - 1) for {n} items; received k={k}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if len(zero):
        raise ValueError(
            f"{len(zero)} feature rows are all zero (rows {', '.join(map(str, zero[:5]))}"
            f"{', ...' if len(zero) > 5 else ''}): cosine similarity is undefined for them; drop them"
        )
    x = x / norms
    if backend == "auto":
        backend = "faiss" if faiss_available() else "numpy"
    if backend == "faiss":
        return _faiss_knn(x, k)
    out = np.empty((n, k), np.int64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        distances = -(x[start:stop] @ x.T)  # (rows, N) float32: the most similar first
        distances[np.arange(stop - start), np.arange(start, stop)] = np.inf  # never the item itself
        out[start:stop] = k_smallest(distances, k)
    return out


def _faiss_knn(x, k):
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x, k + 1)
    own = found == np.arange(len(x))[:, None]
    # drop the item itself; where faiss did not return it (exact duplicates), drop the last result
    own[~own.any(axis=1), -1] = True
    return np.sort(found[~own].reshape(len(x), k), axis=1).astype(np.int64)


def expand(knn, k2, self_pairs=False, symmetric=False, pairs_per_chunk=2_000_000):
    """The neighbour graph of Alg. 1 from the K1 lists `knn` (N, K1): CSR (indptr, indices).

    For each i, every j sharing an item with L_i is ranked by the overlap
    |L_i & L_j| (i itself first, then by overlap, descending, ties by
    index); the top `k2` are kept and row i is the union of their K1 lists.
    Works through the inverted lists (which items list m) on chunks of rows
    holding about `pairs_per_chunk` (i, j) pairs each (a hub, an item in
    many lists, makes its rows' chunks shorter), so memory is bounded by
    the chunk, never N^2.
    """
    knn = np.asarray(knn, np.int64)
    n, k1 = knn.shape
    if not 0 < k2 <= n:
        raise ValueError(f"k2 must be in [1, {n}] (items); received k2={k2}")
    # inverted lists: postings of m = the items whose K1 list holds m
    owners = np.repeat(np.arange(n), k1)
    order = np.argsort(knn.ravel(), kind="stable")
    posting_items = owners[order]
    posting_ptr = np.concatenate([[0], np.cumsum(np.bincount(knn.ravel(), minlength=n))])
    row_pairs = (posting_ptr[knn + 1] - posting_ptr[knn]).sum(1)
    bounds = np.searchsorted(
        np.cumsum(row_pairs), np.arange(pairs_per_chunk, row_pairs.sum(), pairs_per_chunk)
    )
    bounds = np.unique(np.concatenate([[0], bounds, [n]]))
    rows, counts = [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        top = _top_overlaps(knn[start:stop], start, posting_items, posting_ptr, n, k2)  # (rows, <=k2)
        members = knn[np.where(top >= 0, top, 0)]  # (rows, k2, k1)
        members = np.where((top >= 0)[:, :, None], members, -1).reshape(stop - start, -1)
        own = np.arange(start, stop)[:, None]
        if self_pairs:
            members = np.concatenate([members, own], axis=1)
        else:
            members = np.where(members == own, -1, members)
        members.sort(axis=1)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]  # first of each run of equal values
        rows.append(members[keep])
        counts.append(keep.sum(1))
    indices = np.concatenate(rows).astype(np.int32)
    counts = np.concatenate(counts)
    if symmetric:
        source = np.repeat(np.arange(n, dtype=np.int64), counts)
        keys = np.unique(np.concatenate([source * n + indices, indices.astype(np.int64) * n + source]))
        counts = np.bincount(keys // n, minlength=n)
        indices = (keys % n).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, indices


def _top_overlaps(lists, start, posting_items, posting_ptr, n, k2):
    """(rows, k2) int64: for each row's item, the k2 items with the largest list overlap (itself
    first, ties by index), -1 where fewer items share anything with it."""
    rows, k1 = lists.shape
    flat = lists.ravel()
    sizes = posting_ptr[flat + 1] - posting_ptr[flat]
    # every (row, j) pair once per shared item m: j runs over the postings of each m in the row's list
    row_of = np.repeat(np.repeat(np.arange(rows), k1), sizes)
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    partner = posting_items[np.repeat(posting_ptr[flat], sizes) + offsets]
    keys, overlap = np.unique(row_of * n + partner, return_counts=True)
    row_of, partner = keys // n, keys % n
    self_first = partner != (row_of + start)  # False (sorts first) for the item itself
    order = np.lexsort((partner, -overlap, self_first, row_of))
    row_of, partner = row_of[order], partner[order]
    rank = np.arange(len(row_of)) - np.searchsorted(row_of, row_of)  # position within its row
    top = np.full((rows, k2), -1, np.int64)
    kept = rank < k2
    top[row_of[kept], rank[kept]] = partner[kept]
    return top


def build_graph(features, k1=20, k2=30, self_pairs=False, symmetric=False, backend="auto"):
    """The neighbour graph of `features` (N, D): a dict with "indptr", "indices" and the options.

    See the module docstring. Returns what `save_graph` writes.
    """
    knn = cosine_knn(features, k1, backend)
    indptr, indices = expand(knn, k2, self_pairs, symmetric)
    return {
        "indptr": indptr,
        "indices": indices,
        "k1": int(k1),
        "k2": int(k2),
        "self_pairs": bool(self_pairs),
        "symmetric": bool(symmetric),
        "fingerprint": features_fingerprint(features),
        "items": int(len(indptr) - 1),
    }


OPTIONS = ("k1", "k2", "self_pairs", "symmetric", "fingerprint", "items")


def save_graph(graph, path):
    """Writes `graph` (`build_graph`) to an npz, atomically: `indptr`, `indices` and `meta` (JSON: the
    format, K1, K2, the options, the features' fingerprint, the item count). Returns the path."""
    meta = {"format": GRAPH_FORMAT, **{key: graph[key] for key in OPTIONS}}
    write_npz(path, meta, indptr=graph["indptr"], indices=graph["indices"])
    return path


def load_graph(path):
    """Reads a graph npz written by `save_graph`; a ValueError names the file when it is not one."""
    with open_npz(path) as archive:
        try:
            meta = json.loads(str(archive["meta"])) if "meta" in archive.files else {}
        except ValueError:
            meta = {}
        if meta.get("format") != GRAPH_FORMAT or not {"indptr", "indices"} <= set(archive.files):
            raise ValueError(f"{path} is not a tfhash neighbour graph (make one with `tfhash neighbours`)")
        graph = {key: archive[key] for key in ("indptr", "indices")}
    graph.update({key: meta[key] for key in OPTIONS})
    if len(graph["indptr"]) != graph["items"] + 1 or graph["indptr"][-1] != len(graph["indices"]):
        raise ValueError(f"{path}: the graph's arrays do not match ({graph['items']} items); rebuild it")
    return graph


def pair_keys(graph):
    """The graph's edges as sorted int64 keys i * N + j (N = items), for membership tests of batch
    pairs (BGAN looks each batch pair up with a binary search, never a dense N x N matrix)."""
    indptr = np.asarray(graph["indptr"], np.int64)
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    keys = rows * (len(indptr) - 1) + np.asarray(graph["indices"], np.int64)
    return keys  # sorted: rows ascend, and each row's indices are sorted


def graph_for(features, graph=None, k1=20, k2=30, self_pairs=False, symmetric=False, backend="auto"):
    """The neighbour graph of training `features` for a model: built in memory (`graph` None), read
    from a graph file (a path ending in .npz, from `tfhash neighbours`), or cached in a folder (any
    other path, created if needed: `cached_graph`).

    Raises:
        ValueError: when a graph file was built from other features or with other K1, K2 or options,
            naming the fix.
    """
    if graph is None:
        return build_graph(features, k1, k2, self_pairs, symmetric, backend)
    if not str(graph).endswith(".npz"):
        return cached_graph(features, graph, k1, k2, self_pairs, symmetric, backend)[0]
    loaded = load_graph(graph)
    wanted = {"k1": k1, "k2": k2, "self_pairs": self_pairs, "symmetric": symmetric}
    differ = {key: loaded[key] for key, value in wanted.items() if loaded[key] != value}
    if loaded["fingerprint"] != features_fingerprint(features) or differ:
        what = f"options {differ} (the model asks for {wanted})" if differ else "other features"
        raise ValueError(
            f"{graph} was built from {what}, not this model's {len(features)} training items; build it "
            "with `tfhash neighbours` on the training split with the model's K1, K2 and options, or pass "
            "a folder to cache graphs in"
        )
    return loaded


def cached_graph(features, folder, k1=20, k2=30, self_pairs=False, symmetric=False, backend="auto"):
    """The graph of `features`, read from `folder` when a file there was built from the same
    features and options, else built and written there (returns (graph, path, built))."""
    fingerprint = features_fingerprint(features)
    name = f"graph-{fingerprint[:16]}-k{k1}-{k2}-self{int(self_pairs)}-sym{int(symmetric)}.npz"
    path = os.path.join(folder, name)
    if os.path.exists(path):
        graph = load_graph(path)
        if graph["fingerprint"] == fingerprint:
            return graph, path, False
    graph = build_graph(features, k1, k2, self_pairs, symmetric, backend)
    os.makedirs(folder, exist_ok=True)
    save_graph(graph, path)
    return graph, path, True
