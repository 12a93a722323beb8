"""Hashing models (keras.Model subclasses trained with `fit`)."""

from tfhash.models.base import HashingModel
from tfhash.models.bgan import BGAN
from tfhash.models.classifier import ClassifierHash
from tfhash.models.gman import GMAN, SGMAN
from tfhash.models.hashnet import HashNet
from tfhash.models.jmlh import JMLH
from tfhash.models.sgh import SGH
from tfhash.models.similarity_hash import BiHalf, GreedyHash
from tfhash.models.tbh import TBH
from tfhash.models.tbh_vae import TBHVAE

__all__ = [
    "BGAN",
    "BiHalf",
    "GMAN",
    "GreedyHash",
    "SGMAN",
    "ClassifierHash",
    "JMLH",
    "SGH",
    "TBH",
    "TBHVAE",
    "HashNet",
    "HashingModel",
]
