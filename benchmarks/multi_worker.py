"""Does training run on two processes? (issue 31) MultiWorkerMirroredStrategy with two local workers.

    python benchmarks/multi_worker.py [--method tbh] [--steps 5]

Starts two worker processes on localhost ports (TF_CONFIG), each building the method's digits model
under `tf.distribute.MultiWorkerMirroredStrategy` and training `--steps` steps of `model.fit` on the
same batches (global batch 64, sharding off), and one single-process run of the same global batch;
then compares the weights. Prints "equal weights (max difference ...)" or each worker's error. With
Keras 3.15 / TensorFlow 2.21 it fails inside Keras' `fit` (docs/scale.md); re-run it after an upgrade.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np

WORKER = """
import json, os, sys
import numpy as np
index, method, steps, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
import keras
import tensorflow as tf
from tfhash.data import batch_dataset, load_data
from tfhash.registry import get_method
from tfhash.train import build_model
strategy = tf.distribute.MultiWorkerMirroredStrategy() if index >= 0 else tf.distribute.get_strategy()
data = load_data("digits")
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build_model(get_method(method).get_config(8, "digits"), data.feature_dim, 0)
dataset = batch_dataset(data.train, model.batch_keys, 64, 0)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
model.fit(dataset.with_options(options), steps_per_epoch=steps, verbose=0, shuffle=False)
np.savez(out, *[v.numpy() for v in model.trainable_variables])
"""


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="tbh")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="multi-worker-") as folder:
        script = os.path.join(folder, "worker.py")
        with open(script, "w") as f:
            f.write(WORKER)
        ports = free_ports(2)
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        runs = []
        for index in (0, 1, -1):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            if index >= 0:
                env["TF_CONFIG"] = json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            out = os.path.join(folder, f"weights{index}.npz")
            command = [sys.executable, script, str(index), args.method, str(args.steps), out]
            runs.append((index, out, subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)))
        failed = False
        for index, _, process in runs:
            _, err = process.communicate(timeout=600)
            if process.returncode:
                failed = True
                last = [line for line in err.splitlines() if line.strip()][-1:]
                print(f"worker {index}: exit {process.returncode}: {last[0][:400] if last else ''}")
        if failed:
            return 1
        weights = [np.load(out) for _, out, _ in runs]
        diff = max(float(np.abs(weights[0][k] - weights[2][k]).max()) for k in weights[2].files)
        print(f"{'equal' if diff < 1e-5 else 'different'} weights (max difference {diff:.2e})")
        return 0


if __name__ == "__main__":
    sys.exit(main())
