"""JAX paths: a float64 argmax, a softmax VJP that XLA compiles right, keyed draws."""

import keras
from keras import ops

from keras_gumbel._backend import portable

__all__ = ["argmax", "softmax_vjp", "softmax_vjp_scores", "stream_uniform"]


def argmax(scores):
    """JAX's own argmax for float64, whose values Keras's would round.

    Keras's JAX `argmax` casts floats to float32 before comparing them (to
    order negative zeros on CPU), which merges float64 scores that differ by
    less than float32 can resolve. float32 keeps Keras's form.
    """
    if keras.backend.standardize_dtype(scores.dtype) != "float64":
        return portable.argmax(scores)
    import jax.numpy as jnp

    return jnp.argmax(scores, axis=-1)


def softmax_vjp(probs, upstream):
    """`probs * upstream - probs * inner`, expanded.

    XLA on CPU miscompiles `probs * (upstream - inner)` under `jax.jit` when
    `upstream` is broadcast from a lower rank, as Gumbel-Rao's mean over draws
    makes it (seen with jaxlib 0.10.2). Remove once
    `tests/test_estimators.py::test_jit_compile_matches_eager` passes on JAX
    with the portable form.
    """
    inner = ops.sum(upstream * probs, axis=-1, keepdims=True)
    return probs * upstream - probs * inner


def softmax_vjp_scores(probs, upstream, temperature):
    """The VJP with respect to the scores, from the expanded form."""
    return softmax_vjp(probs, upstream) / temperature


def stream_uniform(shape, dtype, key, index):
    """A draw from `jax.random.fold_in(key, index)`, which takes a traced index
    (a `fori_loop` counter); Keras passes a JAX key through as the seed."""
    import jax
    import jax.numpy as jnp

    folded = jax.random.fold_in(jnp.asarray(key, jnp.uint32), index)
    return portable.uniform(shape, dtype, folded)
