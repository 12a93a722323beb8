"""GECO: the Lagrange multiplier of a constrained VAE (Rezende and Viola 2018)."""

import sys
import warnings

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfhash")
class GECO(keras.layers.Layer):
    """State and update rule of one GECO constraint, reusable by any model.

    GECO minimises KL + lambda * C with a constraint C (for example
    ||x - g(z)||^2 - kappa: C <= 0 means the reconstruction is good enough).
    lambda is not trained by gradients; after every training step the model
    calls `update(C)`:

        C_ma   <- C on the first finite update, else alpha * C_ma + (1 - alpha) * C
        lambda <- clip(lambda * clip(exp(C_ma), *factor_range), *lambda_range)
                  every `update_every` finite updates.

    So lambda rises while the moving average says the constraint is violated
    (C_ma > 0), falls once it is satisfied (C_ma < 0), and by at most the
    factor range per update. These are the TBH-VAE authors' settings (alpha
    0.99, every 100 steps, factors [0.9, 1.1], lambda in [1e-6, 1e12]).
    Rezende and Viola's own rule is lambda <- lambda * exp(C_ma) every step;
    the factor clip bounds it when C is large (exp(C_ma) saturates to 1.1
    or 0.9 for |C_ma| > 0.1, so in practice lambda moves by +-10% per update
    with the sign of C_ma).

    A non-finite constraint (NaN or inf) changes nothing: lambda and C_ma
    keep their values, `nonfinite_updates` counts it, and a warning is
    printed (a Python `RuntimeWarning` when run eagerly, a line on stderr
    inside a compiled step). lambda can therefore never become NaN.

    The state is four non-trainable variables, so it is checkpointed,
    restored and exported with the model that owns the layer: `multiplier`
    (lambda), `moving_average` (C_ma), `finite_updates`, `nonfinite_updates`.

    Args:
        initial_multiplier: lambda before training (1.0).
        alpha: moving-average decay (0.99).
        update_every: finite updates between lambda updates (100).
        factor_range: (low, high) clip of the multiplicative factor exp(C_ma).
        multiplier_range: (low, high) clip of lambda.

    Reference: Rezende and Viola, "Taming VAEs", 2018; Verwilst et al.,
    "Deep image hashing based on twin-bottleneck hashing with variational
    autoencoders".
    """

    def __init__(
        self,
        initial_multiplier=1.0,
        alpha=0.99,
        update_every=100,
        factor_range=(0.9, 1.1),
        multiplier_range=(1e-6, 1e12),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"alpha must be in [0, 1); received alpha={alpha!r}")
        if not (isinstance(update_every, int) and update_every > 0):
            raise ValueError(f"update_every must be a positive int; received update_every={update_every!r}")
        for name, (low, high) in (("factor_range", factor_range), ("multiplier_range", multiplier_range)):
            if not 0.0 < float(low) <= float(high):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high; received {(low, high)}")
        if not float(multiplier_range[0]) <= float(initial_multiplier) <= float(multiplier_range[1]):
            raise ValueError(
                f"initial_multiplier must lie in multiplier_range {tuple(multiplier_range)}; "
                f"received {initial_multiplier!r}"
            )
        self.initial_multiplier = float(initial_multiplier)
        self.alpha = float(alpha)
        self.update_every = update_every
        self.factor_range = tuple(float(v) for v in factor_range)
        self.multiplier_range = tuple(float(v) for v in multiplier_range)

        def state(name, value):
            init = keras.initializers.Constant(value)
            return self.add_weight(shape=(), initializer=init, trainable=False, name=name, dtype="float32")

        self.multiplier = state("multiplier", self.initial_multiplier)
        self.moving_average = state("moving_average", 0.0)
        self.finite_updates = state("finite_updates", 0.0)
        self.nonfinite_updates = state("nonfinite_updates", 0.0)
        self.built = True

    def update(self, constraint):
        """Feeds one step's constraint value (a scalar); returns the new lambda."""
        constraint = tf.cast(tf.reshape(constraint, ()), tf.float32)
        finite = tf.math.is_finite(constraint)
        if tf.executing_eagerly() and not bool(finite):
            warnings.warn(self._warning(float(constraint)), RuntimeWarning, stacklevel=2)

        def finite_update():
            first = tf.equal(self.finite_updates, 0.0)
            average = tf.where(
                first, constraint, self.alpha * self.moving_average + (1.0 - self.alpha) * constraint
            )
            self.moving_average.assign(average)
            self.finite_updates.assign_add(1.0)
            due = tf.equal(tf.math.floormod(self.finite_updates, float(self.update_every)), 0.0)
            factor = tf.clip_by_value(tf.exp(average), *self.factor_range)
            stepped = tf.clip_by_value(self.multiplier * factor, *self.multiplier_range)
            self.multiplier.assign(tf.where(due, stepped, self.multiplier))
            return tf.identity(self.multiplier)

        def skip():
            self.nonfinite_updates.assign_add(1.0)
            if not tf.executing_eagerly():
                tf.print(self._warning("non-finite"), output_stream=sys.stderr)
            return tf.identity(self.multiplier)

        return tf.cond(finite, finite_update, skip)

    def _warning(self, value):
        return (
            f"GECO ({self.name}): the constraint is {value}; lambda and its moving average were left "
            "unchanged. A NaN reconstruction usually means the learning rate is too high or the "
            "features hold NaN/inf."
        )

    def get_config(self):
        return {
            **super().get_config(),
            "initial_multiplier": self.initial_multiplier,
            "alpha": self.alpha,
            "update_every": self.update_every,
            "factor_range": list(self.factor_range),
            "multiplier_range": list(self.multiplier_range),
        }
