"""GreedyHash and BiHalf (issue 19): the binarisations' values and gradients, the losses by hand, the
models' round trips and a short training run on digits."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tfhash import registry
from tfhash.data import load_data
from tfhash.layers import BiHalf as BiHalfLayer
from tfhash.layers import GreedySign, bihalf, greedy_sign
from tfhash.losses import cubic_penalty, similarity_preserving_loss
from tfhash.models import BiHalf, GreedyHash
from tfhash.testing import assert_export_round_trip, random_code_map
from tfhash.train import fit


class BinarizationTest:
    def test_greedy_sign_is_sign_forward_and_straight_through_backward(self):
        h = tf.constant([[-2.0, -0.1, 0.0, 0.4]])
        upstream = tf.constant([[0.5, -1.0, 2.0, 3.0]])
        with tf.GradientTape() as tape:
            tape.watch(h)
            b = greedy_sign(h)
            loss = tf.reduce_sum(b * upstream)
        assert b.numpy().tolist() == [[-1.0, -1.0, 1.0, 1.0]]
        np.testing.assert_array_equal(tape.gradient(loss, h).numpy(), upstream.numpy())
        assert GreedySign()(h).numpy().tolist() == [[-1.0, -1.0, 1.0, 1.0]]

    def test_bihalf_splits_each_bit_at_the_batch_median_with_ties_by_position(self):
        h = tf.constant([[0.3, 1.0], [-0.2, 1.0], [0.9, 1.0], [0.1, 1.0]])
        b = bihalf(h).numpy()
        # bit 0: the two largest (0.9, 0.3) -> +1; bit 1: all tied -> the first two items
        np.testing.assert_array_equal(b, [[1, 1], [-1, 1], [1, -1], [-1, -1]])
        h = tf.constant(np.random.default_rng(0).normal(size=(10, 7)), tf.float32)
        assert np.all(bihalf(h).numpy().sum(0) == 0)  # exactly half of an even batch is +1 in every bit
        odd = bihalf(h[:9]).numpy()
        assert np.all((odd == 1).sum(0) == 4)  # floor(9 / 2) ones

    def test_bihalf_gradient_adds_gamma_h_minus_b_over_numel(self):
        h = tf.constant([[0.3, -0.5], [-0.2, 0.7], [0.9, 0.1], [0.1, -1.2]])
        upstream = tf.constant(np.arange(8, dtype=np.float32).reshape(4, 2) - 3)
        with tf.GradientTape() as tape:
            tape.watch(h)
            b = bihalf(h, gamma=6.0)
            loss = tf.reduce_sum(b * upstream)
        expected = upstream.numpy() + 6.0 * (h.numpy() - b.numpy()) / 8
        np.testing.assert_allclose(tape.gradient(loss, h).numpy(), expected, rtol=1e-6)

    def test_bihalf_layer_splits_in_training_and_takes_the_sign_at_inference(self):
        h = tf.constant([[0.3], [0.2], [0.9], [0.1]])  # all positive
        layer = BiHalfLayer()
        assert layer(h, training=True).numpy().ravel().tolist() == [1, -1, 1, -1]
        assert layer(h, training=False).numpy().ravel().tolist() == [1, 1, 1, 1]
        with pytest.raises(ValueError, match="gamma"):
            BiHalfLayer(gamma=-1)


class LossTest:
    def test_similarity_losses_by_hand_on_3_items(self):
        b = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], np.float32)
        x = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
        cos_b = np.array([[1, 0, -1], [0, 1, 0], [-1, 0, 1]], np.float64)
        r = 1 / np.sqrt(2)
        cos_x = np.array([[1, r, 0], [r, 1, 0], [0, 0, 1]])
        assert float(similarity_preserving_loss(b, x, "all")) == pytest.approx(np.mean((cos_b - cos_x) ** 2))
        # halves: floor(3 / 2) = 1 pair, item 0 against item 1
        assert float(similarity_preserving_loss(b, x, "halves")) == pytest.approx((0 - r) ** 2, rel=1e-6)
        with pytest.raises(ValueError, match="pairs must be one of"):
            similarity_preserving_loss(b, x, "some")

    def test_cubic_penalty_by_hand(self):
        h = np.array([[0.0, 1.0], [2.5, -0.5]], np.float32)
        assert float(cubic_penalty(h)) == pytest.approx((1 + 0 + 1.5**3 + 0.5**3) / 4)


SMALL = {"input_dim": 10, "bits": 6, "seed": 0}


def features(n=12):
    return np.random.default_rng(0).uniform(size=(n, 10)).astype(np.float32)


class ModelTest:
    def test_greedyhash_loss_by_hand(self):
        model = GreedyHash(**SMALL, alpha=0.3)
        x = features()
        terms, objectives = model.compute_loss_terms(tf.constant(x), training=True)
        h = model.hash_outputs(x).numpy()
        b = np.where(h >= 0, 1.0, -1.0)
        unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
        similarity = np.mean((unit(b) @ unit(b).T - unit(x) @ unit(x).T) ** 2)
        penalty = np.mean(np.abs(np.abs(h) - 1) ** 3)
        assert float(objectives["encoder"]) == pytest.approx(similarity + 0.3 * penalty, rel=1e-5)
        assert float(terms["cubic_penalty"]) == pytest.approx(penalty, rel=1e-5)

    @pytest.mark.parametrize(
        "cls, options", [(GreedyHash, {}), (BiHalf, {}), (BiHalf, {"objective": "autoencoder"})]
    )
    def test_every_variable_gets_a_gradient(self, cls, options):
        model = cls(**SMALL, **options)
        with tf.GradientTape() as tape:
            _, objectives = model.compute_loss_terms(tf.constant(features()), training=True)
        grads = tape.gradient(objectives["encoder"], model.role_variables("encoder"))
        assert len(grads) == len(model.trainable_variables) > 0
        assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)

    def test_bihalf_autoencoder_is_784_256_k_256_784_on_binarised_pixels(self):
        model = BiHalf(input_dim=784, bits=16, seed=0, objective="autoencoder")
        assert model.backbone == "mlp" and model.backbone_options == {"units": [256]}
        widths = [v.shape[-1] for v in model.trainable_variables if len(v.shape) == 2]
        assert widths == [256, 16, 256, 784]
        x = np.random.default_rng(0).uniform(size=(8, 784)).astype(np.float32)
        terms, _ = model.compute_loss_terms(tf.constant(x), training=True)
        assert float(terms["bit_mean"]) == 0.0  # the median split: half +1, half -1
        codes = model.binarize(model.hash_outputs(x), training=True)
        logits = model.decoder(codes).numpy()
        target = (x > 0.5).astype(np.float32)
        bce = np.mean(np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits))))
        assert float(terms["loss"]) == pytest.approx(bce, rel=1e-5)

    @pytest.mark.parametrize(
        "cls, options", [(GreedyHash, {"backbone": "mlp"}), (BiHalf, {"objective": "autoencoder"})]
    )
    def test_config_and_savedmodel_round_trips(self, cls, options, tmp_path):
        model = cls(**SMALL, **options)
        clone = cls.from_config(json.loads(json.dumps(model.get_config())))
        assert clone.get_config() == model.get_config()
        codes = assert_export_round_trip(model, features(), tmp_path / "export")
        assert codes.shape == (12, 6)
        np.testing.assert_array_equal(codes, (model.hash_outputs(features()).numpy() >= 0).astype(np.uint8))

    def test_bad_options(self):
        with pytest.raises(ValueError, match="objective must be one of"):
            BiHalf(**SMALL, objective="pairs")
        with pytest.raises(ValueError, match='backbone="none"'):
            GreedyHash(**SMALL, backbone_options={"units": [4]})


@pytest.mark.parametrize("name", ["greedyhash", "bihalf"])
def test_short_training_on_digits_beats_random_codes(name, tmp_path):
    data = load_data("digits")
    config = registry.get_method(name).get_config(32, "digits")
    config["train"].update(steps=400, steps_per_epoch=200)
    _, record = fit(config, data, tmp_path, seed=0, verbose=0, export=False)
    random_codes = random_code_map(data, 32)
    assert record["map_at_all"] > random_codes + 0.4, (record["map_at_all"], random_codes)


def test_run_scripts_train_with_the_usual_outputs(tmp_path, run_script):
    for name in ("greedyhash", "bihalf"):
        out = tmp_path / name
        record = run_script(f"train_{name}").main(["--bits", "8", "--steps", "20", "--out", str(out)])
        assert record["method"] == name and (out / "export").is_dir() and (out / "metrics.json").exists()
