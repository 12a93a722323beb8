"""Defaults shared by every method, written once: the code length, the benchmark's grid and the
optimiser names."""

BITS = 32  # code length of every model, config and baseline unless given
BIT_GRID = (16, 32, 64)  # `tfhash bench`'s code lengths unless given
SEEDS = (0, 1, 2)  # `tfhash bench`'s seeds unless given
OPTIMIZERS = ("adam", "sgd")  # the optimisers a config (and --optimizer) may name
# the rate of `HashingModel.compile()`'s default Adam optimisers, for a model used with Keras
# directly; `tfhash train` and `tfhash bench` pass the method's own rate from its config
COMPILE_LEARNING_RATE = 1e-4
