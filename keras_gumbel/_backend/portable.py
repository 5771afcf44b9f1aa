"""The interface of the backend fast paths, and the portable default of each.

Each function here, on `keras.ops` and `keras.random`, gives the values a fast
path must give too; a backend module replaces only the ones where its own form
is faster or converts to more targets (tests/test_backend_modules.py checks the
running backend's fast paths against these).
"""

import threading

import keras
import numpy as np
from keras import ops

__all__ = [
    "all_finite",
    "argmax",
    "gumbel_from_uniform",
    "nan_where",
    "one_hot",
    "ordinary_temperature",
    "scaled_softmax",
    "shift_rows",
    "softmax_vjp",
    "softmax_vjp_scores",
    "stream_key",
    "stream_uniform",
    "temperature_needs_gradient",
    "uniform",
]


# `SeedGenerator.next` reads the state and assigns the next one in two steps,
# and Keras's global generator (seed None) does the same, so two threads that
# draw from one generator at once can both read a state and draw the same
# noise. Every draw from a generator holds this lock; an int seed needs none.
SEED_LOCK = threading.Lock()


def uniform(shape, dtype, seed):
    """`U[tiny, 1)` of `dtype` (float32 or float64) from a checked `seed`."""
    if isinstance(seed, int):
        draw = keras.random.uniform(shape, dtype=dtype, seed=seed)
    else:
        with SEED_LOCK:
            draw = keras.random.uniform(shape, dtype=dtype, seed=seed)
    return ops.maximum(draw, np.finfo(dtype).tiny)


def stream_key(seed):
    """A key for a stream of independent draws, from a checked `seed`.

    It takes one step of a `SeedGenerator` (the global one for None), as a
    draw does; an int seed gives the same key on every call.
    """
    if isinstance(seed, int):
        return keras.random.randint((2,), 0, 2**31 - 1, dtype="int32", seed=seed)
    with SEED_LOCK:
        return keras.random.randint((2,), 0, 2**31 - 1, dtype="int32", seed=seed)


def stream_uniform(shape, dtype, key, index):
    """Draw number `index` of the stream `key`: `U[tiny, 1)` of `dtype`.

    Draws of one key with different indices are independent, and no two keys
    share a draw. Here the key and the index must be concrete (eager
    backends); the backends that trace loops have their own form.
    """
    first, second = (int(word) for word in ops.convert_to_numpy(key))
    return uniform(shape, dtype, stream_seed(first, second, int(index)) & 0x7FFFFFFF)


def stream_seed(first, second, index):
    """A 64-bit seed for draw `index` of the key with 32-bit words `first`, `second`.

    SplitMix64's finaliser (Steele et al., 2014) over the two words, and again
    over that plus the index: the draws of one key, and those of keys that
    differ in a single word (consecutive states of a `SeedGenerator`), get
    unrelated seeds.
    """
    words = ((first & 0xFFFFFFFF) << 32) | (second & 0xFFFFFFFF)
    return splitmix64((splitmix64(words) + index) & MASK_64)


MASK_64 = 2**64 - 1


def splitmix64(value):
    """SplitMix64's finaliser: a bijection of 64-bit integers that mixes every bit."""
    value = (value + 0x9E3779B97F4A7C15) & MASK_64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK_64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK_64
    return value ^ (value >> 31)


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


# Rows whose maximum lies within this of 0 need no shift: Gumbel noise (below
# 17 in float32) added to them rounds at a few ulp of 81, which moves sampling
# probabilities by less than 1e-5 relative. Fast paths skip the shift there.
UNSHIFTED_BOUND = 64.0


def shift_rows(scores):
    """Scores shifted so each row's maximum is 0, and the rows holding a NaN.

    In a row with `+inf` scores those are 0 and every finite score is the
    most negative finite number: the limit, in which the `+inf` categories
    share the row and the finite ones have probability 0 but stay allowed
    (a finite score equal to the largest finite number does not tie with
    `+inf`). A difference from the row maximum beyond the dtype's range is
    that most negative number too, not `-inf`, which would mark it
    impossible. The shift is constant for the gradient; the finite scores
    of a `+inf` row get none. A NaN row's values are left to the caller.
    """
    nan_rows = ops.any(ops.isnan(scores), axis=-1, keepdims=True)
    lowest = -float(np.finfo(keras.backend.standardize_dtype(scores.dtype)).max)
    lowest = ops.convert_to_tensor(lowest, dtype=scores.dtype)
    infinite = scores == float("inf")
    infinite_rows = ops.any(infinite, axis=-1, keepdims=True)
    finite = ops.where(infinite, ops.zeros_like(scores), scores)
    shifted = _minus_row_max(finite)
    # `where`, not `ops.maximum`, which returns float32 for float64 tensors on
    # the torch backend (Keras 3.15) and splits the gradient of ties on JAX.
    overflowed = (shifted == float("-inf")) & (scores > float("-inf"))
    shifted = ops.where(overflowed, lowest, shifted)
    limit = ops.where(infinite, ops.zeros_like(scores), lowest)
    limit = ops.where(scores == float("-inf"), scores, limit)
    return ops.where(infinite_rows, limit, shifted), nan_rows


def _minus_row_max(scores):
    maximum = ops.max(scores, axis=-1, keepdims=True)
    # Rows without a finite maximum (all -inf, or NaN) are not shifted.
    shift = ops.where(maximum > float("-inf"), maximum, ops.zeros_like(maximum))
    return scores - ops.stop_gradient(shift)


def all_finite(values):
    """False: a traced program cannot read the values, so the policy for NaN
    and infinite logits runs (as `where`s)."""
    return False


def ordinary_temperature(temperature, minimum):
    """False: a traced program cannot read the temperature's value, so the
    policy for 0, `+inf`, NaN and too-small temperatures runs (as `where`s)."""
    return False


def nan_where(invalid, values):
    """`values` with NaN wherever the broadcast `invalid` is True."""
    return ops.where(invalid, ops.cast(float("nan"), values.dtype), values)


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
