"""Hashing models (keras.Model subclasses trained with `fit`)."""

from tfhash.models.base import HashingModel
from tfhash.models.tbh import TBH

__all__ = ["TBH", "HashingModel"]
