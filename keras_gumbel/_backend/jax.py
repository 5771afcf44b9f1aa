"""JAX paths: uint32 seeds, and the form of the softmax VJP that XLA compiles right."""

from keras import ops

from keras_gumbel._backend import portable

__all__ = ["softmax_vjp", "softmax_vjp_scores", "uniform"]


def uniform(shape, dtype, seed):
    """The portable draw, with an int seed wrapped into JAX's uint32 range."""
    if isinstance(seed, int):
        seed &= 0xFFFFFFFF
    return portable.uniform(shape, dtype, seed)


def softmax_vjp(probs, upstream):
    """`probs * upstream - probs * inner`, expanded.

    XLA on CPU miscompiles `probs * (upstream - inner)` under `jax.jit` when
    `upstream` is broadcast from a lower rank, as Gumbel-Rao's mean over draws
    makes it (seen with jaxlib 0.10.2: gradients off by up to 4). Remove once
    `tests/test_estimators.py::test_jit_compile_matches_eager` passes on JAX
    with the portable form.
    """
    inner = ops.sum(upstream * probs, axis=-1, keepdims=True)
    return probs * upstream - probs * inner


def softmax_vjp_scores(probs, upstream, temperature):
    """The VJP with respect to the scores, from the expanded form."""
    return softmax_vjp(probs, upstream) / temperature
