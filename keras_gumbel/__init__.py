"""keras-gumbel: learn discrete choices by gradient descent in Keras 3.

The Gumbel-Softmax (Concrete) relaxation, straight-through and stronger gradient
estimators, temperature annealing, and selection layers.
"""

try:
    import keras  # noqa: F401
except ModuleNotFoundError as error:
    # Keras imports its backend on import; TensorFlow is its default backend
    # and an optional dependency of this package.
    if (error.name or "").split(".")[0] != "tensorflow":
        raise
    raise ImportError(
        "Keras is set to its TensorFlow backend (the default, or KERAS_BACKEND, or "
        "~/.keras/keras.json), and TensorFlow is not installed. Install it with "
        '`pip install "keras-gumbel[tensorflow]"`, or choose an installed backend, '
        "e.g. KERAS_BACKEND=jax or KERAS_BACKEND=torch.",
        name="tensorflow",
    ) from error

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
