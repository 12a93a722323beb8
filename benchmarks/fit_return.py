"""How long `model.fit` takes to return after its last training step, on tfhash's pipelines.

    python benchmarks/fit_return.py [--runs 3] [--steps 60] [--batch-size 400] [--autotune]

Trains a small TBH on random 512-d features through `tfhash.data.train_dataset`
(the features pipeline) and a conv GMAN on random 28 x 28 images through
`tfhash.data.batch_dataset` (the images pipeline), `--runs` fits each, and prints
for every fit the seconds from the end of the last step (`on_train_end`) to the
return of `fit`. With tf.data's autotuner on, that gap was up to a minute: destroying
the iterator waited for the autotuner's thread to wake (a 60-step run that ended its
last step at 5.4 s returned at 10.24 s); `--autotune` turns it back on to show it.
The last line is the largest gap as `max return gap: X s`.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash.data import Split, batch_dataset, train_dataset
from tfhash.models import GMAN, TBH


class LastStep(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.ended = time.perf_counter()


def gaps(model, dataset, runs, steps):
    out = []
    for _ in range(runs):
        mark = LastStep()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[mark])
        out.append(time.perf_counter() - mark.ended)
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=400)
    parser.add_argument("--autotune", action="store_true", help="tf.data's autotuner on, as before the fix")
    args = parser.parse_args()
    options = tf.data.Options()
    options.autotune.enabled = args.autotune
    rng = np.random.default_rng(0)
    features = rng.uniform(size=(4000, 512)).astype(np.float32)
    tbh = TBH(input_dim=512, bits=32, continuous_dim=128, hidden_dim=256, seed=0)
    tbh.compile(learning_rate=1e-4)
    images = rng.integers(0, 256, size=(2000, 28, 28), dtype=np.uint8)
    split = Split(None, None, np.arange(len(images)), images=images)
    gman = GMAN(input_dim=784, bits=32, backbone="conv", image_shape=(28, 28, 1), pretrain_steps=0, seed=0)
    gman.compile(learning_rate=1e-4)
    results = {
        "features (TBH)": gaps(
            tbh, train_dataset(features, args.batch_size, seed=0).with_options(options), args.runs, args.steps
        ),
        "images (GMAN, conv)": gaps(
            gman, batch_dataset(split, gman.batch_keys, 16).with_options(options), args.runs, args.steps
        ),
    }
    for name, seconds in results.items():
        print(f"{name}: fit returned {', '.join(f'{s:.2f}' for s in seconds)} s after its last step")
    print(f"max return gap: {max(max(s) for s in results.values()):.2f} s")


if __name__ == "__main__":
    main()
