"""How a model's seed becomes the seeds of its parts: one rule, written once.

A layer's initializer gets `seed * 1000 + index` (`derive_seed(seed, index)`);
a sub-network built from a seed of its own (a decoder, a generator, a
discriminator) gets `seed * 10 + index` (`derive_seed(seed, index,
stride=10)`), whose layers then follow the first rule. `seed_stream` gives a
model's layers `seed * 1000`, `seed * 1000 + 1`, ... in the order they are
built. `None` stays `None` (unseeded) everywhere. Changing any of this
changes every model's initial weights, and so every figure in docs/.
"""

import itertools

LAYER_STRIDE = 1000
NETWORK_STRIDE = 10


def derive_seed(seed, index, stride=LAYER_STRIDE):
    """`seed * stride + index`, or None for an unseeded model."""
    return None if seed is None else int(seed) * stride + index


def seed_stream(seed):
    """Successive layer seeds seed * 1000, seed * 1000 + 1, ... (None forever for None)."""
    return itertools.repeat(None) if seed is None else itertools.count(int(seed) * LAYER_STRIDE)
