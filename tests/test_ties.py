"""Tie-aware metrics: the exact expectation over random orders of tied items (tfhash.ties)."""

import itertools

import numpy as np
import pytest

from tfhash.evaluation import label_relevance, retrieval_metrics


def orders_within_shells(dist):
    """Every database order that sorts by distance (all permutations inside each shell)."""
    shells = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    for parts in itertools.product(*(itertools.permutations(s) for s in shells)):
        yield np.concatenate([np.asarray(p, int) for p in parts])


def metrics_of_order(rel, k, n_top):
    """AP@k (k=None: all; 0 when no relevant item in the top k) and precision@n_top of one ranking."""
    top = rel[:k] if k else rel
    hits = np.cumsum(top)
    ap = float((top * hits / np.arange(1, len(top) + 1)).sum() / hits[-1]) if hits[-1] else 0.0
    return ap, float(rel[:n_top].mean())


def exhaustive(q_codes, db_codes, rel, k, n_top):
    aps, precs = [], []
    for i in range(len(q_codes)):
        dist = (q_codes[i] != db_codes).sum(1)
        values = [metrics_of_order(rel[i][o], k, n_top) for o in orders_within_shells(dist)]
        aps.append(np.mean([v[0] for v in values]))
        precs.append(np.mean([v[1] for v in values]))
    return float(np.mean(aps)), float(np.mean(precs))


class ExpectedTiesTest:
    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    def test_equals_the_average_over_every_tie_order(self, seed):
        rng = np.random.default_rng(seed)
        q_codes, db_codes = rng.integers(0, 2, (4, 2)), rng.integers(0, 2, (8, 2))  # 2 bits: big shells
        q_labels, db_labels = rng.integers(0, 3, 4), rng.integers(0, 3, 8)
        rel = q_labels[:, None] == db_labels[None, :]
        for k, n_top in ((3, 3), (5, 2), (None, 6)):  # cut-offs inside tied shells
            got = retrieval_metrics(
                q_codes, db_codes, label_relevance(q_labels, db_labels), top_k=(k,), precision_at=(n_top,)
            )
            want_map, want_precision = exhaustive(q_codes, db_codes, rel, k, n_top)
            assert got["map_at_all" if k is None else f"map_at_{k}"] == pytest.approx(want_map, abs=1e-12)
            assert got[f"precision_at_{n_top}"] == pytest.approx(want_precision, abs=1e-12)

    def test_agrees_with_many_random_orders_on_a_larger_case(self):
        rng = np.random.default_rng(7)
        q_codes, db_codes = rng.integers(0, 2, (3, 4)), rng.integers(0, 2, (60, 4))
        q_labels, db_labels = rng.integers(0, 4, 3), rng.integers(0, 4, 60)
        relevance = label_relevance(q_labels, db_labels)
        expected = retrieval_metrics(q_codes, db_codes, relevance, top_k=(None, 20), precision_at=(10,))
        draws = [
            retrieval_metrics(
                q_codes, db_codes, relevance, top_k=(None, 20), precision_at=(10,), ties="random", seed=s
            )
            for s in range(2000)
        ]
        for key in ("map_at_all", "map_at_20", "precision_at_10"):
            values = np.array([d[key] for d in draws])
            assert abs(values.mean() - expected[key]) < 4 * values.std() / np.sqrt(len(values)) + 1e-12, key

    def test_storage_order_changes_nothing(self):
        rng = np.random.default_rng(3)
        q_codes, db_codes = rng.integers(0, 2, (20, 6)), rng.integers(0, 2, (500, 6))
        q_labels, db_labels = rng.integers(0, 5, 20), np.sort(rng.integers(0, 5, 500))  # class-sorted
        options = {"top_k": (None, 100), "precision_at": (50,), "radius": 2, "pr_curve": True}
        sorted_db = retrieval_metrics(q_codes, db_codes, label_relevance(q_labels, db_labels), **options)
        perm = rng.permutation(500)
        shuffled = retrieval_metrics(
            q_codes, db_codes[perm], label_relevance(q_labels, db_labels[perm]), **options
        )
        for key, value in sorted_db.items():
            np.testing.assert_allclose(shuffled[key], value, rtol=0, atol=1e-12, err_msg=key)
        by_index = retrieval_metrics(
            q_codes, db_codes, label_relevance(q_labels, db_labels), ties="index", **options
        )
        assert by_index["map_at_100"] != pytest.approx(
            sorted_db["map_at_100"], abs=1e-6
        )  # index order flatters

    def test_random_ties_are_seeded_and_bad_modes_refused(self):
        rng = np.random.default_rng(0)
        q, db = rng.integers(0, 2, (5, 3)), rng.integers(0, 2, (30, 3))
        relevance = label_relevance(rng.integers(0, 3, 5), rng.integers(0, 3, 30))
        a = retrieval_metrics(q, db, relevance, ties="random", seed=4)
        assert a == retrieval_metrics(q, db, relevance, ties="random", seed=4)
        with pytest.raises(ValueError, match="ties must be one of"):
            retrieval_metrics(q, db, relevance, ties="first")

    def test_empty_queries_and_single_items(self):
        q = np.array([[0, 0], [1, 1]])
        db = np.array([[0, 0], [0, 0], [1, 1]])
        relevance = label_relevance(np.array([0, 2]), np.array([0, 1, 1]))  # query 1 has no relevant item
        got = retrieval_metrics(q, db, relevance, top_k=(None, 1), precision_at=(1,))
        # query 0: shell 0 holds one relevant of two. AP@all = (1 + 1/2) / 2 = 0.75; AP@1 = 1/2 (a hit
        # half the time); precision@1 = 1/2. Query 1 scores 0.
        assert got["map_at_all"] == pytest.approx(0.75 / 2)
        assert got["map_at_1"] == pytest.approx(0.5 / 2)
        assert got["precision_at_1"] == pytest.approx(0.5 / 2)
        dropped = retrieval_metrics(q, db, relevance, top_k=(None, 1), empty_queries="drop")
        # drop: query 1 is never kept; query 0 is kept in the half of the orders where its top 1 hits
        assert dropped["map_at_all"] == pytest.approx(0.75) and dropped["map_at_1"] == pytest.approx(1.0)


class ExpectedTiesEdgeTest:
    def test_drop_keeps_a_query_in_the_orders_where_it_finds_something(self):
        # one relevant item among 6 tied ones, k = 2: found in 2 of 6 positions' worth of orders
        q, db = np.zeros((1, 3), int), np.zeros((6, 3), int)
        relevance = label_relevance(np.array([1]), np.array([1, 0, 0, 0, 0, 0]))
        got = retrieval_metrics(q, db, relevance, top_k=(2,), empty_queries="drop")
        aps = [
            metrics_of_order(np.array([1, 0, 0, 0, 0, 0])[o], 2, 1)[0]
            for o in orders_within_shells(np.zeros(6))
        ]
        kept = [a for a, o in zip(aps, orders_within_shells(np.zeros(6)), strict=True) if o[:2].min() == 0]
        assert got["map_at_2"] == pytest.approx(np.mean(kept), abs=1e-12)  # (1 + 1/2) / 2
        assert retrieval_metrics(q, db, relevance, top_k=(2,))["map_at_2"] == pytest.approx(np.mean(aps))

    def test_chunks_and_grid_blocks_do_not_change_anything(self):
        from tfhash.ties import expected_average_precision, harmonic_numbers

        rng = np.random.default_rng(11)
        q, db = rng.integers(0, 2, (40, 5)), rng.integers(0, 2, (300, 5))
        relevance = label_relevance(rng.integers(0, 3, 40), rng.integers(0, 3, 300))
        for ties in ("expected", "random"):
            whole = retrieval_metrics(q, db, relevance, top_k=(None, 50), precision_at=(20,), ties=ties)
            chunked = retrieval_metrics(
                q, db, relevance, top_k=(None, 50), precision_at=(20,), ties=ties, chunk_size=3
            )
            assert whole == chunked, ties
        counts = np.stack([np.bincount((qq != db).sum(1), minlength=6) for qq in q])
        rel = relevance(0, 40)
        relevant = np.stack(
            [np.bincount((qq != db).sum(1), weights=r, minlength=6) for qq, r in zip(q, rel, strict=True)]
        )
        harmonic = harmonic_numbers(300)
        big = expected_average_precision(counts, relevant.astype(int), 50, harmonic)
        small = expected_average_precision(counts, relevant.astype(int), 50, harmonic, grid_budget=7)
        np.testing.assert_allclose(small[0], big[0], rtol=0, atol=1e-15)
        np.testing.assert_allclose(small[1], big[1], rtol=0, atol=1e-15)


def published_map(q_codes, db_codes, q_labels, db_labels, top, order, skip_empty_in_mean):
    """mAP@top as the published evaluation scripts compute it, written here from their convention:
    rank the database by Hamming distance with a stable sort over the database taken in `order`
    (ties keep that order), AP@top = the mean of precision at each relevant rank in the top `top`;
    a query with no relevant item there scores 0 and, with `skip_empty_in_mean` (the TBH authors'
    evaluation), leaves the mean; without it (DeepHash-pytorch's CalcTopMap) it counts as 0."""
    db_codes, db_labels = db_codes[order], db_labels[order]
    aps = []
    for code, label in zip(q_codes, q_labels, strict=True):
        dist = (code != db_codes).sum(1)
        rel = (db_labels @ label > 0)[np.argsort(dist, kind="stable")][:top]
        if rel.sum() == 0:
            if not skip_empty_in_mean:
                aps.append(0.0)
            continue
        hits = np.cumsum(rel)
        aps.append(float((hits[rel] / (np.flatnonzero(rel) + 1)).mean()))
    return float(np.mean(aps))


@pytest.mark.parametrize("top, empty", [(100, "drop"), (100, "zero"), (None, "zero")])
def test_the_published_convention_is_index_ties_and_the_expectation_its_mean_over_orders(top, empty):
    """External cross-check: ties="index" equals the published scripts' figure (up to float32
    rounding), and ties="expected" equals the mean of that figure over random storage orders of the
    database (for "zero"; "drop" takes a ratio of expectations, see docs/evaluation.md). On a
    class-sorted database the storage order moves the published figure by more than 0.01."""
    from tfhash.baselines import ITQ
    from tfhash.data import load_data

    data = load_data("digits")
    model = ITQ(6, seed=0).fit(data.train.features)  # 6 bits: big shells, many ties
    database = data.database.subset(np.argsort(data.database.labels.argmax(1), kind="stable"))
    q, db = model.encode(data.query.features), model.encode(database.features)
    n = len(db)
    kwargs = dict(top_k=(top or n,), radius=None, empty_queries=empty)
    rel = label_relevance(data.query.labels, database.labels)
    key = f"map_at_{top}" if top else "map_at_all"
    ours = {t: retrieval_metrics(q, db, rel, ties=t, **kwargs)[key] for t in ("index", "expected")}
    args = (q, db, data.query.labels, database.labels, top or n)
    forward = published_map(*args, np.arange(n), empty == "drop")
    backward = published_map(*args, np.arange(n)[::-1], empty == "drop")
    assert ours["index"] == pytest.approx(forward, abs=1e-7)  # tfhash sums in float32 in places
    assert abs(forward - backward) > 0.01
    if empty == "zero":
        rng = np.random.default_rng(0)
        shuffled = [published_map(*args, rng.permutation(n), False) for _ in range(60)]
        spread = np.std(shuffled) / np.sqrt(len(shuffled))
        assert abs(np.mean(shuffled) - ours["expected"]) < 4 * spread + 1e-9
