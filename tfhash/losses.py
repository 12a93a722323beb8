"""Loss terms as pure functions of tensors. Models call these; they hold no math."""

import tensorflow as tf


def reconstruction_loss(x, x_hat):
    """Half the batch *sum* of squared errors, 0.5 * sum_ij (x_ij - x_hat_ij)^2.

    TBH (Shen et al. 2020, Eq. 8) as the authors compute it: a sum over the
    whole batch, not a per-sample mean, which keeps the adversarial terms
    comparatively small. Computed in float32.
    """
    x, x_hat = tf.cast(x, tf.float32), tf.cast(x_hat, tf.float32)
    return 0.5 * tf.reduce_sum(tf.square(x - x_hat))


def binary_cross_entropy_from_logits(target, logits):
    """Mean over all elements of BCE(target, sigmoid(logits)), in float32."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.fill(tf.shape(logits), tf.cast(target, tf.float32))
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def adversarial_loss(real_logits, fake_logits):
    """BCE(1, D(real)) + BCE(0, D(fake)), each averaged over the batch.

    D(.) = sigmoid(logits): the discriminators of TBH are Dense(1, sigmoid); we
    keep their pre-sigmoid logits and use the log-sum-exp form of the same
    cross-entropy, which is exact and never takes log(0).
    """
    return binary_cross_entropy_from_logits(1.0, real_logits) + binary_cross_entropy_from_logits(
        0.0, fake_logits
    )


def tbh_loss_terms(x, x_hat, binary_real_logits, binary_fake_logits, cont_real_logits, cont_fake_logits):
    """Every loss term of TBH (Shen et al. 2020, Eqs. 8-10), a dict of float32 scalars.

    actor_loss  = reconstruction - adv_binary - adv_continuous (encoder, graph
                  layer and decoder minimise it);
    critic_loss = adv_binary + adv_continuous (both discriminators minimise it).
    """
    recon = reconstruction_loss(x, x_hat)
    adv_binary = adversarial_loss(binary_real_logits, binary_fake_logits)
    adv_continuous = adversarial_loss(cont_real_logits, cont_fake_logits)
    return {
        "reconstruction_loss": recon,
        "binary_adversarial_loss": adv_binary,
        "continuous_adversarial_loss": adv_continuous,
        "actor_loss": recon - adv_binary - adv_continuous,
        "critic_loss": adv_binary + adv_continuous,
    }
