"""The `classifier` baseline: cross-entropy, then ITQ on the penultimate features."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfhash import registry
from tfhash.baselines import ITQ
from tfhash.data import Split, load_data
from tfhash.models import ClassifierHash
from tfhash.testing import assert_export_round_trip
from tfhash.train import fit

SMALL = {"input_dim": 16, "bits": 4, "num_classes": 3, "seed": 0, "backbone_options": {"units": [12]}}


def small_model(**kwargs):
    model = ClassifierHash(**{**SMALL, **kwargs})
    model.compile(learning_rate=1e-2)
    return model


def batch(n=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    features = rng.uniform(size=(n, 16)).astype(np.float32) + labels @ rng.uniform(size=(3, 16)).astype(
        np.float32
    )
    return {"features": tf.constant(features), "labels": tf.constant(labels)}


class ClassifierTest:
    def test_loss_is_the_cross_entropy_by_hand(self):
        model = small_model()
        data = batch(6)
        terms, objectives = model.compute_loss_terms(data, training=True)
        logits = model.classifier(model.features(data["features"])).numpy().astype(np.float64)
        labels = data["labels"].numpy()
        by_hand = np.mean(
            [
                -sum(
                    labels[i, c] * (logits[i, c] - math.log(sum(math.exp(v) for v in logits[i])))
                    for c in range(3)
                )
                for i in range(6)
            ]
        )
        assert float(terms["cross_entropy_loss"]) == pytest.approx(by_hand, rel=1e-5)
        assert set(objectives) == {"encoder", "classifier"}

    def test_every_variable_of_each_role_gets_a_gradient(self):
        model = small_model()
        data = batch()
        for role in model.roles:
            with tf.GradientTape() as tape:
                _, objectives = model.compute_loss_terms(data, training=True)
            variables = model.role_variables(role)
            grads = tape.gradient(objectives[role], variables)
            assert variables and all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads), (
                role
            )
        assert not any(v.trainable for v in (model.code_mean, model.code_projection))

    def test_finalize_stores_itq_of_the_features_and_codes_follow_it(self):
        model = small_model()
        model.fit(batch(), steps_per_epoch=5, epochs=1, verbose=0)
        x = batch(60, seed=1)["features"].numpy()
        split = Split(x, None, np.arange(60))
        assert not np.any(model.encode(x))  # before finalize: a zero projection
        model.finalize(split)
        features = model.split_features(split)
        itq = ITQ(4, seed=0).fit(features.astype(np.float64))
        np.testing.assert_array_equal(model.encode(x), itq.encode(features))
        assert 0 < model.encode(x).mean() < 1

    def test_config_round_trip_and_bits_bound(self):
        model = small_model()
        again = ClassifierHash.from_config(model.get_config())
        assert again.get_config() == model.get_config()
        with pytest.raises(ValueError, match="bits <= 12"):
            ClassifierHash(**{**SMALL, "bits": 13})

    def test_saved_model_keeps_the_projection(self, tmp_path):
        model = small_model()
        x = batch(60, seed=1)["features"].numpy()
        model.finalize(Split(x, None, np.arange(60)))
        assert_export_round_trip(model, x, tmp_path / "export")


@pytest.mark.large
def test_trains_on_digits_well_above_random_codes(tmp_path):
    data = load_data("digits")
    config = registry.get_method("classifier").get_config(16, "digits")
    config["train"].update(steps=300, steps_per_epoch=100)
    model, record = fit(config, data, tmp_path / "run", seed=0, verbose=0)
    random = np.random.default_rng(0).integers(0, 2, (len(data.database), 16))
    from tfhash.evaluation import mean_average_precision

    chance = mean_average_precision(
        np.random.default_rng(1).integers(0, 2, (len(data.query), 16)),
        random,
        data.query.labels,
        data.database.labels,
    )
    assert record["map_at_all"] > chance + 0.3 and record["train_split"]["part"] == "labelled"
