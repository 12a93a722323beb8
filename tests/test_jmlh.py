import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tfhash import registry
from tfhash.data import RetrievalData, Split, load_data
from tfhash.losses import bernoulli_kl_from_logits, jmlh_loss_terms, soft_label_cross_entropy
from tfhash.models import JMLH
from tfhash.testing import assert_export_round_trip, random_code_map
from tfhash.train import build_model, fit

SMALL = {"input_dim": 16, "bits": 8, "num_classes": 3, "seed": 0, "backbone_options": {"units": [12]}}


def small_model(**kwargs):
    model = JMLH(**{**SMALL, **kwargs})
    model.compile(learning_rate=1e-3)
    return model


def batch(n=24, dim=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.eye(classes, dtype=np.float32)[np.arange(n) % classes]
    return {
        "features": tf.constant(rng.uniform(size=(n, dim)).astype(np.float32)),
        "labels": tf.constant(labels),
    }


def naive_kl(logits):
    """KL(Bernoulli(q) || Bernoulli(0.5)) from q itself, the authors' form (no epsilon), summed over bits."""
    q = 1 / (1 + np.exp(-logits))
    return np.mean(np.sum(q * np.log(q / 0.5) + (1 - q) * np.log((1 - q) / 0.5), axis=-1))


class JMLHLossTest:
    def test_kl_equals_the_naive_form_at_moderate_logits(self):
        logits = np.random.default_rng(0).normal(0, 3, (5, 7))
        assert float(bernoulli_kl_from_logits(logits.astype(np.float32))) == pytest.approx(
            naive_kl(logits), 1e-5
        )
        assert float(bernoulli_kl_from_logits(np.zeros((2, 4), np.float32))) == pytest.approx(0.0, abs=1e-7)

    def test_kl_stays_finite_at_saturated_logits(self):
        logits = tf.constant([[100.0, -100.0], [100.0, 100.0]])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            assert np.isnan(naive_kl(logits.numpy()))  # q = 1 exactly in float32: 0 * log 0
        with tf.GradientTape() as tape:
            tape.watch(logits)
            kl = bernoulli_kl_from_logits(logits)
        assert float(kl) == pytest.approx(2 * math.log(2))  # each saturated bit costs log 2, 2 bits per item
        assert np.all(np.isfinite(tape.gradient(kl, logits).numpy()))

    def test_cross_entropy_normalises_multi_hot_rows(self):
        labels = np.array([[1, 1, 0], [0, 0, 1]], np.float32)
        logits = np.array([[0, 0, 0], [1, 2, 3]], np.float32)
        # row 1: targets 1/2, 1/2 on two of three equal logits: -log(1/3); row 2: -log softmax(3)
        row_2 = -(3 - math.log(math.exp(1) + math.exp(2) + math.exp(3)))
        expected = (math.log(3) + row_2) / 2
        assert float(soft_label_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-6)

    def test_loss_terms_add_up(self):
        rng = np.random.default_rng(1)
        labels, class_logits = np.eye(3, dtype=np.float32)[[0, 2]], rng.normal(size=(2, 3)).astype(np.float32)
        code_logits = rng.normal(size=(2, 5)).astype(np.float32)
        terms = jmlh_loss_terms(labels, class_logits, code_logits, kl_weight=0.2)
        assert float(terms["loss"]) == pytest.approx(
            float(terms["cross_entropy_loss"]) + 0.2 * float(terms["kl_loss"]), rel=1e-6
        )


class JMLHModelTest:
    @pytest.mark.parametrize("threshold", [0.5, "uniform"])
    def test_every_variable_of_each_role_gets_a_gradient(self, threshold):
        model = small_model(threshold=threshold)
        with tf.GradientTape(persistent=True) as tape:
            _, objectives = model.compute_loss_terms(batch(), training=True)
        for role in model.roles:
            variables = model.role_variables(role)
            for v, g in zip(variables, tape.gradient(objectives[role], variables), strict=True):
                assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, f"{role}: {v.path}"
        ids = lambda vs: {id(v) for v in vs}
        assert ids(model.role_variables("encoder")) | ids(model.role_variables("classifier")) == ids(
            model.trainable_variables
        )

    def test_inference_codes_are_deterministic_threshold_one_half(self):
        model = small_model(threshold="uniform")
        x = batch()["features"].numpy()
        codes = model.encode(x)
        assert codes.dtype == np.uint8 and np.array_equal(codes, model.encode(x))
        np.testing.assert_array_equal(codes, (model.code_logits(x).numpy() > 0).astype(np.uint8))

    def test_config_round_trip(self):
        model = JMLH(**SMALL, kl_weight=0.1, threshold="uniform")
        clone = JMLH.from_config(json.loads(json.dumps(model.get_config())))
        assert clone.get_config() == model.get_config() and clone.classifier.units == 3
        clone.set_weights(model.get_weights())
        x = batch()["features"].numpy()
        np.testing.assert_array_equal(clone.encode(x), model.encode(x))

    def test_bad_arguments(self):
        kwargs = {k: v for k, v in SMALL.items() if k != "num_classes"}
        with pytest.raises(ValueError, match="num_classes must be a positive int"):
            JMLH(**kwargs)
        with pytest.raises(ValueError, match="kl_weight must be >= 0"):
            JMLH(**SMALL, kl_weight=-1)
        with pytest.raises(ValueError, match="threshold must be"):
            JMLH(**SMALL, threshold=1.5)

    def test_build_model_passes_the_number_of_classes(self):
        config = registry.get_method("jmlh").get_config(8, "digits")
        model = build_model(config, 64, seed=0, num_classes=7)
        assert model.num_classes == 7 and model.classifier.units == 7

    def test_unlabelled_data_fails_before_anything_is_built(self, tmp_path):
        features = Split(
            np.random.default_rng(0).uniform(size=(200, 64)).astype(np.float32), None, np.arange(200)
        )
        data = RetrievalData("feats.mat", features, features.subset(np.arange(20)), features)
        for name in ("jmlh", "hashnet"):
            with pytest.raises(ValueError, match=r"(JMLH|HashNet) \(a supervised method\) needs labels"):
                fit(registry.get_method(name).get_config(8, "feats"), data, tmp_path / name, verbose=0)
            assert not (tmp_path / name / "checkpoints").exists()

    def test_saved_model_round_trip(self, tmp_path):
        model = small_model()
        model.fit(tf.data.Dataset.from_tensors(batch()).repeat(), steps_per_epoch=3, verbose=0)
        x = batch(10, seed=1)["features"].numpy()
        assert_export_round_trip(model, x, tmp_path / "export")

    def test_conv_backbone_trains_on_images(self):
        model = small_model(backbone="conv", backbone_options={"filters": [4]}, image_shape=(4, 4, 1))
        assert model.batch_keys == ("images", "labels")
        data = batch()
        images = {"images": tf.reshape(data["features"], (-1, 4, 4, 1)), "labels": data["labels"]}
        with tf.GradientTape() as tape:
            _, objectives = model.compute_loss_terms(images, training=True)
        grads = tape.gradient(objectives["encoder"], model.role_variables("encoder"))
        assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


@pytest.mark.large
def test_training_on_digits_beats_random_codes(tmp_path):
    data = load_data("digits")
    config = registry.get_method("jmlh").get_config(32, "digits")
    config["train"].update(steps=600, steps_per_epoch=200)
    model, record = fit(config, data, tmp_path, seed=0, verbose=0, export=False)
    random_codes = random_code_map(data, 32)
    assert model.num_classes == 10 and record["train_split"]["part"] == "labelled"
    assert random_codes < 0.15 and record["map_at_all"] > random_codes + 0.5, (
        record["map_at_all"],
        random_codes,
    )
