"""tfhash: learning to hash with Keras 3 and TensorFlow 2."""

__version__ = "0.1.0"
