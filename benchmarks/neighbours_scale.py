"""`tfhash neighbours` on 50,000 x 784 items: wall time and peak memory against BGAN's budget.

The issue's budget for the whole command on 2 cores: under 300 s and under 1 GB peak RSS (the
authors' script is an O(N^2) Python loop into a 20 GB dense matrix). The items are the first
50,000 mnist training images when ../shared/data/mnist.npz is there, else random uint8 images;
the command runs in a child process, and its peak RSS is the child's (getrusage).

    python benchmarks/neighbours_scale.py [--items 50000] [--backend auto]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist.npz")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--backend", default="auto", choices=("auto", "faiss", "numpy"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "items.npz")
        if os.path.exists(MNIST):
            with np.load(MNIST) as f:
                x, y = f["x_train"][: args.items], f["y_train"][: args.items]
            what = f"the first {len(x):,} mnist training images"
        else:
            rng = np.random.default_rng(0)
            x = rng.integers(0, 256, (args.items, 28, 28), dtype=np.uint8)
            y = rng.integers(0, 10, args.items)
            what = f"{len(x):,} random 28x28 uint8 images"
        np.savez(source, x_train=x, y_train=y, x_test=x[:1000], y_test=y[:1000])
        out = os.path.join(folder, "graph.npz")
        command = [sys.executable, "-m", "tfhash", "neighbours", source, "--out", out]
        command += ["--protocol", "train-test", "--backend", args.backend]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(done.stderr)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = os.path.getsize(out) / 2**20
    print(done.stdout.strip())
    print(f"items: {what}, backend {args.backend}, {os.cpu_count()} CPUs")
    print(f"wall: {seconds:.1f} s (budget 300 s: {seconds / 300:.2f} of it)")
    print(f"peak RSS: {peak_mb:.0f} MB (budget 1024 MB: {peak_mb / 1024:.2f} of it)")
    print(f"graph file: {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
