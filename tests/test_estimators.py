"""Gradient estimators against exact answers computed independently in NumPy.

Every statistical test draws a fixed-seed batch of N per-sample gradients in one
call, and compares their mean with the expectation of the same estimator
computed in float64 NumPy: by quadrature over the noise (binary variables), by
enumeration over the sample (ReinMax and GST, whose gradient is a function of
the sample alone), or by 10^7-sample Monte Carlo (4 categories). The tolerance
is 4 sigma, sigma = sqrt(s^2 / N + s_ref^2 / N_ref), where s is the sample
standard deviation of our per-sample gradients and s_ref that of the NumPy
Monte Carlo (0 for quadrature and enumeration).
"""

import functools

import keras
import numpy as np
import pytest
from keras import ops
from scipy import integrate, special, stats

import keras_gumbel as kg
from tests import testing

ESTIMATORS = ("gumbel_softmax", "straight_through", "reinmax", "gumbel_rao", "gst")
NEW_ESTIMATORS = ("reinmax", "gumbel_rao", "gst")
TEMPERATURES = (0.5, 1.0, 2.0)
SIGMAS = 4.0
TARGET = 0.45

# Binary problem: z ~ Bernoulli(sigmoid(theta)), as 2-category logits [theta, 0].
THETAS = np.array([-1.0, 0.3, 2.0])
BINARY_SAMPLES = 50_000  # per theta

# 4-category problem.
LOGITS_4 = np.array([0.5, -0.3, 1.2, -1.0])
MATRIX_4 = np.array(
    [
        [0.3, -1.2, 0.5, 0.0],
        [0.8, 0.1, -0.4, 1.1],
        [-0.6, 0.2, 0.9, -0.3],
        [0.4, -0.7, 0.0, -0.5],
    ]
)
VECTOR_4 = np.array([0.2, -0.5, 0.1, 0.7])
WEIGHTS_4 = np.array([0.5, -1.0, 1.5, 0.3])
CATEGORICAL_SAMPLES = 100_000
REFERENCE_SAMPLES = 10_000_000


def supported(estimator, temperature):
    return estimator != "reinmax" or temperature >= 1.0


def estimator_cases():
    return [
        (estimator, temperature)
        for estimator in ESTIMATORS
        for temperature in TEMPERATURES
        if supported(estimator, temperature)
    ]


# Estimators whose 4-category expectation needs the 10^7-sample NumPy Monte
# Carlo are checked at two temperatures to keep the test time down; the others
# are exact by enumeration and cheap at every temperature.
MONTE_CARLO_TEMPERATURES = (0.5, 1.0)


def categorical_cases():
    return [
        (estimator, temperature)
        for estimator, temperature in estimator_cases()
        if estimator in ("reinmax", "gst") or temperature in MONTE_CARLO_TEMPERATURES
    ]


# Losses, as (keras.ops loss of the sample, NumPy gradient of the loss). Binary
# losses act on z = sample[..., 0]; 4-category losses on the whole sample.

BINARY_LOSSES = {
    "quadratic": (
        lambda z: (z - TARGET) ** 2,
        lambda z: 2.0 * (z - TARGET),
    ),
    "cubic": (
        lambda z: ops.abs(z - TARGET) ** 3,
        lambda z: 3.0 * np.abs(z - TARGET) * (z - TARGET),
    ),
}

CATEGORICAL_LOSSES = {
    "quadratic": (
        lambda z: (
            ops.sum(z * ops.matmul(z, MATRIX_4.T.astype("float32")), axis=-1)
            + ops.sum(ops.multiply(z, VECTOR_4.astype("float32")), axis=-1)
        ),
        lambda z: z @ (MATRIX_4 + MATRIX_4.T) + VECTOR_4,
        lambda z: np.sum(z * (z @ MATRIX_4.T), axis=-1) + z @ VECTOR_4,
    ),
    "exponential": (
        lambda z: ops.exp(
            ops.sum(ops.multiply(z, WEIGHTS_4.astype("float32")), axis=-1)
        ),
        lambda z: WEIGHTS_4 * np.exp(z @ WEIGHTS_4)[..., None],
        lambda z: np.exp(z @ WEIGHTS_4),
    ),
}


# Independent float64 NumPy implementations of each estimator's expectation.


def softmax_vjp(probs, upstream, scale=1.0):
    """`J^T upstream` for the Jacobian `scale * (diag(p) - p p^T)` of a softmax."""
    inner = np.sum(probs * upstream, axis=-1, keepdims=True)
    return scale * probs * (upstream - inner)


def reinmax_expectation(logits, temperature, loss_gradient):
    """E over D ~ Cat(softmax(logits)) of ReinMax's gradient (Liu et al. 2023,
    Algorithm 2), by enumeration of D."""
    eye = np.eye(len(logits))
    pi_0 = testing.softmax(logits)
    pi_tau = testing.softmax(logits / temperature)
    total = 0.0
    for i in range(len(logits)):
        g = loss_gradient(eye[i])
        pi_1 = 0.5 * (eye[i] + pi_tau)
        total = total + pi_0[i] * (
            2.0 * softmax_vjp(pi_1, g) - 0.5 * softmax_vjp(pi_0, g)
        )
    return total


def gst_expectation(logits, temperature, loss_gradient, gap=1.0):
    """E over D of GST's gradient (Fan et al. 2022): the sampled logit raised to
    the maximum, the others lowered to at most max - gap, then the tempered
    softmax Jacobian; by enumeration of D."""
    eye = np.eye(len(logits))
    probs = testing.softmax(logits)
    top = np.max(logits)
    total = 0.0
    for i in range(len(logits)):
        perturbed = np.minimum(logits, top - gap)
        perturbed[i] = top
        relaxed = testing.softmax(perturbed / temperature)
        total = total + probs[i] * softmax_vjp(
            relaxed, loss_gradient(eye[i]), 1.0 / temperature
        )
    return total


def exact_gradient(logits, loss):
    """d/dlogits of E[f(D)] = sum_i softmax(logits)_i f(e_i), by enumeration."""
    eye = np.eye(len(logits))
    probs = testing.softmax(logits)
    return sum(loss(eye[i]) * probs[i] * (eye[i] - probs) for i in range(len(logits)))


@functools.cache
def binary_noise_expectation(theta, temperature, loss_name, relaxed):
    """E over Gumbel noise of the straight-through (or relaxed) gradient with
    respect to theta, for logits [theta, 0], by quadrature.

    Only the difference L = G_0 - G_1 ~ Logistic(0, 1) matters: the relaxed
    sample is y_0 = sigmoid((theta + L) / tau) and the hard one 1[theta + L > 0],
    so the gradient is f'(z) y_0 (1 - y_0) / tau with z = y_0 (relaxed) or the
    hard sample (straight-through, and Gumbel-Rao, whose mean is the same).
    """
    loss_gradient = BINARY_LOSSES[loss_name][1]

    def integrand(noise):
        y = special.expit((theta + noise) / temperature)
        z = y if relaxed else float(theta + noise > 0)
        density = np.exp(-abs(noise)) / (1.0 + np.exp(-abs(noise))) ** 2
        return density * loss_gradient(z) * y * (1.0 - y) / temperature

    pieces = [(-np.inf, -theta), (-theta, np.inf)]
    return sum(
        integrate.quad(integrand, low, high, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
        for low, high in pieces
    )


def binary_estimator_expectation(estimator, theta, temperature, loss_name):
    if estimator in ("gumbel_softmax", "straight_through", "gumbel_rao"):
        return binary_noise_expectation(
            theta, temperature, loss_name, estimator == "gumbel_softmax"
        )
    loss_gradient = BINARY_LOSSES[loss_name][1]
    logits = np.array([theta, 0.0])

    def gradient(z):
        return np.array([loss_gradient(z[0]), 0.0])

    function = reinmax_expectation if estimator == "reinmax" else gst_expectation
    return function(logits, temperature, gradient)[0]


@functools.cache
def categorical_noise_expectation(temperature):
    """E over Gumbel noise of the relaxed and straight-through gradients for the
    4-category problem, by 10^7-sample float64 Monte Carlo in chunks.

    Returns {(loss_name, relaxed): (mean, standard error)}.
    """
    rng = np.random.default_rng(20240607)
    chunk = 1_000_000
    sums = {}
    for _ in range(REFERENCE_SAMPLES // chunk):
        scores = LOGITS_4 + rng.gumbel(size=(chunk, 4))
        relaxed = testing.softmax(scores / temperature)
        hard = np.eye(4)[np.argmax(scores, axis=-1)]
        for name, (_, loss_gradient, _) in CATEGORICAL_LOSSES.items():
            for is_relaxed, z in ((True, relaxed), (False, hard)):
                grads = softmax_vjp(relaxed, loss_gradient(z), 1.0 / temperature)
                s, s2 = sums.get((name, is_relaxed), (0.0, 0.0))
                sums[(name, is_relaxed)] = (
                    s + grads.sum(axis=0),
                    s2 + np.einsum("ij,ij->j", grads, grads),
                )
    result = {}
    for key, (s, s2) in sums.items():
        mean = s / REFERENCE_SAMPLES
        variance = s2 / REFERENCE_SAMPLES - mean**2
        result[key] = (mean, np.sqrt(variance / REFERENCE_SAMPLES))
    return result


def categorical_estimator_expectation(estimator, temperature, loss_name):
    """(mean, standard error) of the estimator's gradient, 4-category problem."""
    if estimator in ("gumbel_softmax", "straight_through", "gumbel_rao"):
        relaxed = estimator == "gumbel_softmax"
        return categorical_noise_expectation(temperature)[(loss_name, relaxed)]
    loss_gradient = CATEGORICAL_LOSSES[loss_name][1]
    function = reinmax_expectation if estimator == "reinmax" else gst_expectation
    return function(LOGITS_4, temperature, loss_gradient), 0.0


# Our per-sample gradients, one batched call each.


def binary_gradients(estimator, temperature, loss_name, samples, seed):
    """Per-sample d loss / d theta, shape [samples, len(THETAS)]."""
    loss = BINARY_LOSSES[loss_name][0]
    theta = np.tile(THETAS.astype("float32"), (samples, 1))

    def total_loss(theta):
        logits = ops.stack([theta, ops.zeros_like(theta)], axis=-1)
        sample = kg.ops.gumbel_softmax(
            logits, temperature, estimator=estimator, seed=seed
        )
        return ops.sum(loss(sample[..., 0]))

    return testing.gradient(total_loss, theta).astype("float64")


def categorical_gradients(estimator, temperature, loss_name, samples, seed):
    """Per-sample d loss / d logits for the 4-category problem, [samples, 4]."""
    loss = CATEGORICAL_LOSSES[loss_name][0]
    logits = np.tile(LOGITS_4.astype("float32"), (samples, 1))

    def total_loss(logits):
        sample = kg.ops.gumbel_softmax(
            logits, temperature, estimator=estimator, seed=seed
        )
        return ops.sum(loss(sample))

    return testing.gradient(total_loss, logits).astype("float64")


def assert_mean_matches(grads, expected, expected_error=0.0):
    mean = grads.mean(axis=0)
    sigma = np.sqrt(grads.var(axis=0, ddof=1) / len(grads) + expected_error**2)
    assert np.all(np.abs(mean - expected) <= SIGMAS * sigma), (
        f"mean={mean}, expected={expected}, sigma={sigma}"
    )


def test_estimator_names():
    assert kg.ESTIMATORS == ESTIMATORS


@pytest.mark.parametrize("loss_name, seed", [("quadratic", 1), ("cubic", 2)])
@pytest.mark.parametrize("estimator, temperature", estimator_cases())
def test_bernoulli_mean_gradient(estimator, temperature, loss_name, seed):
    # Issue 2: f(z) = (z - 0.45)^2, and the non-quadratic f(z) = |z - 0.45|^3,
    # z ~ Bernoulli(sigmoid(theta)), theta in THETAS. N = 50,000 samples per
    # theta; 4 sigma; reference by quadrature.
    grads = binary_gradients(estimator, temperature, loss_name, BINARY_SAMPLES, seed)
    expected = [
        binary_estimator_expectation(estimator, theta, temperature, loss_name)
        for theta in THETAS
    ]
    assert_mean_matches(grads, np.array(expected))


@pytest.mark.parametrize("loss_name", sorted(CATEGORICAL_LOSSES))
@pytest.mark.parametrize("estimator, temperature", categorical_cases())
def test_categorical_mean_gradient(estimator, temperature, loss_name):
    # 4 categories, a quadratic and an exponential loss of the one-hot sample.
    # N = 100,000; reference: enumeration (ReinMax, GST) or 10^7-sample float64
    # Monte Carlo (its standard error is included in sigma); 4 sigma.
    grads = categorical_gradients(
        estimator, temperature, loss_name, CATEGORICAL_SAMPLES, 3
    )
    expected, expected_error = categorical_estimator_expectation(
        estimator, temperature, loss_name
    )
    assert_mean_matches(grads, expected, expected_error)


def test_reinmax_exact_for_quadratic_loss_at_temperature_one():
    # Liu et al. (2023): at temperature 1, ReinMax's expected gradient equals
    # the true gradient of E[f(D)] when f is quadratic in the one-hot D.
    # N = 100,000 (4 categories) and 50,000 per theta (binary); 4 sigma.
    _, _, loss = CATEGORICAL_LOSSES["quadratic"]
    grads = categorical_gradients("reinmax", 1.0, "quadratic", CATEGORICAL_SAMPLES, 4)
    assert_mean_matches(grads, exact_gradient(LOGITS_4, loss))

    grads = binary_gradients("reinmax", 1.0, "quadratic", BINARY_SAMPLES, 5)
    expected = [
        exact_gradient(np.array([theta, 0.0]), lambda z: (z[0] - TARGET) ** 2)[0]
        for theta in THETAS
    ]
    assert_mean_matches(grads, np.array(expected))


def variance_and_error(grads):
    """Sample variance per component and its standard error, sqrt((m4 - s^4)/N)."""
    centred = grads - grads.mean(axis=0)
    variance = np.mean(centred**2, axis=0)
    fourth = np.mean(centred**4, axis=0)
    return variance, np.sqrt((fourth - variance**2) / len(grads))


@pytest.mark.parametrize("temperature", [0.5, 1.0])
@pytest.mark.parametrize("problem", ["binary", "categorical"])
def test_gumbel_rao_same_mean_as_straight_through_and_no_larger_variance(
    problem, temperature
):
    # Paulus et al. (2021): E[grad_GR] = E[grad_ST] and Var(grad_GR) <=
    # Var(grad_ST) (Rao-Blackwell), decreasing in the number of draws K.
    # N = 100,000 (4 categories) or 50,000 per theta (binary) independent
    # per-sample gradients of each; 4 sigma on the mean
    # difference and on the variance difference.
    draw = binary_gradients if problem == "binary" else categorical_gradients
    samples = BINARY_SAMPLES if problem == "binary" else CATEGORICAL_SAMPLES
    straight = draw("straight_through", temperature, "quadratic", samples, 6)
    rao = draw("gumbel_rao", temperature, "quadratic", samples, 7)
    single = draw(
        kg.estimators.GumbelRao(draws=1), temperature, "quadratic", samples, 8
    )

    mean_sigma = np.sqrt(
        straight.var(axis=0, ddof=1) / samples + rao.var(axis=0, ddof=1) / samples
    )
    difference = np.abs(straight.mean(axis=0) - rao.mean(axis=0))
    assert np.all(difference <= SIGMAS * mean_sigma)

    var_straight, error_straight = variance_and_error(straight)
    var_rao, error_rao = variance_and_error(rao)
    var_single, error_single = variance_and_error(single)
    assert np.all(
        var_rao <= var_straight + SIGMAS * np.hypot(error_straight, error_rao)
    )
    # Ten distinct conditional draws lower the variance of a single draw by
    # far more than the noise: draws are not reused.
    assert np.all(var_rao < var_single - SIGMAS * np.hypot(error_single, error_rao))


def gumbel_rao_reference(logits, mask, temperature, weights, seed, draws):
    """Gumbel-Rao as one materialised computation, in float64 NumPy.

    Takes the estimator's random numbers (draws 0..K of the stream of `seed`)
    all at once, as `[K + 1, ...]`, and returns the sample, the gradient of
    `sum(sample * weights)` for the logits, `mean_k J(p_k)^T weights / T`,
    and that for the temperature, `mean_k -sum(weights * p_k * (c_k - <p_k,
    c_k>)) / T^2` (per row for a temperature per row), where `c_k` are the
    conditional scores given the sample (Paulus et al. 2021, Maddison et al.
    2014) and `p_k = softmax(c_k / T)`.
    """
    key = kg.random.stream_key(seed)
    shape = logits.shape
    uniforms = np.stack(
        [
            testing.to_numpy(kg.random.stream_uniform(shape, key, index))
            for index in range(draws + 1)
        ]
    ).astype("float64")
    allowed = mask & np.isfinite(logits)
    x = np.where(allowed, logits.astype("float64"), -np.inf)
    valid = allowed.any(axis=-1, keepdims=True)
    index = np.argmax(x - np.log(-np.log(uniforms[0])), axis=-1)
    sample = np.eye(shape[-1])[index] * valid
    safe = np.where(allowed, x, 0.0)
    top_logit = np.where(valid, np.max(safe, axis=-1, keepdims=True), 0.0)
    partition = np.sum(
        np.where(allowed, np.exp(safe - top_logit), 0.0), -1, keepdims=True
    )
    log_partition = top_logit + np.log(np.where(valid, partition, 1.0))
    temperature = np.asarray(temperature, "float64")
    if temperature.ndim:
        temperature = temperature[..., None]  # one per row
    log_exponentials = np.log(-np.log(uniforms[1:]))
    top = log_partition - np.sum(sample * log_exponentials, axis=-1, keepdims=True)
    others = -np.logaddexp(log_exponentials - safe, -top)
    scores = np.where(sample > 0, top, others)
    scaled = np.where(
        allowed, (scores - np.max(scores, -1, keepdims=True)) / temperature, -np.inf
    )
    probs = np.exp(scaled)
    probs = probs / np.where(valid, probs.sum(-1, keepdims=True), 1.0)
    inner = np.sum(probs * weights, axis=-1, keepdims=True)
    grad = np.mean(probs * (weights - inner), axis=0) / temperature
    scores = np.where(allowed, scores, 0.0)
    centred = scores - np.sum(probs * scores, axis=-1, keepdims=True)
    d_temperature = -np.sum(weights * probs * centred, axis=-1, keepdims=True)
    d_temperature = np.mean(d_temperature, axis=0) / temperature**2
    d_temperature = d_temperature[..., 0] if temperature.ndim else d_temperature.sum()
    return sample, grad, d_temperature


GUMBEL_RAO_LOGITS = np.array(
    [
        [0.5, -0.3, 1.2, 0.1, -1.0],
        [30.0, -30.0, 0.0, 3.0, 29.0],
        [-np.inf, 0.2, -np.inf, 0.1, 0.4],
        [2.0, 1.0, 0.0, -1.0, 5.0],
    ]
    * 8,
    dtype="float32",
)


@pytest.mark.parametrize(
    "temperature", [0.7, np.array([0.5, 1.0, 2.0, 0.3] * 8, "float32")]
)
def test_gumbel_rao_matches_a_reference_that_materialises_the_draws(temperature):
    # The backward loop makes the K conditional draws one at a time; it must
    # give what averaging all K materialised draws gives (float32 round-off
    # against float64), with masked, -inf and empty rows, and one temperature
    # per row. 7 draws; an int seed fixes the draws.
    logits = GUMBEL_RAO_LOGITS
    mask = np.ones(logits.shape, bool)
    mask[0::4, 1] = False
    mask[3::8] = False  # rows with no allowed category
    weights = loss_weights(logits.shape) - 2.0
    estimator = kg.estimators.GumbelRao(draws=7)

    def loss(x):
        sample = kg.ops.gumbel_softmax(
            x, temperature, estimator=estimator, mask=mask, seed=5
        )
        return ops.sum(ops.multiply(sample, weights))

    sample = kg.ops.gumbel_softmax(
        logits, temperature, estimator=estimator, mask=mask, seed=5
    )
    finite = np.where(np.isfinite(logits), logits, 0.0).astype("float32")
    expected_sample, expected_grad, _ = gumbel_rao_reference(
        finite, mask & np.isfinite(logits), temperature, weights, 5, 7
    )
    np.testing.assert_array_equal(testing.to_numpy(sample), expected_sample)
    grad = testing.gradient(loss, np.where(np.isfinite(logits), logits, -np.inf))
    # float32 against float64: the conditional scores (up to 30 in size) carry
    # a few ulp of error, which the temperature (down to 0.3) scales by 100 in
    # the exponents: about 1e-5 relative error in each probability.
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_gumbel_rao_temperature_gradient_matches_the_reference():
    # A trained temperature gets the mean over the draws of its gradient.
    logits = GUMBEL_RAO_LOGITS
    weights = loss_weights(logits.shape) - 2.0
    mask = np.isfinite(logits)
    temperature = keras.Variable(0.8)
    estimator = kg.estimators.GumbelRao(draws=5)

    def loss():
        sample = kg.ops.gumbel_softmax(logits, temperature, estimator=estimator, seed=6)
        return ops.sum(ops.multiply(sample, weights))

    _, _, expected = gumbel_rao_reference(
        np.where(mask, logits, 0.0), mask, 0.8, weights, 6, 5
    )
    grad = testing.variable_gradient(loss, temperature)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_gumbel_rao_binary_matches_a_reference_that_materialises_the_draws():
    # The binary form: draws 0..K of the stream; given the sample D, the
    # perturbed logit of draw k is `logits - sign * logit(u_k sigmoid(sign *
    # logits))`, sign = 2D - 1; the gradient of sum(sample * weights) is
    # `mean_k weights * s_k (1 - s_k) / T`, s_k = sigmoid(perturbed_k / T).
    logits = np.linspace(-4.0, 4.0, 48, dtype="float32")
    weights = np.linspace(1.0, -2.0, 48, dtype="float32")
    temperature, draws = 0.6, 6
    estimator = kg.estimators.GumbelRao(draws=draws)

    def loss(x):
        sample = kg.ops.gumbel_sigmoid(x, temperature, estimator=estimator, seed=8)
        return ops.sum(ops.multiply(sample, weights))

    key = kg.random.stream_key(8)
    uniforms = np.stack(
        [
            testing.to_numpy(kg.random.stream_uniform(logits.shape, key, index))
            for index in range(draws + 1)
        ]
    ).astype("float64")
    x = logits.astype("float64")
    sample = (x + special.logit(uniforms[0]) > 0).astype("float64")
    sign = 2.0 * sample - 1.0
    log_p = np.log(uniforms[1:] * special.expit(sign * x))
    perturbed = x - sign * (log_p - np.log(-np.expm1(log_p)))
    slopes = special.expit(perturbed / temperature)
    slopes = slopes * (1.0 - slopes)
    expected = weights * np.mean(slopes, axis=0) / temperature
    ours = kg.ops.gumbel_sigmoid(logits, temperature, estimator=estimator, seed=8)
    np.testing.assert_array_equal(testing.to_numpy(ours), sample)
    np.testing.assert_allclose(
        testing.gradient(loss, logits), expected, rtol=1e-5, atol=1e-6
    )


def largest_memory(function, x):
    """Bytes of memory that `function(x)` (forward and backward) needs, as each
    backend can tell without timing or sampling the process.

    JAX: the scratch memory XLA's compiled program allocates
    (`memory_analysis().temp_size_in_bytes`), its peak by construction.
    TensorFlow: the largest tensor in the XLA program of the compiled
    function (`experimental_get_compiler_ir`, loop bodies included); peak
    memory grows with it when a computation is materialised. PyTorch: the
    largest tensor any operation creates while the function runs
    (`TorchDispatchMode`). All three depend only on the program, not on load.
    """
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(function).lower(x).compile()
        return compiled.memory_analysis().temp_size_in_bytes
    if keras.backend.backend() == "tensorflow":
        import re

        import tensorflow as tf

        compiled = tf.function(function, jit_compile=True)
        hlo = compiled.experimental_get_compiler_ir(x)(stage="hlo")
        sizes = {"f32": 4, "f64": 8, "s32": 4, "u32": 4, "s64": 8, "u64": 8}
        largest = 0
        for dtype, dims in re.findall(r"\b(f32|f64|[su]32|[su]64)\[([\d,]*)\]", hlo):
            elements = int(np.prod([int(size) for size in dims.split(",") if size]))
            largest = max(largest, elements * sizes[dtype])
        return largest
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        bytes = 0

        def __torch_dispatch__(self, operation, types, args=(), kwargs=None):
            result = operation(*args, **(kwargs or {}))
            for value in torch.utils._pytree.tree_leaves(result):
                if isinstance(value, torch.Tensor):
                    size = value.untyped_storage().nbytes()
                    Largest.bytes = max(Largest.bytes, size)
            return result

    with Largest():
        function(x)
    return Largest.bytes


def test_gumbel_rao_memory_does_not_grow_with_draws():
    # Forward and backward of a [64, 32] sample (8 KiB of float32 logits)
    # with K = 10 and K = 200 draws: the measure of `largest_memory` is the
    # same for both, and a few times the logits' size, where materialising the
    # draws (`[K, 64, 32]`) would need 10 and 200 times it.
    logits = np.random.default_rng(9).normal(size=(64, 32)).astype("float32")
    weights = ops.convert_to_tensor(loss_weights(logits.shape))

    def memory(draws):
        estimator = kg.estimators.GumbelRao(draws=draws)

        def loss(x):
            sample = kg.ops.gumbel_softmax(x, 0.5, estimator=estimator, seed=1)
            return ops.sum(ops.multiply(sample, weights))

        def forward_backward(x):
            if keras.backend.backend() == "jax":
                import jax

                return jax.grad(loss)(x)
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    tape.watch(x)
                    value = loss(x)
                return tape.gradient(value, x)
            x = x.detach().requires_grad_(True)
            loss(x).backward()
            return x.grad

        return largest_memory(forward_backward, ops.convert_to_tensor(logits))

    few, many = memory(10), memory(200)
    assert few == many, (few, many)
    assert few <= 10 * logits.nbytes, few


@pytest.mark.parametrize("estimator", NEW_ESTIMATORS)
def test_forward_is_exact_categorical_sample(estimator):
    # The forward value is an exact one-hot draw from Categorical(softmax(logits)):
    # chi-square goodness of fit on N = 100,000 draws, rejected below p = 1e-4.
    samples = 100_000
    logits = np.tile(LOGITS_4.astype("float32"), (samples, 1))
    temperature = 1.0 if estimator == "reinmax" else 0.5
    y = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, temperature, estimator=estimator, seed=11)
    )
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(axis=-1), 1.0)
    counts = y.sum(axis=0)
    expected = samples * testing.softmax(LOGITS_4)
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def loss_weights(shape):
    return np.arange(np.prod(shape), dtype="float32").reshape(shape) / 7.0


def value_and_gradient(estimator, logits, temperature=1.0, **kwargs):
    weights = loss_weights(logits.shape)
    value = kg.ops.gumbel_softmax(logits, temperature, estimator=estimator, **kwargs)

    def loss(x):
        y = kg.ops.gumbel_softmax(x, temperature, estimator=estimator, **kwargs)
        return ops.sum(ops.multiply(ops.cast(y, "float32"), weights))

    return testing.to_numpy(value), testing.gradient(loss, logits)


@pytest.mark.parametrize(
    "estimator", NEW_ESTIMATORS + (kg.estimators.GumbelRao(draws=3),)
)
def test_masks_extreme_logits_and_empty_rows(estimator):
    logits = np.array(
        [
            [0.5, -0.3, 1.2, 0.1, -1.0],
            [1e30, -1e30, 0.0, 3.0, 1e30],
            [-np.inf, 0.2, -np.inf, 0.1, 0.4],
            [2.0, 1.0, 0.0, -1.0, 5.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],
        ],
        dtype="float32",
    )
    mask = np.array(
        [
            [True, False, True, True, False],
            [True, True, True, True, True],
            [True, True, True, False, True],
            [False, False, False, False, False],
            [True, True, True, True, True],
        ]
    )
    for seed in range(5):
        y, grad = value_and_gradient(estimator, logits, mask=mask, seed=seed)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad))
        assert set(np.unique(y)) <= {0.0, 1.0}
        np.testing.assert_array_equal(y.sum(axis=-1), [1.0, 1.0, 1.0, 0.0, 1.0])
        impossible = ~mask | np.isneginf(logits)
        assert np.all(y[impossible] == 0.0)
        assert np.all(grad[~mask] == 0.0)
        assert np.all(grad[np.isneginf(logits)] == 0.0)
        np.testing.assert_array_equal(grad[3], 0.0)


@pytest.mark.parametrize("estimator", NEW_ESTIMATORS)
def test_axis(estimator):
    # The category axis is moved last before the noise is drawn, so an int seed
    # gives the same sample and the same gradient on any axis.
    logits = np.random.default_rng(0).normal(size=(3, 6, 4)).astype("float32")
    weights = loss_weights(logits.shape)
    moved_logits = np.moveaxis(logits, -1, 1).copy()
    moved_weights = np.moveaxis(weights, -1, 1)

    def sample(x, axis):
        return kg.ops.gumbel_softmax(x, 1.0, estimator=estimator, axis=axis, seed=5)

    last = testing.to_numpy(sample(logits, -1))
    moved = testing.to_numpy(sample(moved_logits, 1))
    np.testing.assert_array_equal(np.moveaxis(moved, 1, -1), last)
    np.testing.assert_array_equal(moved.sum(axis=1), 1.0)
    grad_last = testing.gradient(
        lambda x: ops.sum(ops.multiply(sample(x, -1), weights)), logits
    )
    grad_moved = testing.gradient(
        lambda x: ops.sum(ops.multiply(sample(x, 1), moved_weights)), moved_logits
    )
    np.testing.assert_allclose(
        np.moveaxis(grad_moved, 1, -1), grad_last, rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", testing.FLOAT64])
@pytest.mark.parametrize("estimator", NEW_ESTIMATORS)
def test_dtypes(estimator, dtype):
    logits = keras.ops.cast(np.random.default_rng(1).normal(size=(8, 5)) * 3.0, dtype)
    y = kg.ops.gumbel_softmax(logits, 1.0, estimator=estimator, seed=2)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    values = testing.to_numpy(ops.cast(y, "float32"))
    assert set(np.unique(values)) <= {0.0, 1.0}
    np.testing.assert_array_equal(values.sum(axis=-1), 1.0)

    def loss(x):
        sample = kg.ops.gumbel_softmax(x, 1.0, estimator=estimator, seed=2)
        return ops.sum(ops.multiply(ops.cast(sample, "float32"), loss_weights((8, 5))))

    grad = testing.gradient(loss, logits)
    assert np.all(np.isfinite(grad.astype("float32")))
    assert np.any(grad.astype("float32") != 0.0)


def estimator_value_and_grad(estimator, mask, weights):
    """(sample, gradient of sum(sample * weights)) as a function of the logits."""

    def loss(x, temperature):
        y = kg.ops.gumbel_softmax(
            x, temperature, estimator=estimator, mask=mask, seed=9
        )
        return ops.sum(ops.multiply(y, weights)), y

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def value_and_grad(x, temperature):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value, y = loss(x, temperature)
            return y, tape.gradient(value, x)

        return value_and_grad
    import jax

    def value_and_grad(x, temperature):
        (_, y), grad = jax.value_and_grad(loss, has_aux=True)(x, temperature)
        return y, grad

    return value_and_grad


# [2000, 3, 2] with Gumbel-Rao's 10 draws: a shape at which XLA on CPU once
# miscompiled the conditional noise and the gradient, kept as a regression case.
JIT_CASES = [(estimator, (16, 5)) for estimator in ESTIMATORS] + [
    (kg.estimators.GST(gap=2.0), (16, 5)),
    (kg.estimators.StraightThrough(forward_temperature=0.5), (16, 5)),
    ("gumbel_rao", (2000, 3, 2)),
]


@pytest.mark.skipif(
    not testing.CAN_JIT_COMPILE,
    reason="PyTorch compiles only through torch.compile, minutes per function on CPU",
)
@pytest.mark.parametrize("estimator, shape", JIT_CASES)
def test_jit_compile_matches_eager(estimator, shape):
    rng = np.random.default_rng(2)
    logits = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    mask = ops.convert_to_tensor(rng.uniform(size=shape) > 0.2)
    weights = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    temperature = ops.convert_to_tensor(1.5)
    function = estimator_value_and_grad(estimator, mask, weights)
    (sample, grad), (eager_sample, eager_grad) = testing.compiled_and_eager(
        function, logits, temperature
    )
    if estimator == "gumbel_softmax":
        # A relaxed sample: XLA fuses the softmax and rounds differently.
        np.testing.assert_allclose(sample, eager_sample, rtol=1e-5, atol=1e-6)
    else:
        # Hard samples are exact one-hots of the same noise.
        np.testing.assert_array_equal(sample, eager_sample)
    # XLA reassociates float32 sums of a few terms of size ~1 (normal weights),
    # so gradients agree to a few float32 ulps (~1e-7 each).
    np.testing.assert_allclose(grad, eager_grad, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "estimator",
    NEW_ESTIMATORS
    + (
        kg.estimators.GumbelRao(draws=4),
        kg.estimators.GST(gap=0.5),
        kg.estimators.StraightThrough(forward_temperature=2.0),
    ),
)
def test_layer(estimator):
    layer = kg.GumbelSoftmax(temperature=1.0, estimator=estimator, seed=3)
    logits = np.random.default_rng(4).normal(size=(6, 7, 5)).astype("float32")
    mask = np.random.default_rng(5).uniform(size=(6, 7, 5)) > 0.3
    y = testing.to_numpy(layer(logits, training=True, mask=mask))
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert np.all(y[~mask] == 0.0)
    np.testing.assert_array_equal(y.sum(axis=-1), mask.any(axis=-1))
    clone = testing.assert_config_round_trip(layer)
    assert clone.estimator == layer.estimator


def test_configured_estimator_survives_model_save(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4),
            kg.GumbelSoftmax(estimator=kg.estimators.GumbelRao(draws=32), seed=1),
        ]
    )
    x = np.random.default_rng(6).normal(size=(3, 4)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    layer = loaded.layers[-1]
    assert layer.estimator == kg.estimators.GumbelRao(draws=32)
    assert layer.get_config() == model.layers[-1].get_config()
    np.testing.assert_array_equal(
        testing.to_numpy(loaded(x, training=False)),
        testing.to_numpy(model(x, training=False)),
    )
    sample = testing.to_numpy(loaded(x, training=True))
    np.testing.assert_array_equal(sample.sum(axis=-1), 1.0)


def test_every_new_estimator_trains_in_fit():
    # A train step runs every new estimator (one branch each) and the gradient
    # reaches the logits: XLA-compiled on TensorFlow and JAX (one compilation);
    # eager on PyTorch, as `fit` runs there by default (`jit_compile=True` is
    # torch.compile, which takes minutes to compile this model on a CPU).
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(4)(inputs)
    branches = [
        kg.GumbelSoftmax(estimator=estimator, seed=i)(logits)
        for i, estimator in enumerate(NEW_ESTIMATORS)
    ]
    model = keras.Model(inputs, keras.layers.Average()(branches))
    model.compile(optimizer="adam", loss="mse", jit_compile=testing.CAN_JIT_COMPILE)
    x = np.random.default_rng(7).normal(size=(32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(32) % 4]
    before = [testing.to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [testing.to_numpy(w) for w in model.trainable_weights]
    assert all(np.any(a != b) for a, b in zip(after, before, strict=True))


def test_gumbel_rao_int_seed_reproducible_and_fresh_per_generator():
    logits = np.random.default_rng(8).normal(size=(4, 6)).astype("float32")
    first, grad_first = value_and_gradient("gumbel_rao", logits, seed=3)
    second, grad_second = value_and_gradient("gumbel_rao", logits, seed=3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(grad_first, grad_second)
    generator = keras.random.SeedGenerator(3)
    draws = [
        testing.to_numpy(
            kg.ops.gumbel_softmax(
                np.zeros((64, 6), "float32"), estimator="gumbel_rao", seed=generator
            )
        )
        for _ in range(2)
    ]
    assert np.any(draws[0] != draws[1])


DECOUPLED_TEMPERATURES = [(2.0, 0.5), (0.5, 1.0)]  # (forward, backward)


@pytest.mark.parametrize("forward, backward", DECOUPLED_TEMPERATURES)
def test_decoupled_straight_through_forward_samples_the_tempered_distribution(
    forward, backward
):
    # The forward temperature tempers the sampled distribution: one-hot draws
    # from Categorical(softmax(logits / forward)). Chi-square goodness of fit
    # on N = 100,000 draws, rejected below p = 1e-4.
    samples = 100_000
    logits = np.tile(LOGITS_4.astype("float32"), (samples, 1))
    estimator = kg.estimators.StraightThrough(forward_temperature=forward)
    y = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, backward, estimator=estimator, seed=12)
    )
    testing.assert_exact_one_hot(y)
    expected = samples * testing.softmax(LOGITS_4 / forward)
    assert stats.chisquare(y.sum(axis=0), expected).pvalue > 1e-4


@pytest.mark.parametrize("loss_name, seed", [("quadratic", 13), ("cubic", 14)])
@pytest.mark.parametrize("forward, backward", DECOUPLED_TEMPERATURES)
def test_decoupled_straight_through_bernoulli_mean_gradient(
    forward, backward, loss_name, seed
):
    # z ~ Bernoulli(sigmoid(theta / forward)) as 2-category logits [theta, 0];
    # the gradient is f'(z) y (1 - y) / (backward * forward), y = sigmoid((theta
    # / forward + L) / backward): straight-through's expectation at theta /
    # forward and temperature backward (quadrature over L), times 1 / forward.
    # N = 50,000 per theta, 4 sigma.
    # Both forms: two categories, and the binary form (gumbel_sigmoid).
    estimator = kg.estimators.StraightThrough(forward_temperature=forward)
    expected = np.array(
        [
            binary_noise_expectation(theta / forward, backward, loss_name, False)
            / forward
            for theta in THETAS
        ]
    )
    grads = binary_gradients(estimator, backward, loss_name, BINARY_SAMPLES, seed)
    assert_mean_matches(grads, expected)
    loss = BINARY_LOSSES[loss_name][0]

    def total_loss(theta):
        sample = kg.ops.gumbel_sigmoid(
            theta, backward, estimator=estimator, seed=seed + 100
        )
        return ops.sum(loss(sample))

    theta = np.tile(THETAS.astype("float32"), (BINARY_SAMPLES, 1))
    grads = testing.gradient(total_loss, theta).astype("float64")
    assert_mean_matches(grads, expected)


def test_decoupled_straight_through_is_straight_through_on_tempered_logits():
    # The same noise, sample and gradient as straight-through on logits /
    # forward, with the chain rule's 1 / forward; and forward = 1 is
    # straight-through itself. Bit for bit: dividing by 2 is exact, so it
    # commutes with the rounding of every shift and sum.
    logits = np.random.default_rng(15).normal(size=(32, 5)).astype("float32") * 3
    forward, backward = 2.0, 0.7
    decoupled = kg.estimators.StraightThrough(forward_temperature=forward)
    sample, grad = value_and_gradient(decoupled, logits, backward, seed=16)
    plain_sample, plain_grad = value_and_gradient(
        "straight_through", logits / forward, backward, seed=16
    )
    np.testing.assert_array_equal(sample, plain_sample)
    np.testing.assert_array_equal(grad, plain_grad / forward)
    unit = kg.estimators.StraightThrough()
    for got, want in zip(
        value_and_gradient(unit, logits, backward, seed=17),
        value_and_gradient("straight_through", logits, backward, seed=17),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("make", [kg.ops.gumbel_softmax, "layer"])
def test_bad_inputs(make):
    logits = np.zeros((2, 3), "float32")

    def build(**kwargs):
        if make == "layer":
            temperature = kwargs.pop("temperature", 1.0)
            return kg.GumbelSoftmax(temperature, **kwargs)
        return kg.ops.gumbel_softmax(logits, **kwargs)

    with pytest.raises(ValueError, match=r"`estimator`.*Received: estimator='rein'"):
        build(estimator="rein")
    with pytest.raises(ValueError, match=r"`estimator`.*Received: estimator=3"):
        build(estimator=3)
    with pytest.raises(ValueError, match=r"`estimator`"):
        build(estimator={"class_name": "Nope", "config": {}})
    with pytest.raises(
        ValueError, match=r"`temperature`.*'reinmax'.*>= 1.0.*temperature=0.5"
    ):
        build(estimator="reinmax", temperature=0.5)
    # Supported temperatures pass.
    build(estimator="reinmax", temperature=1.0)
    build(estimator="gumbel_rao", temperature=0.1)
    build(estimator="gst", temperature=0.1)


@pytest.mark.parametrize(
    "draws, error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_bad_draws(draws, error):
    with pytest.raises(error, match=rf"`draws`.*Received: draws={draws!r}"):
        kg.estimators.GumbelRao(draws=draws)


@pytest.mark.parametrize(
    "value, error",
    [
        (0.0, ValueError),
        (-2.0, ValueError),
        (float("inf"), ValueError),
        ("2", TypeError),
        (np.array([1.0, 2.0]), TypeError),
    ],
)
def test_bad_forward_temperature(value, error):
    testing.assert_error(
        error,
        lambda: kg.estimators.StraightThrough(forward_temperature=value),
        "forward_temperature",
        f"Received: forward_temperature={value!r}",
    )


@pytest.mark.parametrize(
    "gap, error",
    [
        (0.0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
    ],
)
def test_bad_gap(gap, error):
    with pytest.raises(error, match=r"`gap`.*Received: gap="):
        kg.estimators.GST(gap=gap)


def test_tensor_temperature_below_the_minimum_gives_nan_not_a_sample():
    # A tensor temperature (e.g. an annealed layer variable) is only known when
    # the graph runs, so ReinMax cannot reject it in Python; below its minimum
    # the output is NaN (docs/numerics.md) rather than a plausible sample.
    def sample(temperature):
        return testing.to_numpy(
            kg.ops.gumbel_softmax(
                np.zeros((2, 3), "float32"),
                keras.ops.convert_to_tensor(temperature),
                estimator="reinmax",
                seed=0,
            )
        )

    assert np.all(np.isnan(sample(0.5)))
    np.testing.assert_array_equal(sample(1.0).sum(axis=-1), 1.0)
