"""Training steps per second of registered methods at their papers' shapes, on synthetic features.

    python benchmarks/method_throughput.py [--steps 40] [--seconds 5] [--methods tbh tbh-vae rsgh]

Each method is built from its registry config for "other data" (its paper's batch,
optimiser and widths) by `tfhash.train.build_model`, then trained by `model.fit` on
`tfhash.data.train_dataset` of uniform random features; steps/s after a warm-up of 5
steps (tracing excluded), over at least `--steps` steps and `--seconds` seconds (a short
probe of 10 steps sets the count). Shapes: TBH and TBH-VAE on 4096-d fc7 features at 32 bits;
R-SGH, SGH and Deep-SGH on 512-d GIST features at 32 bits (R-SGH's CIFAR-10 setting).
"""

import argparse
import time

import numpy as np

from tfhash.data import train_dataset
from tfhash.registry import get_method
from tfhash.train import build_model

INPUT_DIM = {"tbh": 4096, "tbh-vae": 4096, "rsgh": 512, "sgh": 512, "deep-sgh": 512}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["tbh", "tbh-vae", "rsgh"])
    args = parser.parse_args()
    for name in args.methods:
        config = get_method(name).get_config(args.bits, "cifar10")
        batch = config["train"]["batch_size"]
        dim = INPUT_DIM.get(name, 4096)
        features = np.random.default_rng(0).uniform(size=(max(4 * batch, 2000), dim)).astype(np.float32)
        model = build_model(config, dim, seed=0)
        dataset = train_dataset(features, batch, seed=0)
        model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=10, epochs=1, verbose=0)
        steps = max(args.steps, int(args.seconds * 10 / (time.perf_counter() - start)))
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        rate = steps / (time.perf_counter() - start)
        print(
            f"{name:9} {dim}-d, batch {batch}, {args.bits} bits: {rate:.2f} steps/s "
            f"({rate * batch:,.0f} samples/s, {steps} steps)"
        )


if __name__ == "__main__":
    main()
