"""JMLH: Embarrassingly Simple Binary Representation Learning (Shen et al., ICCV workshops 2019)."""

import keras
import tensorflow as tf

from tfhash.backbones.mlp import seeded_initializer
from tfhash.defaults import BITS
from tfhash.layers import StochasticBinary
from tfhash.losses import jmlh_loss_terms
from tfhash.models.base import HashingModel, check_positive_int


@keras.saving.register_keras_serializable(package="tfhash")
class JMLH(HashingModel):
    """A classifier on stochastic binary codes: encoder -> Dense(bits) -> binary neuron -> Dense(classes).

    The encoder (the `mlp` backbone on features, or an image backbone) feeds
    the code layer, whose logits l go through the stochastic binary neuron
    (`StochasticBinary`: codes 1[sigmoid(l) > eps], distributional
    derivative) and a linear classifier on the {0, 1} codes. The loss
    (`tfhash.losses.jmlh_loss_terms`) is the classifier's softmax
    cross-entropy (multi-hot label rows normalised to sum 1) plus
    `kl_weight` x KL(Bernoulli(sigmoid(l)) || Bernoulli(0.5)), summed over
    bits and averaged over the batch, computed from the logits. Calling the
    model is inference: {0, 1} codes 1[l > 0] (eps = 0.5).

    Two roles, one optimiser each, minimising the same loss: "encoder" (the
    backbone and the code layer) and "classifier".

    Args:
        input_dim: feature width D (for images: H * W * C).
        bits: code length.
        num_classes: width of the classifier; `tfhash.train` passes the
            data's number of classes (`needs_num_classes`).
        kl_weight: weight of the KL term (0.2, the authors').
        threshold: the binary neuron's training threshold: 0.5 (the
            authors' code, the default) or "uniform" (eps ~ U(0, 1), SGH's
            neuron, as another maintained re-implementation trains it).
        seed: seed of the initial weights and of the neuron's draws.
        backbone: the encoder: "mlp" (Dense(1024, relu) on features unless
            `backbone_options` says otherwise) or an image backbone of
            `tfhash.backbones` ("conv", "vgg16", "resnet50", ...).
        backbone_options: keyword arguments of the backbone.

    Notes:
        Threshold: the paper's text was not available to us; the default is
        the authors' released code, which thresholds at 0.5 in training and
        at test (so training codes are deterministic, and the gradient is
        the straight-through one of the neuron), and "uniform" restores the
        sampled neuron. The authors put the code layer straight on
        pre-extracted features; on features we keep the `mlp` backbone
        between them, like the other methods here. The authors' KL takes
        the log of the probabilities with no epsilon (NaN once a probability
        saturates); ours is exact and finite for any logit.

    Reference: Shen et al., "Embarrassingly Simple Binary Representation
    Learning", ICCV workshops (CEFRL) 2019.
    """

    roles = ("encoder", "classifier")
    loss_names = ("loss", "cross_entropy_loss", "kl_loss")
    needs_labels = True
    needs_num_classes = True

    def __init__(
        self,
        input_dim,
        bits=BITS,
        num_classes=None,
        kl_weight=0.2,
        threshold=0.5,
        seed=None,
        backbone="mlp",
        backbone_options=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        if not float(kl_weight) >= 0:
            raise ValueError(f"kl_weight must be >= 0; received kl_weight={kl_weight!r}")
        self.kl_weight = float(kl_weight)
        self.threshold = threshold

        # === Layers ===
        self.encoder = self.build_encoder(backbone, backbone_options, seed)
        glorot = keras.initializers.GlorotUniform()
        self.code_layer = keras.layers.Dense(
            bits, kernel_initializer=seeded_initializer(glorot, seed, 500), name="code_layer"
        )
        self.binary_neuron = StochasticBinary(threshold, seed=seed, name="binary_neuron")
        self.classifier = keras.layers.Dense(
            self.num_classes, kernel_initializer=seeded_initializer(glorot, seed, 501), name="classifier"
        )
        self.code_layer.build((None, self.encoder.output_dim))
        self.classifier.build((None, bits))
        self.built = True

    def role_variables(self, role):
        if role == "classifier":
            return list(self.classifier.trainable_variables)
        return list(self.encoder.trainable_variables) + list(self.code_layer.trainable_variables)

    def code_logits(self, x, training=False):
        """l, the code layer's logits (B, bits)."""
        return self.code_layer(self.encoder(x, training=training))

    def call(self, x, training=False):
        return self.binary_neuron(self.code_logits(x, training=training), training=training)

    def compute_loss_terms(self, inputs, training=False):
        logits = self.code_logits(inputs[self.input_kind], training=training)
        codes = self.binary_neuron(logits, training=training)  # (B, bits) in {0, 1}
        terms = jmlh_loss_terms(inputs["labels"], self.classifier(codes), logits, self.kl_weight)
        objective = terms["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
        return terms, {role: objective for role in self.roles}

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kl_weight": self.kl_weight,
            "threshold": self.threshold,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
        }
