"""keras-gumbel: learn discrete choices by gradient descent in Keras 3.

The Gumbel-Softmax (Concrete) relaxation, straight-through and stronger gradient
estimators, temperature annealing, and selection layers.
"""

from keras_gumbel import estimators, ops, random
from keras_gumbel.layers import AnnealableLayer, GumbelSoftmax

__version__ = "0.1.0"

ESTIMATORS = estimators.names()

__all__ = [
    "ESTIMATORS",
    "AnnealableLayer",
    "GumbelSoftmax",
    "estimators",
    "ops",
    "random",
    "__version__",
]
