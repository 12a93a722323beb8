"""Mixed precision: which policy a device gets, a probe that times it against float32 once per
machine (a CPU may run bfloat16 slower), the warning `fit` prints when it is slower, and a context
that sets the Keras dtype policy."""

import contextlib
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfhash.files import write_json


def mixed_precision_policy():
    """mixed_float16 on a GPU, mixed_bfloat16 on a CPU."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def probe_cache_path():
    """The file of measured precision probes: $TFHASH_CACHE (default ~/.cache/tfhash)/precision-probe.json."""
    folder = os.environ.get("TFHASH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tfhash"))
    return os.path.join(folder, "precision-probe.json")


def cpu_model():
    """The CPU's model name (Linux: /proc/cpuinfo), or what the platform module knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def precision_probe(policy, seconds=0.4, units=1024, batch=256):
    """(float32 steps/s, `policy` steps/s) of a small dense train step on this machine.

    The step (a 3-layer MLP of `units`, a batch of `batch`, Adam, one compiled
    `GradientTape` step) runs in float32 and in `policy` alternately, twice each for
    `seconds` after a warm-up, and the better of each pair counts. The figures are kept
    in `probe_cache_path()` under the CPU model, TensorFlow version and policy, so a
    machine is measured once.
    """
    import json

    key = f"{cpu_model()} | TensorFlow {tf.__version__} | {policy}"
    path = probe_cache_path()
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    if isinstance(cached.get(key), list) and len(cached[key]) == 2:
        return tuple(cached[key])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, units), dtype=np.float32))

    def build(name):
        with dtype_policy(name):
            layers = [keras.layers.Dense(units, activation="relu") for _ in range(2)] + [
                keras.layers.Dense(64)
            ]
            model = keras.Sequential([keras.Input((units,)), *layers])
        optimizer = keras.optimizers.Adam(1e-3)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.cast(model(x, training=True), tf.float32)))
            optimizer.apply_gradients(
                zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
            )
            return loss

        return step

    steps = {name: build(name) for name in ("float32", policy)}
    for step in steps.values():
        for _ in range(3):
            step()  # tracing and warm-up
    rates = {name: 0.0 for name in steps}
    for _ in range(2):
        for name, step in steps.items():
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                step().numpy()
                count += 1
            rates[name] = max(rates[name], count / (time.perf_counter() - start))
    result = (round(rates["float32"], 1), round(rates[policy], 1))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json({**cached, key: list(result)}, path)
    except OSError:
        pass  # an unwritable cache only means measuring again next time
    return result


def mixed_precision_warning(policy):
    """A warning line when `policy` runs a probe step slower than float32 on this CPU, else None.

    On a GPU (mixed_float16) nothing is probed: the tensor cores are what it is for.
    """
    if policy != "mixed_bfloat16":
        return None
    plain, mixed = precision_probe(policy)
    if mixed >= plain:
        return None
    return (
        f"warning: {policy} is slower than float32 on this CPU ({cpu_model()}): a probe train step ran "
        f"{mixed:.1f} steps/s against {plain:.1f} in float32 ({mixed / plain:.2f}x); drop --mixed-precision "
        f"for a faster run (measured once per machine, kept in {probe_cache_path()})"
    )


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
