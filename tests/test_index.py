import numpy as np
import pytest

from tfhash.evaluation import distance_histogram, hamming_distance, nearest_positions, pack_codes
from tfhash.index import HammingIndex, faiss_available

BACKENDS = [
    "numpy",
    pytest.param("faiss", marks=pytest.mark.skipif(not faiss_available(), reason="no faiss")),
]


def brute_force(queries, codes, ids, bits):
    """Reference: full distance matrix, rows ordered by (distance, id)."""
    dist = np.unpackbits(queries[:, None, :] ^ codes[None], axis=2)[..., :bits].sum(2)
    order = np.array([np.lexsort((ids, row)) for row in dist])
    return np.take_along_axis(dist, order, axis=1), ids[order]


@pytest.fixture
def tied():
    """16-bit codes drawn from 60 distinct codes: many exact ties; ids shuffled."""
    rng = np.random.default_rng(7)
    pool = rng.integers(0, 2, (60, 16)).astype(np.uint8)
    codes = pack_codes(pool[rng.integers(0, 60, 2000)])
    queries = pack_codes(rng.integers(0, 2, (25, 16)))
    ids = rng.permutation(10_000)[:2000].astype(np.int64)
    return queries, codes, ids


@pytest.mark.parametrize("backend", BACKENDS)
class HammingIndexTest:
    def test_top_k_matches_brute_force_with_ties(self, backend, tied):
        queries, codes, ids = tied
        index = HammingIndex(16, backend)
        index.add(codes[:1200], ids[:1200])
        index.add(codes[1200:], ids[1200:])  # a second batch with smaller ids: re-sorted by id
        distances, found = index.search(queries, 70)
        want_d, want_ids = brute_force(queries, codes, ids, 16)
        np.testing.assert_array_equal(distances, want_d[:, :70])
        np.testing.assert_array_equal(found, want_ids[:, :70])
        assert distances.dtype == np.int32 and found.dtype == np.int64

    def test_radius_matches_brute_force(self, backend, tied):
        queries, codes, ids = tied
        index = HammingIndex(16, backend)
        index.add(codes, ids)
        lims, distances, found = index.range_search(queries, 3)
        want_d, want_ids = brute_force(queries, codes, ids, 16)
        for i in range(len(queries)):
            within = want_d[i] <= 3
            np.testing.assert_array_equal(distances[lims[i] : lims[i + 1]], want_d[i][within])
            np.testing.assert_array_equal(found[lims[i] : lims[i + 1]], want_ids[i][within])
        assert lims[-1] > 0

    def test_remove_then_search(self, backend, tied):
        queries, codes, ids = tied
        index = HammingIndex(16, backend)
        index.add(codes, ids)
        assert index.remove(ids[::3]) == len(ids[::3]) and index.remove([-5]) == 0
        keep = np.ones(len(ids), bool)
        keep[::3] = False
        distances, found = index.search(queries, 10)
        want_d, want_ids = brute_force(queries, codes[keep], ids[keep], 16)
        np.testing.assert_array_equal(found, want_ids[:, :10])
        np.testing.assert_array_equal(distances, want_d[:, :10])

    def test_save_load_round_trip_across_backends(self, backend, tied, tmp_path):
        queries, codes, ids = tied
        index = HammingIndex(16, backend)
        index.add(codes, ids)
        path = index.save(tmp_path / "codes.index.npz")
        for other in ("numpy", backend):
            loaded = HammingIndex.load(path, other)
            assert len(loaded) == len(index) and loaded.bits == 16
            for got, want in zip(loaded.search(queries, 30), index.search(queries, 30), strict=True):
                np.testing.assert_array_equal(got, want)
        assert index.memory_bytes == 2000 * (2 + 8)

    def test_odd_bit_count_is_zero_padded(self, backend):
        rng = np.random.default_rng(1)
        codes, queries = rng.integers(0, 2, (300, 12)), rng.integers(0, 2, (5, 12))
        index = HammingIndex(12, backend)
        index.add(pack_codes(codes))
        distances, found = index.search(pack_codes(queries), 300)
        want = hamming_distance(pack_codes(queries), pack_codes(codes))
        np.testing.assert_array_equal(distances, np.take_along_axis(want, found, axis=1))
        assert distances.max() <= 12

    def test_bad_input_gives_clear_errors(self, backend):
        index = HammingIndex(16, backend)
        codes = np.random.default_rng(0).integers(0, 2, (10, 16)).astype(np.uint8)
        with pytest.raises(ValueError, match=r"shape \(n, 2\).*received shape \(10, 16\).*pack_codes"):
            index.add(codes)  # {0, 1} codes instead of packed bytes
        with pytest.raises(ValueError, match="uint8"):
            index.add(pack_codes(codes).astype(np.int32))
        index.add(pack_codes(codes))
        with pytest.raises(ValueError, match="k=11 is larger than the index"):
            index.search(pack_codes(codes[:2]), 11)
        with pytest.raises(ValueError, match="unique and not already in the index"):
            index.add(pack_codes(codes[:2]), ids=[3, 4])
        with pytest.raises(ValueError, match="padding bits"):
            HammingIndex(12, backend).add(np.full((1, 2), 255, np.uint8))
        with pytest.raises(ValueError, match="radius must be a non-negative int"):
            index.range_search(pack_codes(codes[:1]), -1)


@pytest.mark.skipif(not faiss_available(), reason="no faiss")
def test_multihash_radius_search_is_exact(tied, tmp_path):
    queries, codes, ids = tied
    flat, hashed = HammingIndex(16, "faiss"), HammingIndex(16, "faiss", radius_hashes=3)
    for index in (flat, hashed):
        index.add(codes, ids)
    for radius in range(5):  # 0-2 go through the multi-hash tables, 3-4 fall back to the scan
        for got, want in zip(
            hashed.range_search(queries, radius), flat.range_search(queries, radius), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    assert hashed._multihash is not None
    hashed.remove(ids[:100])
    assert hashed._multihash is None  # rebuilt after a change
    loaded = HammingIndex.load(hashed.save(tmp_path / "h.npz"))
    assert loaded.radius_hashes == 3
    with pytest.raises(ValueError, match="radius_hashes=1 splits 128-bit codes"):
        HammingIndex(128, "faiss", radius_hashes=1)


def test_index_and_evaluation_rank_alike():
    rng = np.random.default_rng(3)
    codes, queries = pack_codes(rng.integers(0, 2, (500, 8))), pack_codes(rng.integers(0, 2, (9, 8)))
    index = HammingIndex(8, "numpy")
    index.add(codes)
    # brute force, written out: popcount of the XOR of the unpacked bits, nearest first, ties in
    # database order (a stable sort); 500 items in 9 distances make ties the rule here
    bits_q, bits_d = np.unpackbits(queries, axis=1), np.unpackbits(codes, axis=1)
    brute = (bits_q[:, None, :] != bits_d[None, :, :]).sum(-1)
    expected = np.argsort(brute, axis=1, kind="stable")[:, :40]
    distances, positions = index.search(queries, 40)
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_array_equal(distances, np.take_along_axis(brute, expected, axis=1))
    dist = hamming_distance(queries, codes)  # and the evaluation's ranking agrees
    np.testing.assert_array_equal(nearest_positions(dist, 40, distance_histogram(dist, 8)), expected)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        HammingIndex(8, "annoy")


@pytest.mark.skipif(not faiss_available(), reason="needs faiss-cpu (the test extra installs it)")
@pytest.mark.parametrize("kind", ["uniform", "skewed", "duplicates"])
def test_multihash_top_k_equals_the_flat_scan(kind):
    """Top-k through the multi-hash tables (growing radius, the flat scan for the queries still short)
    gives the flat scan's distances and ids, ties by id, on uniform codes, on the skewed codes of a
    projection of clustered data, and on many exact duplicates; the NumPy backend agrees."""
    rng = np.random.default_rng(1)
    if kind == "uniform":
        codes = rng.integers(0, 256, (5000, 4), dtype=np.uint8)
    elif kind == "skewed":
        centres = rng.normal(size=(6, 16))
        x = centres[rng.integers(0, 6, 5000)] + 0.4 * rng.normal(size=(5000, 16))
        codes = pack_codes((x @ rng.normal(size=(16, 32)) > 0).astype(np.uint8))
    else:
        codes = np.repeat(rng.integers(0, 256, (50, 4), dtype=np.uint8), 100, axis=0)
    queries = codes[rng.integers(0, len(codes), 40)] ^ (rng.random((40, 4)) < 0.05).astype(np.uint8)
    ids = rng.permutation(100_000)[: len(codes)]
    indexes = [
        HammingIndex(32, "faiss"),
        HammingIndex(32, "faiss", radius_hashes=4),
        HammingIndex(32, "numpy"),
    ]
    for index in indexes:
        index.add(codes, ids)
    for k in (1, 10, 250):
        flat, multihash, numpy_ = (index.search(queries, k) for index in indexes)
        for got in (multihash, numpy_):
            np.testing.assert_array_equal(got[0], flat[0])
            np.testing.assert_array_equal(got[1], flat[1])


def test_the_structure_is_chosen_by_size_and_can_be_forced(monkeypatch):
    from tfhash import index as index_module
    from tfhash.index import choose_structure, multihash_tables

    assert multihash_tables(1_000_000, 64) == 3  # substrings of about log2(items) = 20 bits
    assert multihash_tables(100_000_000, 64) == 2 and multihash_tables(1000, 256) == 26
    assert multihash_tables(10, 8) == 2 and multihash_tables(2, 8) == 8
    assert choose_structure("flat", 10**9, 64) is None
    with pytest.raises(ValueError, match="a flat index has none"):
        choose_structure("flat", 100, 64, radius_hashes=3)
    with pytest.raises(ValueError, match="structure must be one of"):
        choose_structure("tree", 100, 64)
    if faiss_available():
        assert choose_structure("multihash", 1_000_000, 64) == 3
        assert choose_structure("multihash", 1_000_000, 64, radius_hashes=4) == 4
        assert choose_structure("auto", index_module.MULTIHASH_FROM_ITEMS - 1, 64) is None
        assert choose_structure("auto", index_module.MULTIHASH_FROM_ITEMS, 64) is not None
        assert choose_structure("auto", 10, 64, radius_hashes=2) == 2  # tables asked for: built
    assert choose_structure("auto", 10**9, 64, backend="numpy") is None  # tables need faiss
    with pytest.raises(ValueError, match="multi-hash structure needs faiss"):
        choose_structure("multihash", 100, 64, backend="numpy")


@pytest.mark.skipif(not faiss_available(), reason="no faiss")
def test_build_index_structures_answer_alike(tied, tmp_path, monkeypatch):
    from tfhash import index as index_module
    from tfhash.encoder import save_codes
    from tfhash.evaluation import unpack_codes
    from tfhash.index import multihash_tables
    from tfhash.serve import build_index

    queries, codes, ids = tied
    order = np.argsort(ids)
    save_codes(tmp_path / "c.npz", unpack_codes(codes[order], 16), ids[order])
    flat = build_index(tmp_path / "c.npz", tmp_path / "flat.npz", structure="flat")
    multi = build_index(tmp_path / "c.npz", tmp_path / "multi.npz", structure="multihash")
    assert flat.radius_hashes is None and multi.radius_hashes == multihash_tables(2000, 16) == 2
    monkeypatch.setattr(index_module, "MULTIHASH_FROM_ITEMS", 2000)
    assert build_index(tmp_path / "c.npz", tmp_path / "auto.npz").radius_hashes == multi.radius_hashes
    loaded = HammingIndex.load(tmp_path / "multi.npz")
    assert loaded.radius_hashes == multi.radius_hashes
    for k in (1, 5, 40):
        for got, want in zip(loaded.search(queries, k), flat.search(queries, k), strict=True):
            np.testing.assert_array_equal(got, want)
    assert loaded._multihash is not None  # top-k went through the tables


@pytest.mark.skipif(not faiss_available(), reason="no faiss")
def test_a_saved_index_loads_without_a_second_copy_of_its_codes(tied, tmp_path, monkeypatch):
    """The codes are read from the file into faiss' own buffer: IndexBinaryFlat.add is never
    called for them; an index whose ids are out of order (written by hand) is still sorted."""
    import faiss

    from tfhash.files import write_npz

    queries, codes, ids = tied
    index = HammingIndex(16, "faiss")
    index.add(codes, ids)
    index.save(tmp_path / "i.npz")

    def no_add(self, *args):
        raise AssertionError("load copied the codes through add")

    monkeypatch.setattr(faiss.IndexBinaryFlat, "add", no_add)
    loaded = HammingIndex.load(tmp_path / "i.npz")
    monkeypatch.undo()
    np.testing.assert_array_equal(loaded.codes(), index.codes())
    np.testing.assert_array_equal(loaded.ids, index.ids)
    for got, want in zip(loaded.search(queries, 7), index.search(queries, 7), strict=True):
        np.testing.assert_array_equal(got, want)
    meta = {"format": "tfhash-hamming-index-1", "bits": 16, "radius_hashes": None}
    write_npz(tmp_path / "shuffled.npz", meta, codes=codes, ids=ids)  # ids not in order
    shuffled = HammingIndex.load(tmp_path / "shuffled.npz")
    np.testing.assert_array_equal(shuffled.ids, index.ids)
    np.testing.assert_array_equal(shuffled.codes(), index.codes())
    # codes read in place are checked as added ones are: the padding bits of 12-bit codes
    write_npz(
        tmp_path / "bad.npz", {**meta, "bits": 12}, codes=np.full((2, 2), 255, np.uint8), ids=np.arange(2)
    )
    with pytest.raises(ValueError, match="the 4 padding bits after bit 12 must be 0"):
        HammingIndex.load(tmp_path / "bad.npz", backend="faiss")
