import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import registry
from tfhash.data import load_data
from tfhash.export import export_encoder
from tfhash.losses import hashnet_loss, shared_label_similarity, weighted_pairwise_likelihood
from tfhash.models import HashNet
from tfhash.models.hashnet import continuation_beta
from tfhash.optimizers import build_role_optimizers
from tfhash.testing import assert_export_round_trip, random_code_map
from tfhash.train import fit, for_input_kind

IMAGE_RATE = 3e-3  # HashNet's base rate on an image backbone, chosen on the validation split
SMALL = {"input_dim": 16, "bits": 8, "seed": 0, "backbone_options": {"units": [12]}}

# 3 items, 2 bits. Item 1 has label 0, item 2 labels 0 and 1 (multi-hot), item 3 label 1:
# s_12 = 1, s_13 = 0, s_23 = 1.
CODES = np.array([[1.0, -1.0], [0.5, 0.5], [-1.0, -0.5]], np.float32)
LABELS = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
ALPHA = 0.5


def pair_losses_by_hand():
    """L_ij = log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j>, worked out for CODES."""
    # <h1, h2> = 0.5 - 0.5 = 0; <h1, h3> = -1 + 0.5 = -0.5; <h2, h3> = -0.5 - 0.25 = -0.75
    l12 = math.log(1 + math.exp(0.0)) - 0.0  # similar
    l13 = math.log(1 + math.exp(ALPHA * -0.5))  # dissimilar
    l23 = math.log(1 + math.exp(ALPHA * -0.75)) + ALPHA * 0.75  # similar
    return l12, l13, l23


def small_model(**kwargs):
    model = HashNet(**{**SMALL, **kwargs})
    model.compile(learning_rate=1e-3)
    return model


def batch(n=24, dim=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.eye(classes, dtype=np.float32)[np.arange(n) % classes]
    return {
        "features": tf.constant(rng.uniform(size=(n, dim)).astype(np.float32)),
        "labels": tf.constant(labels),
    }


class HashNetLossTest:
    def test_paper_weighting_by_hand(self):
        l12, l13, l23 = pair_losses_by_hand()
        # |S| = 3 pairs, |S1| = 2, |S0| = 1: c = 3/2 for similar pairs, 3/1 for the dissimilar one
        expected = (1.5 * l12 + 3.0 * l13 + 1.5 * l23) / (1.5 + 3.0 + 1.5)
        loss = hashnet_loss(CODES, LABELS, ALPHA, weighting="paper", pairs="all")
        assert float(loss) == pytest.approx(expected, rel=1e-6)
        assert loss.dtype == tf.float32 and loss.shape == ()

    def test_fixed_weighting_by_hand(self):
        l12, l13, l23 = pair_losses_by_hand()
        expected = (5.0 * l12 + 1.0 * l13 + 5.0 * l23) / (5.0 + 1.0 + 5.0)
        loss = hashnet_loss(CODES, LABELS, ALPHA, weighting="fixed", positive_weight=5.0, pairs="all")
        assert float(loss) == pytest.approx(expected, rel=1e-6)

    def test_no_weighting_is_the_plain_mean(self):
        expected = sum(pair_losses_by_hand()) / 3
        assert float(hashnet_loss(CODES, LABELS, ALPHA, weighting="none", pairs="all")) == pytest.approx(
            expected
        )

    def test_halves_pair_the_first_half_with_the_rest_only(self):
        l12, l13, _ = pair_losses_by_hand()
        # item 1 against items 2 and 3: one similar and one dissimilar pair, both weighted 2
        assert float(hashnet_loss(CODES, LABELS, ALPHA)) == pytest.approx((l12 + l13) / 2, rel=1e-6)

    def test_similarity_is_shared_labels(self):
        np.testing.assert_array_equal(
            shared_label_similarity(LABELS, LABELS).numpy(), [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
        )

    def test_stable_form_equals_the_naive_one_and_stays_finite_beyond_it(self):
        rng = np.random.default_rng(0)
        a, b = rng.uniform(-1, 1, (5, 6)), rng.uniform(-1, 1, (4, 6))
        s, w = rng.integers(0, 2, (5, 4)).astype(float), rng.uniform(0.5, 2, (5, 4))
        for alpha in (0.1, 1.0, 10.0):
            x = alpha * a @ b.T
            naive = np.sum(w * (np.log(1 + np.exp(x)) - s * x)) / np.sum(w)
            ours = weighted_pairwise_likelihood(a.astype(np.float32), b.astype(np.float32), s, w, alpha)
            assert float(ours) == pytest.approx(naive, rel=1e-5)
        # alpha <h_i, h_j> = +-200: exp overflows float32, the naive loss is inf
        codes = tf.constant([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
        s = np.array([[1.0, 0.0, 0.0]], np.float32)
        with np.errstate(over="ignore"):
            x = np.float32(100.0) * (codes[:1] @ tf.transpose(codes)).numpy()
            assert not np.isfinite(np.sum(np.log(1 + np.exp(x)) - s * x))
        with tf.GradientTape() as tape:
            tape.watch(codes)
            loss = weighted_pairwise_likelihood(codes[:1], codes, s, tf.ones((1, 3)), 100.0)
        # pairs: (1,1) similar at +200 -> 0; (1,2) dissimilar at +200 -> 200; (1,3) dissimilar at -200 -> 0
        assert float(loss) == pytest.approx(200.0 / 3)
        assert np.all(np.isfinite(tape.gradient(loss, codes).numpy()))

    def test_bad_options(self):
        with pytest.raises(ValueError, match="weighting must be one of"):
            hashnet_loss(CODES, LABELS, ALPHA, weighting="balanced")
        with pytest.raises(ValueError, match="pairs must be one of"):
            hashnet_loss(CODES, LABELS, ALPHA, pairs="self")


class ContinuationTest:
    def test_schedule(self):
        assert {continuation_beta(t) for t in (0, 1, 100, 199)} == {1.0}
        assert continuation_beta(200) == pytest.approx(math.sqrt(2)) and continuation_beta(
            399
        ) == continuation_beta(200)
        assert continuation_beta(10_000) == pytest.approx(7.1414, abs=1e-4)
        assert float(continuation_beta(tf.constant(10_000, tf.int64))) == pytest.approx(7.1414, abs=1e-4)

    def test_the_model_raises_beta_at_step_200_and_not_without_continuation(self):
        for continuation in (True, False):
            model = small_model(continuation=continuation)
            seen = {}
            for step in (0, 199, 200, 10_000):
                model.train_steps.assign(step)
                logs = model.train_step(batch())  # the trackers' means since the last reset
                seen[step] = float(model.beta.numpy())
            assert "beta" in logs and "pairwise_loss" in logs
            if continuation:
                assert seen[0] == seen[199] == 1.0
                assert seen[200] == pytest.approx(math.sqrt(2)) and seen[10_000] == pytest.approx(
                    7.1414, abs=1e-4
                )
            else:
                assert set(seen.values()) == {1.0}

    def test_beta_is_restored_by_a_checkpoint_and_carried_by_the_export(self, tmp_path):
        model = small_model()
        model.train_steps.assign(10_000)
        model.train_step(batch())
        model.save_weights(tmp_path / "model.weights.h5")
        restored = small_model()
        restored.load_weights(tmp_path / "model.weights.h5")
        assert float(restored.beta.numpy()) == pytest.approx(7.1414, abs=1e-4)
        loaded = tf.saved_model.load(str(export_encoder(model, tmp_path / "export")))
        exported = [float(v.numpy()) for v in loaded.variables if v.name.endswith("/beta:0")]
        assert exported == [pytest.approx(7.1414, abs=1e-4)]


class HashNetModelTest:
    def test_every_variable_of_each_role_gets_a_gradient(self):
        model = small_model()
        with tf.GradientTape(persistent=True) as tape:
            _, objectives = model.compute_loss_terms(batch(), training=True)
        for role in model.roles:
            variables = model.role_variables(role)
            assert variables, role
            for v, g in zip(variables, tape.gradient(objectives[role], variables), strict=True):
                assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, f"{role}: {v.path}"
        ids = lambda vs: {id(v) for v in vs}
        roles = [ids(model.role_variables(role)) for role in model.roles]
        assert set().union(*roles) == ids(model.trainable_variables) and sum(map(len, roles)) == 4

    def test_the_hash_layer_learns_at_10x_and_its_bias_at_20x_the_encoder(self):
        config = registry.get_method("hashnet").get_config(8, "mnist")
        model = HashNet(**SMALL)
        model.compile(
            optimizers=build_role_optimizers(for_input_kind(config["train"], "features"), model.roles)
        )
        rates = {role: float(opt.learning_rate) for role, opt in model.role_optimizers.items()}
        assert rates["encoder"] == pytest.approx(1e-2)
        assert rates["hash_layer"] == pytest.approx(10 * rates["encoder"])
        assert rates["hash_bias"] == pytest.approx(20 * rates["encoder"])
        assert (
            model.hash_layer_optimizer.weight_decay == 5e-4 and model.hash_bias_optimizer.weight_decay is None
        )
        assert all(isinstance(opt, keras.optimizers.SGD) for opt in model.role_optimizers.values())
        # one step of plain SGD: each role moves by its rate times the gradient
        sgd = {"optimizer": "sgd", "learning_rate": 100.0, "learning_rate_multipliers": {"hash_layer": 10.0}}
        model.compile(optimizers=build_role_optimizers(sgd, model.roles))
        before = [v.numpy().copy() for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            _, objectives = model.compute_loss_terms(batch(), training=True)
        grads = tape.gradient(objectives["encoder"], model.trainable_variables)
        model.train_step(batch())
        for v, old, g in zip(model.trainable_variables, before, grads, strict=True):
            rate = 1000.0 if "hash_layer/kernel" in v.path else 100.0  # large: float32 differences stay exact
            np.testing.assert_allclose(old - v.numpy(), rate * g.numpy(), rtol=1e-3, atol=1e-6)

    def test_inference_codes_are_the_sign_of_z(self):
        model = small_model()
        x = batch()["features"].numpy()
        codes = model.encode(x)
        assert codes.dtype == np.uint8 and set(np.unique(codes)) <= {0, 1}
        np.testing.assert_array_equal(codes, (model.hash_outputs(x).numpy() > 0).astype(np.uint8))

    def test_config_round_trip(self):
        model = HashNet(**SMALL, alpha=0.3, weighting="fixed", positive_weight=5.0, pairs="all")
        config = json.loads(json.dumps(model.get_config()))
        clone = HashNet.from_config(config)
        assert clone.get_config() == model.get_config()
        clone.set_weights(model.get_weights())
        x = batch()["features"].numpy()
        np.testing.assert_array_equal(clone.encode(x), model.encode(x))
        assert HashNet(**SMALL).effective_alpha == 10 / 8

    def test_bad_arguments(self):
        for kwargs, message in (
            ({"alpha": 0}, "alpha must be > 0"),
            ({"weighting": "balanced"}, "weighting must be one of"),
            ({"pairs": "self"}, "pairs must be one of"),
            ({"positive_weight": -1}, "positive_weight must be > 0"),
            ({"continuation": "yes"}, "continuation must be True or False"),
            ({"backbone": "conv"}, "needs image_shape"),
        ):
            with pytest.raises(ValueError, match=message):
                HashNet(**SMALL, **kwargs)

    def test_saved_model_round_trip(self, tmp_path):
        model = small_model()
        model.fit(tf.data.Dataset.from_tensors(batch()).repeat(), steps_per_epoch=3, verbose=0)
        x = batch(10, seed=1)["features"].numpy()
        assert_export_round_trip(model, x, tmp_path / "export")

    def test_conv_backbone_trains_on_images(self):
        model = small_model(backbone="conv", backbone_options={"filters": [4]}, image_shape=(4, 4, 1))
        assert model.input_kind == "images" and model.batch_keys == ("images", "labels")
        data = batch()
        images = {"images": tf.reshape(data["features"], (-1, 4, 4, 1)), "labels": data["labels"]}
        with tf.GradientTape() as tape:
            _, objectives = model.compute_loss_terms(images, training=True)
        grads = tape.gradient(objectives["encoder"], model.role_variables("encoder"))
        assert any("conv" in v.path for v in model.role_variables("encoder"))
        assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


@pytest.mark.large
@pytest.mark.parametrize("name", ["hashnet", "hashnet-w", "hashnet-c"])
def test_training_on_digits_beats_random_codes(name, tmp_path):
    data = load_data("digits")
    config = registry.get_method(name).get_config(32, "digits")
    config["train"].update(steps=400, steps_per_epoch=200)
    model, record = fit(config, data, tmp_path, seed=0, verbose=0, export=False)
    random_codes = random_code_map(data, 32)
    assert record["train_split"] == {"part": "labelled", "per_class": 50, "items": 500}
    beta = 1.0 if name == "hashnet-c" else math.sqrt(2)  # steps 200..399 train with sqrt(1 + 0.005 * 200)
    assert record["steps"] == 400 and float(model.beta.numpy()) == pytest.approx(beta)
    assert random_codes < 0.15 and record["map_at_all"] > random_codes + 0.5, (
        record["map_at_all"],
        random_codes,
    )


def test_the_base_rate_depends_on_the_input_kind_and_a_high_one_on_images_warns():
    method = registry.get_method("hashnet")
    config = method.get_config(32, "mnist")
    assert config["train"]["learning_rate"] == {"features": 1e-2, "images": IMAGE_RATE}
    assert for_input_kind(config["train"], "images")["learning_rate"] == IMAGE_RATE
    assert method.config_note(config) is None  # the defaults, on either input kind
    config["model"]["backbone"] = "conv"
    assert method.config_note(config) is None
    config["train"]["learning_rate"] = 1e-2  # --learning-rate 1e-2 on an image backbone
    assert "collapsed" in method.config_note(config)
    config["model"]["backbone"] = "mlp"
    assert method.config_note(config) is None
    conv = HashNet(input_dim=64, bits=8, seed=0, image_shape=(8, 8, 1), backbone="conv")
    conv.compile(
        optimizers=build_role_optimizers(
            for_input_kind(method.get_config(8, "mnist")["train"], "images"), conv.roles
        )
    )
    assert float(conv.encoder_optimizer.learning_rate) == pytest.approx(IMAGE_RATE)
