"""The interface of the backend fast paths, and the portable default of each.

Each function here, on `keras.ops` and `keras.random`, gives the values a fast
path must give too; a backend module replaces only the ones where its own form
is faster or converts to more targets (tests/test_backend_modules.py checks the
running backend's fast paths against these).
"""

import keras
import numpy as np
from keras import ops

__all__ = [
    "argmax",
    "gumbel_from_uniform",
    "one_hot",
    "scaled_softmax",
    "softmax_vjp",
    "softmax_vjp_scores",
    "temperature_needs_gradient",
    "uniform",
]


def uniform(shape, dtype, seed):
    """`U[tiny, 1)` of `dtype` (float32 or float64) from a checked `seed`."""
    draw = keras.random.uniform(shape, minval=0.0, maxval=1.0, dtype=dtype, seed=seed)
    return ops.maximum(draw, np.finfo(dtype).tiny)


def gumbel_from_uniform(uniforms):
    """`-log(-log(u))` of a fresh draw `u` that no one else holds."""
    return -ops.log(-ops.log(uniforms))


def argmax(scores):
    """Index of the row maximum along the last axis, the first one on ties."""
    return ops.argmax(scores, axis=-1)


def one_hot(index, count, dtype):
    """One-hot of `index` along a new last axis of size `count`; -1 gives zeros."""
    # A comparison with the positions is one pass; Keras's one-hot builds an
    # int64 tensor on some backends and casts it.
    positions = ops.arange(count, dtype="int32")
    return ops.cast(ops.expand_dims(index, -1) == positions, dtype)


def scaled_softmax(scores, temperature):
    """A fused `softmax(scores / temperature)` where it is exact, else None.

    None sends the caller to its own shifted softmax with its hand-written
    gradient, which handles rows without a finite score and a trained
    temperature.
    """
    return None


def temperature_needs_gradient(temperature):
    """Whether the backward pass must return a temperature gradient.

    TensorFlow and JAX prune unused gradients from the graph themselves, so
    the portable answer is always yes.
    """
    return True


def softmax_vjp(probs, upstream):
    """`probs * (upstream - sum(upstream * probs))`: the softmax VJP in scaled space."""
    inner = ops.sum(upstream * probs, axis=-1, keepdims=True)
    return probs * (upstream - inner)


def softmax_vjp_scores(probs, upstream, temperature):
    """The VJP of `softmax(scores / temperature)` with respect to the scores."""
    return softmax_vjp(probs, upstream) / temperature
