"""R-SGH's Fig. 2: query images, SGH's reconstructions and R-SGH's, from two runs trained alike.

    python benchmarks/rsgh_figure.py --data mnist.npz --bits 64 [--steps 5000] [--out rsgh_vs_sgh.png]

Trains `tfhash train sgh` and `tfhash train rsgh` with the same flags into OUT_FOLDER/sgh and
OUT_FOLDER/rsgh (a finished run is reused), then draws one grid: originals, SGH, R-SGH. `tfhash
train METHOD --figure` draws one model's reconstructions; this script is the comparison.
"""

import argparse
import os

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="digits")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--runs", default="runs/rsgh-figure", help="folder of the two runs")
    parser.add_argument("--out", default="rsgh_vs_sgh.png")
    args = parser.parse_args(argv)
    from tfhash.configs.common import settings_for
    from tfhash.data import load_data
    from tfhash.registry import get_method
    from tfhash.train import fit
    from tfhash.visualize import reconstruction_grid

    data = load_data(args.data)
    if data.image_shape is None:
        raise SystemExit(f"error: the figure needs image data; {args.data} has no image shape")
    picks = np.unique(np.linspace(0, len(data.query) - 1, 10).astype(int))  # spread over the classes
    images = data.query.features[picks]
    rows = [("original", images)]
    for name, title in (("sgh", "SGH"), ("rsgh", "R-SGH")):
        config = get_method(name).get_config(args.bits, settings_for(data))
        if args.steps:
            config["train"]["steps"] = args.steps
        model, _ = fit(config, data, os.path.join(args.runs, name), seed=0, verbose=0)
        rows.append((title, model.reconstruct(images)))
    reconstruction_grid(args.out, rows, data.image_shape, title=f"{args.bits}-bit codes, {data.name}")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
