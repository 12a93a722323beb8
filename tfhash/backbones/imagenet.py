"""What every ImageNet network shares, below the modules that build them: where Keras keeps its
weights, and how each network wants its RGB input (`applications` and `efficientnet_lite` both
import this; neither imports the other's helpers)."""

import os

import keras


def keras_cache_dir():
    """The folder where Keras caches application weights: $KERAS_HOME/models, default ~/.keras/models."""
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def preprocess(network, images):
    """The network's own preprocessing of RGB images in [0, 255]."""
    if network == "efficientnet-lite0":
        return (images - 127.0) / 128.0  # what its weights expect, found by measurement (docs/backbones.md)
    if network == "vgg16":
        return keras.applications.vgg16.preprocess_input(images)
    if network == "resnet50":
        return keras.applications.resnet50.preprocess_input(images)
    return images  # MobileNetV3 rescales [0, 255] inside (include_preprocessing=True)
