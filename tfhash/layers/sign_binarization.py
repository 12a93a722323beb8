"""GreedyHash's straight-through sign and BiHalf's per-batch median split: {-1, +1} codes with custom
gradients."""

import keras
import tensorflow as tf


@tf.custom_gradient
def greedy_sign(h):
    """b = sign(h) in {-1, +1} (0 maps to +1), with GreedyHash's straight-through gradient.

    Forward: the sign. Backward: d b / d h = 1, the incoming gradient passes
    through unchanged (Su et al. 2018, Eq. 7: the update of h follows the
    gradient of b, the "greedy" step). The cubic penalty that keeps |h| near
    1 is a separate loss (`tfhash.losses.cubic_penalty`).
    """
    b = tf.where(h >= 0, tf.ones_like(h), -tf.ones_like(h))

    def grad(grad_b):
        return grad_b

    return b, grad


def bihalf(h, gamma=6.0):
    """BiHalf's binarisation (Li and van Gemert 2021): per bit, the top half of the batch -> +1, the rest
    -> -1, with the gradient d/dh = grad_b + gamma (h - b) / numel.

    For a batch of N items the floor(N / 2) largest values of each bit are
    +1; ties are broken by position (the earlier item ranks higher), so an
    even batch has exactly N / 2 ones in every bit. The extra gradient term
    gamma (h - b) / numel(h) pulls h towards its code (gamma = 6, the
    authors').
    """
    gamma = float(gamma)

    @tf.custom_gradient
    def split(h):
        n = tf.shape(h)[0]
        order = tf.argsort(-h, axis=0, stable=True)  # per bit: items by descending value, ties by index
        ranks = tf.argsort(order, axis=0, stable=True)  # each item's position in that order
        b = tf.where(ranks < n // 2, tf.ones_like(h), -tf.ones_like(h))

        def grad(grad_b):
            return grad_b + gamma * (h - b) / tf.cast(tf.size(h), h.dtype)

        return b, grad

    return split(h)


@keras.saving.register_keras_serializable(package="tfhash")
class GreedySign(keras.layers.Layer):
    """sign(h) in {-1, +1} with a straight-through gradient (`greedy_sign`), in training and inference.

    Reference: Su et al., "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN",
    NeurIPS 2018.
    """

    def call(self, h, training=False):
        return tf.cast(greedy_sign(tf.cast(h, tf.float32)), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tfhash")
class BiHalf(keras.layers.Layer):
    """In training, the per-batch median split of `bihalf`; at inference sign(h) (0 -> +1), since a
    single item has no batch to be split against (the authors' test codes).

    Args:
        gamma: weight of the gradient term gamma (h - b) / numel (6, the authors').

    Reference: Li and van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy",
    AAAI 2021.
    """

    def __init__(self, gamma=6.0, **kwargs):
        super().__init__(**kwargs)
        if not float(gamma) >= 0:
            raise ValueError(f"gamma must be >= 0; received gamma={gamma!r}")
        self.gamma = float(gamma)

    def call(self, h, training=False):
        h = tf.cast(h, tf.float32)
        b = bihalf(h, self.gamma) if training else greedy_sign(h)
        return tf.cast(b, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
