import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import GraphConvolution, StochasticBinary, binarize, hamming_adjacency, normalize_adjacency


class StochasticBinaryTest:
    def test_inference_thresholds_at_one_half(self):
        logits = tf.constant([[-2.0, -0.01, 0.01, 3.0]])
        layer = StochasticBinary(threshold="uniform", seed=0)
        assert layer(logits, training=False).numpy().tolist() == [[0, 0, 1, 1]]

    def test_training_threshold_is_uniform_and_seeded(self):
        logits = tf.zeros((2000, 8))  # p = 0.5 -> each bit is 1 with probability 0.5
        a = StochasticBinary(seed=3)(logits, training=True).numpy()
        b = StochasticBinary(seed=3)(logits, training=True).numpy()
        assert np.array_equal(a, b)
        assert set(np.unique(a)) == {0.0, 1.0}
        assert abs(a.mean() - 0.5) < 0.02

    def test_fixed_threshold_as_in_authors_code(self):
        logits = tf.constant([[np.log(0.6 / 0.4), np.log(0.4 / 0.6)]], tf.float32)
        layer = StochasticBinary(threshold=0.5)
        assert layer(logits, training=True).numpy().tolist() == [[1, 0]]

    def test_gradient_matches_distributional_derivative(self):
        logits = tf.constant([[-1.5, 0.2, 2.0]])
        upstream = tf.constant([[0.3, -1.0, 2.0]])
        layer = StochasticBinary(seed=1)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            probs = tf.sigmoid(logits)
            loss = tf.reduce_sum(layer(logits, training=True) * upstream) + tf.reduce_sum(probs * 0.5)
        p = tf.sigmoid(logits).numpy()
        # d/dlogits = p (1 - p) (grad_codes + grad_probs)
        np.testing.assert_allclose(
            tape.gradient(loss, logits), p * (1 - p) * (upstream.numpy() + 0.5), rtol=1e-6
        )

    def test_binarize_gradients_wrt_probs_and_eps(self):
        probs, eps = tf.constant([0.2, 0.7]), tf.constant([0.5, 0.5])
        with tf.GradientTape() as tape:
            tape.watch([probs, eps])
            codes = binarize(probs, eps)
            loss = tf.reduce_sum(codes * tf.constant([2.0, 3.0]))
        d_probs, d_eps = tape.gradient(loss, [probs, eps])
        assert codes.numpy().tolist() == [0, 1]
        assert d_probs.numpy().tolist() == [2.0, 3.0]
        assert d_eps.numpy().tolist() == [-2.0, -3.0]

    def test_config_round_trip_and_validation(self):
        layer = StochasticBinary(threshold=0.5, seed=7, name="sb")
        clone = StochasticBinary.from_config(layer.get_config())
        assert (clone.threshold, clone.seed, clone.name) == (0.5, 7, "sb")
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert isinstance(restored, StochasticBinary)
        with pytest.raises(ValueError, match="threshold"):
            StochasticBinary(threshold=1.5)


class GraphConvolutionTest:
    def test_adjacency_matches_hamming_formula(self):
        codes = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
        hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
        want = (1 - hamming / 4) ** 1.4
        np.testing.assert_allclose(hamming_adjacency(codes, 1.4), want, rtol=1e-6)
        assert np.allclose(np.diag(want), 1.0)

    def test_adjacency_is_differentiable_in_codes(self):
        codes = tf.constant([[0.0, 1.0], [1.0, 1.0]])
        with tf.GradientTape() as tape:
            tape.watch(codes)
            total = tf.reduce_sum(hamming_adjacency(codes))
        grad = tape.gradient(total, codes).numpy()
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)

    def test_layer_matches_normalised_propagation(self):
        rng = np.random.default_rng(0)
        features = rng.normal(size=(5, 3)).astype(np.float32)
        adjacency = rng.uniform(size=(5, 5)).astype(np.float32)
        layer = GraphConvolution(4, activation="sigmoid")
        out = layer(features, adjacency).numpy()
        kernel, bias = (w.numpy() for w in layer.dense.weights)
        d = 1 / np.sqrt(adjacency.sum(1) + 1e-8)
        want = 1 / (1 + np.exp(-(d[:, None] * adjacency * d[None, :]) @ (features @ kernel + bias)))
        np.testing.assert_allclose(out, want, rtol=1e-5)
        np.testing.assert_allclose(
            normalize_adjacency(adjacency), d[:, None] * adjacency * d[None, :], rtol=1e-6
        )

    def test_dense_receives_gradient(self):
        layer = GraphConvolution(4)
        features, adjacency = tf.ones((3, 2)), tf.ones((3, 3))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(features, adjacency) ** 2)
        grads = tape.gradient(loss, layer.trainable_variables)
        assert len(grads) == 2 and all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)

    def test_config_round_trip(self):
        layer = GraphConvolution(6, activation="relu")
        clone = GraphConvolution.from_config(layer.get_config())
        assert clone.units == 6 and clone.activation is keras.activations.relu
        with pytest.raises(ValueError, match="units"):
            GraphConvolution(0)
