"""Loss terms as pure functions of tensors. Models call these; they hold no math."""

import math

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


def mean_score(logits):
    """The batch mean of sigmoid(logits), float32: a discriminator's score."""
    return tf.reduce_mean(tf.sigmoid(tf.cast(logits, tf.float32)))


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


def bernoulli_log_density_matrix(logits, codes):
    """[i, j, k] = log q(z_ik | x_j) for Bernoulli posteriors, float32 (M, M, K).

    q(z_k | x_j) = Bernoulli(sigmoid(logits_jk)); `codes` (M, K) in {0, 1}
    holds one sample z_i per item. Uses log sigmoid(l) and log sigmoid(-l),
    which are finite for any logit.
    """
    logits, codes = tf.cast(logits, tf.float32), tf.cast(codes, tf.float32)
    log_one, log_zero = tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)
    z = codes[:, tf.newaxis, :]
    return z * log_one[tf.newaxis] + (1.0 - z) * log_zero[tf.newaxis]


def gaussian_log_density_matrix(mean, log_variance, samples):
    """[i, j, k] = log N(z_ik; mean_jk, exp(log_variance_jk)), float32 (M, M, K)."""
    mean, log_variance = tf.cast(mean, tf.float32), tf.cast(log_variance, tf.float32)
    z = tf.cast(samples, tf.float32)[:, tf.newaxis, :]
    return -0.5 * (
        math.log(2.0 * math.pi)
        + log_variance[tf.newaxis]
        + tf.square(z - mean[tf.newaxis]) * tf.exp(-log_variance[tf.newaxis])
    )


def kl_decomposition(log_q_matrix, log_prior, dataset_size=None, weighting="importance", reduction="mean"):
    """Chen et al.'s split of the average KL into MI, total correlation and dimension-wise KL.

    With n uniform over the N training items, q(z, n) = q(z | x_n) / N and
    the aggregate posterior q(z) = (1/N) sum_n q(z | x_n) with marginals
    q(z_k), the average KL to a factorised prior p splits exactly as

        E_n KL(q(z|x_n) || p(z)) = I_q(z; n)                      mutual information
                                  + KL(q(z) || prod_k q(z_k))      total correlation
                                  + sum_k KL(q(z_k) || p(z_k))     dimension-wise KL

    (each is E_{q(z,n)} of a log ratio; the log ratios telescope to
    log q(z|x_n) - log p(z)). Chen et al. (2018, Sec. 4.1) estimate the
    expectations with one sample z_i ~ q(z | x_i) per batch item and q(z_i),
    q(z_ik) by minibatch-weighted sampling over the batch's M posteriors:
    log q(z_i) ~ log sum_j w_ij q(z_i | x_j), and the same per dimension.

    Weightings:
        "importance" (default): w_ii = 1/N, w_ij = (N-1) / (N (M-1)) for
            j != i. z_i was drawn from x_i, which is in the batch, so x_i
            stands for itself and the other M-1 items stand for the other N-1
            items of the data set. The sum inside the log is then an unbiased
            estimate of q(z_i), and exact when the batch is the data set
            (N = M, all weights 1/M).
        "chen": w_ij = 1/(NM) for every pair, the formula Chen et al. print.
            For N >> M it lowers every log-density estimate by about log N,
            so MI reads about log N higher, TC (K-1) log N higher and the
            dimension-wise KL K log N lower; the sum is unchanged.

    What the estimate drops: (1) the N - M items outside the batch, stood
    for by the batch members (q(z_i) is estimated inside a log, so each
    term is biased for N > M though consistent); (2) nothing from the sum:
    whatever the weights, MI + TC + dim-KL equals
    mean_i [log q(z_i|x_i) - log p(z_i)] exactly, the one-sample Monte
    Carlo estimate of the average KL, which differs from the analytic KL
    only by zero-mean sampling noise.

    Args:
        log_q_matrix: (M, M, K), [i, j, k] = log q(z_ik | x_j) (see
            `bernoulli_log_density_matrix`, `gaussian_log_density_matrix`).
        log_prior: (M, K), log p(z_ik).
        dataset_size: N; default M (the batch is the data set).
        weighting: "importance" or "chen".
        reduction: "mean" (float32 scalars) or "none" (one value per item, (M,)).

    Returns:
        {"mutual_information", "total_correlation", "dimensionwise_kl"} in nats.

    Reference: Chen et al., "Isolating Sources of Disentanglement in
    Variational Autoencoders", NeurIPS 2018.
    """
    if weighting not in ("importance", "chen"):
        raise ValueError(f'weighting must be "importance" or "chen"; received {weighting!r}')
    if reduction not in ("mean", "none"):
        raise ValueError(f'reduction must be "mean" or "none"; received {reduction!r}')
    log_q_matrix = tf.cast(log_q_matrix, tf.float32)
    log_prior = tf.cast(log_prior, tf.float32)
    batch = tf.cast(tf.shape(log_q_matrix)[0], tf.float32)
    n = batch if dataset_size is None else tf.cast(dataset_size, tf.float32)
    if weighting == "chen":
        log_w = -tf.math.log(n * batch) * tf.ones_like(log_q_matrix[:, :, 0])
    else:
        off = tf.math.log(n - 1.0) - tf.math.log(n) - tf.math.log(tf.maximum(batch - 1.0, 1.0))
        diagonal = tf.eye(tf.shape(log_q_matrix)[0]) > 0
        log_w = tf.where(diagonal, -tf.math.log(n), off)  # where, not a product: off is -inf when N = 1
    log_q_own = tf.reduce_sum(tf.linalg.diag_part(tf.transpose(log_q_matrix, (2, 0, 1))), axis=0)  # (M,)
    log_q_joint = tf.reduce_logsumexp(log_w + tf.reduce_sum(log_q_matrix, axis=2), axis=1)  # (M,)
    log_q_marginals = tf.reduce_sum(
        tf.reduce_logsumexp(log_w[:, :, tf.newaxis] + log_q_matrix, axis=1), axis=1
    )
    log_p = tf.reduce_sum(log_prior, axis=1)
    terms = {
        "mutual_information": log_q_own - log_q_joint,
        "total_correlation": log_q_joint - log_q_marginals,
        "dimensionwise_kl": log_q_marginals - log_p,
    }
    if reduction == "mean":
        terms = {k: tf.reduce_mean(v) for k, v in terms.items()}
    return terms


def gaussian_kl(mean, log_variance):
    """Batch sum of KL(N(mean, exp(log_variance)) || N(0, I)), float32.

    0.5 * sum_ij (mean_ij^2 + exp(log_variance_ij) - 1 - log_variance_ij).
    """
    mean, log_variance = tf.cast(mean, tf.float32), tf.cast(log_variance, tf.float32)
    return 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(log_variance) - 1.0 - log_variance)


PAIR_WEIGHTINGS = ("paper", "fixed", "none")
PAIRINGS = ("halves", "all")


def shared_label_similarity(labels_a, labels_b):
    """s_ij = 1 when row i of `labels_a` and row j of `labels_b` share a label, else 0; float32 (A, B).

    Rows are one-hot or multi-hot: two items are similar when they have at
    least one label in common (HashNet's relevance on NUS-WIDE and COCO).
    """
    a, b = tf.cast(labels_a, tf.float32), tf.cast(labels_b, tf.float32)
    return tf.cast(tf.matmul(a, b, transpose_b=True) > 0, tf.float32)


def hashnet_pair_weights(similarity, mask, weighting="paper", positive_weight=1.0):
    """The pair weights c_ij of HashNet's weighted likelihood, float32 like `similarity`; 0 off `mask`.

    Weightings:
        "paper": Eq. 2, c_ij = |S| / |S1| for similar pairs and |S| / |S0|
            for dissimilar ones, S the pairs of this batch that `mask` keeps
            (counted per batch; a class of pairs absent from the batch gets
            no weight, and the other one weight 1).
        "fixed": `positive_weight` for similar pairs, 1 for dissimilar ones
            (the authors' code: 100 on ImageNet, 5 on NUS-WIDE, 1 on COCO).
        "none": c_ij = 1 (the paper's ablation HashNet-W).

    Args:
        similarity: s_ij in {0, 1}, (A, B).
        mask: 1 for the pairs in S, 0 for pairs left out (e.g. self pairs), (A, B).
        weighting: "paper", "fixed" or "none".
        positive_weight: the similar pairs' weight under "fixed".
    """
    if weighting not in PAIR_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {PAIR_WEIGHTINGS}; received weighting={weighting!r}")
    s, mask = tf.cast(similarity, tf.float32), tf.cast(mask, tf.float32)
    if weighting == "paper":
        pairs = tf.reduce_sum(mask)
        similar = tf.reduce_sum(s * mask)
        positive = tf.math.divide_no_nan(pairs, similar)
        negative = tf.math.divide_no_nan(pairs, pairs - similar)
    elif weighting == "fixed":
        positive, negative = float(positive_weight), 1.0
    else:
        positive, negative = 1.0, 1.0
    return mask * (s * positive + (1.0 - s) * negative)


def weighted_pairwise_likelihood(codes_a, codes_b, similarity, weights, alpha):
    """HashNet's loss (Cao et al. 2017, Eq. 4) over the pairs of `codes_a` x `codes_b`, float32 scalar.

    sum_ij c_ij (log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j>) / sum_ij c_ij:
    the negative weighted log-likelihood of the similarity labels under
    P(s_ij = 1) = sigmoid(alpha <h_i, h_j>), *divided by the sum of the
    weights* (a weighted mean over pairs; 0 when every weight is 0).

    log(1 + exp(x)) is computed as softplus(x) = max(x, 0) + log(1 + exp(-|x|)),
    exact and finite for any x (the naive form overflows to inf in float32
    above x = 88). The authors' code replaces it by x above x = 15 instead,
    an approximation our exact form does not need.

    Args:
        codes_a: (A, K) codes h_i (tanh(beta z) in training, or {-1, +1}).
        codes_b: (B, K) codes h_j.
        similarity: s_ij in {0, 1}, (A, B).
        weights: c_ij >= 0, (A, B) (`hashnet_pair_weights`).
        alpha: the adaptive sigmoid's bandwidth.
    """
    a, b = tf.cast(codes_a, tf.float32), tf.cast(codes_b, tf.float32)
    s, w = tf.cast(similarity, tf.float32), tf.cast(weights, tf.float32)
    inner = alpha * tf.matmul(a, b, transpose_b=True)  # (A, B) alpha <h_i, h_j>
    per_pair = tf.nn.softplus(inner) - s * inner
    return tf.math.divide_no_nan(tf.reduce_sum(w * per_pair), tf.reduce_sum(w))


def hashnet_loss(codes, labels, alpha, weighting="paper", positive_weight=1.0, pairs="halves"):
    """HashNet's weighted pairwise loss of one batch (`weighted_pairwise_likelihood`), float32 scalar.

    Pairs:
        "halves": the first floor(B / 2) items against the rest, every cross
            pair once, no item paired with itself (the authors' code, which
            feeds two half batches).
        "all": every pair i < j of the batch.

    Args:
        codes: (B, K) training codes.
        labels: (B, C) one- or multi-hot label rows.
        alpha: the adaptive sigmoid's bandwidth (the authors' code: 10 / K).
        weighting, positive_weight: see `hashnet_pair_weights`.
        pairs: "halves" or "all".
    """
    if pairs not in PAIRINGS:
        raise ValueError(f"pairs must be one of {PAIRINGS}; received pairs={pairs!r}")
    if pairs == "halves":
        half = tf.shape(codes)[0] // 2
        codes_a, codes_b, labels_a, labels_b = codes[:half], codes[half:], labels[:half], labels[half:]
        similarity = shared_label_similarity(labels_a, labels_b)
        mask = tf.ones_like(similarity)
    else:
        codes_a = codes_b = codes
        similarity = shared_label_similarity(labels, labels)
        mask = tf.linalg.band_part(tf.ones_like(similarity), 0, -1) - tf.eye(tf.shape(codes)[0])  # i < j
    weights = hashnet_pair_weights(similarity, mask, weighting, positive_weight)
    return weighted_pairwise_likelihood(codes_a, codes_b, similarity, weights, alpha)


def bernoulli_kl_from_logits(logits, rho=0.5):
    """KL(Bernoulli(sigmoid(l)) || Bernoulli(rho)) summed over bits, averaged over the batch; float32.

    With q = sigmoid(l), log q = -softplus(-l) and log(1 - q) = -softplus(l),
    so q log q + (1 - q) log(1 - q) = q l - softplus(l), and the KL is
    q l - softplus(l) - q log rho - (1 - q) log(1 - rho): finite for any
    logit (at l = +-100 it is log 2 for rho = 0.5), where the form with
    log q and log(1 - q) gives 0 * log 0 = NaN once q saturates.
    """
    logits = tf.cast(logits, tf.float32)
    q = tf.sigmoid(logits)
    kl = q * logits - tf.nn.softplus(logits) - q * math.log(rho) - (1.0 - q) * math.log(1.0 - rho)
    return tf.reduce_mean(tf.reduce_sum(kl, axis=-1))


def soft_label_cross_entropy(labels, logits):
    """Softmax cross-entropy against label rows normalised to sum 1, averaged over the batch; float32.

    A multi-hot row with m labels becomes the target 1/m on each of them;
    an all-zero row contributes 0.
    """
    labels, logits = tf.cast(labels, tf.float32), tf.cast(logits, tf.float32)
    target = tf.math.divide_no_nan(labels, tf.reduce_sum(labels, axis=-1, keepdims=True))
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=logits))


def jmlh_loss_terms(labels, class_logits, code_logits, kl_weight=0.2):
    """Every loss term of JMLH (Shen et al. 2019), a dict of float32 scalars.

    loss = cross-entropy of the classifier on the codes
           + kl_weight * KL(Bernoulli(sigmoid(code_logits)) || Bernoulli(0.5)),
    the KL summed over bits and averaged over the batch.
    """
    cross_entropy = soft_label_cross_entropy(labels, class_logits)
    kl = bernoulli_kl_from_logits(code_logits, 0.5)
    return {"loss": cross_entropy + kl_weight * kl, "cross_entropy_loss": cross_entropy, "kl_loss": kl}


VARIANCE_FORMS = ("paper", "per_element", "centred")


def l2_distance(a, b):
    """Batch mean of the per-item Euclidean distance ||a_i - b_i||_2, float32 scalar.

    GMAN's norm losses as written (Wang et al. 2018, Eq. 3 and Eq. 15): the
    distance itself, not its square. Items are the first axis; every other
    axis is flattened.
    """
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    difference = tf.reshape(a - b, (tf.shape(a)[0], -1))
    # sqrt(x + tiny) - sqrt(tiny): the same value, and a finite gradient at a distance of 0
    return tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(difference), axis=-1) + 1e-12) - 1e-6)


def ali_generator_loss(real_logits, fake_logits):
    """The generator's AE-GAN term in the ALI form (GMAN Eq. 6), to be minimised; float32 scalar.

    -E log(1 - D(x, h)) - E log D(x~, h): the encoder is rewarded when the
    pair of a real item and its code looks fake, the decoder when the
    reconstruction and the code look real. D = sigmoid(logits), each
    expectation a batch mean, computed from logits (never log 0). The
    extracted Eq. 6 says "maximize"; minimised is the form that pushes D's
    two inputs together (Donahue et al.; Dumoulin et al.).
    """
    return binary_cross_entropy_from_logits(0.0, real_logits) + binary_cross_entropy_from_logits(
        1.0, fake_logits
    )


def variance_loss(codes, form="paper"):
    """GMAN's variance loss L_V (Eq. 11-12) of a batch of codes H (m, b) in (-1, 1); float32 scalar.

    Forms:
        "paper": (Var(B) - Var(H))^2 with Var(H) = trace(H^T H) = sum_ij h_ij^2
            and Var(B) = m b, as written. Uncentred: a batch whose codes are
            all the same +-1 vector scores exactly 0, so it drives |h| to 1
            and does not measure diversity. Unnormalised: (m b)^2 at h = 0
            (about 6e5 at m = 16, b = 48).
        "per_element": the same divided by (m b)^2, (1 - mean h_ij^2)^2:
            1 at h = 0, 0 at |h| = 1, whatever the batch and code sizes
            (as uncentred as the paper's).
        "centred": (1 - mean_ij (h_ij - hbar_j)^2)^2 with hbar_j the batch
            mean of bit j: the per-element variance around each bit's mean,
            against the variance 1 of balanced +-1 codes. A constant batch
            scores 1, balanced +-1 codes 0: it does penalise collapse.
    """
    if form not in VARIANCE_FORMS:
        raise ValueError(f"variance must be one of {VARIANCE_FORMS}; received variance={form!r}")
    h = tf.cast(codes, tf.float32)
    if form == "centred":
        h = h - tf.reduce_mean(h, axis=0, keepdims=True)
    if form == "paper":
        elements = tf.cast(tf.size(h), tf.float32)  # m b
        return tf.square(elements - tf.reduce_sum(tf.square(h)))
    return tf.square(1.0 - tf.reduce_mean(tf.square(h)))


def neighbour_structure_loss(codes, similarity, self_pairs=False, scaled=True):
    """BGAN's neighbour structure loss (Song et al. 2018, Eq. 10) over the pairs of a batch; float32.

    0.5 sum_ij (<b_i, b_j> / L - s_ij)^2 with s_ij in {-1, +1} (the neighbour
    graph's) and L the code length; the sum runs over the ordered pairs
    i != j of the batch, and over i == j too with `self_pairs` (the
    authors' code, where s_ii = 1). `scaled=False` drops the 1 / L (the
    authors' code). A sum, as written, not a mean: it grows with the batch.

    Args:
        codes: (B, L) codes b in [-1, 1] (app(beta z) or tanh(beta z) in training).
        similarity: (B, B) s_ij in {-1, +1}.
    """
    b = tf.cast(codes, tf.float32)
    s = tf.cast(similarity, tf.float32)
    inner = tf.matmul(b, b, transpose_b=True)
    if scaled:
        inner = inner / tf.cast(tf.shape(b)[1], tf.float32)
    squared = tf.square(inner - s)
    if not self_pairs:
        squared = squared * (1.0 - tf.eye(tf.shape(b)[0]))
    return 0.5 * tf.reduce_sum(squared)


SIMILARITY_PAIRS = ("all", "halves")


def _unit_rows(x, eps=1e-12):
    x = tf.cast(x, tf.float32)
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), eps)


def similarity_preserving_loss(codes, features, pairs="all"):
    """Mean squared difference between the cosine similarities of codes and of input features; float32.

    pairs="all" (GreedyHash's unsupervised loss): over every entry of the
    two B x B cosine matrices, the diagonal included (both 1 there), i.e.
    mean_ij (cos(b_i, b_j) - cos(x_i, x_j))^2. pairs="halves" (BiHalf's):
    item i of the first half of the batch against item i of the second,
    mean_i (cos(b_i, b_{i+B/2}) - cos(x_i, x_{i+B/2}))^2 over floor(B / 2)
    pairs (an odd batch's last item sits out). A zero row has cosine 0.
    """
    if pairs not in SIMILARITY_PAIRS:
        raise ValueError(f"pairs must be one of {SIMILARITY_PAIRS}; received pairs={pairs!r}")
    b, x = _unit_rows(codes), _unit_rows(features)
    if pairs == "all":
        return tf.reduce_mean(
            tf.square(tf.matmul(b, b, transpose_b=True) - tf.matmul(x, x, transpose_b=True))
        )
    half = tf.shape(b)[0] // 2
    cos_b = tf.reduce_sum(b[:half] * b[half : 2 * half], axis=1)
    cos_x = tf.reduce_sum(x[:half] * x[half : 2 * half], axis=1)
    return tf.reduce_mean(tf.square(cos_b - cos_x))


def cubic_penalty(h):
    """GreedyHash's penalty mean | |h| - 1 |^3 (weighted 0.1 by the method), float32."""
    return tf.reduce_mean(tf.abs(tf.abs(tf.cast(h, tf.float32)) - 1.0) ** 3)
