"""The shared skeleton of tfhash models: role optimisers, train_step, trackers."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.checks import check_features, check_positive_int


class HashingModel(keras.Model):
    """Base class: a model with one optimiser per role and a shared train_step.

    Subclasses define `roles`, `loss_names`, `role_variables(role)`,
    `compute_loss_terms(x, training) -> (terms, objectives)` and `call(x)`
    (inference: {0, 1} codes). `terms` are the logged loss values (plus any
    tensors `after_gradients` needs); each `objectives[role]` is what that
    role's optimiser minimises (already scaled for the replica count).
    Optional hooks: `adapt(features)` (data-derived initial values, called
    by `tfhash.train.fit` before training) and `after_gradients(terms)`.

    Args:
        input_dim: feature width the model accepts.
        bits: code length.
        seed: seed of the model's `keras.random.SeedGenerator`.
    """

    roles = ()
    loss_names = ()

    def __init__(self, input_dim, bits, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.bits = check_positive_int("bits", bits)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        self.role_optimizers = {}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, optimizers=None, learning_rate=1e-4, **kwargs):
        """Sets one optimiser per role (default: Adam(learning_rate) each).

        Args:
            optimizers: dict role -> optimizer, e.g. {"actor": ..., "critic": ...}.
            learning_rate: learning rate of the default Adam optimisers.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        optimizers = dict(optimizers or {})
        unknown = set(optimizers) - set(self.roles)
        if unknown:
            raise ValueError(
                f"unknown optimizer roles {sorted(unknown)}; {type(self).__name__} has {self.roles}"
            )
        mixed_float16 = keras.mixed_precision.dtype_policy().name == "mixed_float16"
        for role in self.roles:
            optimizer = optimizers.get(role) or keras.optimizers.Adam(learning_rate, name=f"{role}_adam")
            if mixed_float16 and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.role_variables(role))
            self.role_optimizers[role] = optimizer
            setattr(self, f"{role}_optimizer", optimizer)
        kwargs.setdefault("optimizer", None)  # no unused default optimizer; roles have their own
        super().compile(**kwargs)

    def role_variables(self, role):
        raise NotImplementedError

    def compute_loss_terms(self, x, training=False):
        raise NotImplementedError

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not self.role_optimizers:
            raise RuntimeError(f"call {type(self).__name__}.compile() before fit()")
        with tf.GradientTape(persistent=True) as tape:
            terms, objectives = self.compute_loss_terms(x, training=True)
            scaled = {r: self.role_optimizers[r].scale_loss(objectives[r]) for r in self.roles}
        for role in self.roles:
            variables = self.role_variables(role)
            grads = tape.gradient(scaled[role], variables)
            self.role_optimizers[role].apply(grads, variables)
        del tape
        self.after_gradients(terms)
        return self._update_trackers(terms)

    def after_gradients(self, terms):
        """Called in `train_step` after every optimiser has stepped (e.g. closed-form updates)."""

    def adapt(self, features):
        """Sets data-derived initial values from training features (NumPy); default: nothing."""

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        terms, _ = self.compute_loss_terms(x, training=False)
        return self._update_trackers(terms)

    def _update_trackers(self, terms):
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def encode(self, features, batch_size=1024):
        """Encodes a NumPy feature array to {0, 1} uint8 codes (n, bits)."""
        features = check_features(features, self.input_dim, type(self).__name__).astype(np.float32)
        codes = [
            np.asarray(self(features[i : i + batch_size], training=False))
            for i in range(0, len(features), batch_size)
        ]
        if not codes:
            return np.zeros((0, self.bits), np.uint8)
        return np.concatenate(codes).round().astype(np.uint8)

    def get_config(self):
        base = {k: v for k, v in super().get_config().items() if k in ("name", "trainable", "dtype")}
        return {**base, "input_dim": self.input_dim, "bits": self.bits, "seed": self.seed}
