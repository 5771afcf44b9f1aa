"""`keras_gumbel.ops`: sampling, masks, densities and KL against references.

Statistical tests use fixed seeds; each states its sample size and level.
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras import ops
from scipy import stats

import keras_gumbel as kg
from tests import testing

TF_ONLY = pytest.mark.skipif(
    testing.backend() != "tensorflow",
    reason="cross-checks against TensorFlow Probability or traces a tf.function",
)

LOGITS_6 = np.array([1.2, -0.4, 0.3, 2.0, -1.5, 0.0], dtype="float32")


def weighted_sum(weights):
    """A loss whose gradient is not the trivially zero gradient of `sum(y)`."""
    weights = ops.convert_to_tensor(np.asarray(weights, dtype="float32"))
    return lambda y: ops.sum(ops.cast(y, "float32") * weights)


# Sampling distribution against TensorFlow Probability.

KS_SAMPLES = 20_000
KS_CATEGORIES = (2, 10, 100)
KS_TEMPERATURES = (0.1, 0.5, 1.0, 5.0)
KS_CONFIGS = [(n, t) for n in KS_CATEGORIES for t in KS_TEMPERATURES]
# Each config compares 2 logit rows (uniform and non-uniform) x n coordinates.
KS_TESTS = sum(2 * n for n, _ in KS_CONFIGS)  # 896 two-sample KS tests
# Bonferroni: the family of all 896 tests (all parametrizations below together)
# rejects a correct implementation with probability at most 1e-3.
KS_FAMILY_ALPHA = 1e-3
KS_TEST_ALPHA = KS_FAMILY_ALPHA / KS_TESTS


def ks_logits(n):
    rng = np.random.default_rng(n)
    return np.stack([np.zeros(n), 1.5 * rng.normal(size=n)]).astype("float32")


@TF_ONLY
@pytest.mark.parametrize("n, temperature", KS_CONFIGS)
def test_samples_match_tfp_relaxed_one_hot_categorical(n, temperature):
    # 20,000 samples from each side, two-sample KS per coordinate, level
    # KS_TEST_ALPHA ~ 1.1e-6 per test (Bonferroni over the 896 tests above).
    import tensorflow_probability as tfp

    logits = ks_logits(n)
    config = KS_CONFIGS.index((n, temperature))
    batch = np.broadcast_to(logits, (KS_SAMPLES, 2, n))
    ours = testing.to_numpy(kg.ops.gumbel_softmax(batch, temperature, seed=config))
    reference = tfp.distributions.RelaxedOneHotCategorical(temperature, logits=logits)
    theirs = reference.sample(KS_SAMPLES, seed=1000 + config).numpy()
    distance, pvalue = testing.ks_2samp_columns(ours, theirs)
    worst = int(np.argmin(pvalue))
    assert pvalue[worst] > KS_TEST_ALPHA, (worst, distance[worst], pvalue[worst])
    # The vectorised statistic is scipy's (checked on the worst coordinate).
    row, k = divmod(worst, n)
    scipy_result = stats.ks_2samp(ours[:, row, k], theirs[:, row, k], method="asymp")
    assert distance[worst] == pytest.approx(scipy_result.statistic, abs=1e-12)


@TF_ONLY
def test_ks_comparison_detects_a_wrong_temperature():
    # The comparison above has power: at the same sample size and level it
    # rejects samples drawn at a temperature 20% off (n = 10, tau = 0.5).
    import tensorflow_probability as tfp

    n, temperature = 10, 0.5
    logits = ks_logits(n)
    batch = np.broadcast_to(logits, (KS_SAMPLES, 2, n))
    ours = testing.to_numpy(kg.ops.gumbel_softmax(batch, temperature, seed=0))
    wrong = tfp.distributions.RelaxedOneHotCategorical(1.2 * temperature, logits)
    _, pvalue = testing.ks_2samp_columns(ours, wrong.sample(KS_SAMPLES, seed=7).numpy())
    assert pvalue.min() < KS_TEST_ALPHA


# Log-densities against TensorFlow Probability.


@TF_ONLY
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", KS_CATEGORIES)
def test_log_densities_match_tfp(dtype, n):
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    logits = ks_logits(n).astype(dtype)
    compared = 0
    for temperature in KS_TEMPERATURES:
        tau = tf.constant(temperature, dtype)
        exp_reference = tfd.ExpRelaxedOneHotCategorical(tau, logits=logits)
        reference = tfd.RelaxedOneHotCategorical(tau, logits=logits)
        log_sample = exp_reference.sample(500, seed=n).numpy()
        sample = np.exp(log_sample)

        ours = testing.to_numpy(
            kg.ops.exp_relaxed_one_hot_log_prob(log_sample, logits, temperature)
        )
        assert ours.dtype == dtype
        np.testing.assert_allclose(
            ours, exp_reference.log_prob(log_sample).numpy(), rtol=1e-5
        )

        ours = testing.to_numpy(
            kg.ops.relaxed_one_hot_log_prob(sample, logits, temperature)
        )
        theirs = reference.log_prob(sample).numpy()
        assert np.all(np.isfinite(ours))
        finite = np.isfinite(theirs)
        compared += finite.sum()
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5)
    # Most samples are compared (low temperature, large n can underflow).
    assert compared > 0.7 * 500 * 2 * len(KS_TEMPERATURES)


@TF_ONLY
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_densities_stay_finite_where_tfp_relaxed_density_is_nan(dtype):
    # At temperature 0.05 with 50 categories most float32 samples have
    # coordinates that underflow to exactly 0, where TFP's relaxed density is
    # NaN. The log-space density is exact there; the relaxed one stays finite.
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    temperature, n = 0.05, 50
    logits = (2.0 * np.random.default_rng(3).normal(size=n)).astype(dtype)
    tau = tf.constant(temperature, dtype)
    exp_reference = tfd.ExpRelaxedOneHotCategorical(tau, logits=logits)
    log_sample = exp_reference.sample(1000, seed=5).numpy()
    sample = np.exp(log_sample)
    theirs_relaxed = tfd.RelaxedOneHotCategorical(tau, logits=logits).log_prob(sample)
    if dtype == "float32":
        assert np.mean(np.isnan(theirs_relaxed.numpy())) > 0.9

    ours_exp = kg.ops.exp_relaxed_one_hot_log_prob(log_sample, logits, temperature)
    np.testing.assert_allclose(
        testing.to_numpy(ours_exp),
        exp_reference.log_prob(log_sample).numpy(),
        rtol=1e-5,
    )
    ours = testing.to_numpy(
        kg.ops.relaxed_one_hot_log_prob(sample, logits, temperature)
    )
    assert np.all(np.isfinite(ours))
    grad = testing.gradient(
        lambda v: ops.sum(kg.ops.relaxed_one_hot_log_prob(sample, v, temperature)),
        logits,
    )
    assert np.all(np.isfinite(grad))
    # Our own low-temperature samples are also given a finite density.
    ours_sample = kg.ops.gumbel_softmax(np.broadcast_to(logits, (1000, n)), 0.05)
    density = kg.ops.relaxed_one_hot_log_prob(ours_sample, logits, temperature)
    assert np.all(np.isfinite(testing.to_numpy(density)))


def test_log_density_axis_and_broadcasting():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=5).astype("float32")
    sample = testing.to_numpy(
        kg.ops.gumbel_softmax(np.broadcast_to(logits, (8, 5)), seed=2)
    )
    last = testing.to_numpy(kg.ops.relaxed_one_hot_log_prob(sample, logits, 0.7))
    assert last.shape == (8,)
    first = kg.ops.relaxed_one_hot_log_prob(sample.T, logits[:, None], 0.7, axis=0)
    np.testing.assert_allclose(testing.to_numpy(first), last, rtol=1e-6)
    log_first = kg.ops.exp_relaxed_one_hot_log_prob(
        np.log(sample.T), logits[:, None], 0.7, axis=0
    )
    np.testing.assert_allclose(
        testing.to_numpy(log_first),
        testing.to_numpy(
            kg.ops.exp_relaxed_one_hot_log_prob(np.log(sample), logits, 0.7)
        ),
        rtol=1e-6,
    )


@pytest.mark.jax_x64  # the quadrature is in float64
def test_relaxed_density_integrates_to_one_for_two_categories():
    # For n = 2 the density of y0 on (0, 1) is p(y0, 1 - y0). Substituting
    # y0 = sigmoid(s), dy0 = y0 y1 ds, removes the y^(tau - 1) endpoint
    # singularities; trapezoid rule on s in [-80, 80] with 100,001 points, in
    # float64. The mass outside the range is below exp(-0.5 * 80) ~ 4e-18.
    s = np.linspace(-80.0, 80.0, 100_001)
    y0, y1 = 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(s))
    sample = np.stack([y0, y1], axis=-1)
    logits = np.array([0.7, -0.2])
    for temperature in (0.5, 1.0, 3.0):
        log_density = kg.ops.relaxed_one_hot_log_prob(sample, logits, temperature)
        total = np.trapezoid(np.exp(testing.to_numpy(log_density)) * y0 * y1, s)
        assert total == pytest.approx(1.0, abs=1e-6)


# Gumbel-Max: hard samples are exact categorical samples.

CHI_SQUARE_SAMPLES = 100_000
CHI_SQUARE_ALPHA = 1e-3


@pytest.mark.parametrize("estimator", [None, "straight_through"])
def test_hard_sample_frequencies_match_softmax(estimator):
    # 100,000 hard samples of 6 categories; chi-square goodness of fit to
    # softmax(logits) at level 1e-3.
    batch = np.broadcast_to(LOGITS_6, (CHI_SQUARE_SAMPLES, 6))
    sample = kg.ops.gumbel_softmax(batch, 0.5, hard=True, estimator=estimator, seed=3)
    testing.assert_exact_one_hot(sample)
    assert (
        testing.chi_square_pvalue(sample, testing.softmax(LOGITS_6)) > CHI_SQUARE_ALPHA
    )


def test_hard_sample_frequencies_with_mask_and_infinite_logits():
    # Masked and -inf categories are never drawn; the others keep frequencies
    # proportional to exp(logits). 100,000 samples, chi-square at level 1e-3,
    # category axis first.
    logits = LOGITS_6.copy()
    logits[4] = -np.inf
    mask = np.array([True, False, True, True, True, True])
    probabilities = np.where(
        mask, testing.softmax(np.where(mask, logits, -np.inf)), 0.0
    )
    batch = np.broadcast_to(logits[:, None], (6, CHI_SQUARE_SAMPLES))
    sample = kg.ops.gumbel_softmax(
        batch, 2.0, hard=True, axis=0, mask=mask[:, None], seed=4
    )
    testing.assert_exact_one_hot(sample, axis=0)
    assert testing.chi_square_pvalue(sample, probabilities, axis=0) > CHI_SQUARE_ALPHA


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", testing.FLOAT64])
def test_hard_samples_are_exact_one_hots(dtype):
    logits = np.random.default_rng(1).normal(size=(64, 3, 7)).astype(dtype)
    for temperature in (1e-4, 0.1, 1.0, 100.0):
        sample = kg.ops.gumbel_softmax(logits, temperature, hard=True, seed=5)
        assert keras.backend.standardize_dtype(sample.dtype) == dtype
        testing.assert_exact_one_hot(sample)


def test_hard_gradient_is_the_relaxed_gradient_of_the_same_noise():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(32, 5)).astype("float32")
    loss = weighted_sum(rng.normal(size=(32, 5)))
    soft = testing.to_numpy(kg.ops.gumbel_softmax(logits, 0.7, seed=9))
    hard = testing.to_numpy(kg.ops.gumbel_softmax(logits, 0.7, hard=True, seed=9))
    # Same int seed, same noise: the hard sample is the argmax of the soft one.
    np.testing.assert_array_equal(hard, np.eye(5)[np.argmax(soft, axis=-1)])
    soft_grad = testing.gradient(
        lambda v: loss(kg.ops.gumbel_softmax(v, 0.7, seed=9)), logits
    )
    hard_grad = testing.gradient(
        lambda v: loss(kg.ops.gumbel_softmax(v, 0.7, hard=True, seed=9)), logits
    )
    assert np.abs(soft_grad).max() > 1e-3
    np.testing.assert_allclose(hard_grad, soft_grad, rtol=1e-6, atol=1e-7)


def test_int_seed_reproduces_and_seed_none_is_fresh():
    logits = np.zeros((4, 10), dtype="float32")
    first = testing.to_numpy(kg.ops.gumbel_softmax(logits, seed=1))
    np.testing.assert_array_equal(
        first, testing.to_numpy(kg.ops.gumbel_softmax(logits, seed=1))
    )
    assert not np.array_equal(
        first, testing.to_numpy(kg.ops.gumbel_softmax(logits, seed=2))
    )
    fresh = [testing.to_numpy(kg.ops.gumbel_softmax(logits)) for _ in range(2)]
    assert not np.array_equal(*fresh)
    generator = keras.random.SeedGenerator(0)
    sequence = [
        testing.to_numpy(kg.ops.gumbel_softmax(logits, seed=generator)) for _ in "ab"
    ]
    assert not np.array_equal(*sequence)


@TF_ONLY
@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_gumbel_softmax_draws_fresh_noise_every_call(jit_compile):
    import tensorflow as tf

    logits = tf.zeros((4, 10))

    @tf.function(jit_compile=jit_compile)
    def draw(temperature):
        return kg.ops.gumbel_softmax(logits, temperature, hard=True)

    temperature = tf.constant(0.5)
    samples = [draw(temperature).numpy() for _ in range(3)]
    for sample in samples:
        testing.assert_exact_one_hot(sample)
    assert not np.array_equal(samples[0], samples[1])
    assert not np.array_equal(samples[1], samples[2])


# Masks and infinite logits.


@pytest.mark.parametrize("hard", [False, True])
def test_masked_categories_get_zero_output_and_zero_gradient(hard):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 5)).astype("float32")
    mask = rng.random((6, 5)) < 0.6
    mask[:, 0] = True
    mask[5] = False  # a row with no allowed category
    loss = weighted_sum(rng.normal(size=(6, 5)))

    sample = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, 0.5, hard=hard, mask=mask, seed=1)
    )
    assert np.all(sample[~mask] == 0.0)
    np.testing.assert_allclose(sample[:5].sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(sample[5], 0.0)
    if hard:
        testing.assert_exact_one_hot(sample[:5])

    grad = testing.gradient(
        lambda v: loss(kg.ops.gumbel_softmax(v, 0.5, hard=hard, mask=mask, seed=1)),
        logits,
    )
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~mask] == 0.0)
    assert np.abs(grad[mask]).max() > 0.0


def test_row_mask_of_one_rank_less_zeros_whole_rows():
    logits = np.random.default_rng(5).normal(size=(3, 4, 6)).astype("float32")
    row_mask = np.array([[True, False, True, True]] * 3)
    for axis in (-1, 1):
        sample = testing.to_numpy(
            kg.ops.gumbel_softmax(
                np.moveaxis(logits, -1, axis), mask=row_mask, axis=axis, seed=0
            )
        )
        sample = np.moveaxis(sample, axis, -1)
        np.testing.assert_array_equal(sample[:, 1], 0.0)
        np.testing.assert_allclose(sample[:, [0, 2, 3]].sum(-1), 1.0, rtol=1e-6)


def test_broadcast_mask():
    logits = np.zeros((100, 4), dtype="float32")
    mask = np.array([[True, False, True, False]])
    sample = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, hard=True, mask=mask, seed=0)
    )
    assert np.all(sample[:, [1, 3]] == 0.0)
    testing.assert_exact_one_hot(sample)


@pytest.mark.parametrize("hard", [False, True])
def test_infinite_and_huge_logits_are_finite(hard):
    logits = np.array(
        [
            [1e30, -1e30, 0.0, -np.inf],
            [-np.inf, -np.inf, -np.inf, -np.inf],
            [-1e30, -1e30, -1e30, -1e30],
            [1e30, 1e30, -np.inf, 0.0],
            [0.0, -np.inf, 1.0, 2.0],
        ],
        dtype="float32",
    )
    loss = weighted_sum(np.arange(20, dtype="float32").reshape(5, 4))
    for temperature in (1e-4, 1.0, 1e3):
        sample = testing.to_numpy(
            kg.ops.gumbel_softmax(logits, temperature, hard=hard, seed=3)
        )
        assert np.all(np.isfinite(sample)) and np.all(sample >= 0.0)
        np.testing.assert_array_equal(sample[1], 0.0)  # no possible category
        np.testing.assert_allclose(sample[[0, 2, 3, 4]].sum(-1), 1.0, rtol=1e-6)
        assert np.all(sample[np.isneginf(logits)] == 0.0)
        assert sample[0, 0] == pytest.approx(1.0)
        grad = testing.gradient(
            lambda v, t=temperature: loss(
                kg.ops.gumbel_softmax(v, t, hard=hard, seed=3)
            ),
            logits,
        )
        assert np.all(np.isfinite(grad))
        assert np.all(grad[np.isneginf(logits)] == 0.0)


@pytest.mark.parametrize("hard", [False, True])
def test_tiny_temperature_gives_finite_values_and_gradients(hard):
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(16, 8)).astype("float32")
    loss = weighted_sum(rng.normal(size=(16, 8)))

    def sample(v, t=1e-4):
        return kg.ops.gumbel_softmax(v, t, hard=hard, seed=2)

    values = testing.to_numpy(sample(logits))
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(testing.gradient(lambda v: loss(sample(v)), logits)))
    grad_temperature = testing.gradient(
        lambda t: loss(sample(logits, t)), np.float32(1e-4)
    )
    assert np.isfinite(grad_temperature)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", testing.FLOAT64])
def test_other_dtypes_keep_dtype_and_stay_finite(dtype):
    big = 6e4 if dtype == "float16" else 1e30
    logits = np.array([[big, -big, 0.0, 1.0], [0.5, 0.2, -0.1, 0.0]], dtype=dtype)
    for temperature in (1e-4, 1.0, 100.0):
        for hard in (False, True):
            sample = kg.ops.gumbel_softmax(logits, temperature, hard=hard, seed=1)
            assert keras.backend.standardize_dtype(sample.dtype) == dtype
            values = testing.to_numpy(sample).astype("float64")
            assert np.all(np.isfinite(values)) and np.all(values >= 0.0)
            np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-2)


# Deterministic modes.


def test_tempered_softmax_matches_numpy():
    rng = np.random.default_rng(7)
    logits = (3 * rng.normal(size=(5, 6))).astype("float32")
    for temperature in (0.1, 1.0, 7.0):
        np.testing.assert_allclose(
            testing.to_numpy(kg.ops.tempered_softmax(logits, temperature)),
            testing.softmax(logits / temperature),
            rtol=1e-5,
            atol=1e-7,
        )
    np.testing.assert_allclose(
        testing.to_numpy(kg.ops.tempered_softmax(logits, 2.0, axis=0)),
        testing.softmax(logits / 2.0, axis=0),
        rtol=1e-5,
        atol=1e-7,
    )
    mask = rng.random((5, 6)) < 0.5
    mask[:, 0] = True
    masked = testing.to_numpy(kg.ops.tempered_softmax(logits, 0.5, mask=mask))
    np.testing.assert_allclose(
        masked,
        testing.softmax(np.where(mask, logits / 0.5, -np.inf)),
        rtol=1e-5,
        atol=1e-7,
    )


def test_tempered_softmax_extremes():
    logits = np.array(
        [[1e30, -1e30, 0.0], [-np.inf, -np.inf, -np.inf], [5.0, 5.0, -np.inf]],
        dtype="float32",
    )
    values = testing.to_numpy(kg.ops.tempered_softmax(logits, 1e-4))
    np.testing.assert_array_equal(values, [[1, 0, 0], [0, 0, 0], [0.5, 0.5, 0]])
    grad = testing.gradient(
        lambda v: ops.sum(kg.ops.tempered_softmax(v, 1e-4) ** 2), logits
    )
    assert np.all(np.isfinite(grad))


def test_tempered_softmax_gradient_with_infinite_and_huge_logits():
    # Every row has a finite score, so on PyTorch this is the fused-softmax path
    # (a row with none takes the hand-written one, tested above); its values and
    # gradient must match the float64 softmax Jacobian, with exact zeros where
    # the sample is 0.
    logits = np.array(
        [[1e30, -1e30, 0.0, 1.0], [-np.inf, 2.0, 1.0, -np.inf], [0.3, -0.2, 0.1, -9.0]],
        dtype="float32",
    )
    weights = np.random.default_rng(11).normal(size=logits.shape)
    loss = weighted_sum(weights)
    for temperature in (1e-4, 0.5, 3.0):
        scaled = (logits - logits.max(-1, keepdims=True)).astype(
            "float64"
        ) / temperature
        expected = np.exp(scaled) / np.exp(scaled).sum(-1, keepdims=True)
        inner = (weights * expected).sum(-1, keepdims=True)
        expected_grad = expected * (weights - inner) / temperature
        values = testing.to_numpy(kg.ops.tempered_softmax(logits, temperature))
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7)
        grad = testing.gradient(
            lambda v, t=temperature: loss(kg.ops.tempered_softmax(v, t)), logits
        )
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(grad[expected == 0.0], 0.0)


def test_argmax_one_hot():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(4, 3, 5)).astype("float32")
    np.testing.assert_array_equal(
        testing.to_numpy(kg.ops.argmax_one_hot(logits)),
        np.eye(5)[np.argmax(logits, -1)],
    )
    along_1 = testing.to_numpy(kg.ops.argmax_one_hot(logits, axis=1))
    np.testing.assert_array_equal(
        along_1, np.moveaxis(np.eye(3)[np.argmax(logits, 1)], -1, 1)
    )
    mask = np.ones((4, 3, 5), dtype=bool)
    mask[..., 0] = False
    mask[0, 0] = False
    masked = testing.to_numpy(kg.ops.argmax_one_hot(logits, mask=mask))
    np.testing.assert_array_equal(masked[0, 0], 0.0)
    assert np.all(masked[..., 0] == 0.0)
    expected = np.eye(5)[np.argmax(np.where(mask, logits, -np.inf), -1)]
    np.testing.assert_array_equal(masked[mask.any(-1)], expected[mask.any(-1)])


# Property tests.


@st.composite
def gumbel_softmax_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    temperature = 10.0 ** draw(st.floats(-3.0, 3.0))
    scale = draw(st.sampled_from([0.1, 1.0, 30.0, 1e4]))
    seed = draw(st.integers(0, 2**31 - 1))
    use_mask = draw(st.booleans())
    hard = draw(st.booleans())
    return shape, axis, temperature, scale, seed, use_mask, hard


# The explicit examples, run on every backend: both temperature extremes, a mask
# and rank 4.
@settings(deadline=None, max_examples=testing.PROPERTY_EXAMPLES, derandomize=True)
@given(gumbel_softmax_cases())
@example(((2, 3, 1, 4), 1, 1e-3, 30.0, 5, True, True))
@example(((3, 5), -1, 1e3, 1e4, 6, True, False))
def test_samples_are_finite_nonnegative_and_normalised(case):
    shape, axis, temperature, scale, seed, use_mask, hard = case
    rng = np.random.default_rng(seed)
    logits = (scale * rng.normal(size=shape)).astype("float32")
    mask = rng.random(shape) < 0.7 if use_mask else None
    sample = testing.to_numpy(
        kg.ops.gumbel_softmax(
            logits, temperature, hard=hard, axis=axis, mask=mask, seed=seed
        )
    )
    assert sample.shape == shape
    assert np.all(np.isfinite(sample)) and np.all(sample >= 0.0)
    totals = sample.sum(axis=axis)
    allowed = np.ones(totals.shape, bool) if mask is None else mask.any(axis=axis)
    np.testing.assert_allclose(totals[allowed], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(totals[~allowed], 0.0)
    if hard:
        assert np.all((sample == 0.0) | (sample == 1.0))


# KL to the uniform distribution.


def numpy_kl_uniform(logits, axis=-1):
    probabilities = testing.softmax(logits, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0)
    return terms.sum(axis=axis) + np.log(np.shape(logits)[axis])


@pytest.mark.parametrize(
    "dtype, rtol",
    [("float32", 1e-5), pytest.param("float64", 1e-12, marks=pytest.mark.jax_x64)],
)
def test_categorical_kl_uniform_matches_numpy(dtype, rtol):
    logits = (2 * np.random.default_rng(9).normal(size=(6, 7))).astype(dtype)
    kl = kg.ops.categorical_kl_uniform(logits)
    assert keras.backend.standardize_dtype(kl.dtype) == dtype
    np.testing.assert_allclose(
        testing.to_numpy(kl), numpy_kl_uniform(logits), rtol=rtol
    )
    np.testing.assert_allclose(
        testing.to_numpy(kg.ops.categorical_kl_uniform(logits, axis=0)),
        numpy_kl_uniform(logits, axis=0),
        rtol=rtol,
    )


def test_categorical_kl_uniform_is_zero_for_uniform_logits():
    logits = np.array([[0.0] * 5, [3.7] * 5, [-1e4] * 5], dtype="float32")
    np.testing.assert_allclose(
        testing.to_numpy(kg.ops.categorical_kl_uniform(logits)), 0.0, atol=1e-6
    )


def test_categorical_kl_uniform_with_infinite_logits_and_its_gradient():
    logits = np.array(
        [[0.3, -np.inf, 1.0, -np.inf], [-1.0, 0.5, 2.0, 0.0], [5.0] + [-np.inf] * 3],
        dtype="float32",
    )
    kl = testing.to_numpy(kg.ops.categorical_kl_uniform(logits))
    np.testing.assert_allclose(kl, numpy_kl_uniform(logits), rtol=1e-5)
    # One possible category out of 4: KL = log 4.
    assert kl[2] == pytest.approx(math.log(4.0), rel=1e-6)
    grad = testing.gradient(lambda v: ops.sum(kg.ops.categorical_kl_uniform(v)), logits)
    assert np.all(np.isfinite(grad))
    # d KL / d logits_j = p_j (log p_j - sum_k p_k log p_k).
    p = testing.softmax(logits)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(p > 0, np.log(p), 0.0)
    expected = p * (log_p - np.sum(p * log_p, axis=-1, keepdims=True))
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_categorical_kl_uniform_of_a_row_with_no_category_is_zero_not_nan():
    logits = np.array([[-np.inf] * 3, [0.0, 1.0, 2.0]], dtype="float32")
    kl = testing.to_numpy(kg.ops.categorical_kl_uniform(logits))
    assert kl[0] == 0.0
    np.testing.assert_allclose(kl[1], numpy_kl_uniform(logits[1:])[0], rtol=1e-5)
    grad = testing.gradient(lambda v: ops.sum(kg.ops.categorical_kl_uniform(v)), logits)
    np.testing.assert_array_equal(grad[0], 0.0)


# Bad input.


LOGITS = np.zeros((2, 3), dtype="float32")


@pytest.mark.parametrize(
    "temperature, error_type",
    [
        (0.0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("hot", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
@pytest.mark.parametrize(
    "function",
    [
        lambda t: kg.ops.gumbel_softmax(LOGITS, t),
        lambda t: kg.ops.tempered_softmax(LOGITS, t),
        lambda t: kg.ops.relaxed_one_hot_log_prob(LOGITS + 1 / 3, LOGITS, t),
        lambda t: kg.ops.exp_relaxed_one_hot_log_prob(LOGITS, LOGITS, t),
    ],
    ids=["gumbel_softmax", "tempered_softmax", "relaxed_log_prob", "exp_log_prob"],
)
def test_bad_temperature(function, temperature, error_type):
    testing.assert_error(
        error_type,
        lambda: function(temperature),
        "temperature",
        f"temperature={temperature!r}",
    )


@pytest.mark.parametrize(
    "kwargs, error_type, name, shown",
    [
        ({"estimator": "gumbel"}, ValueError, "estimator", "estimator='gumbel'"),
        ({"estimator": 3}, ValueError, "estimator", "estimator=3"),
        (
            {"estimator": "gumbel_softmax", "hard": True},
            ValueError,
            "estimator",
            "estimator='gumbel_softmax', hard=True",
        ),
        ({"axis": 2}, ValueError, "axis", "axis=2"),
        ({"axis": -3}, ValueError, "axis", "axis=-3"),
        ({"axis": 1.0}, TypeError, "axis", "axis=1.0"),
        ({"seed": 1.5}, TypeError, "seed", "seed=1.5"),
        ({"seed": "abc"}, TypeError, "seed", "seed='abc'"),
        (
            {"mask": np.ones((2, 3, 1), bool)},
            ValueError,
            "mask",
            "mask.shape=(2, 3, 1)",
        ),
        ({"mask": np.ones((2,), bool)[0]}, ValueError, "mask", "mask.shape=()"),
    ],
)
def test_bad_gumbel_softmax_arguments(kwargs, error_type, name, shown):
    testing.assert_error(
        error_type, lambda: kg.ops.gumbel_softmax(LOGITS, **kwargs), name, shown
    )


@pytest.mark.parametrize("dtype", ["int32", testing.INT64, "bool"])
@pytest.mark.parametrize(
    "function",
    [
        lambda v: kg.ops.gumbel_softmax(v),
        lambda v: kg.ops.argmax_one_hot(v),
        lambda v: kg.ops.tempered_softmax(v),
        lambda v: kg.ops.categorical_kl_uniform(v),
        lambda v: kg.ops.exp_relaxed_one_hot_log_prob(LOGITS, v, 1.0),
    ],
    ids=["gumbel_softmax", "argmax", "tempered_softmax", "kl", "exp_log_prob"],
)
def test_non_float_logits_are_rejected(function, dtype):
    logits = np.ones((2, 3), dtype=dtype)
    testing.assert_error(
        TypeError, lambda: function(logits), "logits", f"dtype={dtype}"
    )


def test_scalar_logits_and_bad_axis_are_rejected():
    testing.assert_error(
        ValueError, lambda: kg.ops.gumbel_softmax(np.float32(1.0)), "logits", "shape=()"
    )
    testing.assert_error(
        ValueError,
        lambda: kg.ops.categorical_kl_uniform(LOGITS, axis=5),
        "axis",
        "axis=5",
    )
    testing.assert_error(
        ValueError,
        lambda: kg.ops.relaxed_one_hot_log_prob(LOGITS + 1 / 3, LOGITS, 1.0, axis=2),
        "axis",
        "axis=2",
    )
