"""Reusable hashing layers."""

from tfhash.layers.geco import GECO
from tfhash.layers.graph_convolution import GraphConvolution, hamming_adjacency, normalize_adjacency
from tfhash.layers.sign_binarization import BiHalf, GreedySign, bihalf, greedy_sign
from tfhash.layers.stochastic_binary import StochasticBinary, binarize

__all__ = [
    "BiHalf",
    "GECO",
    "GreedySign",
    "GraphConvolution",
    "StochasticBinary",
    "bihalf",
    "binarize",
    "greedy_sign",
    "hamming_adjacency",
    "normalize_adjacency",
]
