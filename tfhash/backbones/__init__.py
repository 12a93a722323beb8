"""Feature extractors that hashing models put their heads on: flat-feature MLPs and image networks.

Every backbone exposes `output_dim` (the width of its flat output) and `input_kind`
("features" for inputs (batch, D), "images" for float images (batch, H, W, C) in [0, 1]).
"""

from tfhash.backbones.applications import NETWORKS, ApplicationBackbone
from tfhash.backbones.conv import ConvDecoder, ConvEncoder
from tfhash.backbones.mlp import MLP
from tfhash.configs.common import takes_images

BACKBONES = ("mlp", "conv", *NETWORKS)


def build_backbone(backbone, input_shape, seed=None, **options):
    """Builds the backbone `backbone` for items of shape `input_shape`, weights created.

    Args:
        backbone: one of `BACKBONES`: "mlp", "conv", "vgg16", "resnet50", "mobilenetv3small",
            "efficientnet-lite0".
        input_shape: shape of one item without the batch axis: (D,) for "mlp",
            (H, W, C) for the image backbones.
        seed: seeds the initialisers of "mlp" and "conv". keras.applications networks have
            no per-layer seed, so the application backbones ignore it (use
            `keras.utils.set_random_seed` for a reproducible random initialisation).
        **options: constructor arguments of `MLP`, `ConvEncoder` or `ApplicationBackbone`
            (e.g. `units=(1024, 512)`, `filters=(32, 64)`, `weights="imagenet"`), and
            `freeze=True` for any backbone: its weights are not trained and its batch norm
            layers run in inference mode (Keras 3's convention for `trainable=False`).

    Returns:
        a built `keras.layers.Layer` with `output_dim` and `input_kind`.

    Raises:
        ValueError: for an unknown name, an input shape of the wrong rank, or bad options.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid names: {', '.join(BACKBONES)}")
    input_shape = tuple(input_shape)
    rank = 3 if takes_images(backbone) else 1
    if len(input_shape) != rank:
        expected = "(H, W, C)" if takes_images(backbone) else "(D,)"
        raise ValueError(
            f"backbone {backbone!r} takes input_shape={expected} (one item, no batch axis); "
            f"received input_shape={input_shape!r}"
        )
    if backbone in ("mlp", "conv"):
        freeze = options.pop("freeze", False)
        layer = (MLP if backbone == "mlp" else ConvEncoder)(seed=seed, **options)
        layer.build((None, *input_shape))
        layer.trainable = not freeze  # Keras' convention: frozen batch norm runs in inference mode
        return layer
    layer = ApplicationBackbone(network=backbone, input_shape=input_shape, **options)
    layer.build((None, *input_shape))
    return layer


__all__ = [
    "BACKBONES",
    "MLP",
    "ApplicationBackbone",
    "ConvDecoder",
    "ConvEncoder",
    "build_backbone",
]
