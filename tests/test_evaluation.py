import numpy as np
import pytest

from tfhash.baselines import PCAH
from tfhash.data import load_data
from tfhash.evaluation import (
    euclidean_neighbours,
    euclidean_relevance,
    hamming_distance,
    label_relevance,
    mean_average_precision,
    pack_codes,
    retrieval_metrics,
    shell_histograms,
    unpack_codes,
)


def brute_force(q_codes, db_codes, rel, k, radius, drop):
    """Plain reference: Python loops, stable sort by (distance, index)."""
    aps, precs = [], []
    for i in range(len(q_codes)):
        dist = [int(np.sum(q_codes[i] != d)) for d in db_codes]
        order = sorted(range(len(db_codes)), key=lambda j: (dist[j], j))[:k]
        hits, total = 0, 0.0
        for rank, j in enumerate(order, start=1):
            if rel[i, j]:
                hits += 1
                total += hits / rank
        if hits or not drop:
            aps.append(total / hits if hits else 0.0)
        within = [j for j in range(len(db_codes)) if dist[j] <= radius]
        precs.append(sum(rel[i, j] for j in within) / len(within) if within else 0.0)
    return float(np.mean(aps)) if aps else 0.0, float(np.mean(precs))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("drop", [False, True])
def test_matches_brute_force_with_ties_and_empty_queries(seed, drop):
    rng = np.random.default_rng(seed)
    bits = 6  # few bits: many distance ties
    q_codes, db_codes = rng.integers(0, 2, (12, bits)), rng.integers(0, 2, (40, bits))
    q_labels, db_labels = rng.integers(0, 6, 12), rng.integers(0, 5, 40)  # class 5: no relevant item
    rel = q_labels[:, None] == db_labels[None, :]
    assert (~rel.any(1)).any()
    policy = "drop" if drop else "zero"
    for k in (5, 17, None):
        got = retrieval_metrics(
            q_codes,
            db_codes,
            label_relevance(q_labels, db_labels),
            top_k=(k,),
            radius=1,
            empty_queries=policy,
            chunk_size=5,
            ties="index",
        )
        key = "map_at_all" if k is None else f"map_at_{k}"
        want_map, want_prec = brute_force(q_codes, db_codes, rel, k or 40, 1, drop)
        assert got[key] == pytest.approx(want_map, abs=1e-6)
        assert got["precision_radius_1"] == pytest.approx(want_prec, abs=1e-6)


def test_hand_made_three_queries():
    # Database (2 bits): d0=00 (A), d1=01 (B), d2=11 (A), d3=00 (B).
    db = np.array([[0, 0], [0, 1], [1, 1], [0, 0]])
    db_labels = np.array([0, 1, 0, 1])
    # q0=00 label A: distances 0,1,2,0 -> ranking d0,d3,d1,d2 -> rel 1,0,0,1
    #   AP = (1/1 + 2/4) / 2 = 0.75
    # q1=11 label B: distances 2,1,0,2 -> ranking d2,d1,d0,d3 -> rel 0,1,0,1
    #   AP = (1/2 + 2/4) / 2 = 0.5
    # q2=01 label C (no relevant item): AP 0 ("zero") or left out ("drop")
    q = np.array([[0, 0], [1, 1], [0, 1]])
    q_labels = np.array([0, 1, 2])
    index = {"ties": "index"}  # ties broken by database index, as described above
    assert mean_average_precision(q, db, q_labels, db_labels, **index) == pytest.approx((0.75 + 0.5 + 0) / 3)
    drop = mean_average_precision(q, db, q_labels, db_labels, empty_queries="drop", **index)
    assert drop == pytest.approx(0.625)
    # mAP@2: q0 top2 = d0,d3 -> AP 1; q1 top2 = d2,d1 -> AP 1/2 (divided by hits in top 2)
    assert mean_average_precision(q, db, q_labels, db_labels, k=2, **index) == pytest.approx((1 + 0.5) / 3)
    # Expected over tie orders: q0's shell 0 holds d0 (A) and d3 (B) in either order: AP 0.75 or
    # (1/2 + 2/4) / 2 = 0.5, mean 0.625; q1's shell 2 holds d0 (A) and d3 (B): rel 0,1,0,1 or
    # 0,1,1,0, AP 0.5 or (1/2 + 2/3) / 2, mean 13/24.
    expected = (0.625 + 13 / 24 + 0) / 3
    assert mean_average_precision(q, db, q_labels, db_labels) == pytest.approx(expected)
    got = retrieval_metrics(
        q,
        db,
        label_relevance(q_labels, db_labels),
        top_k=(None,),
        radius=0,
        precision_at=(1,),
        pr_curve=True,
        ties="index",
    )
    # radius 0: q0 retrieves d0,d3 (1 of 2), q1 retrieves d2 (0 of 1), q2 retrieves d1 (0)
    assert got["precision_radius_0"] == pytest.approx(0.5 / 3)
    assert got["precision_at_1"] == pytest.approx(1 / 3)
    assert got["pr_recall"][-1] == pytest.approx(2 / 3)  # q2 has nothing to recall


def test_multi_hot_labels_share_one_label():
    q_labels = np.array([[1, 0, 1]])
    db_labels = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1]])
    assert label_relevance(q_labels, db_labels)(0, 1).tolist() == [[True, False, True]]


def test_long_codes_match_brute_force():
    """256 bits and more: uint16 distances and histogram keys."""
    rng = np.random.default_rng(4)
    q_codes, db_codes = rng.integers(0, 2, (6, 300)), rng.integers(0, 2, (30, 300))
    q_labels, db_labels = rng.integers(0, 3, 6), rng.integers(0, 3, 30)
    rel = q_labels[:, None] == db_labels[None, :]
    got = retrieval_metrics(
        q_codes, db_codes, label_relevance(q_labels, db_labels), top_k=(None,), radius=140, ties="index"
    )
    want_map, want_prec = brute_force(q_codes, db_codes, rel, 30, 140, False)
    assert got["map_at_all"] == pytest.approx(want_map, abs=1e-6)
    assert got["precision_radius_140"] == pytest.approx(want_prec, abs=1e-6)


def test_packed_hamming_matches_unpacked():
    rng = np.random.default_rng(0)
    for bits in (7, 64, 100, 300):
        a, b = rng.integers(0, 2, (9, bits)), rng.integers(0, 2, (13, bits))
        dist = hamming_distance(pack_codes(a), pack_codes(b))
        assert np.array_equal(dist, (a[:, None, :] != b[None, :, :]).sum(-1))
        assert np.array_equal(unpack_codes(pack_codes(a), bits), a)


@pytest.mark.parametrize("bits", [6, 200, 300])
def test_shell_histograms_count_items_and_relevant_items_per_distance(bits):
    rng = np.random.default_rng(bits)
    dist = rng.integers(0, bits + 1, (5, 300)).astype(np.uint8 if bits < 128 else np.uint16)
    relevant = rng.random((5, 300)) < 0.3
    counts, relevant_counts = shell_histograms(dist, relevant, bits)
    for i in range(5):
        assert counts[i].tolist() == [int(np.sum(dist[i] == d)) for d in range(bits + 1)]
        assert relevant_counts[i].tolist() == [
            int(np.sum((dist[i] == d) & relevant[i])) for d in range(bits + 1)
        ]


@pytest.mark.parametrize("ties", ["expected", "index", "random"])
def test_threads_do_not_change_the_figures(ties):
    rng = np.random.default_rng(3)
    q, db = rng.integers(0, 2, (37, 70)), rng.integers(0, 2, (400, 70))
    relevance = label_relevance(rng.integers(0, 4, 37), rng.integers(0, 4, 400))
    options = {"top_k": (None, 50), "precision_at": (20,), "pr_curve": True, "chunk_size": 4, "ties": ties}
    one = retrieval_metrics(q, db, relevance, threads=1, **options)
    three = retrieval_metrics(q, db, relevance, threads=3, **options)
    assert one.keys() == three.keys()
    for key in one:
        np.testing.assert_array_equal(one[key], three[key])
    with pytest.raises(ValueError, match="threads must be a positive int"):
        retrieval_metrics(q, db, relevance, threads=0)


def test_euclidean_relevance_takes_k_nearest_ties_by_index():
    db = np.array([[0.0], [1.0], [-1.0], [2.0], [1.0]])
    rel = euclidean_relevance(np.array([[0.0]]), db, k=3)(0, 1)
    # distances 0, 1, 1, 4, 1: nearest is d0, then the tie d1, d2, d4 -> d1, d2 by index
    assert rel.tolist() == [[True, True, True, False, False]]


def test_euclidean_neighbours_match_a_brute_force_sort_and_are_computed_once_per_data():
    rng = np.random.default_rng(0)
    db = rng.integers(0, 3, (300, 4)).astype(np.float64)  # many ties
    q = rng.integers(0, 3, (70, 4)).astype(np.float64)
    neighbours = euclidean_neighbours(q, db, k=7, chunk=16)
    d = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    brute = np.sort(np.argsort(d, axis=1, kind="stable")[:, :7], axis=1)  # stable: ties by index
    np.testing.assert_array_equal(neighbours, brute)
    data = load_data("digits")
    first = data.euclidean_neighbours(50)
    assert data.euclidean_neighbours(50) is first and first.shape == (len(data.query), 50)
    relevance = euclidean_relevance(data.query.features, data.database.features, neighbours=first)
    np.testing.assert_array_equal(
        relevance(5, 9), euclidean_relevance(data.query.features, data.database.features, k=50)(5, 9)
    )


def test_bad_codes_give_clear_errors():
    with pytest.raises(ValueError, match="only 0 and 1"):
        retrieval_metrics(np.array([[0.3, 1]]), np.array([[0, 1]]), lambda s, e: np.ones((1, 1), bool))
    with pytest.raises(ValueError, match="bits"):
        retrieval_metrics(np.zeros((1, 3)), np.zeros((2, 4)), lambda s, e: np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="empty_queries"):
        mean_average_precision(np.zeros((1, 2)), np.zeros((1, 2)), [0], [0], empty_queries="skip")


def pcah(data, bits):
    model = PCAH(bits).fit(data.train.features)
    return model.encode(data.query.features), model.encode(data.database.features)


def test_digits_split_and_metric_reproduce_protocol_pcah():
    data = load_data("digits")
    q, db = pcah(data, 32)
    got = mean_average_precision(q, db, data.query.labels, data.database.labels)
    assert got == pytest.approx(0.292, abs=0.01)  # protocols.md, digits PCAH 32 bits


@pytest.mark.large
def test_mnist_split_and_metric_reproduce_protocol_pcah(mnist_path):
    data = load_data(mnist_path)
    assert (len(data.query), len(data.database)) == (1000, 69000)
    q, db = pcah(data, 32)
    got = retrieval_metrics(q, db, label_relevance(data.query.labels, data.database.labels))
    assert got["map_at_all"] == pytest.approx(0.245, abs=0.01)  # protocols.md, mnist PCAH 32 bits
    assert got["map_at_1000"] == pytest.approx(0.642, abs=0.01)


def test_top_k_selection_agrees_with_the_full_sort():
    rng = np.random.default_rng(5)
    q, db = rng.integers(0, 2, (30, 12)), rng.integers(0, 2, (500, 12))
    relevance = label_relevance(rng.integers(0, 4, 30), rng.integers(0, 4, 500))
    options = {"precision_at": (50,), "chunk_size": 8, "ties": "index"}
    selected = retrieval_metrics(q, db, relevance, top_k=(100, 7), **options)
    full = retrieval_metrics(q, db, relevance, top_k=(None, 100, 7), **options)
    for key in ("map_at_100", "map_at_7", "precision_at_50", "precision_radius_2"):
        assert selected[key] == pytest.approx(full[key], abs=1e-9)
