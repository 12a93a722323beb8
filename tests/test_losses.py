import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import (
    adversarial_loss,
    bernoulli_kl,
    code_hidden_distance,
    epsilon_insensitive_redundancy,
    reconstruction_loss,
    redundancy_combination,
    redundancy_residuals,
    tbh_loss_terms,
)


def bce(target, prob):
    return -(target * np.log(prob) + (1 - target) * np.log(1 - prob))


def test_reconstruction_is_half_the_batch_sum():
    x = tf.constant([[1.0, 2.0], [0.0, 1.0]])
    x_hat = tf.constant([[0.0, 2.0], [2.0, 1.0]])
    # 0.5 * (1 + 0 + 4 + 0) = 2.5, a sum over the batch (not a mean)
    assert float(reconstruction_loss(x, x_hat)) == pytest.approx(2.5)


def test_adversarial_is_sum_of_two_batch_means():
    real, fake = np.array([[0.0], [2.0]]), np.array([[1.0], [-1.0]])
    sig = lambda z: 1 / (1 + np.exp(-z))
    want = np.mean(bce(1, sig(real))) + np.mean(bce(0, sig(fake)))
    # by hand: real -> (log 2 + log(1 + e^-2)) / 2, fake -> (log(1 + e) + log(1 + e^-1)) / 2
    by_hand = (np.log(2) + np.log1p(np.exp(-2))) / 2 + (np.log1p(np.e) + np.log1p(np.exp(-1))) / 2
    assert want == pytest.approx(by_hand)
    assert float(
        adversarial_loss(tf.constant(real, tf.float32), tf.constant(fake, tf.float32))
    ) == pytest.approx(by_hand, rel=1e-6)


def test_tbh_terms_combine_as_actor_and_critic():
    x, x_hat = tf.constant([[1.0]]), tf.constant([[0.0]])
    zero = tf.zeros((1, 1))
    terms = tbh_loss_terms(x, x_hat, zero, zero, zero, zero)
    adv = 2 * np.log(2)  # D = 0.5 everywhere: BCE = log 2 twice
    assert float(terms["binary_adversarial_loss"]) == pytest.approx(adv, rel=1e-6)
    assert float(terms["actor_loss"]) == pytest.approx(0.5 - 2 * adv, rel=1e-6)
    assert float(terms["critic_loss"]) == pytest.approx(2 * adv, rel=1e-6)


def test_losses_are_float32_under_bfloat16_inputs():
    x = tf.constant([[1.0, 2.0]], tf.bfloat16)
    assert reconstruction_loss(x, x * 0).dtype == tf.float32
    assert adversarial_loss(tf.zeros((2, 1), tf.bfloat16), tf.zeros((2, 1), tf.bfloat16)).dtype == tf.float32


class RedundancyTest:
    def test_closed_form_combination_matches_gradient_descent(self):
        rng = np.random.default_rng(0)
        z = (rng.random((40, 6)) < 0.4).astype(np.float64)
        z[:, 5] = z[:, 0]  # a redundant bit
        ridge = 0.5
        closed = redundancy_combination(tf.constant(z, tf.float32), ridge).numpy()
        mask = 1.0 - np.eye(6)
        gram = z.T @ z
        step = 1.0 / (2 * (np.linalg.eigvalsh(gram).max() + ridge))
        a = np.zeros((6, 6))
        for _ in range(20000):  # projected gradient descent on ||Z - Z A||^2 + ridge ||A||^2, diag(A) = 0
            a -= step * mask * (2 * (gram @ a - gram) + 2 * ridge * a)
        np.testing.assert_allclose(closed, a, atol=1e-5)
        np.testing.assert_array_equal(np.diag(closed), np.zeros(6))
        assert closed[0, 5] > 0.5  # bit 5 is explained by bit 0

    def test_epsilon_insensitive_value_and_gradient_by_hand(self):
        z = tf.constant([[1.0, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
        a = tf.constant([[0.0, 0, 0.9], [0, 0, 0], [0, 0, 0]])  # bit 2 ~ 0.9 * bit 0
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = epsilon_insensitive_redundancy(z, a, epsilon=0.05)
        # ||r_0||^2 = ||r_1||^2 = 2 (capped at 0.05); r_2 = z_2 - 0.9 z_0 = 0.1 z_0 -> 0.02
        np.testing.assert_allclose(redundancy_residuals(z, a).numpy(), [2.0, 2.0, 0.02], rtol=1e-6)
        assert float(value) == pytest.approx(0.05 + 0.05 + 0.02, rel=1e-6)
        # only bit 2 is below epsilon: d/dZ ||Z (e_2 - a_2)||^2 = 2 r_2 (e_2 - a_2)^T
        row = [2 * 0.1 * -0.9, 0.0, 2 * 0.1]
        np.testing.assert_allclose(
            tape.gradient(value, z).numpy(), [row, [0, 0, 0], row, [0, 0, 0]], atol=1e-6
        )

    def test_code_hidden_distance(self):
        assert float(code_hidden_distance(tf.constant([[1.0, 0]]), tf.constant([[0.5, 0.5]]))) == 0.5


def test_bernoulli_kl_by_hand():
    # KL(Bern(0.5) || Bern(0.5)) = 0; KL(Bern(0.9) || Bern(0.5)) = 0.9 ln 1.8 + 0.1 ln 0.2
    got = float(bernoulli_kl(tf.constant([[0.5, 0.9]]), rho=0.5))
    assert got == pytest.approx(0.9 * np.log(1.8) + 0.1 * np.log(0.2), abs=1e-6)
    assert float(bernoulli_kl(tf.constant([[0.0, 1.0]]))) == pytest.approx(2 * np.log(2), abs=1e-5)
