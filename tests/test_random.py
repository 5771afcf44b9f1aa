"""Gumbel noise: `keras_gumbel.random` and `keras_gumbel.ops.sample_gumbel`."""

import re

import keras
import numpy as np
import pytest
from scipy import stats

import keras_gumbel as kg
from tests import testing

TF_ONLY = pytest.mark.skipif(
    testing.backend() != "tensorflow", reason="traces a tf.function with XLA"
)
EULER_GAMMA = 0.5772156649015329


@pytest.mark.parametrize(
    "dtype",
    [
        "float16",
        "bfloat16",
        "float32",
        testing.FLOAT64,
    ],
)
def test_sample_gumbel_shape_dtype_and_finite(dtype):
    noise = kg.ops.sample_gumbel((64, 3, 5), dtype=dtype, seed=1)
    assert tuple(noise.shape) == (64, 3, 5)
    assert keras.backend.standardize_dtype(noise.dtype) == dtype
    assert np.all(np.isfinite(testing.to_numpy(noise).astype("float64")))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_noise_is_float32_noise_rounded(dtype):
    # Noise is computed in float32 and only cast at the end, so a float16 draw
    # is the float32 draw of the same seed, rounded.
    low = kg.ops.sample_gumbel((1000,), dtype=dtype, seed=4)
    high = kg.ops.sample_gumbel((1000,), dtype="float32", seed=4)
    np.testing.assert_array_equal(
        testing.to_numpy(low).astype("float32"),
        testing.to_numpy(keras.ops.cast(high, dtype)).astype("float32"),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sample_gumbel_is_standard_gumbel(dtype):
    # 200,000 draws. One-sample KS test against the standard Gumbel CDF at
    # alpha = 1e-3; mean (Euler's gamma) and variance (pi^2 / 6) within 4 sigma.
    n = 200_000
    noise = testing.to_numpy(kg.ops.sample_gumbel((n,), dtype=dtype, seed=11))
    assert stats.kstest(noise, stats.gumbel_r.cdf).pvalue > 1e-3
    mean_sigma = np.pi / np.sqrt(6.0) / np.sqrt(n)
    assert abs(noise.mean() - EULER_GAMMA) < 4 * mean_sigma
    # Var of the sample variance: (mu4 - sigma^4) / n, with the Gumbel excess
    # kurtosis 12 / 5: mu4 = (3 + 12 / 5) sigma^4.
    variance = np.pi**2 / 6.0
    variance_sigma = np.sqrt((3 + 12 / 5 - 1) * variance**2 / n)
    assert abs(noise.var() - variance) < 4 * variance_sigma


def test_uniform_lies_in_tiny_to_one():
    # The uniform draw must avoid 0 and 1, or -log(-log(u)) is infinite.
    u = testing.to_numpy(kg.random.uniform((1_000_000,), seed=3))
    assert u.min() >= np.finfo("float32").tiny
    assert u.max() < 1.0
    noise = testing.to_numpy(kg.random.gumbel((1_000_000,), seed=3))
    # The float32 noise range stated in `keras_gumbel.random`.
    assert noise.min() >= -4.5 and noise.max() <= 16.7


def test_exponential_noise_is_positive_with_unit_mean():
    # 200,000 draws of Exponential(1): mean 1, sigma of the mean 1 / sqrt(n);
    # tolerance 4 sigma.
    n = 200_000
    draw = testing.to_numpy(kg.random.exponential((n,), seed=5))
    assert np.all(np.isfinite(draw)) and draw.min() > 0.0
    assert abs(draw.mean() - 1.0) < 4 / np.sqrt(n)


def test_elements_of_one_draw_are_uncorrelated():
    # Lag-1 correlation of 100,000 draws: sigma 1 / sqrt(n), tolerance 4 sigma.
    n = 100_000
    noise = testing.to_numpy(kg.ops.sample_gumbel((n,), seed=8)).astype("float64")
    correlation = np.corrcoef(noise[:-1], noise[1:])[0, 1]
    assert abs(correlation) < 4 / np.sqrt(n)


# Seeds outside [0, 2**31 - 1] are refused (tests/test_numerical_policy.py).
@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_int_seed_reproduces_the_draw(seed):
    first = testing.to_numpy(kg.ops.sample_gumbel((4, 6), seed=seed))
    second = testing.to_numpy(kg.ops.sample_gumbel((4, 6), seed=seed))
    np.testing.assert_array_equal(first, second)
    # Within one draw the numbers are not repeated.
    assert len(np.unique(first)) == first.size


def test_different_int_seeds_give_different_draws():
    draws = [
        testing.to_numpy(kg.ops.sample_gumbel((16,), seed=seed)) for seed in range(5)
    ]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(draws[i], draws[j])


def test_seed_none_draws_fresh_noise_every_call():
    first = testing.to_numpy(kg.ops.sample_gumbel((16,)))
    second = testing.to_numpy(kg.ops.sample_gumbel((16,)))
    assert not np.array_equal(first, second)


def test_seed_generator_gives_a_reproducible_sequence():
    generator_a = keras.random.SeedGenerator(42)
    generator_b = keras.random.SeedGenerator(42)
    sequence_a = [
        testing.to_numpy(kg.ops.sample_gumbel((16,), seed=generator_a)) for _ in "ab"
    ]
    sequence_b = [
        testing.to_numpy(kg.ops.sample_gumbel((16,), seed=generator_b)) for _ in "ab"
    ]
    for a, b in zip(sequence_a, sequence_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(sequence_a[0], sequence_a[1])


@TF_ONLY
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("use_generator", [False, True])
def test_traced_function_draws_fresh_noise_every_call(jit_compile, use_generator):
    # The blog-snippet bug: noise drawn once at trace time and baked into the
    # graph. Every call of a compiled function must draw new noise.
    import tensorflow as tf

    generator = keras.random.SeedGenerator(1) if use_generator else None

    @tf.function(jit_compile=jit_compile)
    def draw():
        return kg.ops.sample_gumbel((16,), seed=generator)

    first, second = draw().numpy(), draw().numpy()
    assert np.all(np.isfinite(first)) and np.all(np.isfinite(second))
    assert not np.array_equal(first, second)


def test_stream_draws_share_no_numbers():
    # Gumbel-Rao draws its sample and its K conditional noises as draws 0..K
    # of one stream. No two draws of a key, nor of the keys of two
    # consecutive calls with one generator (states differing in one word),
    # may repeat numbers: 2 keys x 11 draws of 2,000 uniforms, whose values lie
    # on a grid of at least 2**23 points, so two independent draws share
    # about 2000**2 / 2**23 < 0.5 values; a reused draw would share 2,000.
    generator = keras.random.SeedGenerator(4)
    draws = [
        testing.to_numpy(kg.random.stream_uniform((2000,), key, index))
        for key in (kg.random.stream_key(generator), kg.random.stream_key(generator))
        for index in range(11)
    ]
    for first in range(len(draws)):
        for second in range(first):
            shared = np.intersect1d(draws[first], draws[second]).size
            assert shared <= 10, (first, second, shared)
    for draw in draws:
        assert draw.min() >= np.finfo("float32").tiny and draw.max() < 1.0
    # Uniform: a Kolmogorov-Smirnov test of all 44,000 numbers at p = 1e-4.
    assert stats.kstest(np.concatenate(draws), "uniform").pvalue > 1e-4


def test_stream_key_from_an_int_seed_is_reproducible():
    first = kg.random.stream_uniform((64,), kg.random.stream_key(7), 3)
    second = kg.random.stream_uniform((64,), kg.random.stream_key(7), 3)
    np.testing.assert_array_equal(testing.to_numpy(first), testing.to_numpy(second))


@pytest.mark.skipif(
    not testing.CAN_JIT_COMPILE, reason="PyTorch runs the loop eagerly, in Python"
)
def test_stream_draws_in_a_compiled_loop_are_the_eager_draws():
    # Gumbel-Rao's backward pass draws inside `fori_loop`, with a loop counter
    # as the index: compiled (XLA) it must draw the numbers it draws eagerly,
    # or a compiled train step would not compute the eager gradient.
    key = kg.random.stream_key(9)

    def total(key):
        def body(index, running):
            return running + kg.random.stream_uniform((8,), key, index + 1)

        return (keras.ops.fori_loop(0, 3, body, keras.ops.zeros((8,))),)

    (compiled,), (eager,) = testing.compiled_and_eager(total, key)
    expected = sum(
        testing.to_numpy(kg.random.stream_uniform((8,), key, index))
        for index in (1, 2, 3)
    )
    np.testing.assert_allclose(compiled, expected, rtol=1e-6)
    np.testing.assert_allclose(eager, expected, rtol=1e-6)


@pytest.mark.parametrize("seed", [1.5, "0", True, [1, 2], np.float32(3.0)])
def test_bad_seed_type_is_rejected(seed):
    with pytest.raises(TypeError, match=re.escape(f"Received: seed={seed!r}")) as info:
        kg.ops.sample_gumbel((2,), seed=seed)
    assert "`seed`" in str(info.value)


@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_non_float_dtype_is_rejected(dtype):
    with pytest.raises(TypeError, match=re.escape(f"Received: dtype={dtype}")):
        kg.ops.sample_gumbel((2,), dtype=dtype)


def _from_threads(draw, threads=8, calls=10):
    import threading

    samples, lock = [], threading.Lock()

    def work():
        for _ in range(calls):
            value = testing.to_numpy(draw()).tobytes()
            with lock:
                samples.append(value)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return samples


def test_one_layer_called_from_several_threads_draws_fresh_noise_each_call():
    # 8 threads x 10 eager calls of one layer: every call reads and advances
    # the layer's generator under a lock, so no two calls share their noise
    # (64 categories: two fresh draws coincide with probability ~0).
    layer = kg.GumbelSoftmax(seed=0)
    x = np.zeros((1, 64), "float32")
    layer(x, training=True)
    before = testing.to_numpy(layer.seed_generator.state)
    samples = _from_threads(lambda: layer(x, training=True))
    assert len(set(samples)) == len(samples) == 80
    after = testing.to_numpy(layer.seed_generator.state)
    assert after[1] - before[1] == 80


def test_ops_share_a_generator_or_the_global_one_across_threads():
    generator = keras.random.SeedGenerator(3)
    x = np.zeros((1, 64), "float32")
    for seed in (generator, None):
        samples = _from_threads(lambda s=seed: kg.ops.gumbel_softmax(x, seed=s))
        assert len(set(samples)) == len(samples) == 80


@pytest.mark.parametrize(
    "index, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_stream_uniform_names_a_bad_index(index, error):
    key = kg.random.stream_key(0)
    with pytest.raises(error, match=r"index"):
        kg.random.stream_uniform((4,), key, index)
