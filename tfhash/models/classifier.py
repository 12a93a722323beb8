"""The supervised reference point: train a classifier, then hash its penultimate features with ITQ."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.backbones.mlp import seeded_initializer
from tfhash.defaults import BITS
from tfhash.losses import soft_label_cross_entropy
from tfhash.models.base import HashingModel, check_positive_int


@keras.saving.register_keras_serializable(package="tfhash")
class ClassifierHash(HashingModel):
    """A classifier trained with plain cross-entropy, its penultimate features hashed by ITQ.

    What a supervised hashing loss must beat: the encoder of HashNet and
    JMLH (the `mlp` backbone on features, or an image backbone) with a
    Dense(classes) head, trained on the labelled subset with the softmax
    cross-entropy (multi-hot label rows normalised to sum 1). After
    training, `finalize` fits ITQ (`tfhash.baselines.ITQ`: PCA to `bits`
    dimensions, then the learned rotation) on the encoder's output for the
    training split, and stores its mean and projection (PCA directions times
    rotation) as non-trainable variables, so checkpoints and the SavedModel
    carry them. Codes are 1[(f(x) - mean) @ projection > 0], f the encoder's
    output (the penultimate features, not the logits: `num_classes` logits
    could give at most that many bits).

    Args:
        input_dim: feature width D (for images: H * W * C).
        bits: code length; at most the encoder's output width.
        num_classes: width of the head; `tfhash.train` passes the data's.
        itq_iterations: ITQ's rotation iterations (50).
        seed: seed of the initial weights and of ITQ's initial rotation.
        backbone, backbone_options: the encoder, as for HashNet and JMLH.

    Notes:
        ITQ is fitted on the split the classifier trained on (the labelled
        subset of protocols.md), the only data a supervised method sees.
        This baseline is ours (train a classifier, hash its features), not a
        published method.
    """

    roles = ("encoder", "classifier")
    loss_names = ("cross_entropy_loss",)
    needs_labels = True
    needs_num_classes = True

    def __init__(
        self,
        input_dim,
        bits=BITS,
        num_classes=None,
        itq_iterations=50,
        seed=None,
        backbone="mlp",
        backbone_options=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.itq_iterations = check_positive_int("itq_iterations", itq_iterations)
        self.encoder = self.build_encoder(backbone, backbone_options, seed)
        width = self.encoder.output_dim
        if self.bits > width:
            raise ValueError(
                f"ClassifierHash hashes the encoder's {width} features with ITQ, so bits <= {width}; "
                f"received bits={bits}"
            )
        glorot = keras.initializers.GlorotUniform()
        self.classifier = keras.layers.Dense(
            self.num_classes, kernel_initializer=seeded_initializer(glorot, seed, 501), name="classifier"
        )
        self.classifier.build((None, width))
        self.code_mean = self.add_weight(
            name="code_mean", shape=(width,), initializer="zeros", trainable=False
        )
        self.code_projection = self.add_weight(
            name="code_projection", shape=(width, self.bits), initializer="zeros", trainable=False
        )
        self.built = True

    def role_variables(self, role):
        if role == "classifier":
            return list(self.classifier.trainable_variables)
        return list(self.encoder.trainable_variables)

    def features(self, x, training=False):
        """The penultimate features f(x) (B, encoder width)."""
        return self.encoder(x, training=training)

    def call(self, x, training=False):
        f = tf.cast(self.features(x, training=training), tf.float32)
        projected = tf.matmul(f - self.code_mean, self.code_projection)
        return tf.cast(projected > 0, self.compute_dtype)

    def compute_loss_terms(self, inputs, training=False):
        logits = self.classifier(self.features(inputs[self.input_kind], training=training))
        loss = soft_label_cross_entropy(inputs["labels"], logits)
        objective = loss / tf.distribute.get_strategy().num_replicas_in_sync
        return {"cross_entropy_loss": loss}, {role: objective for role in self.roles}

    def finalize(self, split, batch_size=1024):
        """Fits ITQ on the encoder's features of `split` (a `tfhash.data.Split`) and stores it."""
        from tfhash.baselines import ITQ

        features = self.split_features(split, batch_size)
        itq = ITQ(self.bits, seed=0 if self.seed is None else self.seed, iterations=self.itq_iterations)
        itq.fit(features.astype(np.float64))
        self.code_mean.assign(itq.state["mean"].astype(np.float32))
        self.code_projection.assign(itq.state["projection"].astype(np.float32))

    def split_features(self, split, batch_size=1024):
        """f(x) of every item of a split, as NumPy (images are converted one batch at a time)."""
        items, prepare = self.split_inputs(split)
        parts = self.map_batches(items, batch_size, prepare, lambda x: self.features(x, training=False))
        return np.concatenate(parts).astype(np.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "itq_iterations": self.itq_iterations,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
        }
