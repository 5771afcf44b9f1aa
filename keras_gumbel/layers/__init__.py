"""Keras layers of keras-gumbel, one per file."""

from keras_gumbel.layers._base import (
    AnnealableLayer,
    MinimumTemperature,
    annealable_layers,
    model_layers,
)
from keras_gumbel.layers.concrete_select import ConcreteSelect
from keras_gumbel.layers.gumbel_quantizer import GumbelQuantizer
from keras_gumbel.layers.gumbel_sigmoid import GumbelSigmoid
from keras_gumbel.layers.gumbel_softmax import GumbelSoftmax
from keras_gumbel.layers.gumbel_top_k import GumbelTopK
from keras_gumbel.layers.hard_concrete_gate import HardConcreteGate

__all__ = [
    "AnnealableLayer",
    "ConcreteSelect",
    "GumbelQuantizer",
    "GumbelSigmoid",
    "GumbelSoftmax",
    "GumbelTopK",
    "HardConcreteGate",
    "MinimumTemperature",
    "annealable_layers",
    "model_layers",
]
