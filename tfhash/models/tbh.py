"""TBH: Auto-Encoding Twin-Bottleneck Hashing (Shen et al., CVPR 2020)."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.backbones import build_backbone
from tfhash.checks import check_features
from tfhash.defaults import BITS
from tfhash.layers import GraphConvolution, StochasticBinary, hamming_adjacency
from tfhash.losses import tbh_loss_terms
from tfhash.models.base import HashingModel, check_positive_int
from tfhash.seeds import derive_seed, seed_stream


@keras.saving.register_keras_serializable(package="tfhash")
class TBH(HashingModel):
    """Twin-bottleneck hashing auto-encoder with two discriminators.

    The encoder (Dense(hidden, relu)) feeds a binary head (Dense(bits) and a
    stochastic binary neuron) and a continuous head (Dense(continuous_dim,
    sigmoid)). The codes define a batch graph A_ij = (1 - d_H(b_i, b_j) /
    bits) ** 1.4; a graph convolution sigmoid(D^-1/2 A D^-1/2 (Z W + c))
    mixes the continuous codes over it, and the decoder (Dense(hidden, relu),
    Dense(input_dim, relu)) reconstructs the features. Two Dense(1, sigmoid)
    discriminators push the codes towards Bernoulli(0.5) and the bottleneck
    towards U(0, 1).

    Training (`fit`) alternates nothing: one step computes all terms and
    applies two Adam optimisers, the actor (encoder, graph layer, decoder) on
    reconstruction - adv_binary - adv_continuous and the critic (both
    discriminators) on adv_binary + adv_continuous. Calling the model is
    inference: {0, 1} codes with threshold 0.5.

    Args:
        input_dim: feature width D (for images: H * W * C, the flat view the
            decoder reconstructs).
        bits: code length (16/32/64 in the paper).
        continuous_dim: width of the continuous bottleneck (512).
        hidden_dim: width of the encoder and decoder hidden layers (1024).
        threshold: training threshold of the binary neuron: "uniform" (eps ~
            U(0, 1), the paper) or 0.5 (the authors' released code).
        adjacency_power: exponent of the adjacency (1.4).
        seed: seed of every random draw (thresholds, prior samples, weights).
        backbone: the encoder: "mlp" (the paper's Dense(hidden_dim, relu) on
            features) or an image backbone of `tfhash.backbones` ("conv",
            "vgg16", "resnet50", "mobilenetv3small", "efficientnet-lite0") whose output feeds both
            heads; the decoder still reconstructs the flat [0, 1] view.
        backbone_options: keyword arguments of the image backbone (e.g.
            {"filters": [32, 64], "freeze": true}).

    Notes:
        The discriminators keep pre-sigmoid logits and the losses use the
        equivalent cross-entropy from logits (exact, never log(0)).
        Under a `tf.distribute` strategy each replica builds its graph over
        its own share of the batch, and the averaged adversarial terms are
        divided by the replica count so that summed gradients equal the
        single-device ones.

    Reference: Shen et al., "Auto-Encoding Twin-Bottleneck Hashing", CVPR 2020.
    """

    roles = ("actor", "critic")
    # Subclasses may set these (on the instance, before calling __init__).
    continuous_activation = "sigmoid"
    uses_binary_discriminator = True
    loss_names = (
        "actor_loss",
        "critic_loss",
        "reconstruction_loss",
        "binary_adversarial_loss",
        "continuous_adversarial_loss",
    )

    def __init__(
        self,
        input_dim,
        bits=BITS,
        continuous_dim=512,
        hidden_dim=1024,
        threshold="uniform",
        adjacency_power=1.4,
        seed=None,
        backbone="mlp",
        backbone_options=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.use_backbone(backbone, backbone_options)
        self.continuous_dim = check_positive_int("continuous_dim", continuous_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.threshold = threshold
        self.adjacency_power = float(adjacency_power)
        init = keras.initializers.GlorotUniform
        seeds = seed_stream(seed)

        def dense(units, activation=None, name=None):
            kernel_init = init(seed=next(seeds))
            return keras.layers.Dense(units, activation, kernel_initializer=kernel_init, name=name)

        # === Layers ===
        if backbone == "mlp":  # the paper's one hidden layer, seeded apart from the backbones'
            self.encoder_hidden = dense(hidden_dim, "relu", "encoder_hidden")
            self.encoder_hidden.build((None, input_dim))
            self.encoder_dim = hidden_dim
        else:
            next(seeds)  # keep every other layer's seed as with the mlp encoder
            self.encoder_hidden = build_backbone(
                backbone, self.image_shape, seed=seed, name="encoder_hidden", **self.backbone_options
            )
            self.encoder_dim = self.encoder_hidden.output_dim
        self.binary_head = dense(bits, name="binary_head")
        self.binary_neuron = StochasticBinary(threshold, seed=seed, name="binary_neuron")
        self.continuous_head = dense(continuous_dim, self.continuous_activation, "continuous_head")
        self.graph_convolution = GraphConvolution(
            continuous_dim,
            "sigmoid",
            seed=derive_seed(seed, 999),
            name="graph_convolution",
        )
        self.decoder_hidden = dense(hidden_dim, "relu", "decoder_hidden")
        self.decoder_output = dense(input_dim, "relu", "decoder_output")
        self.binary_discriminator = (
            dense(1, name="binary_discriminator") if self.uses_binary_discriminator else None
        )
        self.continuous_discriminator = dense(1, name="continuous_discriminator")
        self.build((None, *self.image_shape) if self.input_kind == "images" else (None, input_dim))

    def build(self, input_shape):
        self.binary_head.build((None, self.encoder_dim))
        self.continuous_head.build((None, self.encoder_dim))
        self.graph_convolution.build((None, self.continuous_dim), (None, None))
        self.decoder_hidden.build((None, self.continuous_dim))
        self.decoder_output.build((None, self.hidden_dim))
        if self.binary_discriminator is not None:
            self.binary_discriminator.build((None, self.bits))
        self.continuous_discriminator.build((None, self.continuous_dim))
        self.built = True

    def role_variables(self, role):
        if role == "critic":
            layers = [d for d in (self.binary_discriminator, self.continuous_discriminator) if d is not None]
        else:
            layers = (
                self.encoder_hidden,
                self.binary_head,
                self.continuous_head,
                self.graph_convolution,
                self.decoder_hidden,
                self.decoder_output,
            )
        return [v for layer in layers for v in layer.trainable_variables]

    def call(self, x, training=False):
        hidden = self.encoder_hidden(x, training=training)
        return self.binary_neuron(self.binary_head(hidden), training=training)

    def forward(self, x, training=False):
        """The full twin-bottleneck pass: codes, continuous code, bottleneck, x_hat (flat)."""
        hidden = self.encoder_hidden(x, training=training)
        out = {**self.binary_bottleneck(hidden, training), **self.continuous_bottleneck(hidden, training)}
        adjacency = hamming_adjacency(out["codes"], self.adjacency_power)  # (B, B) float32
        out["bottleneck"] = self.graph_convolution(out["continuous"], adjacency)
        out["x_hat"] = self.decoder_output(self.decoder_hidden(out["bottleneck"]))
        return out

    def reconstruct(self, features):
        """x_hat (n, input_dim) of NumPy features at inference (codes thresholded at 0.5).

        The graph convolution mixes the continuous codes over the batch, so a
        reconstruction depends on the other items passed with it.
        """
        features = check_features(features, self.input_dim, "TBH").astype(np.float32)
        return np.asarray(self.forward(self.model_input(features), training=False)["x_hat"])

    def binary_bottleneck(self, hidden, training=False):
        """{"codes": {0, 1} (B, bits)} from the encoder's hidden layer (subclasses add more keys)."""
        return {"codes": self.binary_neuron(self.binary_head(hidden), training=training)}

    def continuous_bottleneck(self, hidden, training=False):
        """{"continuous": (B, continuous_dim)}, the input of the graph convolution."""
        return {"continuous": self.continuous_head(hidden)}

    def compute_loss_terms(self, x, training=False):
        out = self.forward(x, training=training)
        terms = tbh_loss_terms(
            self.flat(x),
            out["x_hat"],
            *self.binary_discriminator_logits(out["codes"]),  # draws the prior codes first
            *self.continuous_discriminator_logits(out["bottleneck"]),
        )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        adversarial = terms["binary_adversarial_loss"] + terms["continuous_adversarial_loss"]
        objectives = {
            "actor": terms["reconstruction_loss"] - adversarial / replicas,
            "critic": adversarial / replicas,
        }
        return terms, objectives

    def flat(self, x):
        """The flat view (B, input_dim) that the decoder reconstructs."""
        return x if self.input_kind == "features" else tf.reshape(x, (-1, self.input_dim))

    def binary_discriminator_logits(self, codes):
        """(real, fake) logits of the binary discriminator: Bernoulli(0.5) samples vs `codes`."""
        real = keras.random.uniform(tf.shape(codes), seed=self.seed_generator) < 0.5
        return self.binary_discriminator(tf.cast(real, self.compute_dtype)), self.binary_discriminator(codes)

    def continuous_discriminator_logits(self, bottleneck):
        """(real, fake) logits of the continuous discriminator: U(0, 1) samples vs `bottleneck`."""
        real = keras.random.uniform(tf.shape(bottleneck), seed=self.seed_generator, dtype=self.compute_dtype)
        return self.continuous_discriminator(real), self.continuous_discriminator(bottleneck)

    def get_config(self):
        return {
            **super().get_config(),
            "continuous_dim": self.continuous_dim,
            "hidden_dim": self.hidden_dim,
            "threshold": self.threshold,
            "adjacency_power": self.adjacency_power,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
        }
