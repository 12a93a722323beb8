"""GMAN: deep semantic hashing with generative multi-adversarial networks (Wang, Liu and Zhao, CIKM 2018)."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.backbones import ConvDecoder, ConvEncoder
from tfhash.backbones.mlp import MLP, seeded_initializer
from tfhash.checks import check_features, check_nonnegative_int
from tfhash.defaults import BITS
from tfhash.losses import (
    VARIANCE_FORMS,
    adversarial_loss,
    ali_generator_loss,
    binary_cross_entropy_from_logits,
    l2_distance,
    mean_score,
    soft_label_cross_entropy,
    variance_loss,
)
from tfhash.models.base import HashingModel, check_positive_int
from tfhash.seeds import NETWORK_STRIDE, derive_seed

VARIANTS = ("gman", "no-aegan", "no-bgan")
SCHEDULES = ("alternate", "every_step")
GATES = ("fake", "both")


@keras.saving.register_keras_serializable(package="tfhash")
class GMAN(HashingModel):
    """An auto-encoder (the generator) trained against two discriminators, with a self-controlled schedule.

    The encoder maps x to h = tanh(.) in (-1, 1)^bits, the decoder maps h to
    a reconstruction x~. D_AE judges pairs: (x, h) is real, (x~, h) fake
    (the AE-GAN, which replaces the reconstruction norm). D_B, a SELU MLP,
    judges codes: 2 Bernoulli(p) - 1 is real, h + N(0, sigma^2) fake (the
    B-GAN, which makes h binary). The generator minimises

        lambda1 L_G^AE + lambda2 L_G^B + lambda3 L_V

    with L_G^AE in the ALI form (Eq. 6: -E log(1 - D_AE(x, h)) - E log
    D_AE(x~, h)), L_G^B = -E log D_B(h + noise) and the variance loss L_V
    (Eq. 11). Calling the model is inference: codes 1[h > 0] (sign(h) as
    {0, 1}).

    Training (`fit`): the first `pretrain_steps` steps train the
    auto-encoder alone on the L2 reconstruction distance (Alg. 1, line 1);
    then each step a discriminator is trained only while the batch mean of
    its sigmoid score on fake data is above 0.5, and the generator either
    only in steps where no discriminator was trained (`schedule=
    "alternate"`, the paper's prose) or every step ("every_step", the
    algorithm as extracted). The gates use the scores of the step's own
    forward pass, before any update (`HashingModel.role_gates`).

    Variants (the paper's Table 1 rows): "no-aegan" replaces the AE-GAN by
    the L2 reconstruction distance ||x - x~||_2 (weight lambda1; no D_AE),
    "no-bgan" replaces the B-GAN by ||sign(h) - h||_2 (weight lambda2; no
    D_B). `SGMAN` adds a classifier on h.

    Networks (the paper's figure of them was lost; every depth and width is
    ours): on features (`backbone="mlp"`), a 3-layer MLP encoder
    (`backbone_options` units, default 512 and 256, ReLU, Glorot; then
    Dense(bits, tanh)) and its mirror as decoder (units reversed, linear
    output); on images (`backbone="conv"`), the spine's stride-2 5x5
    convolution stack with batch norm and He initialisation, a Dense(bits,
    tanh) on its last map (the same as a last valid convolution to a 1x1
    map), and the transposed-convolution mirror with a sigmoid output.
    D_AE convolves images with `discriminator_filters` (stride 2, leaky ReLU,
    no batch norm; features enter as they are), concatenates h and runs an
    MLP of `discriminator_units` (leaky ReLU) to one logit. D_B is an MLP of
    `code_discriminator_units` with SELU (LeCun normal initialisation) to one
    logit.

    Args:
        input_dim: feature width (for images, H * W * C).
        bits: code length (8/16/24/32/48 in the paper).
        variant: "gman", "no-aegan" or "no-bgan".
        lambda1: weight of the AE-GAN term (0.2, the paper's).
        lambda2: weight of the B-GAN term (0.5, the paper's).
        lambda3: weight of the variance loss. Not given by the paper; None
            (default) is ours: 1 / (m b)^2 for variance="paper" (m the batch
            size), 1 for the normalised forms, so the term starts at 1 when
            h = 0, on the scale of the log losses (see `variance_loss`).
        variance: "paper", "per_element" or "centred" (`tfhash.losses.variance_loss`).
        real_code_probability: p of the real codes 2 Bernoulli(p) - 1 (0.5).
        noise_stddev: sigma of the noise added to h before D_B (0.1).
        pretrain_steps: steps of L2 pre-training before the adversarial
            ones (counted apart: a run trains pretrain_steps + steps).
        schedule: "alternate" (the generator trains only when no
            discriminator does) or "every_step".
        gate: what opens a discriminator's gate: "fake" (its batch-mean score on fake data above
            0.5, the paper) or "both" (also when its score on real data is below 0.5; ours).
        backbone: "mlp" (features) or an image backbone ("conv").
        backbone_options: options of the encoder backbone (mlp: units; conv: filters, ...).
        decoder_units: widths of the feature decoder's hidden layers (None: the encoder's reversed).
        decoder_filters: channels of the image decoder from its smallest map (None: the encoder's
            reversed).
        discriminator_units: D_AE's MLP widths after the concatenation ((512, 256)).
        discriminator_filters: D_AE's convolutions on images ((32, 64)).
        code_discriminator_units: D_B's SELU MLP widths ((256, 256)).
        seed: seed of the weights, the real codes and the noise.

    Reference: Wang, Liu and Zhao, "Deep Semantic Hashing with Multi-Adversarial Training",
    CIKM 2018.
    """

    def __init__(
        self,
        input_dim,
        bits=BITS,
        variant="gman",
        lambda1=0.2,
        lambda2=0.5,
        lambda3=None,
        variance="paper",
        real_code_probability=0.5,
        noise_stddev=0.1,
        pretrain_steps=0,
        schedule="alternate",
        gate="fake",
        backbone="mlp",
        backbone_options=None,
        decoder_units=None,
        decoder_filters=None,
        discriminator_units=(512, 256),
        discriminator_filters=(32, 64),
        code_discriminator_units=(256, 256),
        seed=None,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; received variant={variant!r}")
        if variance not in VARIANCE_FORMS:
            raise ValueError(f"variance must be one of {VARIANCE_FORMS}; received variance={variance!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; received schedule={schedule!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}; received gate={gate!r}")
        if not 0.0 < float(real_code_probability) < 1.0:
            raise ValueError(
                f"real_code_probability must be in (0, 1); received real_code_probability="
                f"{real_code_probability!r}"
            )
        for name, value in (("lambda1", lambda1), ("lambda2", lambda2), ("noise_stddev", noise_stddev)):
            if not float(value) >= 0.0:
                raise ValueError(f"{name} must be >= 0; received {name}={value!r}")
        if lambda3 is not None and not float(lambda3) >= 0.0:
            raise ValueError(f"lambda3 must be >= 0 or None (ours: see the docstring); received {lambda3!r}")
        self.variant = variant
        self.uses_ae_gan, self.uses_b_gan = variant != "no-aegan", variant != "no-bgan"
        self.roles = ("generator", *("d_ae",) * self.uses_ae_gan, *("d_b",) * self.uses_b_gan)
        self.loss_names = self._loss_names()
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.lambda3 = None if lambda3 is None else float(lambda3)
        self.variance = variance
        self.real_code_probability = float(real_code_probability)
        self.noise_stddev = float(noise_stddev)
        self.pretrain_steps = check_nonnegative_int("pretrain_steps", pretrain_steps)
        self.schedule = schedule
        self.gate = gate
        self.discriminator_units = tuple(discriminator_units)
        self.discriminator_filters = tuple(discriminator_filters)
        self.code_discriminator_units = tuple(code_discriminator_units)

        # === Layers ===
        if backbone == "mlp":
            backbone_options = {"units": (512, 256), **dict(backbone_options or {})}
        self.encoder = self.build_encoder(backbone, backbone_options, seed)
        self.code_layer = keras.layers.Dense(
            bits,
            "tanh",
            kernel_initializer=seeded_initializer("glorot_uniform", seed, 500),
            name="code_layer",
        )
        self.code_layer.build((None, self.encoder.output_dim))
        if self.input_kind == "images":
            filters = getattr(self.encoder, "filters", (32, 64, 128))
            self.decoder_filters = tuple(decoder_filters or tuple(reversed(filters)))
            self.decoder_units = None
            self.decoder = ConvDecoder(
                self.image_shape,
                filters=self.decoder_filters,
                seed=derive_seed(seed, 1, NETWORK_STRIDE),
                name="decoder",
            )
            self.decoder.build((None, bits))
        else:
            self.decoder_filters = None
            self.decoder_units = tuple(decoder_units or tuple(reversed(self.encoder.units)))
            self.decoder = keras.Sequential(
                [
                    MLP(self.decoder_units, seed=derive_seed(seed, 1, NETWORK_STRIDE), name="decoder_hidden"),
                    keras.layers.Dense(
                        input_dim,
                        kernel_initializer=seeded_initializer("glorot_uniform", seed, 501),
                        name="decoder_output",
                    ),
                ],
                name="decoder",
            )
            self.decoder.build((None, bits))
        if self.uses_ae_gan:
            self.pair_image_encoder = None
            pair_dim = input_dim
            if self.input_kind == "images":
                self.pair_image_encoder = ConvEncoder(
                    self.discriminator_filters,
                    batch_norm=False,
                    activation="leaky_relu",
                    seed=derive_seed(seed, 2, NETWORK_STRIDE),
                    name="d_ae_images",
                )
                self.pair_image_encoder.build((None, *self.image_shape))
                pair_dim = self.pair_image_encoder.output_dim
            self.pair_discriminator = keras.Sequential(
                [
                    MLP(
                        self.discriminator_units,
                        "leaky_relu",
                        seed=derive_seed(seed, 3, NETWORK_STRIDE),
                        name="d_ae_hidden",
                    ),
                    keras.layers.Dense(1, name="d_ae_logit"),
                ],
                name="d_ae",
            )
            self.pair_discriminator.build((None, pair_dim + bits))
        if self.uses_b_gan:
            self.code_discriminator = keras.Sequential(
                [
                    MLP(
                        self.code_discriminator_units,
                        "selu",
                        kernel_initializer="lecun_normal",
                        seed=derive_seed(seed, 4, NETWORK_STRIDE),
                        name="d_b_hidden",
                    ),
                    keras.layers.Dense(1, name="d_b_logit"),
                ],
                name="d_b",
            )
            self.code_discriminator.build((None, bits))
        self.built = True

    def _loss_names(self):
        names = ["generator_loss", "reconstruction_distance", "variance_loss", "quantization_distance"]
        if self.uses_ae_gan:
            names += ["d_ae_loss", "ae_adversarial_loss", "d_ae_real_score", "d_ae_fake_score"]
        if self.uses_b_gan:
            names += ["d_b_loss", "code_adversarial_loss", "d_b_real_score", "d_b_fake_score"]
        names += [f"{role}_trained" for role in self.roles]
        return tuple(names)

    def role_variables(self, role):
        if role == "d_ae":
            layers = [self.pair_image_encoder, self.pair_discriminator]
        elif role == "d_b":
            layers = [self.code_discriminator]
        else:
            layers = self.generator_layers()
        return [v for layer in layers if layer is not None for v in layer.trainable_variables]

    def generator_layers(self):
        """The layers the generator's optimiser trains (the auto-encoder; SGMAN adds its classifier)."""
        return [self.encoder, self.code_layer, self.decoder]

    def encode_continuous(self, x, training=False):
        """h in (-1, 1), (B, bits)."""
        return self.code_layer(self.encoder(x, training=training))

    def call(self, x, training=False):
        return tf.cast(self.encode_continuous(x, training=training) > 0, self.compute_dtype)

    def reconstruct(self, features):
        """x~ (n, input_dim) of NumPy features: the decoder of h (for `tfhash train --figure`)."""
        features = check_features(features, self.input_dim, type(self).__name__).astype("float32")
        parts = self.map_batches(
            features, 1024, self.model_input, lambda x: self.decoder(self.encode_continuous(x))
        )
        return np.concatenate(parts).reshape(len(features), self.input_dim)

    def pair_logits(self, x, codes, training=False):
        """D_AE's logit of the pairs (x, h) (x real or reconstructed), (B, 1)."""
        if self.pair_image_encoder is not None:
            x = self.pair_image_encoder(x, training=training)
        return self.pair_discriminator(
            tf.concat([tf.cast(x, codes.dtype), codes], axis=-1), training=training
        )

    def real_codes(self, codes):
        """2 Bernoulli(p) - 1 codes shaped like `codes` (drawn from the model's seed generator)."""
        draws = keras.random.uniform(tf.shape(codes), seed=self.seed_generator)
        return tf.cast(draws < self.real_code_probability, codes.dtype) * 2.0 - 1.0

    def variance_weight(self, codes):
        if self.lambda3 is not None:
            return self.lambda3
        if self.variance != "paper":
            return 1.0
        return 1.0 / tf.square(tf.cast(tf.size(codes), tf.float32))

    def compute_loss_terms(self, inputs, training=False):
        x = inputs[self.input_kind] if isinstance(inputs, dict) else inputs
        codes = self.encode_continuous(x, training=training)
        x_tilde = self.decoder(codes, training=training)
        terms = {
            "reconstruction_distance": l2_distance(x, x_tilde),
            "variance_loss": variance_loss(codes, self.variance),
            "quantization_distance": l2_distance(tf.sign(codes), codes),
        }
        adversarial = tf.cast(self.train_steps >= self.pretrain_steps, tf.float32)
        scores = {}
        generator = self.variance_weight(codes) * terms["variance_loss"]
        objectives = {}
        if self.uses_ae_gan:
            real, fake = self.pair_logits(x, codes, training), self.pair_logits(x_tilde, codes, training)
            terms["d_ae_loss"] = adversarial_loss(real, fake)
            terms["ae_adversarial_loss"] = ali_generator_loss(real, fake)
            terms["d_ae_real_score"], terms["d_ae_fake_score"] = mean_score(real), mean_score(fake)
            generator += self.lambda1 * terms["ae_adversarial_loss"]
            objectives["d_ae"] = terms["d_ae_loss"]
            scores["d_ae"] = self.gate_score(terms["d_ae_real_score"], terms["d_ae_fake_score"])
        else:
            generator += self.lambda1 * terms["reconstruction_distance"]
        if self.uses_b_gan:
            noisy = codes + self.noise_stddev * keras.random.normal(
                tf.shape(codes), seed=self.seed_generator, dtype=codes.dtype
            )
            real, fake = self.code_discriminator(self.real_codes(codes)), self.code_discriminator(noisy)
            terms["d_b_loss"] = adversarial_loss(real, fake)
            terms["code_adversarial_loss"] = binary_cross_entropy_from_logits(1.0, fake)
            terms["d_b_real_score"], terms["d_b_fake_score"] = mean_score(real), mean_score(fake)
            generator += self.lambda2 * terms["code_adversarial_loss"]
            objectives["d_b"] = terms["d_b_loss"]
            scores["d_b"] = self.gate_score(terms["d_b_real_score"], terms["d_b_fake_score"])
        else:
            generator += self.lambda2 * terms["quantization_distance"]
        generator += self.supervised_term(inputs, codes, terms)
        # pre-training: the auto-encoder alone, on the L2 reconstruction distance
        terms["generator_loss"] = (
            adversarial * generator + (1.0 - adversarial) * terms["reconstruction_distance"]
        )
        objectives["generator"] = terms["generator_loss"]
        trained = {role: adversarial * tf.cast(score > 0.5, tf.float32) for role, score in scores.items()}
        any_discriminator = tf.reduce_max(tf.stack([0.0, *trained.values()]))
        if self.schedule == "every_step":
            trained["generator"] = tf.constant(1.0)
        else:
            trained["generator"] = 1.0 - any_discriminator
        terms.update({f"{role}_trained": trained[role] for role in self.roles})
        return terms, objectives

    def gate_score(self, real_score, fake_score):
        """What a discriminator's gate compares with 0.5: its fake score ("fake", the paper), or the
        larger of its fake score and 1 - its real score ("both": also when real data look fake)."""
        if self.gate == "fake":
            return fake_score
        return tf.maximum(fake_score, 1.0 - real_score)

    def supervised_term(self, inputs, codes, terms):
        """The generator's supervised term (SGMAN); 0 here."""
        return 0.0

    def role_gates(self, terms):
        return {role: terms[f"{role}_trained"] > 0.5 for role in self.roles}

    def get_config(self):
        return {
            **super().get_config(),
            "variant": self.variant,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "lambda3": self.lambda3,
            "variance": self.variance,
            "real_code_probability": self.real_code_probability,
            "noise_stddev": self.noise_stddev,
            "pretrain_steps": self.pretrain_steps,
            "schedule": self.schedule,
            "gate": self.gate,
            "backbone": self.backbone,
            "backbone_options": self.backbone_options,
            "decoder_units": None if self.decoder_units is None else list(self.decoder_units),
            "decoder_filters": None if self.decoder_filters is None else list(self.decoder_filters),
            "discriminator_units": list(self.discriminator_units),
            "discriminator_filters": list(self.discriminator_filters),
            "code_discriminator_units": list(self.code_discriminator_units),
        }


@keras.saving.register_keras_serializable(package="tfhash")
class SGMAN(GMAN):
    """Supervised GMAN (Sec. 5.3): GMAN plus a classifier on h, trained with the generator.

    The classifier is a 2-layer MLP (Dense(`classifier_hidden`, ReLU), then
    Dense(classes)) on h, with softmax cross-entropy L_S (multi-hot rows
    normalised to sum 1). The generator adds lambda4 L_S, lambda4 ramped
    linearly from 0 at the end of pre-training to 1 after
    `lambda4_ramp_steps` adversarial steps ("we gradually increase it from
    0 to 1": the ramp's length is ours). Trains on the labelled subset.

    Args:
        num_classes: the number of classes (from the data).
        classifier_hidden: the classifier's hidden width (64, the paper's).
        lambda4_ramp_steps: adversarial steps over which lambda4 goes from 0 to 1.
    """

    needs_labels = True
    needs_num_classes = True

    def __init__(self, input_dim, num_classes=None, classifier_hidden=64, lambda4_ramp_steps=1000, **kwargs):
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.classifier_hidden = check_positive_int("classifier_hidden", classifier_hidden)
        self.lambda4_ramp_steps = check_nonnegative_int("lambda4_ramp_steps", lambda4_ramp_steps)
        super().__init__(input_dim, **kwargs)
        seed = self.seed
        self.classifier = keras.Sequential(
            [
                keras.layers.Dense(
                    self.classifier_hidden,
                    "relu",
                    kernel_initializer=seeded_initializer("glorot_uniform", seed, 510),
                    name="classifier_hidden",
                ),
                keras.layers.Dense(
                    self.num_classes,
                    kernel_initializer=seeded_initializer("glorot_uniform", seed, 511),
                    name="classifier_logits",
                ),
            ],
            name="classifier",
        )
        self.classifier.build((None, self.bits))

    def _loss_names(self):
        return (*super()._loss_names(), "classification_loss", "lambda4")

    def generator_layers(self):
        return [*super().generator_layers(), self.classifier]

    def lambda4(self):
        """lambda4 at this step: 0 during pre-training, then linear to 1 over `lambda4_ramp_steps`."""
        adversarial_steps = tf.cast(self.train_steps - self.pretrain_steps, tf.float32)
        if self.lambda4_ramp_steps == 0:
            return tf.cast(adversarial_steps >= 0, tf.float32)
        return tf.clip_by_value(adversarial_steps / self.lambda4_ramp_steps, 0.0, 1.0)

    def supervised_term(self, inputs, codes, terms):
        terms["classification_loss"] = soft_label_cross_entropy(inputs["labels"], self.classifier(codes))
        terms["lambda4"] = self.lambda4()
        return terms["lambda4"] * terms["classification_loss"]

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "classifier_hidden": self.classifier_hidden,
            "lambda4_ramp_steps": self.lambda4_ramp_steps,
        }
