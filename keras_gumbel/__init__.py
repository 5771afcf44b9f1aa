"""keras-gumbel: learn discrete choices by gradient descent in Keras 3.

The Gumbel-Softmax (Concrete) relaxation, straight-through and stronger gradient
estimators, temperature annealing, and selection layers.
"""

from keras_gumbel import callbacks, estimators, export, ops, random, schedules
from keras_gumbel.callbacks import Annealing, TemperatureAnnealing
from keras_gumbel.layers import (
    AnnealableLayer,
    ConcreteSelect,
    GumbelQuantizer,
    GumbelSigmoid,
    GumbelSoftmax,
    GumbelTopK,
    HardConcreteGate,
)

__version__ = "0.1.0"

ESTIMATORS = estimators.names()

__all__ = [
    "ESTIMATORS",
    "AnnealableLayer",
    "Annealing",
    "ConcreteSelect",
    "GumbelQuantizer",
    "GumbelSigmoid",
    "GumbelSoftmax",
    "GumbelTopK",
    "HardConcreteGate",
    "TemperatureAnnealing",
    "callbacks",
    "estimators",
    "export",
    "ops",
    "random",
    "schedules",
    "__version__",
]
