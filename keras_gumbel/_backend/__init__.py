"""Backend-specific fast paths: the one place that asks which Keras backend runs.

Everything else in the package is written against `keras.ops` and calls
`current()` for the few operations where a backend has a faster or more
portable form of the same values. `portable` holds the default of each; a
backend module defines every name of `portable.__all__`, either its own fast
path or the portable default, so a caller never needs to know which it got.
Where a new fast path goes: docs/architecture.md.
"""

import importlib
from types import ModuleType

import keras

from keras_gumbel._backend import portable

__all__ = ["current", "name"]

_MODULES = {
    "tensorflow": "keras_gumbel._backend.tensorflow",
    "torch": "keras_gumbel._backend.torch",
    "jax": "keras_gumbel._backend.jax",
}


def name() -> str:
    """The name of the running Keras backend, as `keras.backend.backend()`."""
    return keras.backend.backend()


def current() -> ModuleType:
    """The module of fast paths for the running Keras backend.

    Backends without fast paths of their own (NumPy, OpenVINO) get `portable`.
    """
    module = _MODULES.get(name())
    return portable if module is None else importlib.import_module(module)
