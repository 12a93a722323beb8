"""The stochastic binary neuron of SGH (Dai et al. 2017), used by TBH."""

import keras
import tensorflow as tf


@tf.custom_gradient
def binarize(probs, eps):
    """codes = 1[probs > eps] with the distributional derivative.

    Forward: a hard threshold, codes in {0, 1}. Backward (SGH, Dai et al. 2017,
    Sec. 3): for eps ~ U(0, 1) the expected derivative of 1[p > eps] in p is
    the density of eps at p, which is 1, so d codes / d probs = 1 (the incoming
    gradient passes through unchanged). Through probs = sigmoid(logits) this
    gives d/dlogits = p (1 - p) (grad_codes + grad_probs) when probs is also
    used elsewhere. d codes / d eps = -1 for the same reason (raising the
    threshold can only turn a bit off).

    Notes:
        The TBH authors' code returns +grad_codes for eps. eps is a sampled
        constant, never trained, so the sign has no effect on training; we
        return the derived -grad_codes.
    """
    codes = tf.cast(probs > eps, probs.dtype)

    def grad(grad_codes):
        return grad_codes, -grad_codes

    return codes, grad


@keras.saving.register_keras_serializable(package="tfhash")
class StochasticBinary(keras.layers.Layer):
    """Stochastic binary neuron: logits -> {0, 1} codes.

    probs = sigmoid(logits); codes = 1[probs > eps]. In training eps is drawn
    from U(0, 1) per element (`threshold="uniform"`, the TBH and SGH papers) or
    fixed (`threshold=0.5`, the TBH authors' released code). At inference eps
    is always 0.5, so codes are deterministic: 1[logits > 0]. Gradients use the
    distributional derivative (see `binarize`).

    Args:
        threshold: "uniform" or a float in (0, 1), the training threshold.
        seed: seed of the layer's `keras.random.SeedGenerator`.

    Call arguments:
        logits: float tensor (batch, bits).
        training: whether to use the training threshold.

    Returns:
        codes: float tensor of the input's shape and compute dtype, in {0, 1}.

    Reference: Dai et al., "Stochastic Generative Hashing", ICML 2017;
    Shen et al., "Auto-Encoding Twin-Bottleneck Hashing", CVPR 2020.
    """

    def __init__(self, threshold="uniform", seed=None, **kwargs):
        super().__init__(**kwargs)
        if threshold != "uniform" and not (
            isinstance(threshold, (int, float)) and 0.0 < float(threshold) < 1.0
        ):
            raise ValueError(
                f'threshold must be "uniform" or a number in (0, 1); received threshold={threshold!r}'
            )
        self.threshold = threshold if threshold == "uniform" else float(threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, training=False):
        probs = tf.sigmoid(tf.cast(logits, tf.float32))
        if training and self.threshold == "uniform":
            eps = keras.random.uniform(tf.shape(probs), seed=self.seed_generator)
        elif training:
            eps = tf.fill(tf.shape(probs), self.threshold)
        else:
            eps = tf.fill(tf.shape(probs), 0.5)
        return tf.cast(binarize(probs, eps), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "seed": self.seed}
