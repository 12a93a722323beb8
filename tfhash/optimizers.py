"""Optimisers by config: one per role, Adam or SGD, with a step-wise learning-rate schedule.

A training config (`config["train"]`) describes its optimisers with these keys:

- `learning_rate` (required): the base learning rate.
- `optimizer`: "adam" (default) or "sgd".
- `momentum` (SGD, default 0.0) and `weight_decay` (decoupled, as Keras
  applies it; default None: none).
- `learning_rate_halving_steps`: multiply the learning rate by
  `learning_rate_decay_factor` (default 0.5) every this many steps of the
  role's optimiser (a staircase; HashNet's solver halves it every 2,000).
- `epsilon` (Adam, default Keras' 1e-7): the denominator's constant (the
  BGAN authors' code: 1.0).
- `learning_rate_multipliers`: {role: factor}, e.g. {"hash_layer": 10.0}:
  the role's learning rate is the base one times the factor (HashNet trains
  its new layer at 10x the pretrained network's rate).
- `optimizers`: {role: {key: value}}: any key above, for one role only.

The schedule counts the role's own optimiser steps; a role that a gate
skipped (`HashingModel.role_gates`) does not advance its schedule.

Notes:
    `weight_decay` is Keras' decoupled decay (w <- w - lr * wd * w, apart from
    the gradient, and outside Adam's moment estimates). Caffe's solver, which
    produced HashNet's numbers, adds wd * w to the gradient instead (coupled
    L2). With plain SGD and momentum the two differ only in that the decay
    also enters the momentum; a method that must match the authors exactly
    adds 0.5 * wd * ||w||^2 to its objective and leaves `weight_decay` unset.

    Adam is `FusedAdam`: Keras' Adam with each variable's update done by one
    fused TensorFlow kernel (the same arithmetic, a third of the time).
"""

import keras
import tensorflow as tf
from keras import ops

from tfhash.defaults import OPTIMIZERS


@keras.saving.register_keras_serializable(package="tfhash")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam whose update of each dense float32 variable is one `ResourceApplyAdam` kernel.

    Keras 3's Adam updates a variable with about ten separate element-wise operations,
    each a pass over the variable and its two moments; TensorFlow's fused kernel reads
    and writes each once, multi-threaded. The arithmetic is Keras' (and the Adam paper's
    "epsilon hat" form): m += (g - m)(1 - beta_1), v += (g^2 - v)(1 - beta_2),
    w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon), with t the
    optimiser's step + 1. Measured on TBH's actor variables (9.5M weights, 2 CPU cores):
    26 ms per update against 88 ms (`benchmarks/tbh_throughput.py --profile`).

    Everything else (amsgrad, sparse gradients, other dtypes, other backends, a
    `tf.distribute` strategy, weight decay, clipping, loss scaling) goes through Keras'
    own code: the fused path only replaces the final update.
    """

    def update_step(self, gradient, variable, learning_rate):
        target = variable.value if isinstance(variable, keras.Variable) else variable
        if (
            self.amsgrad
            or keras.backend.backend() != "tensorflow"
            or isinstance(gradient, tf.IndexedSlices)
            or tf.distribute.has_strategy()
            or target.dtype != tf.float32
            or not hasattr(target, "handle")
        ):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        if not (hasattr(m, "handle") and hasattr(v, "handle")):  # e.g. inside an autocast scope
            return super().update_step(gradient, variable, learning_rate)
        step = ops.cast(self.iterations + 1, "float32")
        tf.raw_ops.ResourceApplyAdam(
            var=target.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=ops.power(ops.cast(self.beta_1, "float32"), step),
            beta2_power=ops.power(ops.cast(self.beta_2, "float32"), step),
            lr=ops.cast(learning_rate, "float32"),
            beta1=ops.cast(self.beta_1, "float32"),
            beta2=ops.cast(self.beta_2, "float32"),
            epsilon=ops.cast(self.epsilon, "float32"),
            grad=ops.cast(gradient, "float32"),
            use_locking=False,
        )


OPTIMIZER_KEYS = (
    "learning_rate",
    "optimizer",
    "momentum",
    "weight_decay",
    "learning_rate_halving_steps",
    "learning_rate_decay_factor",
    "epsilon",
)


def check_optimizer(kind):
    """The one check of an optimiser name (`OPTIMIZERS`)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; received optimizer={kind!r}")
    return kind


def check_learning_rate(learning_rate):
    """The one check of a base learning rate: a positive number (a ValueError naming it otherwise)."""
    try:
        value = None if isinstance(learning_rate, (bool, str)) else float(learning_rate)
    except (TypeError, ValueError):
        value = None
    if value is None or not 0 < value < float("inf"):
        raise ValueError(f"learning_rate must be positive; received learning_rate={learning_rate!r}")
    return learning_rate


def role_settings(train_config, role):
    """The optimiser settings of `role`: the shared keys, then the role's own (`optimizers[role]`)."""
    settings = {key: train_config[key] for key in OPTIMIZER_KEYS if train_config.get(key) is not None}
    own = dict((train_config.get("optimizers") or {}).get(role) or {})
    unknown = set(own) - set(OPTIMIZER_KEYS)
    if unknown:
        raise ValueError(
            f"optimizers[{role!r}] has unknown keys {sorted(unknown)}; "
            f"valid keys: {', '.join(OPTIMIZER_KEYS)}"
        )
    settings.update(own)
    multiplier = (train_config.get("learning_rate_multipliers") or {}).get(role, 1.0)
    settings["learning_rate"] = settings["learning_rate"] * float(multiplier)
    return settings


def build_optimizer(settings, name=None):
    """A Keras optimiser from one role's settings (see the module docstring).

    Raises:
        ValueError: on an unknown optimiser name, a non-positive learning
            rate or schedule length, or momentum outside [0, 1).
    """
    kind = check_optimizer(settings.get("optimizer", "adam"))
    learning_rate = settings["learning_rate"]
    check_learning_rate(learning_rate)
    halving = settings.get("learning_rate_halving_steps")
    if halving:
        if not halving > 0:
            raise ValueError(f"learning_rate_halving_steps must be positive; received {halving!r}")
        factor = settings.get("learning_rate_decay_factor", 0.5)
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, halving, factor, staircase=True
        )
    weight_decay = settings.get("weight_decay") or None
    if kind == "adam":
        epsilon = float(settings.get("epsilon", 1e-7))
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive; received epsilon={epsilon!r}")
        return FusedAdam(
            learning_rate, epsilon=epsilon, weight_decay=weight_decay, name=name and f"{name}_adam"
        )
    momentum = float(settings.get("momentum", 0.0))
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1); received momentum={momentum!r}")
    return keras.optimizers.SGD(
        learning_rate, momentum=momentum, weight_decay=weight_decay, name=name and f"{name}_sgd"
    )


def build_role_optimizers(train_config, roles):
    """{role: optimiser} for every role, from a training config."""
    return {role: build_optimizer(role_settings(train_config, role), name=role) for role in roles}
