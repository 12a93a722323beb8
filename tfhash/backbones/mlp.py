"""A stack of fully connected layers over flat features (TBH, SGH and other fc7-feature methods)."""

import keras

from tfhash.seeds import derive_seed


def check_widths(name, values):
    """Returns `values` as a tuple of positive ints, else raises a ValueError naming `name`."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(
            f"{name} must be a non-empty tuple of positive ints, e.g. (1024,); received {name}={values!r}"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"{name} must hold positive ints only; received {name}={tuple(values)!r} "
                f"(bad entry {value!r}). Give every layer a width of at least 1."
            )
    return tuple(int(value) for value in values)


def check_seed(seed):
    """Returns `seed` if it is an int or None, else raises a ValueError naming it."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None; received seed={seed!r}")
    return seed


def seeded_initializer(identifier, seed, index):
    """A fresh copy of the initializer `identifier`, seeded by `tfhash.seeds.derive_seed(seed, index)`.

    Initializers without a `seed` (zeros, constants) and `seed=None` are returned unseeded,
    so two layers built with the same seed get identical weights.
    """
    config = keras.initializers.serialize(keras.initializers.get(identifier))
    if seed is not None and isinstance(config, dict) and "seed" in config.get("config", {}):
        config["config"]["seed"] = derive_seed(seed, index)
    return keras.initializers.deserialize(config)


@keras.saving.register_keras_serializable(package="tfhash")
class MLP(keras.layers.Layer):
    """Fully connected feature extractor: `len(units)` Dense layers, each with `activation`.

    Every layer, the last included, applies `activation`: the MLP is a backbone, and the
    hashing head (code layer, binariser) is added by the model on top of it.

    Args:
        units: tuple of the hidden widths; the output width is `units[-1]`.
        activation: activation after every Dense layer ("relu").
        kernel_initializer: initializer of the Dense kernels ("glorot_uniform").
        seed: int or None. Layer i's kernel initializer is seeded by `derive_seed(seed, i)`,
            so two MLPs with the same seed start from identical weights.

    Call arguments:
        features: float tensor (batch, D).

    Returns:
        float tensor (batch, units[-1]).

    Attributes:
        output_dim: the output width, `units[-1]`.
        input_kind: "features" (flat vectors, not images).

    Example:
        >>> mlp = MLP(units=(1024, 512), seed=1)
        >>> tuple(mlp(keras.ops.zeros((2, 4096))).shape)
        (2, 512)
    """

    input_kind = "features"

    def __init__(
        self,
        units=(1024,),
        activation="relu",
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_widths("units", units)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = check_seed(seed)
        self.dense_layers = [
            keras.layers.Dense(
                width,
                activation=self.activation,
                kernel_initializer=seeded_initializer(self.kernel_initializer, seed, index),
                dtype=self.dtype_policy,
                name=f"dense_{index}",
            )
            for index, width in enumerate(self.units)
        ]

    @property
    def output_dim(self):
        return self.units[-1]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self.dense_layers:
            dense.build(shape)
            shape = (*shape[:-1], dense.units)

    def call(self, features):
        for dense in self.dense_layers:
            features = dense(features)
        return features

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "units": list(self.units),
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }
