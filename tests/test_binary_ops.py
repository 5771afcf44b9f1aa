"""The binary family: gumbel_sigmoid, its densities, bernoulli_kl, Hard Concrete.

Statistical tests use fixed seeds and say their sample size and tolerance; a
family of tests is Bonferroni-corrected so that a correct implementation fails
one of them with probability below 1e-3.
"""

import keras
import numpy as np
import pytest
from scipy import special, stats

import keras_gumbel as kg
from tests import testing

TF_ONLY = pytest.mark.skipif(
    testing.backend() != "tensorflow", reason="TensorFlow Probability runs on TF"
)
LOGITS = np.array([-3.0, -0.5, 0.0, 1.2, 4.0], "float32")  # skewed both ways
TEMPERATURES = (0.1, 0.5, 1.0, 5.0)
SAMPLES = 20_000
KS_ALPHA = 1e-3 / (len(TEMPERATURES) * len(LOGITS))


def _tiled(logits, count):
    return np.tile(logits, (count, 1))


def _relaxed_cdf(y, logits, temperature):
    # P(Y <= y) = P(logit(Y) <= logit(y)), logit(Y) ~ Logistic(l / t, 1 / t).
    return special.expit(temperature * special.logit(y) - logits)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_relaxed_samples_follow_the_binary_concrete_distribution(temperature):
    # One-sample KS per logit against the exact CDF, 20,000 samples each.
    y = testing.to_numpy(
        kg.ops.gumbel_sigmoid(_tiled(LOGITS, SAMPLES), temperature, seed=11)
    ).astype("float64")
    assert np.all((y >= 0) & (y <= 1))
    # The distance is taken on a grid away from 0 and 1, where float32 rounds
    # low-temperature samples to exactly 0 or 1 (a point mass the continuous
    # CDF does not have); a supremum over fewer points makes the p-value
    # conservative.
    grid = special.expit(
        np.linspace(special.logit(1e-5), special.logit(1 - 1e-5), 4001)
    )
    for column, logit in enumerate(LOGITS):
        empirical = np.searchsorted(np.sort(y[:, column]), grid, side="right") / SAMPLES
        distance = np.max(np.abs(empirical - _relaxed_cdf(grid, logit, temperature)))
        assert stats.kstwo.sf(distance, SAMPLES) > KS_ALPHA, (logit, distance)


@TF_ONLY
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_relaxed_samples_match_tfp_relaxed_bernoulli(temperature):
    import tensorflow_probability as tfp

    reference = tfp.distributions.RelaxedBernoulli(temperature, logits=LOGITS)
    theirs = reference.sample(SAMPLES, seed=3).numpy()
    ours = testing.to_numpy(
        kg.ops.gumbel_sigmoid(_tiled(LOGITS, SAMPLES), temperature, seed=12)
    )
    _, pvalues = testing.ks_2samp_columns(ours, theirs)
    assert np.all(pvalues > KS_ALPHA), pvalues


@pytest.mark.parametrize("estimator", kg.ESTIMATORS[1:])
def test_hard_samples_are_exact_bernoulli_draws(estimator):
    # 50,000 draws per logit: the count of ones is within 5 sigma of n p.
    count = 50_000
    y = testing.to_numpy(
        kg.ops.gumbel_sigmoid(
            _tiled(LOGITS, count), 1.5, hard=True, estimator=estimator, seed=5
        )
    )
    assert set(np.unique(y).tolist()) <= {0.0, 1.0}
    p = special.expit(LOGITS.astype("float64"))
    sigma = np.sqrt(count * p * (1 - p))
    np.testing.assert_array_less(np.abs(y.sum(0) - count * p), 5 * sigma)


def _binary_gradients(estimator, logit, count, seed):
    def loss(x):
        sample = kg.ops.gumbel_sigmoid(
            x, 1.0, hard=True, estimator=estimator, seed=seed
        )
        return keras.ops.sum((sample - 0.3) ** 2)

    return testing.gradient(loss, np.full((count,), logit, "float32"))


def _categorical_gradients(estimator, logit, count, seed):
    def loss(x):
        two = keras.ops.stack([x, keras.ops.zeros_like(x)], axis=-1)
        sample = kg.ops.gumbel_softmax(
            two, 1.0, estimator=estimator, hard=True, seed=seed
        )
        return keras.ops.sum((sample[:, 0] - 0.3) ** 2)

    return testing.gradient(loss, np.full((count,), logit, "float32"))


@pytest.mark.parametrize("estimator", kg.ESTIMATORS[1:])
@pytest.mark.parametrize("logit", [-1.5, 0.0, 2.0])
def test_each_binary_estimator_has_the_expected_gradient_of_two_categories(
    estimator, logit
):
    # 20,000 per-sample gradients of (b - 0.3)^2 from each form: means within
    # 5 sigma of each other (sigma from both samples' variances).
    count = 20_000
    binary = _binary_gradients(estimator, logit, count, seed=21)
    categorical = _categorical_gradients(estimator, logit, count, seed=22)
    assert np.all(np.isfinite(binary))
    sigma = np.sqrt(binary.var() / count + categorical.var() / count)
    assert abs(binary.mean() - categorical.mean()) < 5 * sigma + 1e-6, (
        binary.mean(),
        categorical.mean(),
    )


def test_the_relaxed_estimator_has_the_gradient_of_two_categories():
    count = 20_000

    def binary(x):
        return keras.ops.sum(kg.ops.gumbel_sigmoid(x, 0.7, seed=1) ** 2)

    def categorical(x):
        two = keras.ops.stack([x, keras.ops.zeros_like(x)], axis=-1)
        return keras.ops.sum(kg.ops.gumbel_softmax(two, 0.7, seed=2)[:, 0] ** 2)

    x = np.full((count,), 0.8, "float32")
    a, b = testing.gradient(binary, x), testing.gradient(categorical, x)
    sigma = np.sqrt(a.var() / count + b.var() / count)
    assert abs(a.mean() - b.mean()) < 5 * sigma


def test_reinmax_given_the_sample_is_the_two_category_formula():
    # ReinMax's gradient depends on the sample only: check it exactly.
    logits = np.array([-1.0, 0.3, 2.0] * 200, "float32")
    temperature = 1.5

    def loss(x):
        sample = kg.ops.gumbel_sigmoid(x, temperature, estimator="reinmax", seed=4)
        return keras.ops.sum(sample)

    gradient = testing.gradient(loss, logits)
    sample = testing.to_numpy(
        kg.ops.gumbel_sigmoid(logits, temperature, estimator="reinmax", seed=4)
    )
    q0 = special.expit(logits)
    q1 = 0.5 * (sample + special.expit(logits / temperature))
    np.testing.assert_allclose(
        gradient, 2 * q1 * (1 - q1) - 0.5 * q0 * (1 - q0), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("estimator", kg.ESTIMATORS)
def test_masks_infinities_and_nan(estimator):
    hard = estimator != "gumbel_softmax"
    logits = np.array([[np.inf, -np.inf, np.nan, np.nan, 0.5]], "float32")
    mask = np.array([[True, True, False, True, False]])
    y = testing.to_numpy(
        kg.ops.gumbel_sigmoid(
            logits, 1.0, hard=hard, estimator=estimator, mask=mask, seed=0
        )
    )
    np.testing.assert_array_equal(y[0, :3], [1.0, 0.0, 0.0])
    assert np.isnan(y[0, 3]) and y[0, 4] == 0.0
    finite = np.where(np.isnan(logits), 0.0, logits).astype("float32")

    def loss(x):
        sample = kg.ops.gumbel_sigmoid(
            x, 1.0, hard=hard, estimator=estimator, mask=mask, seed=0
        )
        return keras.ops.sum(sample * keras.ops.arange(1, 6, dtype="float32"))

    gradient = testing.gradient(loss, finite)
    assert np.all(np.isfinite(gradient))
    assert gradient[0, 2] == 0.0 and gradient[0, 4] == 0.0


def test_the_temperature_policy_holds_elementwise():
    logits = np.array([-1.0, 0.5, 2.0], "float32")
    # A temperature tensor of 0 is the limit: the hard sample of the same noise.
    zero = testing.to_numpy(kg.ops.gumbel_sigmoid(logits, keras.Variable(0.0), seed=3))
    hard = testing.to_numpy(kg.ops.gumbel_sigmoid(logits, 1.0, hard=True, seed=3))
    np.testing.assert_array_equal(zero, hard)
    per_element = keras.ops.convert_to_tensor(np.array([1.0, np.nan, -1.0], "float32"))
    y = testing.to_numpy(kg.ops.gumbel_sigmoid(logits, per_element, seed=3))
    assert np.isfinite(y[0]) and np.all(np.isnan(y[1:]))
    testing.assert_error(
        ValueError,
        lambda: kg.ops.gumbel_sigmoid(logits, 0.5, estimator="reinmax"),
        "temperature",
        "reinmax",
    )
    reinmax = kg.ops.gumbel_sigmoid(logits, keras.Variable(0.5), estimator="reinmax")
    assert np.all(np.isnan(testing.to_numpy(reinmax)))
    testing.assert_error(
        ValueError,
        lambda: kg.ops.gumbel_sigmoid(logits, keras.ops.ones((2,))),
        "temperature",
        "(2,)",
    )
    testing.assert_error(
        ValueError,
        lambda: kg.ops.gumbel_sigmoid(logits, mask=np.ones((2,), bool)),
        "mask",
        "(2,)",
    )
    testing.assert_error(
        TypeError, lambda: kg.ops.gumbel_sigmoid(logits, hard="yes"), "hard", "yes"
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", testing.FLOAT64])
def test_dtypes(dtype):
    logits = keras.ops.cast(keras.ops.convert_to_tensor(LOGITS), dtype)
    for hard in (False, True):
        y = kg.ops.gumbel_sigmoid(logits, 0.5, hard=hard, seed=0)
        assert keras.backend.standardize_dtype(y.dtype) == dtype
    for function in (kg.ops.hard_concrete, kg.ops.hard_concrete_l0):
        assert keras.backend.standardize_dtype(function(logits).dtype) == dtype


# Log-densities.


@TF_ONLY
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_log_densities_match_tfp(dtype, temperature):
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    logits = LOGITS.astype(dtype)
    reference = tfd.RelaxedBernoulli(np.asarray(temperature, dtype), logits=logits)
    sample = reference.sample(2000, seed=8).numpy()
    theirs = reference.log_prob(sample).numpy()
    ours = testing.to_numpy(
        kg.ops.relaxed_bernoulli_log_prob(sample, logits, temperature)
    )
    assert ours.dtype == dtype
    assert np.all(np.isfinite(ours[(sample > 0) & (sample < 1)]))
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5, atol=1e-5)
    logistic = tfd.Logistic(logits / temperature, 1.0 / np.asarray(temperature, dtype))
    x = logistic.sample(2000, seed=9).numpy()
    np.testing.assert_allclose(
        testing.to_numpy(
            kg.ops.logit_relaxed_bernoulli_log_prob(x, logits, temperature)
        ),
        logistic.log_prob(x).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("dtype", ["float32", testing.FLOAT64])
def test_log_densities_against_the_closed_form(dtype):
    # On every backend: the logistic density, and the change of variables.
    rng = np.random.default_rng(0)
    y = rng.uniform(0.01, 0.99, size=(200, 5)).astype(dtype)
    t = 0.7
    x = special.logit(y.astype("float64"))
    z = t * x - LOGITS
    logistic = np.log(t) - np.logaddexp(0, z) - np.logaddexp(0, -z)
    ours = testing.to_numpy(
        kg.ops.logit_relaxed_bernoulli_log_prob(x.astype(dtype), LOGITS, t)
    )
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, logistic, rtol=1e-5, atol=1e-6)
    relaxed = logistic - np.log(y) - np.log1p(-y.astype("float64"))
    ours = testing.to_numpy(kg.ops.relaxed_bernoulli_log_prob(y, LOGITS, t))
    assert ours.dtype == dtype
    # float32 rounds each of the few terms of size ~1: 1e-6 absolute.
    np.testing.assert_allclose(ours, relaxed, rtol=1e-5, atol=1e-6)


def test_log_densities_at_the_edges_of_the_support():
    # A sample of exactly 0 or 1 (low temperature) is finite; outside [0, 1]
    # the density is 0; validate_args refuses it by name.
    y = np.array([0.0, 1.0, 1e-30, 1 - 2**-24, 1.5, -0.1, np.nan], "float32")
    density = testing.to_numpy(kg.ops.relaxed_bernoulli_log_prob(y, 0.0, 0.05))
    assert np.all(np.isfinite(density[:4]))
    np.testing.assert_array_equal(density[4:6], [-np.inf, -np.inf])
    assert np.isnan(density[6])
    testing.assert_error(
        ValueError,
        lambda: kg.ops.relaxed_bernoulli_log_prob(y[:6], 0.0, 0.5, validate_args=True),
        "sample",
        "index (4,)",
    )
    # The logit density at huge logits of the sample stays exact (no overflow).
    x = np.array([1e30, -1e30, 50.0], "float32")
    logit_density = testing.to_numpy(
        kg.ops.logit_relaxed_bernoulli_log_prob(x, 0.0, 0.1)
    )
    np.testing.assert_allclose(
        logit_density[2], np.log(0.1) - 5.0 - 2 * np.log1p(np.exp(-5.0)), rtol=1e-5
    )
    np.testing.assert_array_equal(logit_density[:2] < -1e28, [True, True])


# The KL and Hard Concrete.


def test_bernoulli_kl_matches_the_closed_form_and_is_finite_at_the_limits():
    logits = np.array([-30.0, -2.0, 0.0, 0.7, 5.0, 30.0], "float64")
    prior = 0.4
    p, q = special.expit(logits), special.expit(prior)
    expected = p * (np.log(p) - np.log(q)) + (1 - p) * (np.log1p(-p) - np.log1p(-q))
    ours = testing.to_numpy(kg.ops.bernoulli_kl(logits.astype("float32"), prior))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    extreme = np.array([np.inf, -np.inf, 3e38, -3e38], "float32")
    kl = testing.to_numpy(kg.ops.bernoulli_kl(extreme))
    np.testing.assert_allclose(kl, np.log(2.0), rtol=1e-6)
    gradient = testing.gradient(
        lambda x: keras.ops.sum(kg.ops.bernoulli_kl(x)), extreme
    )
    assert np.all(np.isfinite(gradient))
    assert np.isnan(testing.to_numpy(kg.ops.bernoulli_kl(np.float32(np.nan))))


LIMITS = (-0.1, 1.1)
HARD_CONCRETE_SAMPLES = 50_000


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 1.5])
@pytest.mark.parametrize("temperature", [2 / 3, 0.3])
def test_hard_concrete_is_exactly_0_and_1_as_often_as_the_closed_forms_say(
    log_alpha, temperature
):
    # 50,000 gates: counts of exact 0, exact 1 and in between against their
    # closed-form probabilities (chi-square, p > 1e-3 / 6 tests).
    gates = testing.to_numpy(
        kg.ops.hard_concrete(
            np.full((HARD_CONCRETE_SAMPLES,), log_alpha, "float32"),
            temperature,
            limits=LIMITS,
            seed=31,
        )
    )
    gamma, zeta = LIMITS
    p_zero = special.expit(temperature * np.log(-gamma / zeta) - log_alpha)
    p_one = special.expit(log_alpha - temperature * np.log((1 - gamma) / (zeta - 1)))
    counts = [np.sum(gates == 0), np.sum(gates == 1), np.sum((gates > 0) & (gates < 1))]
    expected = HARD_CONCRETE_SAMPLES * np.array([p_zero, p_one, 1 - p_zero - p_one])
    assert stats.chisquare(counts, expected).pvalue > 1e-3 / 6
    # The expected L0 norm is P(gate != 0).
    l0 = float(testing.to_numpy(kg.ops.hard_concrete_l0(log_alpha, temperature)))
    np.testing.assert_allclose(l0, 1 - p_zero, rtol=1e-6)
    monte_carlo = np.mean(gates != 0)
    sigma = np.sqrt(l0 * (1 - l0) / HARD_CONCRETE_SAMPLES)
    assert abs(monte_carlo - l0) < 5 * sigma


def test_hard_concrete_gradients_are_zero_where_clamped():
    log_alpha = np.zeros((2000,), "float32")
    gradient = testing.gradient(
        lambda x: keras.ops.sum(kg.ops.hard_concrete(x, seed=2)), log_alpha
    )
    gates = testing.to_numpy(kg.ops.hard_concrete(log_alpha, seed=2))
    clamped = (gates == 0) | (gates == 1)
    assert np.all(gradient[clamped] == 0) and np.all(gradient[~clamped] > 0)
    l0_gradient = testing.gradient(
        lambda x: keras.ops.sum(kg.ops.hard_concrete_l0(x)), log_alpha
    )
    assert np.all(l0_gradient > 0)


@pytest.mark.parametrize(
    "limits, error",
    [
        ((0.1, 1.1), ValueError),
        ((-0.1, 0.9), ValueError),
        ((-0.1, float("inf")), ValueError),
        ((float("-inf"), 1.1), ValueError),
        ((-0.1,), TypeError),
        ("wide", TypeError),
        ((True, 2), TypeError),
    ],
    ids=str,
)
def test_hard_concrete_limits_are_checked_by_name(limits, error):
    for function in (kg.ops.hard_concrete, kg.ops.hard_concrete_l0):
        testing.assert_error(
            error,
            lambda f=function: f(np.zeros(3, "float32"), limits=limits),
            "limits",
            repr(limits),
        )
    # NumPy scalars are numbers too.
    kg.ops.hard_concrete_l0(0.0, limits=(np.float32(-0.1), np.float64(1.1)))


def test_the_noise_free_forms_keep_the_policy():
    logits = np.array([np.inf, -np.inf, np.nan, 0.0, 2.0], "float32")
    mask = np.array([True, True, True, True, False])
    mode = testing.to_numpy(kg.ops.bernoulli_mode(logits, mask=mask))
    np.testing.assert_array_equal(mode[[0, 1, 3, 4]], [1.0, 0.0, 0.0, 0.0])
    assert np.isnan(mode[2])
    relaxed = testing.to_numpy(kg.ops.tempered_sigmoid(logits, 0.5, mask=mask))
    np.testing.assert_array_equal(relaxed[[0, 1, 3, 4]], [1.0, 0.0, 0.5, 0.0])
    assert np.isnan(relaxed[2])
    # A temperature tensor of 0 is the step function.
    step = kg.ops.tempered_sigmoid(logits[[0, 1, 3, 4]], keras.Variable(0.0))
    np.testing.assert_array_equal(testing.to_numpy(step), [1.0, 0.0, 0.5, 1.0])
