"""The spine that every method stands on: batches with declared keys, role gates, the step
counter, optimisers by config, image models end to end (fit, evaluation, export)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import cli, registry
from tfhash.backbones import build_backbone
from tfhash.configs.common import eval_config
from tfhash.data import Split, batch_dataset, load_data, train_dataset
from tfhash.models import HashingModel
from tfhash.optimizers import build_optimizer, build_role_optimizers
from tfhash.train import build_model, fit


class ToyHasher(HashingModel):
    """A backbone and a Dense(bits) head trained on a made-up objective; spine tests only.

    Args:
        backbone: "mlp" or an image backbone ("conv").
        image_shape: (H, W, C) for image backbones.
        labels, index: whether batches carry labels / item indices.
        gate_head: None, "never" (the head's gate is always False) or "even"
            (the head steps on even model steps only).
    """

    roles = ("backbone", "head")
    loss_names = ("loss",)

    def __init__(
        self,
        input_dim,
        bits=8,
        backbone="mlp",
        image_shape=None,
        labels=False,
        index=False,
        gate_head=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, bits=bits, seed=seed, **kwargs)
        self.backbone_name, self.labels, self.index, self.gate_head = backbone, labels, index, gate_head
        self.needs_labels, self.needs_index = labels, index
        if backbone == "mlp":
            self.backbone = build_backbone("mlp", (input_dim,), seed=seed, units=(16,))
        else:
            self.input_kind = "images"
            self.image_shape = tuple(image_shape)
            self.backbone = build_backbone(backbone, self.image_shape, seed=seed, filters=(4, 8))
        self.head = keras.layers.Dense(bits, kernel_initializer=keras.initializers.GlorotUniform(seed))
        self.head.build((None, self.backbone.output_dim))
        self.built = True

    @classmethod
    def takes_images(cls, options):
        return options.get("backbone", "mlp") != "mlp"

    def role_variables(self, role):
        return list((self.backbone if role == "backbone" else self.head).trainable_variables)

    def call(self, x, training=False):
        return ops_codes(self.head(self.backbone(x, training=training)))

    def compute_loss_terms(self, inputs, training=False):
        x = inputs if not isinstance(inputs, dict) else inputs[self.input_kind]
        soft = tf.tanh(self.head(self.backbone(x, training=training)))
        loss = tf.reduce_mean(tf.square(soft - 0.5))
        if isinstance(inputs, dict) and "labels" in inputs:
            loss += 0.01 * tf.reduce_mean(inputs["labels"])
        if isinstance(inputs, dict) and "index" in inputs:
            loss += 0.0 * tf.reduce_mean(tf.cast(inputs["index"], tf.float32))
        return {"loss": loss}, {"backbone": loss, "head": loss}

    def role_gates(self, terms):
        if self.gate_head == "never":
            return {"head": tf.constant(False)}
        if self.gate_head == "even":
            return {"head": tf.equal(self.train_steps % 2, 0)}
        return {}


def ops_codes(logits):
    return tf.cast(logits > 0, tf.float32)


def toy_config(bits=8, **model):
    return {
        "method": "toy",
        "model": {"bits": bits, **model},
        "train": {
            "batch_size": 32,
            "steps": 4,
            "steps_per_epoch": 2,
            "learning_rate": 1e-2,
            "shuffle_buffer": 1000,
            "eval_every": 1,
            "validation_size": 50,
        },
        "eval": eval_config(),
    }


@pytest.fixture
def toy_method(monkeypatch):
    def get_config(bits=8, data="digits"):
        return toy_config(bits)

    monkeypatch.setitem(registry.METHODS, "toy", registry.Method("toy", ToyHasher, get_config, "a toy"))


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class BatchDatasetTest:
    def test_features_only_is_the_feature_stream(self, digits):
        a = [b.numpy() for b in batch_dataset(digits.train, ("features",), 16, seed=3).take(3)]
        b = [b.numpy() for b in train_dataset(digits.train.features, 16, seed=3).take(3)]
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    def test_images_labels_and_index_line_up(self, digits):
        batches = list(batch_dataset(digits.train, ("images", "labels", "index"), 16, seed=1).take(3))
        for batch in batches:
            images, labels, index = (batch[k].numpy() for k in ("images", "labels", "index"))
            assert images.shape == (16, 8, 8, 1) and images.dtype == np.float32
            assert labels.shape == (16, 10) and index.dtype == np.int64
            np.testing.assert_array_equal(labels, digits.train.labels[index])
            np.testing.assert_allclose(images.reshape(16, -1), digits.train.features[index], rtol=1e-6)
        again = next(iter(batch_dataset(digits.train, ("images", "labels", "index"), 16, seed=1)))
        assert np.array_equal(again["index"].numpy(), batches[0]["index"].numpy())

    def test_missing_parts_and_unknown_keys_are_refused(self, digits):
        features_only = Split(np.ones((40, 4), np.float32), None, np.arange(40))
        with pytest.raises(ValueError, match="holds features only"):
            batch_dataset(features_only, ("images",), 8)
        with pytest.raises(ValueError, match="has none"):
            batch_dataset(features_only, ("features", "labels"), 8)
        with pytest.raises(ValueError, match="unknown batch keys"):
            batch_dataset(digits.train, ("pixels",), 8)

    def test_model_declares_its_batch(self):
        model = ToyHasher(64, labels=True, index=True, seed=0)
        assert model.batch_keys == ("features", "labels", "index")
        with pytest.raises(ValueError, match="batch_dataset"):
            model.unpack_batch(tf.ones((2, 64)))
        with pytest.raises(ValueError, match=r"needs \['index'\]"):
            model.unpack_batch({"features": tf.ones((2, 64)), "labels": tf.ones((2, 3))})


def _compiled(model, **train):
    settings = {"learning_rate": 1e-2, **train}
    model.compile(optimizers=build_role_optimizers(settings, model.roles))
    return model


class RoleGateTest:
    def test_gated_off_role_applies_nothing_and_the_counter_advances(self, digits):
        model = _compiled(ToyHasher(64, gate_head="never", seed=0))
        head_before = [v.numpy().copy() for v in model.head.trainable_variables]
        head_opt = model.role_optimizers["head"]
        state_before = [v.numpy().copy() for v in head_opt.variables]
        backbone_before = [v.numpy().copy() for v in model.backbone.trainable_variables]
        model.fit(batch_dataset(digits.train, model.batch_keys, 32), steps_per_epoch=3, epochs=1, verbose=0)
        assert all(
            np.array_equal(a, v.numpy())
            for a, v in zip(head_before, model.head.trainable_variables, strict=True)
        )
        assert not any(
            np.array_equal(a, v.numpy())
            for a, v in zip(backbone_before, model.backbone.trainable_variables, strict=True)
        )
        assert int(head_opt.iterations) == 0 and int(model.train_steps) == 3
        assert all(
            np.array_equal(a, v.numpy()) for a, v in zip(state_before, head_opt.variables, strict=True)
        )
        assert int(model.role_optimizers["backbone"].iterations) == 3

    def test_gate_is_evaluated_in_every_step(self, digits):
        model = _compiled(ToyHasher(64, gate_head="even", seed=0))
        model.fit(batch_dataset(digits.train, model.batch_keys, 32), steps_per_epoch=5, epochs=1, verbose=0)
        assert int(model.role_optimizers["head"].iterations) == 3  # steps 0, 2, 4
        assert int(model.train_steps) == 5


class OptimizerConfigTest:
    def test_sgd_momentum_weight_decay_and_step_schedule(self):
        opt = build_optimizer(
            {
                "optimizer": "sgd",
                "learning_rate": 0.1,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "learning_rate_halving_steps": 2,
            }
        )
        assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.9 and opt.weight_decay == 5e-4
        var = keras.Variable(np.ones(2, np.float32))
        opt.build([var])
        rates = []
        for t in range(6):
            opt.iterations.assign(t)
            rates.append(float(opt.learning_rate))
        np.testing.assert_allclose(rates, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6)
        plain = build_optimizer(
            {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "learning_rate_halving_steps": 2}
        )
        var = keras.Variable(np.ones(1, np.float32))
        plain.build([var])
        for _ in range(3):
            plain.apply([tf.ones(1)], [var])
        # velocity v <- 0.9 v - lr_t g: -0.1, -0.19, -0.221 (the rate halves at step 2); x = 1 + sum v
        np.testing.assert_allclose(var.numpy(), [1 - 0.1 - 0.19 - 0.221], rtol=1e-6)

    def test_learning_rate_multiplier_moves_the_head_ten_times_as_far(self):
        model = ToyHasher(4, seed=0)
        model.compile(
            optimizers=build_role_optimizers(
                {"learning_rate": 1e-3, "optimizer": "sgd", "learning_rate_multipliers": {"head": 10.0}},
                model.roles,
            )
        )
        a, b = keras.Variable(np.zeros(3, np.float32)), keras.Variable(np.zeros(3, np.float32))
        for role, var in (("backbone", a), ("head", b)):
            optimizer = model.role_optimizers[role].from_config(model.role_optimizers[role].get_config())
            optimizer.build([var])
            optimizer.apply([tf.ones(3)], [var])
        np.testing.assert_allclose(b.numpy(), 10 * a.numpy(), rtol=1e-6)
        assert float(model.role_optimizers["head"].learning_rate) == pytest.approx(1e-2)

    def test_build_model_takes_per_role_settings(self, toy_method):
        config = toy_config()
        config["train"].update(
            {"optimizer": "sgd", "momentum": 0.5, "optimizers": {"head": {"optimizer": "adam"}}}
        )
        model = build_model(config, 64, seed=0)
        assert isinstance(model.role_optimizers["backbone"], keras.optimizers.SGD)
        assert isinstance(model.role_optimizers["head"], keras.optimizers.Adam)
        config["train"]["optimizers"] = {"head": {"lr": 1}}
        with pytest.raises(ValueError, match="unknown keys"):
            build_model(config, 64, seed=0)
        config["train"]["optimizers"] = {}
        config["train"]["optimizer"] = "rmsprop"
        with pytest.raises(ValueError, match="optimizer must be one of"):
            build_model(config, 64, seed=0)


class ImageModelTest:
    def test_fit_evaluates_and_exports_an_image_model(self, digits, toy_method, tmp_path):
        config = toy_config(8, backbone="conv")
        model, record = fit(config, digits, tmp_path / "run", seed=0, verbose=0)
        assert model.input_kind == "images" and model.image_shape == (8, 8, 1)
        assert record["steps"] == 4 and record["train_split"] == {"part": "train", "items": 1497}
        loaded = tf.saved_model.load(str(tmp_path / "run" / "export"))
        by_features = loaded.signatures["encode"](features=tf.constant(digits.query.features))["codes"]
        by_images = loaded.signatures["images"](images=tf.constant(digits.query.images[..., None]))["codes"]
        expected = model.encode_split(digits.query)
        np.testing.assert_array_equal(by_features.numpy(), expected)
        np.testing.assert_array_equal(by_images.numpy(), expected)
        np.testing.assert_array_equal(model.encode(digits.query.features), expected)
        from tfhash.encoder import load_encoder

        served = load_encoder(tmp_path / "run")  # serving_default is the flat-features endpoint
        assert served.input_dim == 64
        np.testing.assert_array_equal(served.encode(digits.query.features), expected)

    def test_image_model_on_features_fails_before_training(self, toy_method, tmp_path):
        features = Split(
            np.random.default_rng(0).uniform(size=(200, 64)).astype(np.float32), None, np.arange(200)
        )
        from tfhash.data import RetrievalData

        data = RetrievalData("feats.mat", features, features.subset(np.arange(20)), features)
        with pytest.raises(
            ValueError, match=r"ToyHasher needs images, but feats.mat holds features.*--backbone mlp"
        ):
            fit(toy_config(8, backbone="conv"), data, tmp_path / "run", verbose=0)
        assert not (tmp_path / "run" / "checkpoints").exists()

    def test_supervised_model_trains_on_the_labelled_subset(self, digits, toy_method, tmp_path):
        _, record = fit(toy_config(8, labels=True, index=True), digits, tmp_path / "run", verbose=0)
        assert record["train_split"] == {"part": "labelled", "per_class": 50, "items": 500}
        _, record = fit(
            toy_config(8, labels=True), digits, tmp_path / "run2", verbose=0, labelled_per_class=20
        )
        assert record["train_split"]["items"] == 200


class SplitTest:
    def test_labelled_subset_is_seeded_disjoint_and_per_class(self, digits):
        subset = digits.labelled()
        assert len(subset) == 500 and np.all(subset.labels.sum(0) == 50)
        assert not set(subset.ids) & set(digits.query.ids)
        assert set(subset.ids) <= set(digits.database.ids)
        assert np.array_equal(load_data("digits").labelled().ids, subset.ids)
        other = load_data("digits", seed=1)
        assert not np.array_equal(other.labelled().ids, subset.ids)
        with pytest.raises(ValueError, match="lower --labelled-per-class"):
            digits.labelled(200)

    def test_labelled_subset_continues_the_query_generator(self, digits):
        from sklearn.datasets import load_digits

        rng = np.random.default_rng(0)  # the queries are drawn first, then the labelled subset

        target = load_digits().target
        for c in range(10):
            rng.choice(np.flatnonzero(target == c), 30, replace=False)
        db_class = digits.database.labels.argmax(1)
        first = np.sort(rng.choice(np.flatnonzero(db_class == 0), 50, replace=False))
        subset = digits.labelled()
        np.testing.assert_array_equal(subset.ids[subset.labels.argmax(1) == 0], digits.database.ids[first])

    def test_train_test_protocol(self, tmp_path):
        rng = np.random.default_rng(0)
        path = tmp_path / "small.npz"
        np.savez(
            path,
            x_train=rng.integers(0, 256, (80, 4, 4), dtype=np.uint8),
            y_train=np.arange(80) % 4,
            x_test=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8),
            y_test=np.arange(20) % 4,
        )
        data = load_data(path, protocol="train-test")
        assert (len(data.query), len(data.database), data.protocol) == (20, 80, "train-test")
        assert data.query.ids.tolist() == list(range(80, 100)) and data.train is data.database
        with pytest.raises(ValueError, match="digits has no test part"):
            load_data("digits", protocol="train-test")
        record = cli.run(
            [
                "train",
                "itq",
                "--data",
                str(path),
                "--protocol",
                "train-test",
                "--bits",
                "8",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        assert record["protocol"] == "train-test"
        assert {"euclidean_precision_radius_2", "euclidean_map_at_all"} <= set(record)


class SplitSeedTest:
    def test_eval_of_a_seeded_run_reproduces_its_metrics(self, tmp_path, capsys):
        out = tmp_path / "run"
        record = cli.run(
            ["train", "itq", "--bits", "16", "--seed", "1", "--split-seed", "3", "--out", str(out)]
        )
        assert (record["seed"], record["split_seed"]) == (1, 3)
        assert not np.array_equal(load_data("digits", seed=3).query.ids, load_data("digits").query.ids)
        for split in ("query", "database"):
            cli.run(["encode", str(out), "--split", split, "--out", str(tmp_path / f"{split}.npz")])
        metrics = cli.run(["eval", str(tmp_path / "query.npz"), str(tmp_path / "database.npz")])
        assert metrics["map_at_all"] == pytest.approx(record["map_at_all"], abs=1e-12)
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["split_seed"] == 3 and saved["seed"] == 1

    def test_model_seed_no_longer_moves_the_split(self, tmp_path):
        a = cli.run(["train", "lsh", "--bits", "8", "--seed", "1", "--out", str(tmp_path / "a")])
        assert a["split_seed"] == 0 and a["num_queries"] == 300


class ModelOptionTest:
    def test_train_takes_any_option_and_refuses_unknown_ones(self, tmp_path, capsys):
        record = cli.run(
            ["train", "itq", "--bits", "8", "--model-option", "iterations=3", "--out", str(tmp_path / "a")]
        )
        assert record["config"]["model"]["iterations"] == 3
        with pytest.raises(
            SystemExit, match=r"itq has no model option \['nope'\]; valid options: iterations"
        ):
            cli.main(["train", "itq", "--model-option", "nope=1", "--out", str(tmp_path / "b")])
        assert not (tmp_path / "b").exists()

    def test_bench_applies_options_where_they_exist_and_says_where_not(self, tmp_path, capsys):
        cli.run(
            ["bench", "--methods", "itq", "lsh", "--bits", "8", "--seeds", "0",
             "--model-option", "iterations=2", "--out", str(tmp_path / "b")]
        )  # fmt: skip
        assert "note: lsh has no model option iterations" in capsys.readouterr().out
        cell = json.loads((tmp_path / "b" / "cells" / "itq-8bit-seed0" / "metrics.json").read_text())
        assert cell["config"]["model"]["iterations"] == 2

    def test_methods_lists_methods_and_options(self, capsys):
        cli.run(["methods"])
        out = capsys.readouterr().out
        assert all(name in out for name in registry.method_names())
        cli.run(["methods", "tbh-vae"])
        out = capsys.readouterr().out
        assert "beta=4.0" in out and "weight of the total correlation" in out
        for method in registry.METHODS.values():
            assert all(text for _, _, text in method.options()), method.name


class ImageFolderTest:
    def test_train_itq_on_a_folder_of_pngs(self, tmp_path, capsys):
        from PIL import Image

        rng = np.random.default_rng(0)
        for c in range(10):
            folder = tmp_path / "images" / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(40):
                pixels = np.clip(rng.normal(25 * c, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        record = cli.run(
            ["train", "itq", "--data", str(tmp_path / "images"), "--bits", "16", "--out", str(tmp_path / "r")]
        )
        out = capsys.readouterr().out
        assert "20 queries per class" in out
        assert (record["num_queries"], record["num_database"]) == (200, 200)
        assert record["map_at_all"] > 0.25  # random codes: about 0.1
        data = load_data(tmp_path / "images", image_size=(6, 6))
        assert data.image_shape == (6, 6, 3) and data.feature_dim == 108


class AugmentationTest:
    def test_crops_and_flips_are_seeded_windows_of_the_padded_image(self, digits):
        from tfhash.data.augmentation import image_augmentation

        def batches(seed):
            augment = image_augmentation("crop,flip", crop_padding=2, seed=seed)
            it = iter(batch_dataset(digits.train, ("images", "index"), 16, seed=0, augment=augment))
            return [next(it)["images"].numpy() for _ in range(2)]

        first, again, other = batches(0), batches(0), batches(5)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
        plain = next(iter(batch_dataset(digits.train, ("images", "index"), 16, seed=0)))["images"].numpy()
        for original, augmented in zip(plain, first[0], strict=True):
            padded = np.pad(original, ((2, 2), (2, 2), (0, 0)))
            windows = [padded[r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
            assert any(np.array_equal(augmented, w) or np.array_equal(augmented, w[:, ::-1]) for w in windows)

    def test_augmentation_is_for_image_models_only(self, digits, toy_method, tmp_path):
        config = toy_config(8, backbone="conv")
        config["train"]["augment"] = ["crop"]
        _, record = fit(config, digits, tmp_path / "a", verbose=0)
        assert record["steps"] == 4
        config = toy_config(8)
        config["train"]["augment"] = ["crop"]
        with pytest.raises(ValueError, match="augmentation applies to images"):
            fit(config, digits, tmp_path / "b", verbose=0)
        with pytest.raises(SystemExit, match="unknown augmentation"):
            cli.main(["train", "tbh", "--augment", "rotate", "--out", str(tmp_path / "c")])


@pytest.mark.large
def test_gates_refuse_a_multi_replica_strategy_with_a_clear_error():
    import pathlib
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, TESTS)
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from test_spine import ToyHasher, _compiled
        from tfhash.data import batch_dataset, load_data
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = _compiled(ToyHasher(64, gate_head="even", seed=0))
        batches = batch_dataset(load_data("digits").train, model.batch_keys, 32)
        try:
            model.fit(batches, steps_per_epoch=2, verbose=0)
        except NotImplementedError as err:
            print("refused:", err)
    """).replace("TESTS", repr(str(pathlib.Path(__file__).parent)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "refused: ToyHasher gates its roles ['head']" in result.stdout, result.stderr[-2000:]


def test_sources_with_their_own_queries_draw_the_labelled_subset_from_the_database(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "own.mat"
    labels = np.arange(60) % 3
    savemat(path, {"train_data": np.random.default_rng(0).normal(size=(60, 4)), "train_label": labels,
                   "test_data": np.zeros((6, 4)), "test_label": np.arange(6) % 3})  # fmt: skip
    data = load_data(path, seed=2)
    subset = data.labelled(5)
    rng = np.random.default_rng(2)
    expected = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(3)])
    )
    np.testing.assert_array_equal(subset.ids, data.database.ids[expected])


@pytest.mark.large
def test_itq_under_gmans_protocol_reproduces_its_table(mnist_path, tmp_path):
    record = cli.run(
        ["train", "itq", "--data", str(mnist_path), "--protocol", "train-test", "--bits", "32",
         "--out", str(tmp_path / "itq")]
    )  # fmt: skip
    assert (record["num_queries"], record["num_database"]) == (10_000, 60_000)
    assert abs(record["euclidean_precision_radius_2"] - 0.3635) < 0.03  # GMAN Table 1, ITQ, 32 bits
