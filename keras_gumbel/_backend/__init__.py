"""Backend-specific fast paths: the one place that asks which Keras backend runs.

Everything else in the package is written against `keras.ops` and calls
`current()` for the few operations where a backend has a faster or more
portable form of the same values. `portable` defines the interface, one
function per operation with its portable default; a backend module defines only
the functions it does differently, and `current()` fills in the rest. Where a
new fast path goes: docs/architecture.md.
"""

import functools
import importlib
import types

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


def current() -> types.SimpleNamespace:
    """The interface of `portable`, with the running backend's fast paths in it.

    Backends without fast paths of their own (NumPy, OpenVINO) get `portable`'s
    functions throughout.
    """
    return _paths(name())


@functools.cache
def _paths(backend: str) -> types.SimpleNamespace:
    module = importlib.import_module(_MODULES[backend]) if backend in _MODULES else None
    return types.SimpleNamespace(
        **{
            operation: getattr(module, operation, getattr(portable, operation))
            for operation in portable.__all__
        }
    )
