"""Backbones: MLP, ConvEncoder / ConvDecoder and the keras.applications wrapper."""

import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfhash.backbones import (
    BACKBONES,
    MLP,
    ApplicationBackbone,
    ConvDecoder,
    ConvEncoder,
    build_backbone,
)
from tfhash.backbones.applications import IMAGENET_FILES


def random_inputs(shape, batch=2, seed=0):
    """Seeded float32 inputs in [0, 1) of shape (batch, *shape)."""
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)


def wrap(layer, input_shape):
    """A functional keras.Model around `layer` for items of shape `input_shape`."""
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def assert_train_step_changes_weights(layer, inputs):
    """One eager SGD step on an MSE loss (towards 0.5) changes every trainable weight of `layer`."""
    if not layer.built:
        layer.build(inputs.shape)
    before = [weight.numpy().copy() for weight in layer.trainable_weights]
    with tf.GradientTape() as tape:
        loss = ops.mean(ops.square(layer(inputs, training=True) - 0.5))
    gradients = tape.gradient(loss, layer.trainable_weights)
    keras.optimizers.SGD(0.1).apply(gradients, layer.trainable_weights)
    assert np.isfinite(float(loss))
    unchanged = [
        weight.path
        for weight, old in zip(layer.trainable_weights, before, strict=True)
        if np.array_equal(weight.numpy(), old)
    ]
    assert before and not unchanged


def assert_config_round_trip(layer, inputs):
    """A JSON-serialised config rebuilds the layer; with the weights copied, outputs are equal."""
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    if not clone.built:
        clone.build(inputs.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(inputs, training=False), layer(inputs, training=False))


def assert_export_round_trip(layer, inputs, path):
    """An ExportArchive endpoint reloaded with tf.saved_model.load gives the same outputs."""
    model = wrap(layer, inputs.shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="encode",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *inputs.shape[1:]), tf.float32)],
    )
    archive.write_out(str(path))
    reloaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(reloaded.encode(inputs), model(inputs, training=False), rtol=1e-5, atol=1e-6)


def assert_same_weights(first, second):
    assert len(first.weights) == len(second.weights)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class MLPTest:
    def test_output_has_the_last_width_and_is_finite(self):
        mlp = MLP(units=(16, 8), seed=1)
        outputs = mlp(random_inputs((12,)))
        assert tuple(outputs.shape) == (2, 8) and mlp.output_dim == 8 and mlp.input_kind == "features"
        assert np.all(np.isfinite(outputs))

    def test_train_step_changes_weights(self):
        assert_train_step_changes_weights(MLP(units=(16, 8), seed=1), random_inputs((12,)))

    def test_output_by_hand(self):
        """tanh(tanh(x W1 + b1) W2 + b2): every layer, the last included, applies the activation."""
        mlp = MLP(units=(16, 8), activation="tanh", seed=1)
        x = random_inputs((12,), batch=5)
        out = mlp(x).numpy()
        expected = x.astype(np.float64)
        for dense in mlp.dense_layers:
            expected = np.tanh(expected @ dense.kernel.numpy() + dense.bias.numpy())
        assert len(mlp.dense_layers) == 2
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)

    def test_config_round_trip_gives_same_outputs(self):
        mlp = MLP(units=(16, 8), activation="tanh", seed=1)
        mlp.build((None, 12))
        assert_config_round_trip(mlp, random_inputs((12,)))

    def test_same_seed_gives_identical_weights(self):
        first, second, other = MLP((16, 8), seed=3), MLP((16, 8), seed=3), MLP((16, 8), seed=4)
        for mlp in (first, second, other):
            mlp.build((None, 12))
        assert_same_weights(first, second)
        assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])

    def test_saved_model_export_round_trip(self, tmp_path):
        assert_export_round_trip(MLP((16, 8), seed=1), random_inputs((12,)), tmp_path / "mlp")

    @pytest.mark.parametrize("units", [(), (16, 0), (-4,), "16"])
    def test_rejects_widths_that_are_not_positive_ints(self, units):
        with pytest.raises(ValueError, match="units"):
            MLP(units=units)


class ConvEncoderTest:
    @pytest.mark.parametrize(
        "input_shape, filters, expected_dim",
        [
            ((28, 28, 1), (32, 64, 128), 4 * 4 * 128),
            ((32, 32, 3), (32, 64, 128), 4 * 4 * 128),
            ((9, 7, 1), (4, 8), 3 * 2 * 8),
        ],
    )
    def test_output_dim_follows_ceil_division(self, input_shape, filters, expected_dim):
        encoder = build_backbone("conv", input_shape, seed=0, filters=filters)
        outputs = encoder(random_inputs(input_shape))
        assert encoder.output_dim == expected_dim and tuple(outputs.shape) == (2, expected_dim)
        assert np.all(np.isfinite(outputs)) and encoder.input_kind == "images"

    def test_train_step_changes_weights(self):
        assert_train_step_changes_weights(ConvEncoder((4, 8), seed=0), random_inputs((12, 12, 1), batch=4))

    def test_config_round_trip_gives_same_outputs(self):
        encoder = ConvEncoder((4, 8), kernel_size=3, batch_norm=False, activation="elu", seed=0)
        encoder.build((None, 12, 12, 3))
        assert_config_round_trip(encoder, random_inputs((12, 12, 3)))

    def test_same_seed_gives_identical_weights(self):
        first, second = (build_backbone("conv", (12, 12, 1), seed=5, filters=(4, 8)) for _ in range(2))
        assert_same_weights(first, second)

    def test_saved_model_export_round_trip(self, tmp_path):
        encoder = ConvEncoder((4, 8), seed=0)
        assert_export_round_trip(encoder, random_inputs((12, 12, 1)), tmp_path / "conv")

    def test_rejects_negative_filters(self):
        with pytest.raises(ValueError, match=r"filters.*-8"):
            ConvEncoder(filters=(4, -8))


class ConvDecoderTest:
    @pytest.mark.parametrize("output_shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
    def test_output_has_the_requested_shape(self, output_shape):
        decoder = ConvDecoder(output_shape, filters=(16, 8, 4), seed=0)
        images = decoder(random_inputs((6,)))
        assert tuple(images.shape) == (2, *output_shape)
        assert np.all((images >= 0.0) & (images <= 1.0))

    def test_train_step_changes_weights(self):
        decoder = ConvDecoder((12, 12, 1), filters=(8, 4), seed=0)
        assert_train_step_changes_weights(decoder, random_inputs((6,), batch=4))

    def test_config_round_trip_gives_same_outputs(self):
        decoder = ConvDecoder((10, 10, 3), filters=(8, 4), kernel_size=3, output_activation=None, seed=0)
        decoder.build((None, 6))
        assert_config_round_trip(decoder, random_inputs((6,)))

    def test_same_seed_gives_identical_weights(self):
        first, second = (ConvDecoder((12, 12, 1), filters=(8, 4), seed=2) for _ in range(2))
        first.build((None, 6))
        second.build((None, 6))
        assert_same_weights(first, second)

    def test_saved_model_export_round_trip(self, tmp_path):
        decoder = ConvDecoder((12, 12, 1), filters=(8, 4), seed=0)
        decoder.build((None, 6))
        assert_export_round_trip(decoder, random_inputs((6,)), tmp_path / "decoder")

    def test_rejects_an_output_shape_that_is_not_three_sides(self):
        with pytest.raises(ValueError, match=r"output_shape must be \(H, W, C\)"):
            ConvDecoder((28, 28))


SMALL_APPLICATIONS = [("resnet50", (32, 32, 3), 2048), ("mobilenetv3small", (28, 28, 1), 576)]


@pytest.fixture
def seeded():
    keras.utils.set_random_seed(0)


@pytest.mark.usefixtures("seeded")
class ApplicationBackboneTest:
    @pytest.mark.parametrize("network, input_shape, expected_dim", SMALL_APPLICATIONS)
    def test_features_have_the_network_width_and_are_finite(self, network, input_shape, expected_dim):
        backbone = build_backbone(network, input_shape, input_size=32)
        features = backbone(random_inputs(input_shape))
        assert backbone.output_dim == expected_dim and tuple(features.shape) == (2, expected_dim)
        assert np.all(np.isfinite(features)) and backbone.input_kind == "images"

    def test_grey_images_reach_the_network_as_caffe_preprocessed_bgr(self):
        """ResNet50's input, written out: [0, 1] pixels scaled to [0, 255], the grey channel repeated
        to three, RGB turned to BGR and the ImageNet channel means subtracted (caffe style)."""
        backbone = build_backbone("resnet50", (32, 32, 1), input_size=32)
        images = random_inputs((32, 32, 1))
        pixels = np.repeat(images * 255.0, 3, axis=-1)[..., ::-1] - np.array([103.939, 116.779, 123.68])
        expected = backbone.feature_model(pixels.astype(np.float32), training=False).numpy()
        np.testing.assert_allclose(backbone(images).numpy(), expected, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("network, input_shape, expected_dim", SMALL_APPLICATIONS)
    def test_train_step_changes_weights(self, network, input_shape, expected_dim):
        backbone = ApplicationBackbone(network, input_shape, input_size=32)
        assert_train_step_changes_weights(backbone, random_inputs(input_shape, batch=4))

    @pytest.mark.parametrize("network, input_shape, expected_dim", SMALL_APPLICATIONS)
    def test_config_round_trip_gives_same_outputs(self, network, input_shape, expected_dim):
        backbone = ApplicationBackbone(network, input_shape, input_size=32)
        assert_config_round_trip(backbone, random_inputs(input_shape))

    def test_saved_model_export_round_trip(self, tmp_path):
        backbone = ApplicationBackbone("mobilenetv3small", (28, 28, 1), input_size=32)
        assert_export_round_trip(backbone, random_inputs((28, 28, 1)), tmp_path / "mobilenet")

    @pytest.mark.large
    def test_resnet50_saved_model_export_round_trip(self, tmp_path):
        backbone = ApplicationBackbone("resnet50", (32, 32, 3), input_size=32)
        assert_export_round_trip(backbone, random_inputs((32, 32, 3)), tmp_path / "resnet50")

    def test_weights_file_restores_the_features(self, tmp_path):
        path = str(tmp_path / "mobilenet.weights.h5")
        source = ApplicationBackbone("mobilenetv3small", (28, 28, 1), input_size=32)
        source.feature_model.save_weights(path)
        loaded = ApplicationBackbone("mobilenetv3small", (28, 28, 1), weights=path, input_size=32)
        inputs = random_inputs((28, 28, 1))
        np.testing.assert_array_equal(loaded(inputs), source(inputs))
        assert loaded.get_config()["weights"] == path

    def test_missing_or_unreadable_weights_file_is_a_value_error(self, tmp_path):
        missing = str(tmp_path / "absent.weights.h5")
        with pytest.raises(ValueError, match="absent.weights.h5"):
            ApplicationBackbone("mobilenetv3small", (32, 32, 3), weights=missing, input_size=32)
        garbage = tmp_path / "garbage.h5"
        garbage.write_bytes(b"not an HDF5 file")
        with pytest.raises(ValueError, match="garbage.h5"):
            ApplicationBackbone("mobilenetv3small", (32, 32, 3), weights=str(garbage), input_size=32)

    @pytest.mark.parametrize("network", ["vgg16", "resnet50", "mobilenetv3small"])
    def test_imagenet_weights_absent_offline_fail_fast(self, network, tmp_path, monkeypatch):
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        start = time.monotonic()
        with pytest.raises(ValueError) as raised:
            ApplicationBackbone(network, (224, 224, 3), weights="imagenet")
        assert time.monotonic() - start < 5.0
        message = str(raised.value)
        assert os.path.join(str(tmp_path), "models", IMAGENET_FILES[network]) in message
        assert "weights=" in message and "download" in message

    def test_imagenet_weights_are_read_from_the_keras_cache(self, tmp_path, monkeypatch):
        legacy_h5 = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
        h5py = pytest.importorskip("h5py")
        source = ApplicationBackbone("mobilenetv3small", (32, 32, 3), input_size=32)
        (tmp_path / "models").mkdir()
        with h5py.File(tmp_path / "models" / IMAGENET_FILES["mobilenetv3small"], "w") as file:
            legacy_h5.save_weights_to_hdf5_group(file, source.feature_model)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        loaded = ApplicationBackbone("mobilenetv3small", (32, 32, 3), weights="imagenet", input_size=32)
        assert_same_weights(loaded, source)

    def test_freeze_leaves_nothing_trainable_and_batch_norm_in_inference_mode(self):
        inputs = random_inputs((32, 32, 3), batch=4)
        frozen = ApplicationBackbone("mobilenetv3small", (32, 32, 3), input_size=32, freeze=True)
        assert frozen.trainable_weights == [] and frozen.non_trainable_weights
        np.testing.assert_array_equal(frozen(inputs, training=True), frozen(inputs, training=False))
        trainable = ApplicationBackbone("mobilenetv3small", (32, 32, 3), input_size=32)
        assert not np.allclose(trainable(inputs, training=True), trainable(inputs, training=False))

    @pytest.mark.parametrize(
        "kwargs, pattern",
        [
            ({"network": "vgg19"}, "network must be one of"),
            ({"network": "vgg16", "input_size": 32}, "vgg16 needs input_size=224"),
            ({"network": "resnet50", "input_size": 16}, "at least 32"),
            ({"network": "resnet50", "input_shape": (32, 32, 2)}, "C = 1 .grey. or 3"),
            ({"network": "resnet50", "weights": 3}, "weights must be None"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, pattern):
        kwargs = {"input_shape": (32, 32, 3), **kwargs}
        with pytest.raises(ValueError, match=pattern):
            ApplicationBackbone(**kwargs)

    @pytest.mark.large
    def test_vgg16_gives_4096_fc7_features(self, tmp_path):
        backbone = build_backbone("vgg16", (32, 32, 1))
        features = backbone(random_inputs((32, 32, 1), batch=1))
        assert backbone.output_dim == 4096 and tuple(features.shape) == (1, 4096)
        assert np.all(np.isfinite(features))
        assert_export_round_trip(backbone, random_inputs((32, 32, 1), batch=1), tmp_path / "vgg16")


class BuildBackboneTest:
    def test_names(self):
        assert BACKBONES == ("mlp", "conv", "vgg16", "resnet50", "mobilenetv3small", "efficientnet-lite0")

    def test_unknown_name_lists_the_valid_ones(self):
        names = "mlp, conv, vgg16, resnet50, mobilenetv3small, efficientnet-lite0"
        with pytest.raises(ValueError, match=names):
            build_backbone("vit", (32, 32, 3))

    def test_input_shape_of_the_wrong_rank_is_a_value_error(self):
        with pytest.raises(ValueError, match=r"\(D,\)"):
            build_backbone("mlp", (28, 28, 1))
        with pytest.raises(ValueError, match=r"\(H, W, C\)"):
            build_backbone("conv", (784,))

    def test_returns_built_backbones_with_output_dim(self):
        mlp = build_backbone("mlp", (12,), seed=0, units=(8, 4))
        assert mlp.built and mlp.output_dim == 4 and len(mlp.weights) == 4


class FreezeTest:
    @pytest.mark.parametrize("name, shape", [("mlp", (6,)), ("conv", (8, 8, 1))])
    def test_freeze_works_for_every_backbone(self, name, shape):
        options = {"units": (4,)} if name == "mlp" else {"filters": (4,)}
        backbone = build_backbone(name, shape, seed=0, freeze=True, **options)
        assert backbone.trainable_weights == [] and backbone.weights
        inputs = random_inputs(shape, batch=4)
        np.testing.assert_allclose(
            backbone(inputs, training=True), backbone(inputs, training=False), rtol=1e-6
        )
