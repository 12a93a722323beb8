"""How much a Hamming ranking's tie order moves mAP: index order, class-sorted storage, expected.

    python benchmarks/tie_order.py [--data ../shared/data/mnist.npz] [--bits 32]

Fits LSH, PCAH and ITQ (seed 0) on the data's training split and scores the
same codes five ways: ties broken by database index in the file's order, in a
class-sorted order (as many conversions store data), in the reverse of that,
by one random order (seed 0), and as the exact expectation over random orders
(tfhash's default). mAP@all and mAP@1000, label ground truth.
"""

import argparse

import numpy as np

from tfhash.baselines import ITQ, LSH, PCAH
from tfhash.data import load_data
from tfhash.evaluation import label_relevance, retrieval_metrics


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="digits")
    parser.add_argument("--bits", type=int, default=32)
    args = parser.parse_args()
    data = load_data(args.data)
    top_k = (None, 1000) if len(data.database) > 1000 else (None,)
    class_sorted = np.argsort(data.database.labels.argmax(1), kind="stable")
    orders = {"file order": None, "class-sorted": class_sorted, "class-sorted, reversed": class_sorted[::-1]}
    print(f"{args.data}, {args.bits} bits, {len(data.query)} queries x {len(data.database)} database")
    print("| method | ties | " + " | ".join(f"mAP@{k or 'all'}" for k in top_k) + " |")
    print("|---|---|" + "---|" * len(top_k))
    for cls in (LSH, PCAH, ITQ):
        model = cls(args.bits, seed=0).fit(data.train.features)
        query, database = model.encode(data.query.features), model.encode(data.database.features)
        runs = [(f"index, {name}", order, "index") for name, order in orders.items()]
        runs += [("random (seed 0)", None, "random"), ("expected (default)", None, "expected")]
        for name, order, ties in runs:
            rows = np.arange(len(database)) if order is None else order
            relevance = label_relevance(data.query.labels, data.database.labels[rows])
            metrics = retrieval_metrics(query, database[rows], relevance, top_k=top_k, radius=None, ties=ties)
            values = " | ".join(f"{metrics['map_at_all' if k is None else f'map_at_{k}']:.4f}" for k in top_k)
            print(f"| {cls.name} | {name} | {values} |", flush=True)


if __name__ == "__main__":
    main()
