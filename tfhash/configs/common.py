"""Settings shared by every method."""


def eval_config():
    """Test evaluation: mAP@all and @1000, precision within Hamming radius 2, empty queries count 0,
    ties at equal Hamming distance scored as their expectation over random orders.

    `precision_at` lists the N of precision@N; `pr_curve` adds the
    precision-recall curve over Hamming radii to metrics.json (under `curves`).
    """
    return {
        "top_k": 1000,
        "radius": 2,
        "empty_queries": "zero",
        "precision_at": [100],
        "pr_curve": False,
        "ties": "expected",
    }
