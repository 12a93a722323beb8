"""BGAN: binary generative adversarial networks for image retrieval (Song et al., AAAI 2018)."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfhash.backbones import ConvEncoder
from tfhash.backbones.conv import he_normal
from tfhash.backbones.mlp import seeded_initializer
from tfhash.checks import check_features
from tfhash.defaults import BITS
from tfhash.losses import (
    adversarial_loss,
    binary_cross_entropy_from_logits,
    mean_score,
    neighbour_structure_loss,
)
from tfhash.models.base import HashingModel, check_positive_int
from tfhash.seeds import NETWORK_STRIDE, derive_seed

BINARIZATIONS = ("continuation", "app", "two-step")
REDUCTIONS = ("sum", "mean")
LOSS_FORMS = ("paper", "authors_code")
LOSSES = ("all", "neighbour", "neighbour+content", "neighbour+adversarial")


def app(x):
    """The paper's app(.) (Eq. 5): x clipped to [-1, 1] (gradient 1 inside, 0 outside)."""
    return tf.clip_by_value(x, -1.0, 1.0)


def stage_beta(step, stage_steps, beta_max=10.0):
    """beta of the 0-based training step `step`: 1 in the first stage of `stage_steps` steps, then one
    more per stage, up to `beta_max` (the paper starts at 1 and stops at 10; the stage length is ours).
    Works on Python numbers and tensors alike."""
    stage = step // stage_steps
    if isinstance(stage, tf.Tensor):
        stage = tf.cast(stage, tf.float32)
        return tf.minimum(1.0 + stage, float(beta_max))
    return min(1.0 + float(stage), float(beta_max))


def batch_similarity(keys, index, items):
    """s_ij in {-1, +1} (B, B) for a batch of training-split positions `index` (B,): +1 when j is in
    row i of the graph whose sorted edge keys i * items + j are `keys` (`tfhash.neighbours.pair_keys`),
    and between two copies of one item. A binary search per pair: memory O(B^2 + edges), never
    items^2.

    Raises:
        InvalidArgumentError: a position outside [0, items).
    """
    index = tf.cast(index, tf.int64)
    items = tf.cast(items, tf.int64)
    tf.debugging.assert_non_negative(index, message="BGAN: a batch position is negative")
    tf.debugging.assert_less(index, items, message="BGAN: a batch position is outside the graph")
    keys = tf.cast(keys, tf.int64)
    query = tf.reshape(index[:, None] * items + index[None, :], (1, -1))
    position = tf.searchsorted(keys[None, :], query, out_type=tf.int64)[0]
    size = tf.size(keys, out_type=tf.int64)
    found = tf.cond(  # an empty graph has nothing to gather
        size > 0,
        lambda: tf.gather(keys, tf.minimum(position, size - 1)) == query[0],
        lambda: tf.zeros_like(query[0], tf.bool),
    )
    found = tf.reshape(found, (tf.size(index), tf.size(index)))
    found |= index[:, None] == index[None, :]
    return tf.where(found, 1.0, -1.0)


@keras.saving.register_keras_serializable(package="tfhash")
class BGAN(HashingModel):
    """Codes trained on a neighbour graph, an image generator fed by the codes, and a discriminator.

    The encoder (a backbone) feeds the hash layer z = Dense(bits); training
    codes are b = tanh(beta z) (`binarization="continuation"`, Table 4's
    tanh row), clip(beta z, -1, 1) ("app", Eq. 5-6) or tanh(z) with beta
    fixed at 1 ("two-step": train continuous, take the sign afterwards,
    Table 3's model). beta starts at 1 and grows by 1 every `beta_stage_steps`
    steps up to `beta_max` (10); it is a non-trainable variable
    (checkpointed, exported) and logged as "beta". Calling the model is
    inference: {0, 1} codes 1[z > 0], i.e. sign(z) as bits.

    Losses (Sec. 3.3): the neighbour structure loss l_N (Eq. 10,
    `tfhash.losses.neighbour_structure_loss`) over the ordered pairs of the
    batch, s_ij looked up in the neighbour graph of the training features
    (`tfhash.neighbours`, built by `adapt`); the content loss l_C (Eq. 11-13)
    = pixel MSE between the image I and G(b) + MSE between the
    discriminator's last convolutional features of the two; the adversarial
    loss l_A = log D(I) + log(1 - D(G(b))) (Eq. 14). Who descends what
    (Eq. 18-21), one optimiser per role:

    - "encoder" (backbone and hash layer): l_N + lambda1 l_C;
    - "generator": lambda1 l_C + lambda2 l_A;
    - "discriminator": ascends l_A (minimises -l_A, the usual cross-entropy).

    So l_A never reaches the codes: the encoder sees the discriminator only
    through the perceptual half of l_C.

    Ablations (Table 2, `losses`): "neighbour" (l_N only: no generator, no
    discriminator, and no images needed), "neighbour+content" (no
    discriminator, so l_C is the pixel MSE alone; ours: a perceptual term
    needs a trained D) and "neighbour+adversarial" (the generator trains on
    l_A alone; under Eq. 18 the codes are then those of "neighbour").

    Networks: the generator is Dense to (H/4, W/4, 256) (8 x 8 x 256 at the
    paper's 32 x 32; rounded up), transposed 5 x 5 convolutions with 256
    (stride 1), 128 (stride 2) and 32 (stride 2) channels, then a 1 x 1 one
    to the image's channels, each hidden one after batch norm and ELU, and a
    sigmoid (pixels in [0, 1]), cropped to (H, W). The paper lists the four
    layers and their kernels but not their strides or output activation:
    those are ours. The discriminator is four stride-2 5 x 5 convolutions
    (32, 128, 256, 512, ELU; no batch norm, ours), Dense(1024, ELU) and one
    logit. On a flat source with images (digits' 8 x 8) the generator and
    discriminator work on the images, the encoder on the features; a source
    without images trains only the "neighbour" arm.

    Scale (ours, the paper does not say): l_N is a sum over the batch's
    pairs as Eq. 10 writes it; l_C and l_A are batch means.

    Args:
        input_dim: feature width (for images, H * W * C).
        bits: code length.
        binarization: "continuation", "app" or "two-step".
        beta_max: the last beta (10).
        beta_stage_steps: steps per beta stage (ours).
        losses: "all", "neighbour", "neighbour+content" or "neighbour+adversarial". Every
            value but "neighbour" generates images (the content and adversarial losses compare
            generated images with real ones), so it needs an image source; "neighbour" (bgan-ln)
            also trains on features.
        lambda1, lambda2: weights of l_C and l_A (0.1 each).
        neighbour_reduction: "sum" (Eq. 10 as written: a sum over the batch's ordered pairs) or
            "mean" (divided by their number, ours: what lets plain SGD at 0.01 train).
        loss_form: "paper" (Eq. 9-21) or "authors_code" (the losses of the authors' final script,
            `authors_loss_terms`; the networks stay ours).
        pair_weight: the authors' weight of their pair and quantisation terms (10; "authors_code").
        k1, k2, self_pairs, symmetric: the neighbour graph (`tfhash.neighbours.build_graph`);
            with `self_pairs` the loss also sums the pairs (i, i), s_ii = 1.
        graph: None (build the graph in memory from the training features), a graph file
            (.npz, from `tfhash neighbours`; checked against the features) or a folder to cache
            graphs in (`tfhash.neighbours.graph_for`).
        graph_backend: "auto", "faiss" or "numpy" (the K1 search).
        generator_filters: channels of the generator's transposed convolutions ((256, 128, 32)).
        discriminator_filters: channels of the discriminator's convolutions ((32, 128, 256, 512)).
        discriminator_units: width of its dense layer (1024).
        backbone, backbone_options: the encoder ("mlp" on features, or an image backbone).
        seed: seed of the weights.

    Reference: Song et al., "Binary Generative Adversarial Networks for Image Retrieval", AAAI 2018.
    """

    needs_index = True

    def __init__(
        self,
        input_dim,
        bits=BITS,
        binarization="continuation",
        beta_max=10.0,
        beta_stage_steps=1000,
        losses="all",
        lambda1=0.1,
        lambda2=0.1,
        neighbour_reduction="sum",
        loss_form="paper",
        pair_weight=10.0,
        k1=20,
        k2=30,
        self_pairs=False,
        symmetric=False,
        graph=None,
        graph_backend="auto",
        generator_filters=(256, 128, 32),
        discriminator_filters=(32, 128, 256, 512),
        discriminator_units=1024,
        backbone="mlp",
        backbone_options=None,
        seed=None,
        **kwargs,
    ):
        if binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}; received {binarization!r}")
        if losses not in LOSSES:
            raise ValueError(f"losses must be one of {LOSSES}; received losses={losses!r}")
        for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
            if not float(value) >= 0.0:
                raise ValueError(f"{name} must be >= 0; received {name}={value!r}")
        if loss_form not in LOSS_FORMS:
            raise ValueError(f"loss_form must be one of {LOSS_FORMS}; received loss_form={loss_form!r}")
        if loss_form == "authors_code" and losses != "all":
            raise ValueError(
                f'loss_form="authors_code" trains the authors\' three networks; the ablations (losses='
                f'{losses!r}) are the paper\'s Table 2: use them with loss_form="paper"'
            )
        if not float(pair_weight) >= 0.0:
            raise ValueError(f"pair_weight must be >= 0; received pair_weight={pair_weight!r}")
        if neighbour_reduction not in REDUCTIONS:
            raise ValueError(
                f"neighbour_reduction must be one of {REDUCTIONS}; received {neighbour_reduction!r}"
            )
        if not float(beta_max) >= 1.0:
            raise ValueError(f"beta_max must be >= 1; received beta_max={beta_max!r}")
        if len(tuple(generator_filters)) != 3:
            raise ValueError(
                f"generator_filters must hold 3 channel counts (the paper's 256, 128, 32); received "
                f"{generator_filters!r}"
            )
        self.loss_set = losses  # (Keras models own `losses`)
        self.loss_form = loss_form
        self.uses_generator = losses != "neighbour"
        self.uses_discriminator = losses in ("all", "neighbour+adversarial")
        self.roles = ("encoder", *("generator",) * self.uses_generator)
        self.roles += ("discriminator",) * self.uses_discriminator
        self.loss_names = ("neighbour_loss", "beta")
        if loss_form == "authors_code":
            self.loss_names += ("quantization_loss", "feature_matching_loss", "generator_adversarial_loss")
            self.loss_names += ("discriminator_loss", "encoder_loss", "generator_loss")
            self.loss_names += ("d_real_score", "d_fake_score")
        else:
            if self.uses_generator:
                self.loss_names += ("content_loss", "pixel_loss", "encoder_loss", "generator_loss")
            if self.uses_discriminator:
                self.loss_names += ("perceptual_loss", "adversarial_loss", "d_real_score", "d_fake_score")
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.binarization = binarization
        self.beta_max = float(beta_max)
        self.beta_stage_steps = check_positive_int("beta_stage_steps", beta_stage_steps)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.neighbour_reduction = neighbour_reduction
        self.pair_weight = float(pair_weight)
        self.k1, self.k2 = check_positive_int("k1", k1), check_positive_int("k2", k2)
        self.self_pairs, self.symmetric = bool(self_pairs), bool(symmetric)
        self.graph, self.graph_backend = graph, graph_backend
        self.generator_filters = tuple(check_positive_int("generator_filters", f) for f in generator_filters)
        self.discriminator_filters = tuple(discriminator_filters)
        self.discriminator_units = check_positive_int("discriminator_units", discriminator_units)
        self.pair_keys = None  # the graph's edge keys, set by `adapt`

        # === Layers ===
        self.encoder = self.build_encoder(backbone, backbone_options, seed)
        self.hash_layer = keras.layers.Dense(
            bits, kernel_initializer=seeded_initializer("glorot_uniform", seed, 500), name="hash_layer"
        )
        self.hash_layer.build((None, self.encoder.output_dim))
        self.logvar_layer = None
        if loss_form == "authors_code":  # the authors' VAE head: log-variances of the sampled latent
            self.logvar_layer = keras.layers.Dense(
                bits, kernel_initializer=seeded_initializer("glorot_uniform", seed, 501), name="logvar_layer"
            )
            self.logvar_layer.build((None, self.encoder.output_dim))
        if self.uses_generator:
            if self.image_shape is None:
                raise ValueError(
                    f"BGAN with losses={losses!r} generates images, but this source has none (features "
                    "only, image_shape=None); train on a source with images, or pass --model-option "
                    "losses=neighbour (the neighbour loss alone)"
                )
            self.generator = self._build_generator(seed)
        if self.uses_discriminator:
            self.discriminator_features = ConvEncoder(
                self.discriminator_filters,
                batch_norm=False,
                activation="elu",
                seed=derive_seed(seed, 2, stride=NETWORK_STRIDE),
                name="discriminator_features",
            )
            self.discriminator_features.build((None, *self.image_shape))
            self.discriminator_head = keras.Sequential(
                [
                    keras.layers.Dense(
                        self.discriminator_units,
                        "elu",
                        kernel_initializer=seeded_initializer("glorot_uniform", seed, 520),
                        name="discriminator_dense",
                    ),
                    keras.layers.Dense(
                        1, kernel_initializer=seeded_initializer("glorot_uniform", seed, 521), name="logit"
                    ),
                ],
                name="discriminator_head",
            )
            self.discriminator_head.build((None, self.discriminator_features.output_dim))

        # === State ===
        self.beta = self.add_state("beta")
        self.built = True

    def _build_generator(self, seed):
        height, width, channels = self.image_shape
        start = (math.ceil(height / 4), math.ceil(width / 4))
        first, second, third = self.generator_filters
        offset = derive_seed(seed, 1, stride=NETWORK_STRIDE)
        layers = [
            keras.layers.Dense(
                start[0] * start[1] * first, kernel_initializer=he_normal(offset, 0), name="generator_dense"
            ),
            keras.layers.Reshape((*start, first)),
        ]
        for index, (filters, kernel, stride) in enumerate(((first, 5, 1), (second, 5, 2), (third, 5, 2))):
            layers += [
                keras.layers.BatchNormalization(name=f"generator_batch_norm_{index}"),
                keras.layers.Activation("elu"),
                keras.layers.Conv2DTranspose(
                    filters,
                    kernel,
                    strides=stride,
                    padding="same",
                    kernel_initializer=he_normal(offset, index + 1),
                    name=f"generator_deconv_{index}",
                ),
            ]
        layers += [
            keras.layers.BatchNormalization(name="generator_batch_norm_3"),
            keras.layers.Activation("elu"),
            keras.layers.Conv2DTranspose(
                channels, 1, kernel_initializer=he_normal(offset, 4), name="generator_deconv_3"
            ),
            keras.layers.Cropping2D(((0, start[0] * 4 - height), (0, start[1] * 4 - width))),
            keras.layers.Activation("sigmoid"),
        ]
        generator = keras.Sequential(layers, name="generator")
        generator.build((None, self.bits))
        return generator

    # === The neighbour graph ===

    def adapt(self, features):
        """Builds (or reads) the neighbour graph of the training features, in training-split order
        (batches carry each item's position in it)."""
        from tfhash.neighbours import graph_for, pair_keys

        features = check_features(features, self.input_dim, "BGAN")
        graph = graph_for(
            features, self.graph, self.k1, self.k2, self.self_pairs, self.symmetric, self.graph_backend
        )
        self.graph_items = int(graph["items"])
        self.neighbours_per_item = float(np.diff(graph["indptr"]).mean())
        self.pair_keys = tf.constant(pair_keys(graph))

    def similarity(self, index):
        """s_ij in {-1, +1} of a batch of training-split positions (B,) -> (B, B)."""
        if self.pair_keys is None:
            raise RuntimeError(
                "BGAN has no neighbour graph: call model.adapt(training features) before training "
                "(tfhash.train.fit does)"
            )
        return batch_similarity(self.pair_keys, index, self.graph_items)

    # === Codes ===

    def role_variables(self, role):
        if role == "encoder":
            heads = [self.hash_layer] + ([self.logvar_layer] if self.logvar_layer is not None else [])
            return [*self.encoder.trainable_variables, *(v for h in heads for v in h.trainable_variables)]
        if role == "generator":
            return list(self.generator.trainable_variables)
        return [
            *self.discriminator_features.trainable_variables,
            *self.discriminator_head.trainable_variables,
        ]

    def hash_outputs(self, x, training=False):
        """z, the hash layer's output (B, bits), float32."""
        return tf.cast(self.hash_layer(self.encoder(x, training=training)), tf.float32)

    def relaxed_codes(self, z):
        """The training codes b of z: tanh(beta z), app(beta z) or tanh(z) (two-step)."""
        if self.binarization == "app":
            return app(self.beta * z)
        if self.binarization == "two-step":
            return tf.tanh(z)
        return tf.tanh(self.beta * z)

    def call(self, x, training=False):
        return tf.cast(self.hash_outputs(x, training=training) > 0, self.compute_dtype)

    def train_step(self, data):
        if self.binarization != "two-step":
            self.beta.assign(stage_beta(self.train_steps, self.beta_stage_steps, self.beta_max))
        return super().train_step(data)

    # === Losses ===

    def images_of(self, x):
        """The images (B, H, W, C) in [0, 1] of a batch input (images, or flat features of a source
        with images)."""
        return x if self.input_kind == "images" else tf.reshape(x, (-1, *self.image_shape))

    def discriminate(self, images, training=False, dense=False):
        """(features, logits) of the discriminator: its last convolutional features, or with `dense`
        its Dense(1024) layer's (the authors' feature matching)."""
        features = self.discriminator_features(images, training=training)
        hidden, logit = self.discriminator_head.layers
        top = hidden(features)
        return (top if dense else features), logit(top)

    def compute_loss_terms(self, inputs, training=False):
        if self.loss_form == "authors_code":
            return self.authors_loss_terms(inputs, training)
        x = inputs[self.input_kind]
        codes = self.relaxed_codes(self.hash_outputs(x, training=training))
        similarity = self.similarity(inputs["index"])
        neighbour = neighbour_structure_loss(codes, similarity, self_pairs=self.self_pairs)
        if self.neighbour_reduction == "mean":
            size = tf.cast(tf.shape(codes)[0], tf.float32)
            pairs = size * size if self.self_pairs else size * (size - 1.0)
            neighbour = neighbour / tf.maximum(pairs, 1.0)
        terms = {
            "neighbour_loss": neighbour,
            "beta": tf.identity(self.beta),
        }
        encoder = terms["neighbour_loss"]
        objectives = {}
        if self.uses_generator:
            images = tf.cast(self.images_of(x), tf.float32)
            generated = tf.cast(self.generator(codes, training=training), tf.float32)
            terms["pixel_loss"] = tf.reduce_mean(tf.square(images - generated))
            content = terms["pixel_loss"]
            generator = 0.0
            if self.uses_discriminator:
                real_features, real_logits = self.discriminate(images, training)
                fake_features, fake_logits = self.discriminate(generated, training)
                terms["perceptual_loss"] = tf.reduce_mean(
                    tf.square(tf.cast(real_features, tf.float32) - tf.cast(fake_features, tf.float32))
                )
                terms["adversarial_loss"] = -adversarial_loss(real_logits, fake_logits)  # l_A
                terms["d_real_score"], terms["d_fake_score"] = (
                    mean_score(real_logits),
                    mean_score(fake_logits),
                )
                generator = self.lambda2 * terms["adversarial_loss"]
                objectives["discriminator"] = -terms["adversarial_loss"]
                if self.loss_set == "all":
                    content += terms["perceptual_loss"]
            terms["content_loss"] = content
            if self.loss_set != "neighbour+adversarial":
                encoder += self.lambda1 * content
                generator += self.lambda1 * content
            terms["encoder_loss"], terms["generator_loss"] = encoder, generator
            objectives["generator"] = generator
        objectives["encoder"] = encoder
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return terms, {role: objectives[role] / replicas for role in self.roles}

    def authors_loss_terms(self, inputs, training=False):
        """The losses of the authors' final training script (htconquer/BGAN; docs/bgan.md): a VAE-GAN.

        codes z = tanh(hash layer) (beta as the binarisation says; their
        script keeps tanh(z)); the pair loss is the mean over all B x B
        entries, self pairs included, of (z_i . z_j - s_ij)^2 (no 1 / L),
        plus the quantisation mean (z - sign z)^2, both weighted by
        `pair_weight` (10). The generator draws from z + exp(logvar / 2) eps
        (a second head); the discriminator judges real images against
        G(N(0, I)) samples (non-saturating); feature matching LL = sum over
        the batch and the Dense(1024) units of (D_1024(x) - D_1024(G(z_x)))^2
        / (H W C). Encoder: LL + pair_weight (pair + quantisation);
        generator: LL - mean log D(G(z_p)); discriminator: its cross-entropy.
        """
        x = inputs[self.input_kind]
        hidden = self.encoder(x, training=training)
        codes = self.relaxed_codes(tf.cast(self.hash_layer(hidden), tf.float32))
        logvar = tf.cast(self.logvar_layer(hidden), tf.float32)
        noise = keras.random.normal(tf.shape(codes), seed=self.seed_generator)
        sampled = codes + tf.exp(0.5 * logvar) * noise
        similarity = self.similarity(inputs["index"])
        pair = tf.reduce_mean(tf.square(tf.matmul(codes, codes, transpose_b=True) - similarity))
        quantization = tf.reduce_mean(tf.square(codes - tf.stop_gradient(tf.sign(codes))))
        images = tf.cast(self.images_of(x), tf.float32)
        prior = keras.random.normal(tf.shape(codes), seed=self.seed_generator)
        real_top, real_logits = self.discriminate(images, training, dense=True)
        recon_top, _ = self.discriminate(self.generator(sampled, training=training), training, dense=True)
        _, fake_logits = self.discriminate(self.generator(prior, training=training), training, dense=True)
        pixels = float(np.prod(self.image_shape))
        matching = tf.reduce_sum(tf.square(tf.cast(real_top - recon_top, tf.float32))) / pixels
        generator_adversarial = binary_cross_entropy_from_logits(1.0, fake_logits)
        terms = {
            "neighbour_loss": pair,
            "beta": tf.identity(self.beta),
            "quantization_loss": quantization,
            "feature_matching_loss": matching,
            "generator_adversarial_loss": generator_adversarial,
            "discriminator_loss": adversarial_loss(real_logits, fake_logits),
            "encoder_loss": matching + self.pair_weight * (pair + quantization),
            "generator_loss": matching + generator_adversarial,
            "d_real_score": mean_score(real_logits),
            "d_fake_score": mean_score(fake_logits),
        }
        objectives = {
            "encoder": terms["encoder_loss"],
            "generator": terms["generator_loss"],
            "discriminator": terms["discriminator_loss"],
        }
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return terms, {role: objectives[role] / replicas for role in self.roles}

    def reconstruct(self, features):
        """G(sign(z)) (n, input_dim) of NumPy features: the images generated from the binary codes
        (for `tfhash train --figure`)."""
        if not self.uses_generator:
            return super().reconstruct(features)
        features = check_features(features, self.input_dim, "BGAN").astype("float32")

        def generate(x):
            return self.generator(tf.where(self.hash_outputs(x) > 0, 1.0, -1.0))

        parts = self.map_batches(features, 1024, self.model_input, generate)
        return np.concatenate(parts).reshape(len(features), self.input_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "binarization": self.binarization,
            "beta_max": self.beta_max,
            "beta_stage_steps": self.beta_stage_steps,
            "losses": self.loss_set,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "neighbour_reduction": self.neighbour_reduction,
            "loss_form": self.loss_form,
            "pair_weight": self.pair_weight,
            "k1": self.k1,
            "k2": self.k2,
            "self_pairs": self.self_pairs,
            "symmetric": self.symmetric,
            "graph": self.graph,
            "graph_backend": self.graph_backend,
            "generator_filters": list(self.generator_filters),
            "discriminator_filters": list(self.discriminator_filters),
            "discriminator_units": self.discriminator_units,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
        }
