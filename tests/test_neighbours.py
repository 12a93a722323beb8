"""BGAN's neighbour graph (tfhash.neighbours): sparse construction against the dense one, files, CLI."""

import subprocess
import sys

import numpy as np
import pytest

from tfhash.neighbours import build_graph, cached_graph, cosine_knn, expand, load_graph, save_graph


def dense_reference(features, k1, k2, self_pairs=False, symmetric=False):
    """The same graph by the dense O(N^2) construction, as a boolean (N, N) matrix (the reference)."""
    x = np.asarray(features, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    lists = np.zeros((n, n), bool)
    for i in range(n):
        order = sorted(range(n), key=lambda j: (-sims[i, j], j))
        lists[i, order[:k1]] = True
    overlap = lists.astype(int) @ lists.T.astype(int)
    graph = np.zeros((n, n), bool)
    for i in range(n):
        ranked = sorted((j for j in range(n) if overlap[i, j] > 0 or j == i),
                        key=lambda j: (j != i, -overlap[i, j], j))  # fmt: skip
        for j in ranked[:k2]:
            graph[i] |= lists[j]
    np.fill_diagonal(graph, self_pairs)
    if symmetric:
        graph |= graph.T
    return graph


def rows_of(graph):
    indptr, indices = graph["indptr"], graph["indices"]
    return [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]


@pytest.fixture(scope="module")
def items():
    return np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)


@pytest.mark.parametrize("self_pairs, symmetric", [(False, False), (True, True)])
@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_the_sparse_graph_equals_the_dense_construction(items, self_pairs, symmetric, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    graph = build_graph(items, k1=6, k2=5, self_pairs=self_pairs, symmetric=symmetric, backend=backend)
    dense = dense_reference(items, 6, 5, self_pairs, symmetric)
    assert rows_of(graph) == [np.flatnonzero(row).tolist() for row in dense]  # sorted, identical
    assert graph["items"] == 200 and graph["indices"].dtype == np.int32


def test_small_chunks_give_the_same_graph(items):
    knn = cosine_knn(items, 6, backend="numpy", chunk=7)
    np.testing.assert_array_equal(knn, cosine_knn(items, 6, backend="numpy"))
    whole = expand(knn, 5)
    pieces = expand(knn, 5, pairs_per_chunk=50)  # a few rows per chunk
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_expansion_by_hand():
    """Four items, K1 = 1: L = [1], [0], [3], [2]. Item 0 shares its list with nobody (0 ranks first,
    its overlap with itself is 1; every other overlap is 0), so with K2 = 2 its row is L_0 = {1}."""
    knn = np.array([[1], [0], [3], [2]])
    indptr, indices = expand(knn, k2=2)
    assert [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(4)] == [[1], [0], [3], [2]]
    # K1 = 2 on a line 0-1-2-3: L_0 = {1, 2}, L_1 = {0, 2}, L_2 = {1, 3}, L_3 = {1, 2}
    knn = np.array([[1, 2], [0, 2], [1, 3], [1, 2]])
    indptr, indices = expand(knn, k2=2)
    # item 0: itself first, then overlaps |{1,2} & L_j|: j=1 -> 1, j=2 -> 1, j=3 -> 2: top-2 = {0, 3}
    # row 0 = L_0 | L_3 = {1, 2} (0 itself removed)
    assert indices[indptr[0] : indptr[1]].tolist() == [1, 2]
    # item 1: L_1 = {0, 2}; overlaps j=0 -> 1 ({2}), j=2 -> 0, j=3 -> 1 ({2}): top-2 = {1, 0} (tie by index)
    assert indices[indptr[1] : indptr[2]].tolist() == [0, 2]


def test_zero_rows_and_bad_sizes_are_refused(items):
    with pytest.raises(ValueError, match="1 feature rows are all zero"):
        cosine_knn(np.vstack([items, np.zeros((1, 12), np.float32)]), 3)
    with pytest.raises(ValueError, match="k must be in"):
        cosine_knn(items, 200)
    with pytest.raises(ValueError, match="backend must be one of"):
        cosine_knn(items, 3, backend="annoy")


def test_files_round_trip_and_the_cache_is_keyed_by_the_features(items, tmp_path):
    graph = build_graph(items, 6, 5, backend="numpy")
    path = save_graph(graph, tmp_path / "graph.npz")
    loaded = load_graph(path)
    assert (
        rows_of(loaded) == rows_of(graph)
        and loaded["k1"] == 6
        and loaded["fingerprint"] == graph["fingerprint"]
    )
    first, cached, built = cached_graph(items, tmp_path / "cache", 6, 5, backend="numpy")
    again, same, rebuilt = cached_graph(items, tmp_path / "cache", 6, 5, backend="numpy")
    assert built and not rebuilt and same == cached and rows_of(again) == rows_of(first)
    _, other, built = cached_graph(items * 2 + 1, tmp_path / "cache", 6, 5, backend="numpy")
    assert built and other != cached
    (tmp_path / "not_a_graph.npz").write_bytes(open(tmp_path / "graph.npz", "rb").read()[:100])
    with pytest.raises(ValueError, match="damaged npz"):
        load_graph(tmp_path / "not_a_graph.npz")
    np.savez(tmp_path / "codes.npz", indptr=np.zeros(3))
    with pytest.raises(ValueError, match="is not a tfhash neighbour graph"):
        load_graph(tmp_path / "codes.npz")


def test_the_command_writes_a_graph_without_importing_tensorflow(tmp_path):
    out = tmp_path / "graph.npz"
    script = (
        "import sys\nfrom tfhash.cli import main\n"
        f"assert main(['neighbours', 'digits', '--out', {str(out)!r}, '--backend', 'numpy']) == 0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "neighbours per item on average" in done.stdout
    graph = load_graph(out)
    assert graph["items"] == 1497 and graph["k1"] == 20 and graph["k2"] == 30
    sizes = np.diff(graph["indptr"])
    assert sizes.min() >= 20  # at least the item's own K1 list
