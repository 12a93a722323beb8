"""Ranking metrics as their exact expectation over a random order of tied items.

A Hamming ranking has few distinct scores: every database item at distance d
from a query sits in shell d, and the order inside a shell is arbitrary.
Breaking ties by database index lets the storage order move mAP (a
class-sorted file puts the lowest class ids first in every shell). Here each
metric is its expectation over a uniformly random order inside every shell
(McSherry and Najork, "Computing information retrieval performance measures
efficiently in the presence of tied scores", ECIR 2008), computed from two
per-query histograms alone: n_d items and r_d relevant items in shell d.

Derivation (ours). Let N and R be the items and relevant items in the shells
before shell d, and put the shell's n items in random order. Position j of
the shell holds a relevant item with probability r / n; given that it does,
the number of relevant items at positions 1..j-1 is hypergeometric with mean
(j - 1)(r - 1)/(n - 1). So the shell's expected sum of precision at its
relevant items, counting its first m positions, is

    S(m) = (r / n) sum_{j=1..m} (R + 1 + (j - 1) c) / (N + j),  c = (r - 1)/(n - 1)
         = (r / n) [(R + 1 - c) A + c B],
    A = sum_{j=1..m} 1 / (N + j) = H(N + m) - H(N),   B = sum j / (N + j) = m - N A,

with H the harmonic numbers (c = 0 when n = 1). AP over the whole ranking
divides by the query's fixed number of relevant items, so expected mAP@all
is the sum of S(n) over shells, over that number. AP@k divides by the
relevant items within the top k, which is random when the cut-off falls
inside a shell (m < n of its items are in): then, given x relevant among
those m (hypergeometric: r relevant of n, m drawn), the m positions hold x
relevant items in random order and the same formula applies with (x, m) for
(r, n); AP@k is averaged over x exactly. Precision@N is linear: (R + m r / n) / N.
"""

import numpy as np
from scipy.special import gammaln

__all__ = ["expected_average_precision", "expected_precision_at", "harmonic_numbers"]


def harmonic_numbers(n):
    """H(0..n) in float64: H(i) = sum_{j=1..i} 1 / j."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _shell_sum(relevant_before, items_before, relevant, size, harmonic):
    """Expected sum of precision at the relevant items among the first `size` positions of a shell
    holding `relevant` of them in random order (the module docstring's S), elementwise."""
    relevant_before, items_before = np.asarray(relevant_before, float), np.asarray(items_before)
    relevant, size = np.asarray(relevant, float), np.asarray(size)
    a = harmonic[items_before + size] - harmonic[items_before]
    b = size - items_before * a
    c = np.where(size > 1, (relevant - 1) / np.maximum(size - 1, 1), 0.0)
    value = relevant / np.maximum(size, 1) * ((relevant_before + 1 - c) * a + c * b)
    return np.where((relevant > 0) & (size > 0), value, 0.0)


def _log_comb(n, k):
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def expected_average_precision(counts, relevant_counts, k, harmonic, grid_budget=1 << 22):
    """Expected AP@k of each query over random tie orders, and the chance it finds a relevant item.

    Args:
        counts, relevant_counts: (q, shells) int histograms, n_d and r_d.
        k: the cut-off (an int below the database size), or None for the
            whole ranking.
        harmonic: `harmonic_numbers(database size)`.
        grid_budget: the most (query, x) cells of the cut-off shell's
            hypergeometric average held at once (the rows are split to fit).

    Returns:
        (ap (q,) float64, found (q,) float64): the expected AP@k (0 in the
        orders where no relevant item is in the top k) and the probability
        that at least one is (1 or 0 for k=None).
    """
    counts, relevant_counts = np.asarray(counts, np.int64), np.asarray(relevant_counts, np.int64)
    items_before = np.cumsum(counts, axis=1) - counts
    relevant_before = np.cumsum(relevant_counts, axis=1) - relevant_counts
    sums = _shell_sum(relevant_before, items_before, relevant_counts, counts, harmonic)
    if k is None:
        total = relevant_counts.sum(1)
        return sums.sum(1) / np.maximum(total, 1), (total > 0).astype(float)
    rows = np.arange(len(counts))
    cut = np.argmax(np.cumsum(counts, axis=1) >= k, axis=1)  # the shell holding rank k
    full = np.arange(counts.shape[1])[None, :] < cut[:, None]
    before_sum = np.where(full, sums, 0.0).sum(1)
    shell = (
        counts[rows, cut],
        relevant_counts[rows, cut],
        items_before[rows, cut],
        relevant_before[rows, cut],
    )
    ap, found = np.zeros(len(counts)), np.zeros(len(counts))
    width = int(np.minimum(shell[1], k - shell[2]).max()) + 1
    block = max(1, grid_budget // width)
    for start in range(0, len(counts), block):
        part = slice(start, start + block)
        ap[part], found[part] = _cut_shell_average(before_sum[part], *(a[part] for a in shell), k, harmonic)
    return ap, found


def _cut_shell_average(before_sum, n, r, nb, rb, k, harmonic):
    """E[AP@k] and P(a relevant item in the top k), averaging over x, the relevant items among the
    m = k - nb positions of the cut shell that fall in the top k (hypergeometric: r of n, m drawn)."""
    m = k - nb  # 1..n
    x = np.arange(int(np.minimum(r, m).max()) + 1)[None, :]
    possible = (x <= np.minimum(r, m)[:, None]) & (m[:, None] - x <= (n - r)[:, None])
    log_pmf = (
        _log_comb(r[:, None], np.minimum(x, r[:, None]))
        + _log_comb((n - r)[:, None], np.clip(m[:, None] - x, 0, (n - r)[:, None]))
        - _log_comb(n, m)[:, None]
    )
    pmf = np.exp(np.where(possible, log_pmf, -np.inf))  # impossible x: 0, never an overflowing exp
    pmf /= pmf.sum(1, keepdims=True)  # removes the rounding the log-gamma terms share
    grid = (len(n), x.shape[1])
    partial = _shell_sum(
        rb[:, None], nb[:, None], np.broadcast_to(x, grid), np.broadcast_to(m[:, None], grid), harmonic
    )
    hits = rb[:, None] + x
    ap = np.where(hits > 0, (before_sum[:, None] + partial) / np.maximum(hits, 1), 0.0)
    return (pmf * ap).sum(1), (pmf * (hits > 0)).sum(1)


def expected_precision_at(counts, relevant_counts, n_top):
    """Expected precision@N of each query over random tie orders: (R + m r / n) / N."""
    counts, relevant_counts = np.asarray(counts, np.int64), np.asarray(relevant_counts, np.int64)
    rows = np.arange(len(counts))
    cumulative = np.cumsum(counts, axis=1)
    cut = np.argmax(cumulative >= n_top, axis=1)
    items_before = cumulative[rows, cut] - counts[rows, cut]
    relevant_before = np.cumsum(relevant_counts, axis=1)[rows, cut] - relevant_counts[rows, cut]
    inside = (n_top - items_before) * relevant_counts[rows, cut] / np.maximum(counts[rows, cut], 1)
    return (relevant_before + inside) / n_top
