"""The README's digits table: TBH (3 seeds) vs LSH at 16/32/64 bits.

    python benchmarks/digits_table.py [--bits 16 32 64] [--seeds 0 1 2] [--out runs/digits_table]

TBH uses the digits preset of `tfhash.configs.tbh` (the no-argument
`run/train_tbh.py` settings). LSH is sign(x @ W), W ~ N(0, 1), fitted on
nothing, one projection per seed. Protocol: protocols.md digits split, label
ground truth, mAP@all, queries with no relevant item count as 0.
"""

import argparse
import os

import numpy as np

from tfhash.configs import tbh
from tfhash.data import load_data
from tfhash.evaluation import label_relevance, retrieval_metrics
from tfhash.train import fit


def lsh_metrics(data, bits, seed):
    projection = np.random.default_rng(seed).normal(size=(data.feature_dim, bits))
    encode = lambda x: (x @ projection > 0).astype(np.uint8)
    relevance = label_relevance(data.query.labels, data.database.labels)
    return retrieval_metrics(
        encode(data.query.features), encode(data.database.features), relevance, top_k=(None,)
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/digits_table")
    args = parser.parse_args()
    data = load_data("digits")
    rows = ["| bits | LSH mAP@all | TBH mAP@all | TBH precision@r2 | TBH train s |", "|---|---|---|---|---|"]
    for bits in args.bits:
        lsh = [lsh_metrics(data, bits, s)["map_at_all"] for s in args.seeds]
        runs = [
            fit(
                tbh.get_config(bits, "digits"),
                data,
                os.path.join(args.out, f"{bits}bit-seed{s}"),
                seed=s,
                verbose=0,
            )[1]
            for s in args.seeds
        ]
        maps = [r["map_at_all"] for r in runs]
        precs = [r["precision_radius_2"] for r in runs]
        secs = np.mean([r["train_seconds"] for r in runs])
        rows.append(
            f"| {bits} | {np.mean(lsh):.3f} ± {np.std(lsh):.3f} | {np.mean(maps):.3f} ± {np.std(maps):.3f} "
            f"| {np.mean(precs):.3f} ± {np.std(precs):.3f} | {secs:.0f} |"
        )
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
