"""Small convolutional encoder and its transposed mirror (the GMAN / BGAN image networks)."""

import math

import keras

from tfhash.backbones.mlp import check_seed, check_widths
from tfhash.checks import check_positive_int
from tfhash.seeds import derive_seed


def he_normal(seed, index):
    """He (MSRA) normal initializer seeded by `derive_seed(seed, index)` (unseeded if seed is None)."""
    return keras.initializers.HeNormal(seed=derive_seed(seed, index))


@keras.saving.register_keras_serializable(package="tfhash")
class ConvEncoder(keras.layers.Layer):
    """Stack of strided convolutions, then Flatten: images (B, H, W, C) -> features (B, output_dim).

    Each of the `len(filters)` blocks is a `kernel_size` x `kernel_size` convolution with
    stride `strides` and 'same' padding (He normal kernels, no bias when batch norm follows),
    then batch normalisation and `activation`. With 'same' padding every block divides the
    height and width by `strides`, rounding up, so for 28x28 inputs and the defaults the map
    goes 28 -> 14 -> 7 -> 4 and output_dim = 4 * 4 * 128 = 2048.

    Args:
        filters: tuple of channel counts, one per block ((32, 64, 128)).
        kernel_size: side of the square kernels (5).
        strides: stride of every convolution (2).
        batch_norm: whether each convolution is followed by batch normalisation (True).
        activation: activation of every block ("relu").
        seed: int or None; convolution i is initialised with `derive_seed(seed, i)`.

    Call arguments:
        images: float tensor (batch, H, W, C) with values in [0, 1].
        training: whether batch normalisation uses batch statistics.

    Returns:
        float tensor (batch, output_dim).

    Attributes:
        output_dim: ceil(H / s^n) * ceil(W / s^n) * filters[-1] (s = strides,
            n = len(filters)), set when the layer is built (None before).
        input_kind: "images".

    Reference: Song et al., "Binary Generative Adversarial Networks for Image Retrieval"
    (BGAN, AAAI 2018); Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing
    Network" (CVPR 2018).
    """

    input_kind = "images"

    def __init__(
        self,
        filters=(32, 64, 128),
        kernel_size=5,
        strides=2,
        batch_norm=True,
        activation="relu",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_widths("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.batch_norm = bool(batch_norm)
        self.activation = keras.activations.get(activation)
        self.seed = check_seed(seed)
        self.output_dim = None
        self.conv_layers = [
            keras.layers.Conv2D(
                width,
                self.kernel_size,
                strides=self.strides,
                padding="same",
                use_bias=not self.batch_norm,
                kernel_initializer=he_normal(seed, index),
                dtype=self.dtype_policy,
                name=f"conv_{index}",
            )
            for index, width in enumerate(self.filters)
        ]
        self.norm_layers = [
            keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"batch_norm_{index}")
            for index in range(len(self.filters) if self.batch_norm else 0)
        ]
        self.flatten = keras.layers.Flatten(dtype=self.dtype_policy, name="flatten")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4 or shape[1] is None or shape[2] is None:
            raise ValueError(
                "ConvEncoder expects images of shape (batch, H, W, C) with known H and W; "
                f"received input shape {shape}. Give the input its image size."
            )
        for index, conv in enumerate(self.conv_layers):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)  # (B, ceil(h / s), ceil(w / s), filters[i])
            if self.batch_norm:
                self.norm_layers[index].build(shape)
        self.output_dim = math.prod(shape[1:])

    def call(self, images, training=False):
        x = images
        for index, conv in enumerate(self.conv_layers):
            x = conv(x)
            if self.batch_norm:
                x = self.norm_layers[index](x, training=training)
            x = self.activation(x)
        return self.flatten(x)

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        scale = self.strides ** len(self.filters)
        return (input_shape[0], math.ceil(height / scale) * math.ceil(width / scale) * self.filters[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "batch_norm": self.batch_norm,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="tfhash")
class ConvDecoder(keras.layers.Layer):
    """Mirror of `ConvEncoder`: codes or vectors (B, K) -> images (B, H, W, C).

    A Dense layer maps the input to an (h0, w0, filters[0]) map with h0 = ceil(H / s^n),
    w0 = ceil(W / s^n) (s = strides, n = len(filters)), followed by batch normalisation and
    `activation`. Then one `kernel_size` x `kernel_size` stride-s transposed convolution per
    remaining entry of `filters` (each with batch normalisation and `activation`) and a last
    one to C channels with `output_activation`. Each transposed convolution multiplies the
    height and width by s, so the map ends at (h0 * s^n, w0 * s^n, C) and is cropped to
    exactly (H, W, C): a center crop, with the odd row or column (if any) dropped at the
    bottom or right. For 28x28 images and the defaults: 4 -> 8 -> 16 -> 32, cropped to 28.

    Args:
        output_shape: (H, W, C) of the images to produce.
        filters: channel counts from the smallest map up ((128, 64, 32), the encoder's reversed).
        kernel_size: side of the square kernels (5).
        strides: stride of every transposed convolution (2).
        batch_norm: whether the Dense and the hidden transposed convolutions are followed by
            batch normalisation (True).
        activation: activation of the hidden blocks ("relu").
        output_activation: activation of the last layer ("sigmoid": pixels in [0, 1]).
        seed: int or None; the Dense layer is initialised with `derive_seed(seed, 0)` and transposed
            convolution i with `derive_seed(seed, i + 1)` (He normal).

    Call arguments:
        inputs: float tensor (batch, K).
        training: whether batch normalisation uses batch statistics.

    Returns:
        float tensor (batch, H, W, C).
    """

    def __init__(
        self,
        output_shape,
        filters=(128, 64, 32),
        kernel_size=5,
        strides=2,
        batch_norm=True,
        activation="relu",
        output_activation="sigmoid",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(output_shape, (list, tuple)) or len(output_shape) != 3:
            raise ValueError(
                f"output_shape must be (H, W, C), e.g. (28, 28, 1); received output_shape={output_shape!r}"
            )
        self.output_shape = tuple(check_widths("output_shape", tuple(output_shape)))
        self.filters = check_widths("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.batch_norm = bool(batch_norm)
        self.activation = keras.activations.get(activation)
        self.output_activation = keras.activations.get(output_activation)
        self.seed = check_seed(seed)
        scale = self.strides ** len(self.filters)
        height, width, channels = self.output_shape
        self.initial_shape = (math.ceil(height / scale), math.ceil(width / scale), self.filters[0])
        self._build_sublayers(channels)

    def _build_sublayers(self, channels):
        seed, policy = self.seed, self.dtype_policy
        self.dense = keras.layers.Dense(
            math.prod(self.initial_shape),
            use_bias=not self.batch_norm,
            kernel_initializer=he_normal(seed, 0),
            dtype=policy,
            name="dense",
        )
        self.reshape = keras.layers.Reshape(self.initial_shape, dtype=policy, name="reshape")
        widths = (*self.filters[1:], channels)
        self.deconv_layers = [
            keras.layers.Conv2DTranspose(
                width,
                self.kernel_size,
                strides=self.strides,
                padding="same",
                use_bias=not self.batch_norm or index == len(widths) - 1,
                kernel_initializer=he_normal(seed, index + 1),
                dtype=policy,
                name=f"deconv_{index}",
            )
            for index, width in enumerate(widths)
        ]
        self.norm_layers = [
            keras.layers.BatchNormalization(dtype=policy, name=f"batch_norm_{index}")
            for index in range(len(self.filters) if self.batch_norm else 0)
        ]

    def build(self, input_shape):
        batch = input_shape[0]
        self.dense.build(tuple(input_shape))
        shape = (batch, *self.initial_shape)
        for index, deconv in enumerate(self.deconv_layers):
            if self.batch_norm:
                self.norm_layers[index].build(shape)
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)

    def call(self, inputs, training=False):
        x = self.reshape(self.dense(inputs))  # (B, h0, w0, filters[0])
        for index, deconv in enumerate(self.deconv_layers):
            if self.batch_norm:
                x = self.norm_layers[index](x, training=training)
            x = deconv(self.activation(x))
        height, width, _ = self.output_shape
        top = (self.initial_shape[0] * self.strides ** len(self.filters) - height) // 2
        left = (self.initial_shape[1] * self.strides ** len(self.filters) - width) // 2
        return self.output_activation(x[:, top : top + height, left : left + width, :])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "output_shape": list(self.output_shape),
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "batch_norm": self.batch_norm,
            "activation": keras.activations.serialize(self.activation),
            "output_activation": keras.activations.serialize(self.output_activation),
            "seed": self.seed,
        }
