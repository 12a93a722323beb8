import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import adversarial_loss, reconstruction_loss, tbh_loss_terms


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
