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

__all__ = ["uniform", "gumbel", "exponential", "StatefulOpSeed"]


class StatefulOpSeed(keras.random.SeedGenerator):
    """Draws with TensorFlow's stateful `RandomUniform` op instead of Philox.

    TFLite has a builtin kernel (`RANDOM_UNIFORM`) for the stateful op and none
    for the stateless ones, so `keras_gumbel.export.to_tflite` traces the layers
    with these seeds in place of their `SeedGenerator`s. The k-th draw gets the
    op seeds `(seed, stream * 2**16 + k)`, so draws in one graph differ, and the
    converted model draws fresh numbers on every invocation. Graph tracing only:
    it has no state variable and `next()` is not available.
    """

    def __init__(self, seed, stream):
        self.seed = int(seed)
        self.stream = int(stream)
        self.draws = 0

    def next(self, ordered=True):
        raise NotImplementedError(
            "StatefulOpSeed only seeds TensorFlow's stateful random ops."
        )

    def op_seeds(self):
        self.draws += 1
        return self.seed, self.stream * 2**16 + self.draws


def _compute_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(
            "Invalid value received for argument `dtype`. Expected a floating-point "
            f"dtype. Received: dtype={dtype}"
        )
    return "float64" if dtype == "float64" else "float32"


def _replica_id_tensorflow():
    """The replica's index in a multi-replica `tf.distribute` step, else None."""
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return None
    return context.replica_id_in_sync_group


def _uniform_tensorflow(shape, dtype, seed):
    import tensorflow as tf

    tiny = np.finfo(dtype).tiny
    if isinstance(seed, StatefulOpSeed):
        op_seed, op_seed2 = seed.op_seeds()
        draw = tf.raw_ops.RandomUniform(
            shape=shape, dtype=dtype, seed=op_seed, seed2=op_seed2
        )
        return tf.maximum(draw, tiny)
    if isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif seed is None:
        # A fresh seed from Keras's global generator: different on every call,
        # also inside a traced function.
        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
    else:
        seed = tf.constant([seed & 0x7FFFFFFF, 0], dtype=tf.int32)
    # Under a tf.distribute strategy every replica reads the same mirrored
    # SeedGenerator state, so without this each replica would draw the same noise
    # for its share of the batch.
    replica_id = _replica_id_tensorflow()
    if replica_id is not None:
        seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
    # XLA wants int32 seeds; SeedGenerator state is int64 on TensorFlow.
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    draw = tf.random.stateless_uniform(
        shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg="philox"
    )
    if _in_xla_context_tensorflow():
        # XLA on CPU expands Philox into blocks of 4 numbers; a consumer fused
        # into that loop in another layout (`logits + noise`) recomputes each
        # block 4 times, 3-4x slower than graph mode. A second consumer (a
        # reduction) makes XLA materialise the draw once instead. `0 * min` is
        # exactly 0 (the draw is finite), so the values are unchanged.
        draw = draw + 0.0 * tf.reduce_min(draw)
    return draw


def _in_xla_context_tensorflow():
    """True while tracing for XLA (`jit_compile=True`), False if unknown."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return False
    return control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


def _seed_torch(seed):
    """A 32-bit int seed for Keras's torch `uniform`, mixing both seed words.

    Keras seeds a `torch.Generator` with `(seed + counter) mod 2**32`, so the
    generators seeded 11 and 12 draw the same numbers one call apart, and two
    layers with nearby seeds share their noise. The CPU generator keeps only 32
    bits of its seed, so both words go through the SplitMix64 finaliser (Steele
    et al., 2014) and its low 32 bits seed it instead.
    """
    if seed is None:
        return None
    if isinstance(seed, keras.random.SeedGenerator):
        first, second = (int(word) for word in keras.ops.convert_to_numpy(seed.next()))
    else:
        first, second = seed, 0
    mask = 2**64 - 1
    x = (((first & 0xFFFFFFFF) << 32) | (second & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) & 0xFFFFFFFF


def _uniform_torch(shape, dtype, seed):
    # The numbers `keras.random.uniform` draws from the same seed, without its
    # `(maxval - minval) * u + minval` and a separate `maximum`: three passes
    # over the draw fewer, 2-4x faster on CPU (docs/backends.md).
    import torch

    device = keras.ops.convert_to_tensor(0.0).device
    tiny = np.finfo(dtype).tiny
    dtype = getattr(torch, dtype)
    if device.type == "meta":
        # Symbolic shape inference: generators do not exist on this device.
        return torch.rand(shape, dtype=dtype, device=device)
    seed = _seed_torch(seed)
    if seed is None:
        seed = int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    draw = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    return draw.clamp_min_(tiny)


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
    elif keras.backend.backend() == "torch":
        draw = _uniform_torch(shape, compute_dtype, seed)
    else:
        if isinstance(seed, int):
            # JAX seeds are uint32: wrap negative and large seeds into range.
            seed &= 0xFFFFFFFF
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
    if keras.backend.backend() == "torch":
        # The draw is a fresh tensor nobody else holds, and PyTorch runs each
        # operation eagerly into a new buffer: in place, the transform makes
        # no allocation (TensorFlow's grappler and XLA fuse it on their own).
        return keras.ops.cast(u.log_().neg_().log_().neg_(), dtype)
    return keras.ops.cast(-keras.ops.log(-keras.ops.log(u)), dtype)
