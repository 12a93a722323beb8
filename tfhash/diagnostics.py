"""Per-bit diagnostics of a code book: usage, entropy, dead bits, redundancy (R-SGH's claim, made visible)."""

import keras
import numpy as np
import tensorflow as tf

from tfhash.evaluation import as_binary_codes
from tfhash.losses import redundancy_combination, redundancy_residuals

DEAD_ENTROPY = 0.1  # bits: a bit whose ones-fraction is below ~1.3% or above ~98.7%


def bit_statistics(codes, ridge=1.0):
    """Usage statistics of {0, 1} codes (n, K).

    Returns a dict:
        ones_fraction (K,): how often each bit is 1.
        entropy (K,): its entropy in bits (1 = balanced, 0 = constant).
        dead_bits: how many bits have entropy below 0.1 (nearly constant).
        redundancy (K,): ||r_k||^2 / n, the mean squared residual of bit k
            regressed on the other bits with R-SGH's closed form A (ridge
            `ridge`); near 0 means bit k is (nearly) a linear combination of
            the others; larger is less redundant (a balanced bit independent
            of the others scores about 0.25).
    """
    codes = as_binary_codes(codes).astype(np.float32)
    ones = codes.mean(axis=0)
    p = np.clip(ones.astype(np.float64), 1e-12, 1 - 1e-12)  # 1 - 1e-12 is 1.0 in float32
    entropy = np.where((ones > 0) & (ones < 1), -(p * np.log2(p) + (1 - p) * np.log2(1 - p)), 0.0)
    combination = redundancy_combination(tf.constant(codes), ridge)
    redundancy = redundancy_residuals(tf.constant(codes), combination).numpy() / max(len(codes), 1)
    return {
        "ones_fraction": ones,
        "entropy": entropy,
        "dead_bits": int(np.sum(entropy < DEAD_ENTROPY)),
        "redundancy": redundancy,
    }


def summary(stats):
    """Scalars of `bit_statistics` for logs and metrics.json."""
    return {
        "dead_bits": stats["dead_bits"],
        "bit_entropy_mean": float(np.mean(stats["entropy"])),
        "bit_redundancy_min": float(np.min(stats["redundancy"])),
        "bit_redundancy_mean": float(np.mean(stats["redundancy"])),
    }


class BitDiagnostics(keras.callbacks.Callback):
    """Encodes a fixed sample every N epochs and logs per-bit usage and redundancy.

    Sets `logs["dead_bits"]`, `logs["bit_entropy_mean"]`,
    `logs["bit_redundancy_min"]` and `logs["bit_redundancy_mean"]` (so it
    must come before `keras.callbacks.TensorBoard`), and writes histograms of
    the per-bit ones-fraction, entropy and redundancy under `log_dir`.

    Args:
        sample: a `tfhash.data.Split` of a few thousand training items,
            encoded with `model.encode_split`.
        every: epochs between diagnostics (and after the last).
        log_dir: TensorBoard folder for the histograms (None: none).
    """

    def __init__(self, sample, every=1, log_dir=None):
        super().__init__()
        self.sample, self.every, self.log_dir = sample, max(1, int(every)), log_dir
        self.last = None

    def on_train_begin(self, logs=None):
        self.total_epochs = self.params.get("epochs", 0)
        self.writer = tf.summary.create_file_writer(self.log_dir) if self.log_dir else None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.total_epochs:
            return
        self.last = bit_statistics(self.model.encode_split(self.sample))
        if logs is not None:
            logs.update(summary(self.last))
        if self.writer is not None:
            with self.writer.as_default(step=epoch):
                for key in ("ones_fraction", "entropy", "redundancy"):
                    tf.summary.histogram(f"bits/{key}", self.last[key])
            self.writer.flush()
