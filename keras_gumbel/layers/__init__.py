"""Keras layers of keras-gumbel, one per file."""

from keras_gumbel.layers._base import AnnealableLayer, MinimumTemperature
from keras_gumbel.layers.gumbel_softmax import GumbelSoftmax

__all__ = [
    "AnnealableLayer",
    "GumbelSoftmax",
    "MinimumTemperature",
]
