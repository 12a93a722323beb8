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


def bernoulli_kl(probs, rho=0.5):
    """Batch sum of KL(Bernoulli(probs) || Bernoulli(rho)) over every bit, in float32.

    The prior term of SGH's negative ELBO (Dai et al. 2017, Eq. 4):
    sum_ij p_ij log(p_ij / rho) + (1 - p_ij) log((1 - p_ij) / (1 - rho)),
    computed analytically from the encoder's probabilities (the expectation
    of the sampled log q(z|x) - log p(z)). With rho = 0.5 it is
    bits * log 2 minus the codes' entropy, so minimising it keeps bits
    uncertain unless the reconstruction needs them.
    """
    p = tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1.0 - 1e-7)
    return tf.reduce_sum(p * tf.math.log(p / rho) + (1.0 - p) * tf.math.log((1.0 - p) / (1.0 - rho)))


def redundancy_combination(codes, ridge=1e-2):
    """R-SGH's closed-form combination matrix A (Du et al. 2018, Eqs. 10-11).

    A = argmin_A ||Z - Z A||_F^2 + ridge ||A||_F^2 subject to diag(A) = 0,
    for codes Z (B, K). Column k is a ridge regression of bit k on the other
    bits. Derivation: with G = Z^T Z + ridge I, the stationarity condition of
    the Lagrangian for column a_k with multiplier mu on e_k^T a_k = 0 is
    G a_k = Z^T z_k - mu e_k = G e_k - (ridge + mu) e_k, so
    a_k = e_k - c G^-1 e_k, and a_kk = 0 fixes c = 1 / (G^-1)_kk. Hence
    A = I - D diag(D)^-1 with D = G^-1: off the diagonal A_jk = -D_jk / D_kk
    (the minus sign the extracted paper lost), on it 0. O(K^3), float64.

    Returns:
        A, float32 (K, K), treated as a constant (no gradient).
    """
    z = tf.cast(tf.stop_gradient(codes), tf.float64)
    k = tf.shape(z)[1]
    d = tf.linalg.inv(tf.matmul(z, z, transpose_a=True) + ridge * tf.eye(k, dtype=tf.float64))
    a = tf.eye(k, dtype=tf.float64) - d / tf.linalg.diag_part(d)[tf.newaxis, :]
    return tf.cast(tf.linalg.set_diag(a, tf.zeros(k, tf.float64)), tf.float32)


def redundancy_residuals(codes, combination):
    """||r_k||^2 per bit, float32 (K,): the columns of R = Z - Z A summed over the batch.

    A small ||r_k||^2 means bit k is (nearly) a linear combination of the
    other bits: redundant.
    """
    z = tf.cast(codes, tf.float32)
    return tf.reduce_sum(tf.square(z - tf.matmul(z, tf.cast(combination, tf.float32))), axis=0)


def epsilon_insensitive_redundancy(codes, combination, epsilon=0.05):
    """sum_k min(||r_k||^2, epsilon): R-SGH's redundancy term (Du et al. 2018, Eq. 8).

    The encoder *maximises* delta times this (its loss has it with a minus
    sign): a bit whose residual is below epsilon (nearly redundant) is pushed
    to become unpredictable from the others; a bit above epsilon gets no
    gradient, which keeps the unbounded residual from dominating the ELBO.
    Residuals are batch sums, as in the paper (R = Z - Z A over the batch).
    """
    return tf.reduce_sum(tf.minimum(redundancy_residuals(codes, combination), epsilon))


def code_hidden_distance(codes, hidden):
    """||Z - H^(M)||_F^2 over the batch: codes close to the last real-valued decoder layer (R-SGH)."""
    return tf.reduce_sum(tf.square(tf.cast(codes, tf.float32) - tf.cast(hidden, tf.float32)))
