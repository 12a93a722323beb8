"""GreedyHash (Su et al., NeurIPS 2018, unsupervised form) and BiHalf (Li and van Gemert, AAAI 2021):
a hash layer trained to keep the input's cosine similarities, binarised with a custom gradient."""

import keras
import tensorflow as tf

from tfhash.backbones.mlp import MLP, seeded_initializer
from tfhash.defaults import BITS
from tfhash.layers import BiHalf as BiHalfLayer
from tfhash.layers import GreedySign
from tfhash.losses import cubic_penalty, similarity_preserving_loss
from tfhash.models.base import HashingModel
from tfhash.seeds import NETWORK_STRIDE, derive_seed


class SimilarityHash(HashingModel):
    """The shared skeleton: [backbone] -> hash layer h = Dense(bits) -> codes b in {-1, +1}, trained so
    that the cosine similarities of the codes match those of the input features.

    `backbone="none"` (the default) puts the hash layer on the features
    themselves, one Dense layer as in both papers (on precomputed CNN
    features); "mlp" or an image backbone puts one in front. The
    similarity targets are always the model's input, flattened. Calling
    the model is inference: {0, 1} codes 1[h >= 0] (sign(h), 0 -> +1, as
    in training). One role, "encoder", one optimiser.
    """

    roles = ("encoder",)
    similarity_pairs = "all"

    def __init__(self, input_dim, bits=BITS, backbone="none", backbone_options=None, seed=None, **kwargs):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        if backbone == "none":
            if backbone_options:
                raise ValueError(
                    f'backbone="none" (the hash layer on the features) takes no backbone_options; '
                    f'received {backbone_options!r}; pass backbone="mlp" for a network in front'
                )
            self.backbone, self.backbone_options, self.encoder = "none", {}, None
            width = input_dim
        else:
            self.encoder = self.build_encoder(backbone, backbone_options, seed)
            width = self.encoder.output_dim
        self.hash_layer = keras.layers.Dense(
            bits, kernel_initializer=seeded_initializer("glorot_uniform", seed, 500), name="hash_layer"
        )
        self.hash_layer.build((None, width))
        self.built = True

    def role_variables(self, role):
        return list(self.trainable_variables)

    def hash_outputs(self, x, training=False):
        """h (B, bits), float32."""
        if self.encoder is not None:
            x = self.encoder(x, training=training)
        return tf.cast(self.hash_layer(x), tf.float32)

    def call(self, x, training=False):
        return tf.cast(self.hash_outputs(x, training=training) >= 0, self.compute_dtype)

    def flat_inputs(self, x):
        """The similarity targets' vectors: the input, flattened (B, input_dim)."""
        return tf.reshape(tf.cast(x, tf.float32), (-1, self.input_dim))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "backbone_options": self.backbone_options}


@keras.saving.register_keras_serializable(package="tfhash")
class GreedyHash(SimilarityHash):
    """GreedyHash, unsupervised: b = sign(h) forward, the gradient passed straight through to h (the
    greedy step, `tfhash.layers.greedy_sign`), loss = mean over all B x B pairs of (cos(b_i, b_j) -
    cos(x_i, x_j))^2 + alpha mean | |h| - 1 |^3 (alpha = 0.1, the authors').

    Args:
        input_dim: feature width (for images, H * W * C).
        bits: code length.
        alpha: weight of the cubic penalty (0.1).
        backbone: "none" (the hash layer on the features), "mlp" or an image backbone.
        backbone_options: options of the backbone.
        seed: seed of the weights.

    Reference: Su et al., "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN",
    NeurIPS 2018.
    """

    loss_names = ("loss", "similarity_loss", "cubic_penalty")

    def __init__(self, input_dim, bits=BITS, alpha=0.1, **kwargs):
        super().__init__(input_dim, bits, **kwargs)
        if not float(alpha) >= 0:
            raise ValueError(f"alpha must be >= 0; received alpha={alpha!r}")
        self.alpha = float(alpha)
        self.binarize = GreedySign(name="greedy_sign")

    def compute_loss_terms(self, x, training=False):
        h = self.hash_outputs(x, training=training)
        similarity = similarity_preserving_loss(self.binarize(h), self.flat_inputs(x), "all")
        penalty = cubic_penalty(h)
        loss = similarity + self.alpha * penalty
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return {"loss": loss, "similarity_loss": similarity, "cubic_penalty": penalty}, {
            "encoder": loss / replicas
        }

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


OBJECTIVES = ("similarity", "autoencoder")


@keras.saving.register_keras_serializable(package="tfhash")
class BiHalf(SimilarityHash):
    """BiHalf: per batch and per bit, the top half of h -> +1 and the rest -> -1 (maximal bit entropy),
    with the gradient term gamma (h - b) / numel (`tfhash.layers.bihalf`); sign(h) at inference.

    objective="similarity" (the default, the paper's CIFAR-10 form): item i
    of the first half of the batch against item i of the second, mean of
    (cos(b_i, b_{i+B/2}) - cos(x_i, x_{i+B/2}))^2. objective="autoencoder"
    (the paper's mnist form): an encoder MLP (`backbone="mlp"`, 256 ReLU
    units: 784-256-K), the codes, a decoder MLP (256 ReLU units, then
    Dense(input_dim)), and the binary cross-entropy of the decoder's logits
    against the binarised input 1[x > 0.5].

    Args:
        input_dim: feature width (for images, H * W * C).
        bits: code length.
        gamma: weight of the gradient term (6).
        objective: "similarity" or "autoencoder".
        decoder_units: the auto-encoder's decoder widths ((256,)).
        backbone: "none" (the hash layer on the features), "mlp" or an image backbone (the
            auto-encoder needs "mlp" or an image one; "none" becomes "mlp" with 256 units).
        backbone_options: options of the backbone.
        seed: seed of the weights.

    Reference: Li and van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy",
    AAAI 2021.
    """

    def __init__(
        self, input_dim, bits=BITS, gamma=6.0, objective="similarity", decoder_units=(256,), **kwargs
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; received objective={objective!r}")
        if objective == "autoencoder" and kwargs.get("backbone", "none") == "none":
            kwargs = {**kwargs, "backbone": "mlp", "backbone_options": kwargs.get("backbone_options") or {}}
            kwargs["backbone_options"] = {"units": [256], **kwargs["backbone_options"]}
        self.objective = objective
        self.loss_names = ("loss",) if objective == "similarity" else ("loss", "bit_mean")
        super().__init__(input_dim, bits, **kwargs)
        self.gamma = float(gamma)
        self.binarize = BiHalfLayer(gamma, name="bihalf")
        self.decoder_units = tuple(decoder_units)
        self.decoder = None
        if objective == "autoencoder":
            self.decoder = keras.Sequential(
                [
                    MLP(self.decoder_units, seed=derive_seed(self.seed, 1, stride=NETWORK_STRIDE)),
                    keras.layers.Dense(
                        input_dim,
                        kernel_initializer=seeded_initializer("glorot_uniform", self.seed, 501),
                        name="decoder_logits",
                    ),
                ],
                name="decoder",
            )
            self.decoder.build((None, bits))

    def compute_loss_terms(self, x, training=False):
        h = self.hash_outputs(x, training=training)
        codes = self.binarize(h, training=training)
        flat = self.flat_inputs(x)
        terms = {}
        if self.objective == "similarity":
            loss = similarity_preserving_loss(codes, flat, "halves")
        else:
            target = tf.cast(flat > 0.5, tf.float32)
            logits = tf.cast(self.decoder(codes, training=training), tf.float32)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))
            terms["bit_mean"] = tf.reduce_mean(codes)
        terms["loss"] = loss
        return terms, {"encoder": loss / tf.distribute.get_strategy().num_replicas_in_sync}

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "objective": self.objective,
            "decoder_units": list(self.decoder_units),
        }
