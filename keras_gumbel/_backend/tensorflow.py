"""TensorFlow fast paths: Philox noise, replica fold-in, XLA, TFLite's stateful seeds.

TensorFlow is imported inside the functions, so this module imports (and its
doctests collect) where TensorFlow is not installed.
"""

from typing import NoReturn

import keras
import numpy as np
from keras import ops

from keras_gumbel import _checks
from keras_gumbel._backend import portable

# The fast paths (the rest of `portable`'s interface is the default), and the
# stand-in seed that export traces TFLite graphs with.
__all__ = [
    "StatefulOpSeed",
    "argmax",
    "nan_where",
    "one_hot",
    "shift_rows",
    "stream_key",
    "stream_uniform",
    "uniform",
]


class StatefulOpSeed(keras.random.SeedGenerator):
    """Draws with TensorFlow's stateful `RandomUniform` op instead of Philox.

    TFLite has a builtin kernel (`RANDOM_UNIFORM`) for the stateful op and none
    for the stateless ones, so `keras_gumbel.export.to_tflite` traces the layers
    with these seeds in place of their `SeedGenerator`s. The k-th draw gets the
    op seeds `(seed, stream * 2**16 + k)`, so draws in one graph differ, and the
    converted model draws fresh numbers on every invocation. Graph tracing only:
    it has no state variable and `next()` is not available.
    """

    def __init__(self, seed: int, stream: int) -> None:
        # No `super().__init__()`: that would create a state variable, which a
        # stand-in seed traced into a TFLite graph must not have.
        self.seed = int(seed)
        self.stream = int(stream)
        self.draws = 0

    def next(self, ordered: bool = True) -> NoReturn:
        # Reached when a draw on another backend asks it for a seed.
        _checks.require_tensorflow("`StatefulOpSeed`", "tensorflow")
        raise NotImplementedError(
            "StatefulOpSeed only seeds TensorFlow's stateful random ops, on the "
            f"TensorFlow backend. Received: backend={keras.backend.backend()!r}"
        )

    def op_seeds(self) -> tuple[int, int]:
        self.draws += 1
        return self.seed, self.stream * 2**16 + self.draws


def _replica_id():
    """The replica's index in a multi-replica `tf.distribute` step, else None."""
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return None
    return context.replica_id_in_sync_group


def _in_xla_context():
    """True while tracing for XLA (`jit_compile=True`), False if unknown."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return False
    return control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


def _stateless_seed(seed):
    """An int32 `[2]` Philox seed from a checked seed, folded in per replica."""
    import tensorflow as tf

    if isinstance(seed, keras.random.SeedGenerator):
        with portable.SEED_LOCK:
            seed = seed.next()
    elif seed is None:
        # A fresh seed from Keras's global generator: different on every call,
        # also inside a traced function.
        with portable.SEED_LOCK:
            seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
    else:
        seed = tf.constant([seed & 0x7FFFFFFF, 0], dtype=tf.int32)
    # Under a tf.distribute strategy every replica reads the same mirrored
    # SeedGenerator state, so without this each replica would draw the same
    # noise for its share of the batch.
    replica_id = _replica_id()
    if replica_id is not None:
        seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
    # XLA wants int32 seeds; SeedGenerator state is int64 on TensorFlow. The
    # low 31 bits keep every seed of the accepted range apart.
    seed = tf.cast(seed, tf.int64)
    return tf.cast(tf.bitwise.bitwise_and(seed, 0x7FFFFFFF), tf.int32)


def uniform(shape, dtype, seed):
    """`U[tiny, 1)` from a Philox stateless draw (or TFLite's stateful op).

    `keras.random.uniform` uses TensorFlow's default stateless algorithm, which
    XLA compiles badly on CPU; Philox compiles to the speed of graph mode
    (docs/performance.md).
    """
    import tensorflow as tf

    if isinstance(seed, StatefulOpSeed):
        op_seed, op_seed2 = seed.op_seeds()
        draw = tf.raw_ops.RandomUniform(
            shape=shape, dtype=dtype, seed=op_seed, seed2=op_seed2
        )
        return tf.maximum(draw, np.finfo(dtype).tiny)
    return _philox_uniform(shape, dtype, _stateless_seed(seed))


def _philox_uniform(shape, dtype, seed):
    import tensorflow as tf

    draw = tf.random.stateless_uniform(
        shape,
        seed=seed,
        minval=np.finfo(dtype).tiny,
        maxval=1.0,
        dtype=dtype,
        alg="philox",
    )
    if _in_xla_context():
        # XLA on CPU expands Philox into blocks of four numbers, and a consumer
        # fused into that loop in another layout (`logits + noise`) recomputes
        # each block four times. A second consumer (a reduction) makes XLA
        # materialise the draw once; `0 * min` is exactly 0 (the draw is finite),
        # so the values are unchanged.
        draw = draw + 0.0 * tf.reduce_min(draw)
    return draw


def stream_key(seed):
    """The Philox seed a draw from `seed` would use, folded in per replica."""
    return _stateless_seed(seed)


def stream_uniform(shape, dtype, key, index):
    """A Philox draw from the seed `fold_in(key, index)`: the key's hash and
    the index, so an index may be a tensor (a `tf.while_loop` counter).

    The draw is made as random bits and turned into floats here: XLA turns
    Philox bits into floats differently from TensorFlow's CPU kernel, which
    does not show as long as seeds are constants (they are folded on the
    host), but does for a seed computed in a loop; the bits are the same.
    """
    import tensorflow as tf

    # Philox named: the default algorithm differs under XLA.
    seed = tf.random.experimental.stateless_fold_in(
        key, tf.cast(index, tf.int32), alg="philox"
    )
    if dtype == "float64":
        bits_dtype, mantissa_bits, one = tf.uint64, 52, 0x3FF0000000000000
    else:
        bits_dtype, mantissa_bits, one = tf.uint32, 23, 0x3F800000
    bits = tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=bits_dtype, alg="philox"
    )
    # The top mantissa bits under the exponent of 1: a float in [1, 2).
    shift = tf.constant(bits_dtype.size * 8 - mantissa_bits, bits_dtype)
    ones = tf.bitwise.bitwise_or(
        tf.bitwise.right_shift(bits, shift), tf.constant(one, bits_dtype)
    )
    # The bits are materialised as the generator's output, so the floats
    # fuse into their consumers without recomputing Philox blocks.
    return tf.maximum(tf.bitcast(ones, dtype) - 1.0, np.finfo(dtype).tiny)


def argmax(scores):
    """TensorFlow's own argmax: one pass, and TFLite's `ARG_MAX`.

    `keras.ops.argmax` masks the sign bit to order negative zeros, and TFLite
    has no builtin op for that `BitwiseAnd`, so models using it do not convert
    (`keras_gumbel.export.to_tflite`).
    """
    import tensorflow as tf

    return tf.math.argmax(scores, axis=-1, output_type=tf.int32)


def one_hot(index, count, dtype):
    """Keras's one-hot: one fused kernel on TensorFlow, and TFLite's `ONE_HOT`."""
    return ops.one_hot(index, count, dtype=dtype)


def shift_rows(scores):
    """The portable shift where it changes anything, after one reduction.

    Graph mode runs one kernel per operation, so each step of the portable form
    is a pass over the scores. TensorFlow's `reduce_max` propagates NaN (except
    under XLA, which fuses the portable form anyway), and a `tf.cond` runs the
    portable form only for a batch with a row that needs it: a maximum beyond
    `portable.UNSHIFTED_BOUND`, `+inf` or NaN.
    """
    import tensorflow as tf

    if _in_xla_context():
        return portable.shift_rows(scores)
    maximum = tf.reduce_max(scores, axis=-1, keepdims=True)
    in_range = tf.abs(maximum) <= portable.UNSHIFTED_BOUND
    shifted = tf.cond(
        tf.reduce_all(in_range | (maximum == float("-inf"))),
        lambda: tf.identity(scores),
        lambda: portable.shift_rows(scores)[0],
    )
    return shifted, tf.math.is_nan(maximum)


def nan_where(invalid, values):
    """The portable `where`, run only when some entry is invalid."""
    import tensorflow as tf

    if _in_xla_context():
        return portable.nan_where(invalid, values)
    return tf.cond(
        tf.reduce_any(invalid),
        lambda: portable.nan_where(invalid, values),
        lambda: tf.identity(values),
    )
