"""Peak memory of training a `conv` image model on 60,000 colour images through `tfhash.train.fit`.

    python benchmarks/image_memory.py [--images 60000] [--steps 300]

Random uint8 images of 32x32x3 (CIFAR-10's shape) with 10 classes, the
pooled protocol (100 queries per class), a small convolutional hashing
model (the `conv` backbone, filters 32/64/128, a Dense(bits) head trained
to make tanh codes balanced and decorrelated: a stand-in objective, for
memory only) trained by `fit` with batches of 64, then evaluated and
exported. Images stay uint8 (184 MB); their flat float32 view (737 MB) is
never built. Prints the peak resident memory of the process and that of the
data alone.
"""

import argparse
import resource
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash import registry
from tfhash.backbones import build_backbone
from tfhash.configs.common import eval_config
from tfhash.data import split_pool
from tfhash.models import HashingModel
from tfhash.train import fit


class ConvProbe(HashingModel):
    """conv backbone -> Dense(bits); loss: mean tanh code per bit squared + off-diagonal correlation."""

    roles = ("encoder",)
    loss_names = ("loss",)
    input_kind = "images"

    def __init__(self, input_dim, bits=32, image_shape=(32, 32, 3), seed=None, **kwargs):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.image_shape = tuple(image_shape)
        self.backbone = build_backbone("conv", self.image_shape, seed=seed)
        self.head = keras.layers.Dense(bits)
        self.head.build((None, self.backbone.output_dim))
        self.built = True

    def role_variables(self, role):
        return self.backbone.trainable_variables + self.head.trainable_variables

    def call(self, x, training=False):
        return tf.cast(self.head(self.backbone(x, training=training)) > 0, tf.float32)

    def compute_loss_terms(self, x, training=False):
        h = tf.tanh(self.head(self.backbone(x, training=training)))
        gram = tf.matmul(h, h, transpose_a=True) / tf.cast(tf.shape(h)[0], tf.float32)
        loss = tf.reduce_sum(tf.square(tf.reduce_mean(h, 0))) + tf.reduce_mean(
            tf.square(gram - tf.eye(self.bits))
        )
        return {"loss": loss}, {"encoder": loss}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    data = split_pool("random-cifar-shape", images, np.arange(args.images) % 10, 100, image_shape=(32, 32, 3))
    del images
    megabytes = data.train.images.nbytes / 2**20
    print(f"data: {megabytes:.0f} MB uint8 database; its float32 view would be {4 * megabytes:.0f} MB")
    config = {
        "method": "conv-probe",
        "model": {"bits": 32},
        "train": {
            "batch_size": 64,
            "steps": args.steps,
            "steps_per_epoch": 100,
            "learning_rate": 1e-3,
            "eval_every": 1_000,
            "validation_size": 1000,
        },  # fmt: skip
        "eval": eval_config(),
    }
    registry.METHODS["conv-probe"] = registry.Method(
        "conv-probe", ConvProbe, lambda *a: config, "memory probe"
    )
    start = time.time()
    with tempfile.TemporaryDirectory() as out:
        _, record = fit(config, data, out, verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    built = data.train._features is not None
    print(
        f"trained {record['steps']} steps of 64, evaluated {record['num_queries']} x "
        f"{record['num_database']} and exported in {time.time() - start:.0f} s; float view built: {built}"
    )
    print(f"peak RSS: {peak:.0f} MB (target < 1536 MB)")


if __name__ == "__main__":
    main()
