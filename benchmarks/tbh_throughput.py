"""TBH training throughput at the reference shape, on synthetic data.

    python benchmarks/tbh_throughput.py [--steps 60] [--mixed-precision] [--jit-compile]

Reference shape (Shen et al. 2020, CIFAR-10 fc7): 4096-d features, batch 400,
32 bits, 512 continuous, 1024 hidden. Prints steps/s and samples/s of
`model.fit` after a warm-up epoch (tracing excluded).
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash.data import train_dataset
from tfhash.models import TBH
from tfhash.train import dtype_policy, mixed_precision_policy


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=400)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    args = parser.parse_args()
    features = np.random.default_rng(0).uniform(size=(4000, 4096)).astype(np.float32)
    policy = mixed_precision_policy() if args.mixed_precision else "float32"
    with dtype_policy(policy):
        model = TBH(input_dim=4096, bits=32, continuous_dim=512, hidden_dim=1024, seed=0)
        model.compile(learning_rate=1e-4, jit_compile=args.jit_compile)
        dataset = train_dataset(features, args.batch_size, seed=0)
        model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    devices = ", ".join(d.device_type for d in tf.config.list_physical_devices())
    print(
        f"TBH 4096-d, batch {args.batch_size}, 32 bits, {policy}, jit_compile={args.jit_compile}, "
        f"devices: {devices}, keras {keras.__version__}, tf {tf.__version__}"
    )
    print(f"steps/s: {args.steps / seconds:.2f}  samples/s: {args.steps * args.batch_size / seconds:.0f}")


if __name__ == "__main__":
    main()
