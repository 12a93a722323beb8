"""Images per second of `tfhash features` with each backbone, float32 and mixed precision.

    python benchmarks/features_speed.py [--images 192] [--batch-size 64] [--backbones vgg16 resnet50 ...]

Random uint8 32x32x3 images go through the same path as the command
(`tfhash.features.extract`: resized to 224 x 224 inside the graph, the
network's own preprocessing, batches of 64). Weights are random
(`weights=None`): the speed is the same as with ImageNet weights. The first
batch (tracing) is left out of the rate. Prints one line per (backbone,
precision) and the mixed / float32 ratio measured in the same run.
"""

import argparse

import numpy as np

from tfhash.data import split_pool
from tfhash.features import FEATURE_BACKBONES, extract
from tfhash.precision import dtype_policy, mixed_precision_policy


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--backbones", nargs="+", default=list(FEATURE_BACKBONES))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    data = split_pool("random", images, np.arange(args.images) % 2, 1, image_shape=(32, 32, 3))
    print(f"{args.images} images of 32x32x3 resized to {args.input_size}, batch {args.batch_size}")
    for backbone in args.backbones:
        rates = {}
        for policy in (None, mixed_precision_policy()):
            with dtype_policy(policy):
                features, _, _, rate = extract(data, backbone, None, args.input_size, args.batch_size, False)
            rates[policy or "float32"] = rate
            print(f"{backbone:18} {policy or 'float32':15} {rates[policy or 'float32']:8.1f} images/s "
                  f"({features.shape[1]}-d)", flush=True)  # fmt: skip
        mixed, plain = rates[mixed_precision_policy()], rates["float32"]
        print(f"{backbone:18} mixed / float32: {mixed / plain:.2f}x", flush=True)


if __name__ == "__main__":
    main()
