"""Hamming-distance adjacency and the normalised graph convolution of TBH."""

import keras
import tensorflow as tf


def hamming_adjacency(codes, power=1.4):
    """Batch adjacency A_ij = (1 - hamming(b_i, b_j) / bits) ** power.

    With s = 2b - 1 in {-1, 1}, hamming(b_i, b_j) = (bits - s_i . s_j) / 2, so
    1 - hamming / bits = (bits + s_i . s_j) / (2 bits): one matrix product,
    differentiable in the codes. The diagonal is 1 (self-connected). Computed
    in float32 whatever the input dtype.

    Args:
        codes: {0, 1} tensor (batch, bits).
        power: the exponent (1.4 in TBH).

    Returns:
        float32 tensor (batch, batch) with entries in [0, 1].
    """
    signs = 2.0 * tf.cast(codes, tf.float32) - 1.0
    bits = tf.cast(tf.shape(signs)[1], tf.float32)
    similarity = (bits + tf.matmul(signs, signs, transpose_b=True)) / (2.0 * bits)
    return tf.pow(similarity, power)  # s_i . s_j is an integer in [-bits, bits]


def normalize_adjacency(adjacency, epsilon=1e-8):
    """D^-1/2 A D^-1/2 with D the row sums of A plus `epsilon`."""
    inv_sqrt_degree = tf.math.rsqrt(tf.reduce_sum(adjacency, axis=1) + epsilon)
    return adjacency * inv_sqrt_degree[:, None] * inv_sqrt_degree[None, :]


@keras.saving.register_keras_serializable(package="tfhash")
class GraphConvolution(keras.layers.Layer):
    """One graph convolution over the batch: act(D^-1/2 A D^-1/2 (X W + b)).

    Args:
        units: output width (512 in TBH).
        activation: applied after propagation ("sigmoid" in TBH).
        seed: seed of the Glorot-uniform kernel initialiser (None: unseeded).

    Call arguments:
        features: (batch, dim) node features.
        adjacency: (batch, batch) non-negative adjacency, unnormalised.

    Reference: Kipf and Welling 2017; TBH (Shen et al. 2020) Sec. 3.2.
    """

    def __init__(self, units, activation="sigmoid", seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive int; received units={units!r}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.seed = seed
        init = keras.initializers.GlorotUniform(seed=seed)
        self.dense = keras.layers.Dense(units, kernel_initializer=init, dtype=self.dtype_policy, name="dense")

    def build(self, features_shape, adjacency_shape=None):
        self.dense.build(features_shape)

    def call(self, features, adjacency):
        projected = tf.cast(self.dense(features), tf.float32)  # (B, units)
        propagated = tf.matmul(normalize_adjacency(tf.cast(adjacency, tf.float32)), projected)
        return tf.cast(self.activation(propagated), self.compute_dtype)

    def compute_output_shape(self, features_shape, adjacency_shape=None):
        return (*features_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
        }
