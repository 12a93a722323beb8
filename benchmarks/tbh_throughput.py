"""TBH training throughput at the reference shape, against a bare compiled step, on synthetic data.

    python benchmarks/tbh_throughput.py [--steps 60] [--batch-size 400] [--rounds 2] [--mixed-precision]
                                        [--jit-compile] [--steps-per-execution N] [--profile]

Reference shape (Shen et al. 2020, CIFAR-10 fc7): 4096-d features, batch 400,
32 bits, 512 continuous, 1024 hidden.

Two ways of training the same network, timed alternately in one process
(`--rounds` rounds of `--steps` steps each, after a warm-up that traces both):

- tfhash: `TBH` trained by `model.fit` on `tfhash.data.train_dataset`.
- bare: the step written as the TBH authors wrote theirs, our own code: plain Keras
  Dense layers, the stochastic binary neuron with its distributional derivative, the
  batch graph and graph convolution, two discriminators, one `tf.function` holding two
  `GradientTape`s and two `Adam.apply_gradients`, no `fit`, no metrics; batches from the
  same `tf.data` pipeline, one Python call per step.

Prints each round's steps/s, the medians, and the ratio tfhash / bare; the last line is
tfhash's float32 figure as `steps/s: X`. `--profile` also times the parts of one step
(forward, the actor's and the critic's backward passes, the optimiser updates) in
the bare form, compiled one by one.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash.data import train_dataset
from tfhash.layers.stochastic_binary import binarize
from tfhash.models import TBH
from tfhash.precision import dtype_policy, mixed_precision_policy

SHAPE = {"input_dim": 4096, "bits": 32, "continuous_dim": 512, "hidden_dim": 1024}


class BareTBH:
    """TBH's network and step without the spine: the yardstick of the authors' compiled step."""

    def __init__(self, input_dim, bits, continuous_dim, hidden_dim, learning_rate=1e-4, seed=0):
        keras.utils.set_random_seed(seed)
        dense = keras.layers.Dense
        self.encoder = dense(hidden_dim, "relu")
        self.binary_head = dense(bits)
        self.continuous_head = dense(continuous_dim, "sigmoid")
        self.graph = dense(continuous_dim)
        self.decoder_hidden = dense(hidden_dim, "relu")
        self.decoder_output = dense(input_dim, "relu")
        self.binary_critic = dense(1)
        self.continuous_critic = dense(1)
        x = keras.Input((input_dim,))
        hidden = self.encoder(x)
        self.binary_critic(self.binary_head(hidden))
        bottleneck = self.graph(self.continuous_head(hidden))
        self.decoder_output(self.decoder_hidden(bottleneck))
        self.continuous_critic(bottleneck)
        self.actor_variables = [
            v
            for layer in (
                self.encoder,
                self.binary_head,
                self.continuous_head,
                self.graph,
                self.decoder_hidden,
                self.decoder_output,
            )
            for v in layer.trainable_variables
        ]
        self.critic_variables = (
            self.binary_critic.trainable_variables + self.continuous_critic.trainable_variables
        )
        self.actor_optimizer = keras.optimizers.Adam(learning_rate)
        self.critic_optimizer = keras.optimizers.Adam(learning_rate)
        self.step = tf.function(self._step)

    def forward(self, x):
        hidden = self.encoder(x)
        probs = tf.sigmoid(self.binary_head(hidden))
        codes = binarize(probs, tf.random.uniform(tf.shape(probs)))
        signs = 2.0 * codes - 1.0
        bits = tf.cast(tf.shape(codes)[1], tf.float32)
        adjacency = tf.pow((bits + tf.matmul(signs, signs, transpose_b=True)) / (2.0 * bits), 1.4)
        inv_sqrt = tf.math.rsqrt(tf.reduce_sum(adjacency, 1) + 1e-8)
        adjacency = adjacency * inv_sqrt[:, None] * inv_sqrt[None, :]
        bottleneck = tf.sigmoid(tf.matmul(adjacency, self.graph(self.continuous_head(hidden))))
        x_hat = self.decoder_output(self.decoder_hidden(bottleneck))
        return codes, bottleneck, x_hat

    def losses(self, x):
        codes, bottleneck, x_hat = self.forward(x)
        bce = tf.nn.sigmoid_cross_entropy_with_logits
        real_codes = tf.cast(tf.random.uniform(tf.shape(codes)) < 0.5, tf.float32)
        real_bottleneck = tf.random.uniform(tf.shape(bottleneck))

        def adversarial(critic, real, fake):
            real_logits, fake_logits = critic(real), critic(fake)
            return tf.reduce_mean(bce(tf.ones_like(real_logits), real_logits)) + tf.reduce_mean(
                bce(tf.zeros_like(fake_logits), fake_logits)
            )

        adv = adversarial(self.binary_critic, real_codes, codes)
        adv += adversarial(self.continuous_critic, real_bottleneck, bottleneck)
        reconstruction = 0.5 * tf.reduce_sum(tf.square(x - x_hat))
        return reconstruction - adv, adv

    def _step(self, x):
        with tf.GradientTape() as actor_tape, tf.GradientTape() as critic_tape:
            actor_loss, critic_loss = self.losses(x)
        actor_grads = actor_tape.gradient(actor_loss, self.actor_variables)
        critic_grads = critic_tape.gradient(critic_loss, self.critic_variables)
        self.actor_optimizer.apply_gradients(zip(actor_grads, self.actor_variables, strict=True))
        self.critic_optimizer.apply_gradients(zip(critic_grads, self.critic_variables, strict=True))
        return actor_loss

    def profile(self, x, repeats=20):
        """Milliseconds of one step's parts, each compiled on its own (medians of `repeats` calls)."""

        def forward_only():
            return self.losses(x)[0]

        def actor_backward():
            with tf.GradientTape() as tape:
                loss, _ = self.losses(x)
            return tape.gradient(loss, self.actor_variables)

        def critic_backward():
            with tf.GradientTape() as tape:
                _, loss = self.losses(x)
            return tape.gradient(loss, self.critic_variables)

        grads = [tf.zeros_like(v) for v in self.actor_variables]

        def actor_update():
            self.actor_optimizer.apply_gradients(zip(grads, self.actor_variables, strict=True))
            return tf.constant(0.0)

        parts = {
            "forward (losses)": forward_only,
            "forward + actor backward": actor_backward,
            "forward + critic backward": critic_backward,
            "actor Adam update": actor_update,
            "whole step": lambda: self._step(x),
        }
        out = {}
        for name, part in parts.items():
            compiled = tf.function(part)
            tf.nest.map_structure(lambda t: t.numpy(), compiled())
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), compiled())
                times.append(time.perf_counter() - start)
            out[name] = 1000 * float(np.median(times))
        return out


def time_tfhash(model, dataset, steps):
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.perf_counter() - start)


def time_bare(bare, iterator, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = bare.step(next(iterator))
    loss.numpy()
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=400)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    features = np.random.default_rng(0).uniform(size=(4000, SHAPE["input_dim"])).astype(np.float32)
    policy = mixed_precision_policy() if args.mixed_precision else "float32"
    with dtype_policy(policy):
        model = TBH(**SHAPE, seed=0)
        model.compile(
            learning_rate=1e-4, jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution
        )
    dataset = train_dataset(features, args.batch_size, seed=0)
    bare = BareTBH(**SHAPE)
    iterator = iter(train_dataset(features, args.batch_size, seed=1))
    model.fit(dataset, steps_per_epoch=5 * args.steps_per_execution, epochs=1, verbose=0)  # trace, warm up
    time_bare(bare, iterator, 5)
    devices = ", ".join(d.device_type for d in tf.config.list_physical_devices())
    print(
        f"TBH 4096-d, batch {args.batch_size}, 32 bits, {policy}, jit_compile={args.jit_compile}, "
        f"steps_per_execution={args.steps_per_execution}, devices: {devices}, keras {keras.__version__}, "
        f"tf {tf.__version__}"
    )
    rates = {"tfhash": [], "bare": []}
    for round_ in range(args.rounds):
        rates["tfhash"].append(time_tfhash(model, dataset, args.steps))
        rates["bare"].append(time_bare(bare, iterator, args.steps))
        print(
            f"round {round_ + 1}: tfhash {rates['tfhash'][-1]:.2f}, "
            f"bare compiled step {rates['bare'][-1]:.2f} steps/s"
        )
    ours, theirs = float(np.median(rates["tfhash"])), float(np.median(rates["bare"]))
    print(f"bare compiled step (the authors' way, float32) steps/s: {theirs:.2f}")
    print(f"tfhash / bare compiled step: {ours / theirs:.2f}x (target >= 1.5x in float32)")
    if args.profile:
        x = next(iterator)
        for name, ms in bare.profile(x).items():
            print(f"  bare {name}: {ms:.1f} ms")
    print(f"steps/s: {ours:.2f}  samples/s: {ours * args.batch_size:.0f}")


if __name__ == "__main__":
    main()
