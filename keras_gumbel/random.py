"""Noise generation: the only module with backend-specific fast paths.

Uniform draws land in `[tiny, 1)` for the dtype in which they are computed, so
`-log(-log(u))` is always finite: `-log(tiny)` is about 87 in float32 and
`-log(-log(1 - 2**-24))` about 16.6, so float32 Gumbel noise lies in
`[-4.5, 16.7]`. Noise is computed in float32 at least, even when the caller asks
for float16 or bfloat16, and cast at the end.

On TensorFlow, `keras.random.uniform` compiles badly under XLA on CPU (the
default stateless algorithm); a Philox stateless draw compiles to the same speed
as graph mode, so that backend takes `_uniform_tensorflow`. The other backends
take the portable `keras.random` path.
"""

import keras
import numpy as np

from keras_gumbel import _checks

__all__ = ["uniform", "gumbel", "exponential"]


def _compute_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(
            "Invalid value received for argument `dtype`. Expected a floating-point "
            f"dtype. Received: dtype={dtype}"
        )
    return "float64" if dtype == "float64" else "float32"


def _uniform_tensorflow(shape, dtype, seed):
    import tensorflow as tf

    if isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif seed is None:
        # A fresh seed from Keras's global generator: different on every call,
        # also inside a traced function.
        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
    else:
        seed = tf.constant([seed & 0x7FFFFFFF, 0], dtype=tf.int32)
    # XLA wants int32 seeds; SeedGenerator state is int64 on TensorFlow.
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    tiny = np.finfo(dtype).tiny
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg="philox"
    )


def _uniform_portable(shape, dtype, seed):
    tiny = np.finfo(dtype).tiny
    draw = keras.random.uniform(shape, minval=0.0, maxval=1.0, dtype=dtype, seed=seed)
    return keras.ops.maximum(draw, tiny)


def uniform(shape, dtype="float32", seed=None):
    """Draws `U[tiny, 1)` in float32 (float64 if asked), then casts to `dtype`.

    Args:
        shape: Shape of the draw. One call draws one tensor; to get several
            independent draws, ask for a leading dimension rather than calling
            again with the same int seed.
        dtype: Output dtype (floating point).
        seed: None (fresh on every call), an int (the same draw on every call)
            or a `keras.random.SeedGenerator` (a reproducible sequence).
    """
    seed = _checks.check_seed(seed)
    compute_dtype = _compute_dtype(dtype)
    if keras.backend.backend() == "tensorflow":
        draw = _uniform_tensorflow(shape, compute_dtype, seed)
    else:
        draw = _uniform_portable(shape, compute_dtype, seed)
    return keras.ops.cast(draw, dtype)


def exponential(shape, dtype="float32", seed=None):
    """Draws `Exponential(1)` noise, `-log(u)`, strictly positive and finite."""
    compute_dtype = _compute_dtype(dtype)
    draw = -keras.ops.log(uniform(shape, compute_dtype, seed))
    return keras.ops.cast(draw, dtype)


def gumbel(shape, dtype="float32", seed=None):
    """Draws standard Gumbel noise `-log(-log(u))`, always finite."""
    compute_dtype = _compute_dtype(dtype)
    u = uniform(shape, compute_dtype, seed)
    return keras.ops.cast(-keras.ops.log(-keras.ops.log(u)), dtype)
