"""Noise: uniform, Gumbel and exponential draws that are always finite.

Uniform draws land in `[tiny, 1)` for the dtype in which they are computed
(`tiny` is the smallest positive normal number), so `-log(u)` and
`-log(-log(u))` are always finite: float32 Gumbel noise lies in about
`[-4.5, 16.7]`, the values at `u = tiny` and `u = 1 - 2**-24`. Noise is computed
in float32 at least, even when the caller asks for float16 or bfloat16, because
half-precision uniforms are too coarse near 0 and 1 for the logarithms; it is
cast at the end. Each backend draws through its own fastest generator
(`keras_gumbel._backend`); the distribution is the same on all of them.
"""

from typing import Any

import keras

from keras_gumbel import _backend, _checks, _numerics
from keras_gumbel._backend.tensorflow import StatefulOpSeed
from keras_gumbel._typing import SeedLike, Shape, TensorLike

__all__ = [
    "uniform",
    "gumbel",
    "exponential",
    "logistic",
    "stream_key",
    "stream_uniform",
    "StatefulOpSeed",
]


def _compute_dtype(dtype: Any) -> str:
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(
            "Invalid value received for argument `dtype`. Expected a floating-point "
            f"dtype. Received: dtype={dtype}"
        )
    return _numerics.working_dtype(dtype)


def uniform(shape: Shape, dtype: str = "float32", seed: SeedLike = None) -> TensorLike:
    """Draws `U[tiny, 1)` in float32 (float64 if asked), then casts to `dtype`.

    Args:
        shape: Shape of the draw. One call draws one tensor; to get several
            independent draws, ask for a leading dimension rather than calling
            again with the same int seed.
        dtype: Output dtype (floating point).
        seed: None (fresh on every call), an int in `[0, 2**31 - 1]` (the same
            draw on every call)
            or a `keras.random.SeedGenerator` (a reproducible sequence).

    Returns:
        A tensor of shape `shape` and dtype `dtype`, strictly positive.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> u = np.asarray(kg.random.uniform((1000,), seed=0))
    >>> bool(np.all((u > 0) & (u < 1)))
    True
    """
    seed = _checks.check_seed(seed)
    draw = _backend.current().uniform(shape, _compute_dtype(dtype), seed)
    return keras.ops.cast(draw, dtype)


def exponential(
    shape: Shape, dtype: str = "float32", seed: SeedLike = None
) -> TensorLike:
    """Draws `Exponential(1)` noise, `-log(u)`, strictly positive and finite.

    Takes `shape`, `dtype` and `seed` as `uniform` does, and returns a tensor of
    that shape and dtype.
    """
    compute_dtype = _compute_dtype(dtype)
    draw = -keras.ops.log(uniform(shape, compute_dtype, seed))
    return keras.ops.cast(draw, dtype)


def gumbel(shape: Shape, dtype: str = "float32", seed: SeedLike = None) -> TensorLike:
    """Draws standard Gumbel noise `-log(-log(u))`, always finite.

    Takes `shape`, `dtype` and `seed` as `uniform` does, and returns a tensor of
    that shape and dtype; `keras_gumbel.ops.sample_gumbel` is the same draw.
    """
    seed = _checks.check_seed(seed)
    backend = _backend.current()
    draw = backend.uniform(shape, _compute_dtype(dtype), seed)
    return keras.ops.cast(backend.gumbel_from_uniform(draw), dtype)


def logistic(shape: Shape, dtype: str = "float32", seed: SeedLike = None) -> TensorLike:
    """Draws standard logistic noise `log(u) - log(1 - u)`, always finite.

    The difference of two independent standard Gumbel draws, so
    `logits + noise > 0` is an exact `Bernoulli(sigmoid(logits))` draw (the
    binary Gumbel-Max trick). Takes `shape`, `dtype` and `seed` as `uniform`
    does, and returns a tensor of that shape and dtype.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> noise = np.asarray(kg.random.logistic((100_000,), seed=0))
    >>> bool(abs(noise.mean()) < 0.02 and abs(noise.var() - np.pi**2 / 3) < 0.05)
    True
    """
    compute_dtype = _compute_dtype(dtype)
    uniforms = uniform(shape, compute_dtype, seed)
    draw = keras.ops.log(uniforms) - keras.ops.log1p(-uniforms)
    return keras.ops.cast(draw, dtype)


def stream_key(seed: SeedLike = None) -> TensorLike:
    """Draws a key for a stream of independent uniform draws, numbered 0, 1, ...

    Use it where one call needs many independent draws but should not hold
    them all at once: draw `i` of the stream is `stream_uniform(shape, key, i)`,
    computed when it is needed (inside a loop, or in a backward pass) and
    recomputed identically from the key. A key takes `seed` as `uniform` does
    and takes one step of a `SeedGenerator`, so every call gets a fresh stream
    and an int seed gives the same one every time.

    Args:
        seed: None (fresh on every call), an int in `[0, 2**31 - 1]`, or a
            `keras.random.SeedGenerator`.

    Returns:
        A small integer tensor, opaque: pass it to `stream_uniform`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> key = kg.random.stream_key(seed=0)
    >>> first = np.asarray(kg.random.stream_uniform((1000,), key, 0))
    >>> again = np.asarray(kg.random.stream_uniform((1000,), key, 0))
    >>> second = np.asarray(kg.random.stream_uniform((1000,), key, 1))
    >>> bool(np.all(first == again)), bool(np.any(first != second))
    (True, True)
    """
    return _backend.current().stream_key(_checks.check_seed(seed))


def stream_uniform(
    shape: Shape, key: TensorLike, index: int | TensorLike, dtype: str = "float32"
) -> TensorLike:
    """Draw number `index` of the stream `key`: `U[tiny, 1)` as `uniform` draws.

    Draws with different indices are independent, and no two keys share a
    draw. The index may be a Python int or a scalar integer tensor, such as the
    counter of `keras.ops.fori_loop` on TensorFlow and JAX (PyTorch runs the
    loop in Python and passes ints).

    Args:
        shape: Shape of the draw.
        key: A key from `stream_key`.
        index: Which draw of the stream, an integer >= 0.
        dtype: Output dtype (floating point).

    Returns:
        A tensor of shape `shape` and dtype `dtype`, strictly positive.
    """
    if not _checks.is_tensor_like(index):
        index = _checks.check_count(index, "index", 0)
    draw = _backend.current().stream_uniform(shape, _compute_dtype(dtype), key, index)
    return keras.ops.cast(draw, dtype)
