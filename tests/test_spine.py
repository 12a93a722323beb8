"""The spine that every method stands on: batches with declared keys, role gates, the step
counter, optimisers by config, image models end to end (fit, evaluation, export)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import cli, registry
from tfhash.backbones import build_backbone
from tfhash.configs.common import eval_config, settings_for
from tfhash.data import Split, batch_dataset, load_data, train_dataset
from tfhash.models import HashingModel
from tfhash.optimizers import FusedAdam, build_optimizer, build_role_optimizers
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

    @pytest.mark.parametrize(
        "options", [{}, {"weight_decay": 0.01}, {"amsgrad": True}, {"epsilon": 1.0, "learning_rate": 0.05}]
    )
    def test_fused_adam_takes_keras_adams_steps(self, options):
        """The fused kernel does Keras' arithmetic: 30 steps of each, compiled, agree to float32 rounding;
        a schedule, decoupled weight decay and amsgrad (Keras' own path) included."""
        options = {"learning_rate": keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5), **options}
        rng = np.random.default_rng(0)
        start = [rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)]
        keras_vars, fused_vars = [keras.Variable(w) for w in start], [keras.Variable(w) for w in start]
        keras_adam, fused_adam = keras.optimizers.Adam(**options), FusedAdam(**options)

        @tf.function
        def step(grads):
            keras_adam.apply(grads, keras_vars)
            fused_adam.apply(grads, fused_vars)

        for _ in range(30):
            step([tf.constant(rng.standard_normal(w.shape).astype(np.float32)) for w in start])
        for a, b, w in zip(keras_vars, fused_vars, start, strict=True):
            assert not np.allclose(b.numpy(), w)
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)
        assert int(fused_adam.iterations.numpy()) == 30
        assert isinstance(build_optimizer({"learning_rate": 1e-3}), FusedAdam)

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
        assert model.role_optimizers["head"].epsilon == pytest.approx(1e-7)  # Keras' default
        config["train"]["optimizers"] = {"head": {"optimizer": "adam", "epsilon": 1.0}}
        assert build_model(config, 64, seed=0).role_optimizers["head"].epsilon == 1.0  # the BGAN authors'
        config["train"]["optimizers"] = {"head": {"optimizer": "adam", "epsilon": 0}}
        with pytest.raises(ValueError, match="epsilon must be positive"):
            build_model(config, 64, seed=0)
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
        colour = np.zeros((2, 8, 8, 3), np.uint8)
        with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 1\)"):
            model.encode_images(colour)

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

    def test_unsupervised_methods_train_on_a_per_class_subset_when_given_one(
        self, digits, toy_method, tmp_path
    ):
        _, record = fit(toy_config(8), digits, tmp_path / "deep", verbose=0)
        assert record["train_split"] == {"part": "train", "items": len(digits.train)}
        _, record = fit(toy_config(8), digits, tmp_path / "deep20", verbose=0, labelled_per_class=20)
        assert record["train_split"] == {"part": "labelled", "per_class": 20, "items": 200}
        itq = registry.get_method("itq").get_config(8)
        whole, record = fit(itq, digits, tmp_path / "itq", export=False)
        assert record["train_split"]["items"] == len(digits.train)
        subset, record = fit(itq, digits, tmp_path / "itq20", export=False, labelled_per_class=20)
        assert record["train_split"] == {"part": "labelled", "per_class": 20, "items": 200}
        assert not np.array_equal(whole.encode(digits.query.features), subset.encode(digits.query.features))


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


class FeatureSourceTest:
    """One answer to "does this backbone take images?" (`tfhash.configs.common.takes_images`)."""

    def test_only_none_and_mlp_take_features(self):
        from tfhash.backbones import BACKBONES
        from tfhash.configs.common import takes_images

        assert [b for b in ("none", *BACKBONES) if not takes_images(b)] == ["none", "mlp"]
        assert not HashingModel.takes_images({"backbone": "none"}) and not HashingModel.takes_images({})
        assert HashingModel.takes_images({"backbone": "conv"})

    def test_every_deep_method_with_its_defaults_trains_on_features_or_names_why_not(self, tmp_path):
        """Two training steps of each deep method at its defaults on a float feature source; the
        only refusals are the BGAN variants whose losses generate images, as their docs say."""
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(120, 20)).astype(np.float32), np.arange(120) % 3
        np.savez(tmp_path / "feats.npz", x_train=x[:96], y_train=y[:96], x_test=x[96:], y_test=y[96:])
        data = load_data(str(tmp_path / "feats.npz"), queries_per_class=3)
        trained, refused = [], []
        for name in registry.method_names():
            method = registry.get_method(name)
            if method.is_baseline:
                continue
            config = method.get_config(8, settings_for(data))  # the feature-source presets
            try:
                model = build_model(config, data.feature_dim, 0, data.image_shape, data.num_classes)
            except ValueError as error:
                assert "generates images, but this source has none" in str(error), name
                assert "generates images" in " ".join(method.model.__doc__.split()), name
                refused.append(name)
                continue
            if type(model).adapt is not HashingModel.adapt:
                model.adapt(data.train.features)
            before = [v.numpy().copy() for v in model.trainable_variables]
            model.fit(batch_dataset(data.train, model.batch_keys, 16, 0), steps_per_epoch=2, verbose=0)
            after = [v.numpy() for v in model.trainable_variables]
            assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True)), name
            trained.append(name)
        assert {"greedyhash", "bihalf", "tbh", "sgh", "bgan-ln", "gman", "tbh-vae"} <= set(trained)
        images_only = {"bgan", "bgan-app", "bgan-two-step", "bgan-ln-lc", "bgan-ln-la", "bgan-authors"}
        assert set(refused) == images_only
