"""TBH-VAE: twin-bottleneck hashing with variational bottlenecks (Verwilst et al.)."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.layers import GECO
from tfhash.losses import (
    adversarial_loss,
    bernoulli_log_density_matrix,
    gaussian_kl,
    gaussian_log_density_matrix,
    kl_decomposition,
    reconstruction_loss,
)
from tfhash.models.tbh import TBH
from tfhash.seeds import derive_seed

POSTERIORS = ("bernoulli", "gaussian")


@keras.saving.register_keras_serializable(package="tfhash")
class TBHVAE(TBH):
    """TBH whose bottlenecks are VAEs; two switches give the paper's four-way ablation.

    The encoder, binary neuron, graph convolution, decoder and continuous
    discriminator are TBH's (`tfhash.models.TBH`); the switches replace:

    - `binary_vae`: the binary discriminator is dropped and the codes are
      regularised as a VAE latent instead, with the KL to the prior split
      into index-code mutual information + beta * total correlation +
      dimension-wise KL, estimated on the batch (`tfhash.losses.kl_decomposition`).
      Posterior "bernoulli" (default): q(z_k|x) = Bernoulli(sigmoid(logit_k)),
      sampled by TBH's stochastic neuron (eps ~ U(0, 1) makes 1[p > eps] an
      exact Bernoulli(p) draw, so `threshold` must be "uniform"), prior
      Bernoulli(`prior`). Posterior "gaussian" (the authors' code): a
      Gaussian latent z ~ N(mean, exp(log_var)) with an N(0, I) prior, codes
      1[z > 0] with a straight-through gradient; inference codes 1[mean > 0].
    - `geco`: the continuous head becomes a Gaussian VAE, z ~ N(mean,
      exp(log_var)) by reparameterisation (the mean at inference), and the
      reconstruction is a GECO constraint: the actor minimises
      KL(q(z|x) || N(0, I)) + lambda * sum_i (||x_i - x_hat_i||^2 - kappa), with
      lambda from `tfhash.layers.GECO` (updated after every step from the
      constraint C = mean_i ||x_i - x_hat_i||^2 - kappa).

    Scales (TBH's convention): the reconstruction is a sum over the batch
    (0.5 sum ||x - x_hat||^2, or lambda * sum_i (||x_i - x_hat_i||^2 - kappa)
    under GECO) and every regulariser is a batch mean: the adversarial
    terms, the continuous KL and the binary MI / TC / dim-wise KL, which
    thus enter at the scale of the binary adversarial term they replace.
    Measured on digits, 32 bits: with an ELBO's weights (the KL terms summed
    over the batch too) the latents collapsed to their priors: 28 and 32 of
    32 dead bits with both switches on, and MI, TC and dim-wise KL all at 0
    (mAP@all 0.26) with the binary switch alone.

    The binary KL's gradient: by default it reaches the encoder through the
    posterior densities only, the sampled codes being constants
    (`kl_through_samples=False`). Passing it through the samples as well,
    with the stochastic neuron's straight-through derivative (the estimator
    TBH uses for the reconstruction), drove digits mAP@all from 0.54 to 0.20
    in 800 steps (binary switch alone); the dimension-wise KL alone, at
    0.05 nats, did the same (0.17).

    With both switches off the model is TBH exactly (same layers, terms and
    random draws for the same seed).

    kappa: `kappa` if given, else `kappa_fraction` times the mean squared
    distance of the training items to their mean (the squared error of
    reconstructing every item by the data mean), set by `adapt(features)`
    (`tfhash.train.fit` calls it) or, if training starts without it, from
    the first batch. The paper's kappa is 2400 for 4096-d CIFAR-10 fc7.

    Args:
        binary_vae, geco: the two ablation switches (both on: the paper's method).
        beta: weight of the total correlation (the paper gives no value; 4).
        binary_kl_weight: weight of the whole binary KL (MI + beta TC + dim-KL).
        mutual_information_weight: weight of the MI term inside it (1, the paper).
        kl_through_samples: see above (Bernoulli posterior; the Gaussian
            posterior's reparameterised samples always carry the gradient).
        binary_posterior: "bernoulli" or "gaussian".
        prior: Bernoulli prior probability of a 1 bit (0.5).
        kappa, kappa_fraction: the GECO tolerance, or the rule that sets it.
        geco_alpha, geco_update_every: see `tfhash.layers.GECO`.
        **kwargs: `TBH`'s arguments (input_dim, bits, continuous_dim, ...).

    Reference: Verwilst, Zizakic, Gu and Pizurica, "Deep image hashing based
    on twin-bottleneck hashing with variational autoencoders".
    """

    def __init__(
        self,
        input_dim,
        binary_vae=True,
        geco=True,
        beta=4.0,
        binary_kl_weight=1.0,
        mutual_information_weight=1.0,
        kl_through_samples=False,
        binary_posterior="bernoulli",
        prior=0.5,
        kappa=None,
        kappa_fraction=0.25,
        geco_alpha=0.99,
        geco_update_every=100,
        **kwargs,
    ):
        if binary_posterior not in POSTERIORS:
            raise ValueError(f"binary_posterior must be one of {POSTERIORS}; received {binary_posterior!r}")
        if binary_vae and binary_posterior == "bernoulli" and kwargs.get("threshold", "uniform") != "uniform":
            raise ValueError(
                'the binary VAE needs Bernoulli samples: use threshold="uniform" '
                f"(received threshold={kwargs['threshold']!r})"
            )
        if not 0.0 < float(prior) < 1.0:
            raise ValueError(f"prior must be a probability in (0, 1); received prior={prior!r}")
        if kappa is not None and not float(kappa) >= 0.0:
            raise ValueError(f"kappa must be a non-negative number; received kappa={kappa!r}")
        if not float(kappa_fraction) > 0.0:
            raise ValueError(f"kappa_fraction must be positive; received kappa_fraction={kappa_fraction!r}")
        self.binary_vae, self.geco = bool(binary_vae), bool(geco)
        self.beta, self.binary_posterior, self.prior = float(beta), binary_posterior, float(prior)
        self.binary_kl_weight = float(binary_kl_weight)
        self.mutual_information_weight = float(mutual_information_weight)
        self.kl_through_samples = bool(kl_through_samples)
        self.kappa = None if kappa is None else float(kappa)
        self.kappa_fraction = float(kappa_fraction)
        self.geco_alpha, self.geco_update_every = float(geco_alpha), geco_update_every
        self.uses_binary_discriminator = not self.binary_vae
        self.continuous_activation = None if self.geco else "sigmoid"
        self.loss_names = self._loss_names()
        super().__init__(input_dim=input_dim, **kwargs)  # TBH's layers; calls build()

    def build(self, input_shape):
        seed = self.seed

        def dense(units, offset, name):
            init = keras.initializers.GlorotUniform(seed=derive_seed(seed, offset))
            layer = keras.layers.Dense(units, kernel_initializer=init, name=name)
            layer.build((None, self.encoder_dim))
            return layer

        def state(name, value):
            return self.add_state(name, initializer=keras.initializers.Constant(value))

        if self.binary_vae and self.binary_posterior == "gaussian":
            self.binary_log_variance = dense(self.bits, 500, "binary_log_variance")
        if self.geco:
            self.continuous_log_variance = dense(self.continuous_dim, 501, "continuous_log_variance")
            self.geco_multiplier = GECO(
                alpha=self.geco_alpha, update_every=self.geco_update_every, name="geco"
            )
            self.kappa_value = state("kappa", np.nan if self.kappa is None else self.kappa)
        if self.binary_vae:
            self.dataset_size = state("dataset_size", 0.0)
        super().build(input_shape)

    def _loss_names(self):
        names = ["actor_loss", "critic_loss", "reconstruction_loss", "continuous_adversarial_loss"]
        if self.binary_vae:
            names += ["mutual_information", "total_correlation", "dimensionwise_kl"]
        else:
            names += ["binary_adversarial_loss"]
        if self.geco:
            names += ["continuous_kl", "constraint", "constraint_moving_average", "geco_lambda"]
        return tuple(names)

    def role_variables(self, role):
        variables = super().role_variables(role)
        if role == "actor":
            for name in ("binary_log_variance", "continuous_log_variance"):
                if hasattr(self, name):
                    variables += getattr(self, name).trainable_variables
        return variables

    def adapt(self, features):
        """Sets the data set size (for the KL estimator) and, unless given, kappa."""
        features = np.asarray(features, np.float32)
        if self.binary_vae:
            self.dataset_size.assign(float(len(features)))
        if self.geco and self.kappa is None:
            self.kappa_value.assign(self.kappa_fraction * _spread(tf.constant(features, tf.float32)))

    def binary_bottleneck(self, hidden, training=False):
        logits = self.binary_head(hidden)
        if not (self.binary_vae and self.binary_posterior == "gaussian"):
            return {"codes": self.binary_neuron(logits, training=training), "binary_logits": logits}
        log_variance = self.binary_log_variance(hidden)
        sample = logits
        if training:
            noise = keras.random.normal(tf.shape(logits), seed=self.seed_generator, dtype=logits.dtype)
            sample = logits + tf.exp(0.5 * log_variance) * noise
        hard = tf.cast(sample > 0, sample.dtype)
        codes = sample + tf.stop_gradient(hard - sample)  # straight-through sign
        return {
            "codes": codes,
            "binary_logits": logits,
            "binary_log_variance": log_variance,
            "binary_sample": sample,
        }

    def continuous_bottleneck(self, hidden, training=False):
        if not self.geco:
            return super().continuous_bottleneck(hidden, training)
        mean, log_variance = self.continuous_head(hidden), self.continuous_log_variance(hidden)
        sample = mean
        if training:
            noise = keras.random.normal(tf.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
            sample = mean + tf.exp(0.5 * log_variance) * noise
        return {"continuous": sample, "continuous_mean": mean, "continuous_log_variance": log_variance}

    def compute_loss_terms(self, x, training=False):
        out = self.forward(x, training=training)
        x = self.flat(x)  # the decoder reconstructs the flat view (images too)
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        # batch sums (reconstruction) and batch means (regularisers), kept apart for the replica scaling
        terms, sums, means, adversarial = {}, 0.0, 0.0, 0.0
        if self.binary_vae:
            terms.update(self._binary_kl_terms(out))
            kl = self.mutual_information_weight * terms["mutual_information"]
            kl += self.beta * terms["total_correlation"] + terms["dimensionwise_kl"]
            means += self.binary_kl_weight * kl
        else:  # TBH's binary discriminator, drawn before the continuous one as in TBH
            terms["binary_adversarial_loss"] = adversarial_loss(
                *self.binary_discriminator_logits(out["codes"])
            )
            adversarial += terms["binary_adversarial_loss"]
        terms["continuous_adversarial_loss"] = adversarial_loss(
            *self.continuous_discriminator_logits(out["bottleneck"])
        )
        adversarial += terms["continuous_adversarial_loss"]
        terms["reconstruction_loss"] = reconstruction_loss(x, out["x_hat"])
        if self.geco:
            terms.update(self._geco_terms(x, out, 2.0 * terms["reconstruction_loss"] / batch))
            means += terms["continuous_kl"]
            sums += terms["geco_lambda"] * batch * terms["constraint"]
        else:
            sums += terms["reconstruction_loss"]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        terms["actor_loss"] = sums + means - adversarial
        terms["critic_loss"] = adversarial
        return terms, {"actor": sums + (means - adversarial) / replicas, "critic": adversarial / replicas}

    def _binary_kl_terms(self, out):
        if self.binary_posterior == "bernoulli":
            codes = tf.cast(out["codes"], tf.float32)
            if not self.kl_through_samples:
                codes = tf.stop_gradient(codes)
            log_q = bernoulli_log_density_matrix(out["binary_logits"], codes)
            log_prior = codes * np.log(self.prior) + (1.0 - codes) * np.log(1.0 - self.prior)
        else:
            sample = tf.cast(out["binary_sample"], tf.float32)
            log_q = gaussian_log_density_matrix(out["binary_logits"], out["binary_log_variance"], sample)
            log_prior = -0.5 * (np.log(2.0 * np.pi) + tf.square(sample))
        size = tf.where(self.dataset_size > 0, self.dataset_size, tf.cast(tf.shape(log_q)[0], tf.float32))
        return kl_decomposition(log_q, log_prior, dataset_size=size)

    def _geco_terms(self, x, out, squared_error):
        """`squared_error`: the batch mean of ||x_i - x_hat_i||^2 (twice TBH's reconstruction / batch)."""
        if self.kappa is None:  # not adapted: set kappa from the first batch
            self.kappa_value.assign(
                tf.where(
                    tf.math.is_nan(self.kappa_value),
                    self.kappa_fraction * _spread(tf.cast(x, tf.float32)),
                    self.kappa_value,
                )
            )
        return {
            "continuous_kl": gaussian_kl(out["continuous_mean"], out["continuous_log_variance"])
            / tf.cast(tf.shape(x)[0], tf.float32),
            "constraint": squared_error - self.kappa_value,
            "constraint_moving_average": tf.identity(self.geco_multiplier.moving_average),
            "geco_lambda": tf.identity(self.geco_multiplier.multiplier),
        }

    def after_gradients(self, terms):
        if self.geco:
            self.geco_multiplier.update(terms["constraint"])

    def get_config(self):
        return {
            **super().get_config(),
            "binary_vae": self.binary_vae,
            "geco": self.geco,
            "beta": self.beta,
            "binary_kl_weight": self.binary_kl_weight,
            "mutual_information_weight": self.mutual_information_weight,
            "kl_through_samples": self.kl_through_samples,
            "binary_posterior": self.binary_posterior,
            "prior": self.prior,
            "kappa": self.kappa,
            "kappa_fraction": self.kappa_fraction,
            "geco_alpha": self.geco_alpha,
            "geco_update_every": self.geco_update_every,
        }


def _spread(x):
    """Mean squared distance of the rows of x (float32) to their mean."""
    return tf.reduce_mean(tf.reduce_sum(tf.square(x - tf.reduce_mean(x, axis=0)), axis=1))
