"""SGH (Dai et al., ICML 2017), Deep-SGH, and redundancy-resistant SGH (Du et al., IJCAI 2018)."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.checks import check_features
from tfhash.defaults import BITS
from tfhash.layers import StochasticBinary
from tfhash.losses import (
    bernoulli_kl,
    code_hidden_distance,
    epsilon_insensitive_redundancy,
    reconstruction_loss,
    redundancy_combination,
)
from tfhash.models.base import HashingModel
from tfhash.seeds import seed_stream

VARIANTS = ("sgh", "deep-sgh", "rsgh")


@keras.saving.register_keras_serializable(package="tfhash")
class SGH(HashingModel):
    """Stochastic generative hashing and its redundancy-resistant extension.

    Encoder q(z|x) = Bernoulli(sigmoid(f(x))) sampled by the doubly
    stochastic neuron (`StochasticBinary`, distributional derivative);
    decoder x_hat = g(z) * scale + shift, a Gaussian mean whose per-feature
    `scale` and `shift` are learned and start at the training data's
    variance and mean (`adapt`, called by `tfhash.train.fit`).

    - "sgh": f and g linear (Dense(bits) and Dense(input_dim, no bias)).
    - "deep-sgh": f = [D-K-K-K] (two relu hidden layers of width K = bits,
      then the logits), g = [K-K-K-D] (two sigmoid hidden layers of width
      K, then linear).
    - "rsgh": the deep networks plus R-SGH's two terms: eta ||Z - H||^2
      (codes close to the last decoder hidden layer H, which the sigmoid
      keeps in (0, 1)) and the epsilon-insensitive redundancy term
      delta sum_k min(||r_k||^2, epsilon), R = Z - Z A, which the encoder
      maximises.

    Training, per step: the decoder (theta) and the encoder (phi) each take
    an Adam step on their objective, then A gets its closed form from the
    step's codes (`redundancy_combination`, ridge `ridge`, diag(A) = 0).
    decoder_loss = reconstruction + eta ||Z - H||^2 + weight decay;
    encoder_loss = reconstruction + alpha KL(q || Bernoulli(rho))
    - delta sum_k min(||r_k||^2, epsilon) + eta ||Z - H||^2 + weight decay.
    Reconstruction is half the batch sum of squared errors, as in SGH's
    demo; KL is the analytic Bernoulli KL of the encoder's probabilities.
    A is kept (and updated) for every variant, so the per-bit redundancy of
    SGH codes can be compared with R-SGH's; only "rsgh" trains with it.

    Args:
        input_dim: feature width D.
        bits: code length K.
        variant: "sgh", "deep-sgh" or "rsgh".
        alpha: weight of the prior KL (1e-3, SGH's demo).
        rho: Bernoulli prior parameter (0.5).
        epsilon: the redundancy term's cap (0.05).
        delta: weight of the redundancy term (0.01; 0.1 on CIFAR-10 GIST).
        eta: weight of ||Z - H||^2 (0.01).
        ridge: lambda of A's closed form (1.0; the paper leaves it open).
        weight_decay: L2 penalty 0.5 * weight_decay * sum ||kernel||^2 on
            each role's kernels (1e-4; the demo's value is not published).
        threshold: the binary neuron's training threshold, "uniform" (the
            paper) or 0.5 (SGH's released demo).
        seed: seed of weights and sampling.

    Notes:
        R-SGH's Eq. 5 drops eta ||Z - H||^2 from the decoder's problem
        although H is a decoder layer; we keep it there, as Eq. 3 has it.
        The residuals r_k are batch sums, as in the paper, so with epsilon
        = 0.05 only bits that are nearly exact combinations of the others
        are pushed.

    Reference: Dai et al., "Stochastic Generative Hashing", ICML 2017; Du et
    al., "Redundancy-resistant Generative Hashing for Image Retrieval",
    IJCAI 2018.
    """

    roles = ("decoder", "encoder")
    loss_names = (
        "decoder_loss",
        "encoder_loss",
        "reconstruction_loss",
        "kl_loss",
        "redundancy_loss",
        "code_hidden_loss",
    )

    def __init__(
        self,
        input_dim,
        bits=BITS,
        variant="sgh",
        alpha=1e-3,
        rho=0.5,
        epsilon=0.05,
        delta=0.01,
        eta=0.01,
        ridge=1.0,
        weight_decay=1e-4,
        threshold="uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; received variant={variant!r}")
        if not 0.0 < float(rho) < 1.0:
            raise ValueError(f"rho must be in (0, 1); received rho={rho!r}")
        for name, value in (("alpha", alpha), ("epsilon", epsilon), ("delta", delta), ("eta", eta)):
            if float(value) < 0:
                raise ValueError(f"{name} must be >= 0; received {name}={value!r}")
        if float(ridge) <= 0:
            raise ValueError(f"ridge must be > 0 (it makes Z^T Z + ridge I invertible); received {ridge!r}")
        self.variant = variant
        self.alpha, self.rho, self.epsilon = float(alpha), float(rho), float(epsilon)
        self.delta, self.eta, self.ridge = float(delta), float(eta), float(ridge)
        self.weight_decay = float(weight_decay)
        self.threshold = threshold
        seeds = seed_stream(seed)

        def dense(units, activation=None, use_bias=True, name=None):
            init = keras.initializers.GlorotUniform(seed=next(seeds))
            return keras.layers.Dense(units, activation, use_bias, kernel_initializer=init, name=name)

        # === Layers ===
        deep = variant != "sgh"
        self.encoder_layers = [dense(bits, "relu", name=f"encoder_hidden_{i}") for i in range(2 * deep)]
        self.encoder_layers.append(dense(bits, name="encoder_logits"))
        self.binary_neuron = StochasticBinary(threshold, seed=seed, name="binary_neuron")
        self.decoder_layers = [dense(bits, "sigmoid", name=f"decoder_hidden_{i}") for i in range(2 * deep)]
        self.decoder_layers.append(dense(input_dim, use_bias=deep, name="decoder_output"))
        self.scale = self.add_weight(shape=(input_dim,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(input_dim,), initializer="zeros", name="shift")
        self.combination = self.add_weight(
            shape=(bits, bits), initializer="zeros", trainable=False, name="combination"
        )
        self.build((None, input_dim))

    def build(self, input_shape):
        width = self.input_dim
        for layer in self.encoder_layers:
            layer.build((None, width))
            width = layer.units
        width = self.bits
        for layer in self.decoder_layers:
            layer.build((None, width))
            width = layer.units
        self.built = True

    def adapt(self, features):
        """shift <- the training mean, scale <- the training variance (per feature), as SGH's demo."""
        features = check_features(features, self.input_dim, "SGH.adapt").astype(np.float64)
        self.shift.assign(features.mean(axis=0).astype(np.float32))
        self.scale.assign(features.var(axis=0).astype(np.float32))

    def role_variables(self, role):
        layers = self.decoder_layers if role == "decoder" else self.encoder_layers
        extra = [self.scale, self.shift] if role == "decoder" else []
        return [v for layer in layers for v in layer.trainable_variables] + extra

    def _logits(self, x):
        for layer in self.encoder_layers:
            x = layer(x)
        return x

    def call(self, x, training=False):
        return self.binary_neuron(self._logits(x), training=training)

    def decode(self, codes):
        """(x_hat, H): the Gaussian mean and the last decoder hidden layer (codes for linear SGH)."""
        hidden = codes
        for layer in self.decoder_layers[:-1]:
            hidden = layer(hidden)
        mean = tf.cast(self.decoder_layers[-1](hidden), tf.float32) * self.scale + self.shift
        return mean, hidden

    def reconstruct(self, features):
        """Deterministic reconstructions of NumPy features (threshold 0.5), float32 (n, D)."""
        features = check_features(features, self.input_dim, "SGH").astype(np.float32)
        return np.asarray(self.decode(self(features, training=False))[0])

    def compute_loss_terms(self, x, training=False):
        logits = self._logits(x)
        codes = self.binary_neuron(logits, training=training)
        x_hat, hidden = self.decode(codes)
        recon = reconstruction_loss(x, x_hat)
        kl = self.alpha * bernoulli_kl(tf.sigmoid(tf.cast(logits, tf.float32)), self.rho)
        resist = self.variant == "rsgh"
        redundancy = epsilon_insensitive_redundancy(codes, self.combination, self.epsilon)
        code_hidden = code_hidden_distance(codes, hidden)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # batch sums add up over replicas; the weight decay must not be counted once per replica
        decay = {
            role: 0.5
            * self.weight_decay
            * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._kernels(role)])
            for role in self.roles
        }
        decoder = recon + decay["decoder"] + (self.eta * code_hidden if resist else 0.0)
        encoder = recon + kl + decay["encoder"]
        if resist:
            encoder += self.eta * code_hidden - self.delta * redundancy
        terms = {
            "decoder_loss": decoder,
            "encoder_loss": encoder,
            "reconstruction_loss": recon,
            "kl_loss": kl,
            "redundancy_loss": redundancy,
            "code_hidden_loss": code_hidden,
            "codes": codes,
        }
        objectives = {
            "decoder": decoder - decay["decoder"] * (1 - 1 / replicas),
            "encoder": encoder - decay["encoder"] * (1 - 1 / replicas),
        }
        return terms, objectives

    def _kernels(self, role):
        layers = self.decoder_layers if role == "decoder" else self.encoder_layers
        return [tf.cast(layer.kernel, tf.float32) for layer in layers]

    def after_gradients(self, terms):
        self.combination.assign(redundancy_combination(terms["codes"], self.ridge))

    def get_config(self):
        return {
            **super().get_config(),
            "variant": self.variant,
            "alpha": self.alpha,
            "rho": self.rho,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "eta": self.eta,
            "ridge": self.ridge,
            "weight_decay": self.weight_decay,
            "threshold": self.threshold,
        }
