"""Reusable hashing layers."""

from tfhash.layers.geco import GECO
from tfhash.layers.graph_convolution import GraphConvolution, hamming_adjacency, normalize_adjacency
from tfhash.layers.stochastic_binary import StochasticBinary, binarize

__all__ = [
    "GECO",
    "GraphConvolution",
    "StochasticBinary",
    "binarize",
    "hamming_adjacency",
    "normalize_adjacency",
]
