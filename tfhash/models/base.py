"""The shared skeleton of tfhash models: role optimisers, gates, batches, train_step, trackers."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfhash.checks import check_features, check_positive_int
from tfhash.configs.common import takes_images
from tfhash.defaults import COMPILE_LEARNING_RATE
from tfhash.optimizers import FusedAdam, check_learning_rate


class HashingModel(keras.Model):
    """Base class: a model with one optimiser per role and a shared train_step.

    Subclasses define `roles` (any number: TBH has two, GAN-style methods
    three), `loss_names`, `role_variables(role)`, `compute_loss_terms(inputs,
    training) -> (terms, objectives)` and `call(x)` (inference: {0, 1}
    codes). `terms` are the logged loss values (plus any tensors
    `after_gradients` or `role_gates` need); each `objectives[role]` is what
    that role's optimiser minimises (already scaled for the replica count).

    What a training batch holds is declared by the model (`batch_keys`):
    its input, "features" (flat float32) or "images" (float32 (B, H, W, C)
    in [0, 1]; `input_kind`), then "labels" when `needs_labels`, then
    "index" (the item's int64 position in the training split) when
    `needs_index`. `tfhash.data.batch_dataset` yields exactly these keys.
    A model with `needs_num_classes` (a classifier head) takes a
    `num_classes` constructor argument, which `tfhash.train.build_model`
    fills from the data's label width.
    `compute_loss_terms` receives the input tensor itself when the model
    declares its input only, and the dict otherwise.

    Optional hooks: `adapt(features)` (data-derived initial values, called
    by `tfhash.train.fit` before training), `after_gradients(terms)` and
    `role_gates(terms) -> {role: bool scalar}`: a role whose gate is False
    in a step applies nothing that step (its variables, its optimiser's
    slots and its step count stay as they are; Adam given zero gradients
    would still move the weights). Gates need a single replica (a
    `tf.cond` around an optimiser step cannot hold a cross-replica
    synchronisation): under a multi-replica strategy a gated model fails
    with a clear error.

    `pretrain_steps` (default 0): steps at the start of training that a
    model spends on a pre-training objective of its own (GMAN's L2
    auto-encoder); `tfhash.train` runs them on top of the config's
    `steps`.

    `train_steps` counts training steps for the model as a whole (a
    non-trainable int64 variable: checkpointed, restored and exported),
    whatever the gates did; `steps` in metrics.json is read from it.

    Args:
        input_dim: feature width the model accepts.
        bits: code length.
        seed: seed of the model's `keras.random.SeedGenerator`.
        image_shape: (H, W, C) of one item as an image, or None; `tfhash.train`
            passes the data's. Image models (`input_kind == "images"`) need it.
    """

    roles = ()
    loss_names = ()
    input_kind = "features"
    needs_labels = False
    needs_index = False
    needs_num_classes = False
    pretrain_steps = 0

    def __init__(self, input_dim, bits, seed=None, image_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.bits = check_positive_int("bits", bits)
        self.seed = seed
        self.image_shape = None if image_shape is None else tuple(int(d) for d in image_shape)
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.input_dim:
            raise ValueError(
                f"image_shape {self.image_shape} holds {int(np.prod(self.image_shape))} values, not "
                f"input_dim={input_dim}; pass the shape of one item with its channel axis, (H, W, C)"
            )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        self.role_optimizers = {}
        self.train_steps = self.add_state("train_steps", "int64", "zeros")

    def add_state(self, name, dtype="float32", initializer="ones"):
        """A non-trainable scalar variable of model state (a step count, a schedule's beta): saved in
        checkpoints and exports, written by one replica."""
        return self.add_weight(
            name=name,
            shape=(),
            dtype=dtype,
            initializer=initializer,
            trainable=False,
            aggregation="only_first_replica",
        )

    @classmethod
    def takes_images(cls, options):
        """Whether a model built with `options` (its config's "model" section) trains on images:
        an image model, or one given an image backbone (`tfhash.configs.common.takes_images`; a
        model without a `backbone` option takes features).

        `tfhash.train` asks before building the model, so that image data
        is required up front.
        """
        return cls.input_kind == "images" or takes_images(options.get("backbone", "mlp"))

    def use_backbone(self, backbone, backbone_options):
        """Records the encoder backbone (`backbone`, `backbone_options`); an image backbone makes the
        model take images, which needs `image_shape`. Returns the shape of one item as the backbone
        takes it: (input_dim,) or image_shape."""
        self.backbone = backbone
        self.backbone_options = dict(backbone_options or {})
        if takes_images(backbone):
            self.input_kind = "images"
            if self.image_shape is None:
                raise ValueError(
                    f"backbone={backbone!r} needs image_shape (H, W, C) with H * W * C = input_dim "
                    f"{self.input_dim}; received image_shape=None. Train on an image source."
                )
        return self.image_shape if self.input_kind == "images" else (self.input_dim,)

    def build_encoder(self, backbone, backbone_options, seed, name="encoder"):
        """`use_backbone`, then the built backbone (`tfhash.backbones.build_backbone`)."""
        from tfhash.backbones import build_backbone

        item_shape = self.use_backbone(backbone, backbone_options)
        return build_backbone(backbone, item_shape, seed=seed, name=name, **self.backbone_options)

    @property
    def batch_keys(self):
        """What `train_step` consumes, in order: the input kind, then "labels", "index" if needed."""
        return (self.input_kind, *("labels",) * self.needs_labels, *("index",) * self.needs_index)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, optimizers=None, learning_rate=COMPILE_LEARNING_RATE, **kwargs):
        """Sets one optimiser per role (default: Adam(learning_rate) each).

        Args:
            optimizers: dict role -> optimizer, e.g. {"actor": ..., "critic": ...}
                (`tfhash.optimizers.build_role_optimizers` makes them from a config).
            learning_rate: learning rate of the default Adam optimisers
                (`tfhash.defaults.COMPILE_LEARNING_RATE`; `tfhash train` passes the method's own).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        optimizers = dict(optimizers or {})
        check_learning_rate(learning_rate)
        unknown = set(optimizers) - set(self.roles)
        if unknown:
            raise ValueError(
                f"unknown optimizer roles {sorted(unknown)}; {type(self).__name__} has {self.roles}"
            )
        mixed_float16 = keras.mixed_precision.dtype_policy().name == "mixed_float16"
        for role in self.roles:
            optimizer = optimizers.get(role) or FusedAdam(learning_rate, name=f"{role}_adam")
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
        inputs = self.unpack_batch(data)
        if not self.role_optimizers:
            raise RuntimeError(f"call {type(self).__name__}.compile() before fit()")
        with tf.GradientTape(persistent=True) as tape:
            terms, objectives = self.compute_loss_terms(inputs, training=True)
            scaled = {r: self.role_optimizers[r].scale_loss(objectives[r]) for r in self.roles}
        gates = self.role_gates(terms)
        if gates and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise NotImplementedError(
                f"{type(self).__name__} gates its roles {sorted(gates)}, and a gated update cannot cross "
                "a multi-replica distribution strategy's synchronisation point; train it on one device"
            )
        for role in self.roles:
            variables = self.role_variables(role)
            grads = tape.gradient(scaled[role], variables)
            optimizer = self.role_optimizers[role]
            if role in gates:
                tf.cond(
                    tf.cast(gates[role], tf.bool),
                    lambda o=optimizer, g=grads, v=variables: self._apply(o, g, v),
                    tf.no_op,
                )
            else:
                optimizer.apply(grads, variables)
        del tape
        self.after_gradients(terms)
        self.train_steps.assign_add(1)
        return self._update_trackers(terms)

    @staticmethod
    def _apply(optimizer, grads, variables):
        optimizer.apply(grads, variables)
        return tf.no_op()

    def unpack_batch(self, data):
        """A pipeline batch -> what `compute_loss_terms` takes (see the class docstring).

        Accepts the dict of `tfhash.data.batch_dataset`, or a bare feature
        tensor / (x, y) tuple for a model that consumes features only.

        Raises:
            ValueError: when the batch lacks a declared key.
        """
        keys = self.batch_keys
        if not isinstance(data, dict):
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            if keys != ("features",):
                raise ValueError(
                    f"{type(self).__name__} trains on batches with {keys}; build them with "
                    "tfhash.data.batch_dataset(split, model.batch_keys, ...)"
                )
            return x
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs {missing} in every batch; the batch holds {sorted(data)}"
            )
        return data[keys[0]] if len(keys) == 1 else {key: data[key] for key in keys}

    def reconstruct(self, features):
        """Reconstructions (n, input_dim) of NumPy features, for models with a decoder or generator.

        Used by `tfhash train --figure`; models without one do not override it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no decoder or generator")

    @classmethod
    def can_reconstruct(cls):
        return cls.reconstruct is not HashingModel.reconstruct

    def role_gates(self, terms):
        """{role: bool scalar}: roles that step only when their gate is True this step (default: none)."""
        return {}

    def after_gradients(self, terms):
        """Called in `train_step` after every optimiser has stepped (e.g. closed-form updates)."""

    def adapt(self, features):
        """Sets data-derived initial values from training features (NumPy); default: nothing."""

    def finalize(self, split):
        """Fits what follows training in closed form (e.g. the classifier baseline's ITQ) on the
        training `split`; `tfhash.train.fit` calls it after training and before evaluation (also when a
        re-run finds training finished: it must depend only on the weights and the split). Default:
        nothing."""

    def test_step(self, data):
        terms, _ = self.compute_loss_terms(self.unpack_batch(data), training=False)
        return self._update_trackers(terms)

    def _update_trackers(self, terms):
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def encode(self, features, batch_size=1024):
        """Encodes a NumPy feature array to {0, 1} uint8 codes (n, bits).

        Image models take the flat view (n, H * W * C) of [0, 1] images and
        reshape it inside, as their SavedModel's `features` signature does.
        """
        features = check_features(features, self.input_dim, type(self).__name__).astype(np.float32)
        return self._encode_batches(features, batch_size, self.model_input)

    def encode_images(self, images, pixel_max=255.0, batch_size=1024):
        """Encodes uint8 images (n, H, W[, C]) of an image model; the float view is made per batch."""
        if self.input_kind != "images":
            raise ValueError(f"{type(self).__name__} takes features, not images; call encode(features)")
        images = np.asarray(images)
        grey = tuple(self.image_shape[:2]) if self.image_shape[-1] == 1 else None  # (n, H, W) for C = 1
        if images.shape[1:] not in (tuple(self.image_shape), grey):
            raise ValueError(
                f"{type(self).__name__} takes images of shape {tuple(self.image_shape)}; "
                f"received {images.shape[1:]}. Resize them as in training."
            )
        return self._encode_batches(images, batch_size, self._image_batch(pixel_max))

    def _image_batch(self, pixel_max):
        """uint8 images (B, H, W[, C]) -> the float32 model input (B, H, W, C) in [0, 1]."""
        scale = np.float32(1.0 / pixel_max)
        return lambda chunk: chunk.astype(np.float32).reshape(-1, *self.image_shape) * scale

    @staticmethod
    def map_batches(items, batch_size, prepare, function):
        """[function(prepare(chunk)) as NumPy for each chunk of `batch_size` items]."""
        return [
            np.asarray(function(prepare(items[i : i + batch_size]))) for i in range(0, len(items), batch_size)
        ]

    def split_inputs(self, split):
        """(items, prepare) of a `tfhash.data.Split` for `map_batches`: an image model's uint8 images
        with their float view made per batch, otherwise the float features."""
        if self.input_kind == "images" and getattr(split, "images", None) is not None:
            return split.images, self._image_batch(split.pixel_max)
        return np.asarray(split.features, np.float32), self.model_input

    def _encode_batches(self, items, batch_size, prepare):
        codes = self.map_batches(items, batch_size, prepare, lambda x: self(x, training=False))
        if not codes:
            return np.zeros((0, self.bits), np.uint8)
        return np.concatenate(codes).round().astype(np.uint8)

    def model_input(self, features):
        """Flat features (B, input_dim) -> what `call` takes: images reshape to (B, H, W, C)."""
        if self.input_kind == "images":
            return ops.reshape(features, (-1, *self.image_shape))
        return features

    def encode_split(self, split, batch_size=1024):
        """Codes of a `tfhash.data.Split`: an image model reads its uint8 images, others its features."""
        if self.input_kind == "images" and getattr(split, "images", None) is not None:
            return self.encode_images(split.images, split.pixel_max, batch_size)
        return self.encode(split.features, batch_size)

    def get_config(self):
        base = {k: v for k, v in super().get_config().items() if k in ("name", "trainable", "dtype")}
        image_shape = None if self.image_shape is None else list(self.image_shape)
        return {
            **base,
            "input_dim": self.input_dim,
            "bits": self.bits,
            "seed": self.seed,
            "image_shape": image_shape,
        }
