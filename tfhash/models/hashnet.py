"""HashNet: Deep Learning to Hash by Continuation (Cao et al., ICCV 2017), with its ablations."""

import keras
import tensorflow as tf

from tfhash.backbones.mlp import seeded_initializer
from tfhash.defaults import BITS
from tfhash.losses import PAIR_WEIGHTINGS, PAIRINGS, hashnet_loss
from tfhash.models.base import HashingModel, check_positive_int


def continuation_beta(step, gamma=0.005, interval=200, power=0.5):
    """beta of the 0-based training step `step`: (1 + gamma t0) ** power, t0 = the step rounded down to a
    multiple of `interval`.

    The authors' schedule: recomputed every `interval` steps, so steps
    0..199 train with beta = 1, step 200 with sqrt(2), step 10,000 with
    sqrt(51) ~ 7.14. Works on Python numbers and tensors alike (float32).
    """
    stage_start = (step // interval) * interval
    if isinstance(stage_start, tf.Tensor):
        stage_start = tf.cast(stage_start, tf.float32)
    return (1.0 + gamma * stage_start) ** power


@keras.saving.register_keras_serializable(package="tfhash")
class HashNet(HashingModel):
    """HashNet: a weighted pairwise likelihood loss on tanh(beta z) codes, beta raised by continuation.

    The encoder (the `mlp` backbone on features, or an image backbone)
    feeds the hash layer z = Dense(bits), its kernel drawn from N(0, 0.01)
    and its bias 0 (the authors' fch). Training codes are h = tanh(beta z)
    and the loss is `tfhash.losses.hashnet_loss` (Eq. 4) over the pairs of
    the batch, s_ij = 1 when two items share a label. Calling the model is
    inference: {0, 1} codes 1[z > 0], i.e. sign(z) written as bits.

    Continuation (Alg. 1) follows the authors' code: beta = (1 + 0.005 t0) **
    0.5, t0 the training step rounded down to a multiple of 200 (`beta` is a
    non-trainable variable, so checkpoints and exports carry it; it is
    logged as the metric "beta", its mean over an epoch's steps).
    `continuation=False` is the ablation HashNet-C (beta stays 1: train
    tanh(z), then take the sign); `weighting="none"` is HashNet-W.

    Three roles, one optimiser each, all minimising the same loss:
    "encoder" (the backbone), "hash_layer" (the hash layer's kernel) and
    "hash_bias" (its bias), so a config can train the new layer at 10x and
    its bias at 20x the backbone's learning rate, as the authors do
    (`learning_rate_multipliers`).

    Args:
        input_dim: feature width D (for images: H * W * C).
        bits: code length K.
        alpha: bandwidth of the adaptive sigmoid; None: 10 / bits (the
            authors' code; the paper asks for alpha < 1).
        weighting: pair weights: "paper" (the paper's Eq 2: per batch,
            |S| / |S1| for similar and |S| / |S0| for dissimilar pairs),
            "fixed" (similar pairs weigh `positive_weight`, the authors'
            code) or "none" (all 1: HashNet-W).
        positive_weight: similar pairs' weight under "fixed" (the authors'
            code: ImageNet 100, NUS-WIDE 5, COCO 1).
        pairs: "halves" (the first half of the batch against the second,
            the authors' code) or "all" (every pair i < j of the batch).
        continuation: raise beta during training (False: HashNet-C).
        continuation_gamma: gamma of beta = (1 + gamma t0) ** 0.5 (0.005).
        continuation_interval: steps between two beta updates (200).
        seed: seed of the backbone's and the hash layer's initial weights.
        backbone: the encoder: "mlp" (Dense(1024, relu) on features unless
            `backbone_options` says otherwise) or an image backbone of
            `tfhash.backbones` ("conv", "vgg16", "resnet50", ...).
        backbone_options: keyword arguments of the backbone, for example
            {"units": [1024, 1024]} or {"filters": [32, 64], "freeze": true}.

    Notes:
        The loss is divided by the sum of the pair weights, our choice (the
        paper sums over pairs, Eq. 4; the authors' PyTorch code divides by
        the number of pairs). Under the paper's weighting the weights sum to
        2 |S| when the batch has both kinds of pair, so the loss is the mean
        of the similar pairs' mean and the dissimilar pairs' mean; with
        c_ij = 1 it is the plain mean over pairs, as in the authors' code;
        under "fixed" it is theirs times |S| / (w |S1| + |S0|), a per-batch
        rescaling of the learning rate. The authors' PyTorch loss also drops
        alpha from its -s_ij <h_i, h_j> term; we follow Eq. 4. Their step
        counter is 1-based, so each new beta starts one step later here.

    Reference: Cao et al., "HashNet: Deep Learning to Hash by Continuation", ICCV 2017.
    """

    roles = ("encoder", "hash_layer", "hash_bias")
    loss_names = ("pairwise_loss", "beta")
    needs_labels = True

    def __init__(
        self,
        input_dim,
        bits=BITS,
        alpha=None,
        weighting="paper",
        positive_weight=1.0,
        pairs="halves",
        continuation=True,
        continuation_gamma=0.005,
        continuation_interval=200,
        seed=None,
        backbone="mlp",
        backbone_options=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        if alpha is not None and not float(alpha) > 0:
            raise ValueError(f"alpha must be > 0 or None (10 / bits); received alpha={alpha!r}")
        if weighting not in PAIR_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {PAIR_WEIGHTINGS}; received weighting={weighting!r}")
        if not float(positive_weight) > 0:
            raise ValueError(f"positive_weight must be > 0; received positive_weight={positive_weight!r}")
        if pairs not in PAIRINGS:
            raise ValueError(f"pairs must be one of {PAIRINGS}; received pairs={pairs!r}")
        if not isinstance(continuation, bool):
            raise ValueError(f"continuation must be True or False; received continuation={continuation!r}")
        if not float(continuation_gamma) >= 0:
            raise ValueError(f"continuation_gamma must be >= 0; received {continuation_gamma!r}")
        self.alpha = None if alpha is None else float(alpha)
        self.weighting, self.positive_weight, self.pairs = weighting, float(positive_weight), pairs
        self.continuation = continuation
        self.continuation_gamma = float(continuation_gamma)
        self.continuation_interval = check_positive_int("continuation_interval", continuation_interval)

        # === Layers ===
        self.encoder = self.build_encoder(backbone, backbone_options, seed)
        normal = keras.initializers.RandomNormal(stddev=0.01)
        self.hash_layer = keras.layers.Dense(
            bits, kernel_initializer=seeded_initializer(normal, seed, 500), name="hash_layer"
        )
        self.hash_layer.build((None, self.encoder.output_dim))

        # === State ===
        self.beta = self.add_state("beta")
        self.built = True

    @property
    def effective_alpha(self):
        """alpha as used: the given value, or 10 / bits."""
        return 10.0 / self.bits if self.alpha is None else self.alpha

    def role_variables(self, role):
        if role == "encoder":
            return list(self.encoder.trainable_variables)
        return [self.hash_layer.kernel] if role == "hash_layer" else [self.hash_layer.bias]

    def hash_outputs(self, x, training=False):
        """z, the hash layer's output (B, bits), float32."""
        return tf.cast(self.hash_layer(self.encoder(x, training=training)), tf.float32)

    def call(self, x, training=False):
        return tf.cast(self.hash_outputs(x, training=training) > 0, self.compute_dtype)

    def train_step(self, data):
        if self.continuation:
            self.beta.assign(
                continuation_beta(self.train_steps, self.continuation_gamma, self.continuation_interval)
            )
        return super().train_step(data)

    def compute_loss_terms(self, inputs, training=False):
        z = self.hash_outputs(inputs[self.input_kind], training=training)
        codes = tf.tanh(self.beta * z)  # (B, bits) in (-1, 1)
        loss = hashnet_loss(
            codes, inputs["labels"], self.effective_alpha, self.weighting, self.positive_weight, self.pairs
        )
        objective = loss / tf.distribute.get_strategy().num_replicas_in_sync
        return {"pairwise_loss": loss, "beta": tf.identity(self.beta)}, {
            role: objective for role in self.roles
        }

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "weighting": self.weighting,
            "positive_weight": self.positive_weight,
            "pairs": self.pairs,
            "continuation": self.continuation,
            "continuation_gamma": self.continuation_gamma,
            "continuation_interval": self.continuation_interval,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
        }
