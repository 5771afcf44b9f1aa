"""One temperature per row: every tempered function takes a batch of them.

A temperature tensor broadcasts against the logits' batch shape (their shape
without the category axis), as a batch of temperatures does in TFP's
distributions. Each row must then be exactly what a call with that row's
temperature as a scalar gives, values and gradients alike.
"""

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

TF_ONLY = pytest.mark.skipif(
    testing.backend() != "tensorflow", reason="TensorFlow Probability runs on TF"
)

# Logits [2, 5, 3] with the category axis 1: the batch shape is (2, 3), and a
# temperature of shape (3,) tempers each of the three columns by its own.
TEMPERATURES = np.array([0.3, 1.0, 2.5], "float32")
LOGITS = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
AXIS = 1


def _samplers():
    samplers = {
        "tempered_softmax": lambda x, t: kg.ops.tempered_softmax(x, t, axis=AXIS),
        "relaxed_top_k": lambda x, t: kg.ops.relaxed_top_k(x, 2, t, axis=AXIS),
        "gumbel_top_k": lambda x, t: kg.ops.gumbel_top_k(x, 2, t, axis=AXIS, seed=4),
        "gumbel_top_k hard": lambda x, t: kg.ops.gumbel_top_k(
            x, 2, t, hard=True, axis=AXIS, seed=4
        ),
    }
    for name in kg.ESTIMATORS:
        samplers[name] = lambda x, t, name=name: kg.ops.gumbel_softmax(
            x, t, estimator=name, axis=AXIS, seed=4
        )
    return samplers


SAMPLERS = _samplers()
# ReinMax needs temperatures >= 1.
MINIMUM = {"reinmax": 1.0}
# ReinMax's temperature only moves where its gradient is evaluated, so the
# temperature itself gets none.
NO_TEMPERATURE_GRADIENT = {"reinmax"}


def _temperatures(name):
    return np.maximum(TEMPERATURES, MINIMUM.get(name, 0.0))


def _weights():
    # A fixed linear loss, so gradients differ between categories.
    return keras.ops.convert_to_tensor(
        np.random.default_rng(1).normal(size=LOGITS.shape).astype("float32")
    )


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_row_is_the_call_with_its_temperature(name):
    sampler, temperatures = SAMPLERS[name], _temperatures(name)
    batched = testing.to_numpy(
        sampler(LOGITS, keras.ops.convert_to_tensor(temperatures))
    )
    for column, temperature in enumerate(temperatures):
        alone = testing.to_numpy(
            sampler(LOGITS, keras.ops.convert_to_tensor(np.array(temperature)))
        )
        np.testing.assert_allclose(
            batched[..., column], alone[..., column], rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_row_has_the_gradients_of_its_temperature(name):
    sampler, temperatures = SAMPLERS[name], _temperatures(name)
    weights = _weights()

    def loss(temperature):
        return lambda x: keras.ops.sum(weights * sampler(x, temperature))

    batched = testing.gradient(loss(keras.ops.convert_to_tensor(temperatures)), LOGITS)
    for column, temperature in enumerate(temperatures):
        alone = testing.gradient(
            loss(keras.ops.convert_to_tensor(np.array(temperature))), LOGITS
        )
        np.testing.assert_allclose(
            batched[..., column], alone[..., column], rtol=1e-5, atol=1e-6
        )
    if name in NO_TEMPERATURE_GRADIENT:
        return
    batched_temperature = testing.gradient(
        lambda t: keras.ops.sum(weights * sampler(LOGITS, t)), temperatures
    )
    assert batched_temperature.shape == temperatures.shape
    for column, temperature in enumerate(temperatures):
        # The scalar temperature's gradient from this column alone: the
        # loss restricted to the column, whose other columns do not move.
        column_weights = np.zeros(LOGITS.shape, "float32")
        column_weights[..., column] = 1.0
        column_weights = keras.ops.convert_to_tensor(column_weights) * weights
        alone_temperature = testing.gradient(
            lambda t, w=column_weights: keras.ops.sum(w * sampler(LOGITS, t)),
            np.array(temperature),
        )
        np.testing.assert_allclose(
            batched_temperature[column], alone_temperature, rtol=1e-4, atol=1e-6
        )


def test_a_temperature_may_cover_leading_batch_axes():
    # Shape (2, 1) broadcasts to the batch shape (2, 3): one per example.
    per_example = np.array([[0.5], [2.0]], "float32")
    y = testing.to_numpy(kg.ops.tempered_softmax(LOGITS, per_example, axis=AXIS))
    for example, temperature in enumerate(per_example[:, 0]):
        alone = testing.to_numpy(
            kg.ops.tempered_softmax(LOGITS[example], float(temperature), axis=0)
        )
        np.testing.assert_allclose(y[example], alone, rtol=1e-6)


def test_a_list_or_array_of_temperatures_is_checked_in_python():
    y = testing.to_numpy(kg.ops.tempered_softmax(LOGITS, [0.3, 1.0, 2.5], axis=AXIS))
    tensor = keras.ops.convert_to_tensor(TEMPERATURES)
    np.testing.assert_allclose(
        y, testing.to_numpy(kg.ops.tempered_softmax(LOGITS, tensor, axis=AXIS))
    )
    testing.assert_error(
        ValueError,
        lambda: kg.ops.gumbel_softmax(LOGITS, [0.3, 0.0, 2.5], axis=AXIS),
        "temperature",
        "[0.3, 0.0, 2.5]",
    )
    testing.assert_error(
        ValueError,
        lambda: kg.ops.gumbel_softmax(
            LOGITS, np.array([0.5, 1.0, 2.0]), estimator="reinmax", axis=AXIS
        ),
        "temperature",
        "reinmax",
    )


@pytest.mark.parametrize(
    "shape", [(3, 1), (5,), (2, 3, 1), (4, 2, 3)], ids=lambda s: str(s)
)
def test_a_temperature_that_would_change_the_batch_shape_is_refused(shape):
    temperature = keras.ops.ones(shape)
    for call in (
        lambda: kg.ops.gumbel_softmax(LOGITS, temperature, axis=AXIS),
        lambda: kg.ops.gumbel_top_k(LOGITS, 2, temperature, axis=AXIS),
        lambda: kg.ops.tempered_softmax(LOGITS, temperature, axis=AXIS),
        lambda: kg.ops.relaxed_one_hot_log_prob(
            np.full(LOGITS.shape, 0.2, "float32"), LOGITS, temperature, axis=AXIS
        ),
    ):
        testing.assert_error(ValueError, call, "temperature", "(2, 3)")


def test_the_runtime_policy_applies_row_by_row():
    # 0 is the limit (one-hot of the largest logit), NaN has no answer: only
    # the rows tempered by them change.
    logits = np.array([[0.0, 1.0, 2.0]] * 3, "float32")
    temperature = keras.ops.convert_to_tensor(np.array([0.0, 1.0, np.nan], "float32"))
    y = testing.to_numpy(kg.ops.tempered_softmax(logits, temperature))
    np.testing.assert_array_equal(y[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(y[1], testing.softmax(logits[1]), rtol=1e-6)
    assert np.all(np.isnan(y[2]))


@pytest.mark.parametrize("dtype", ["float32", testing.FLOAT64])
@pytest.mark.parametrize(
    "log_prob", [kg.ops.relaxed_one_hot_log_prob, kg.ops.exp_relaxed_one_hot_log_prob]
)
def test_log_densities_take_one_temperature_per_row(dtype, log_prob):
    logits = LOGITS[0].T.astype(dtype)  # [3, 5]: three rows
    samples = np.random.default_rng(2).dirichlet(np.ones(5), size=(4, 3))
    samples = samples.astype(dtype)
    if log_prob is kg.ops.exp_relaxed_one_hot_log_prob:
        samples = np.log(samples)
    temperatures = TEMPERATURES.astype(dtype)
    batched = testing.to_numpy(log_prob(samples, logits, temperatures))
    assert batched.shape == (4, 3)
    assert batched.dtype == dtype
    for row, temperature in enumerate(temperatures):
        alone = testing.to_numpy(log_prob(samples, logits, float(temperature)))
        np.testing.assert_allclose(batched[:, row], alone[:, row], rtol=1e-6)


@TF_ONLY
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_log_densities_match_tfp(dtype):
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    logits = LOGITS[0].T.astype(dtype)
    temperatures = TEMPERATURES.astype(dtype)
    exp_reference = tfd.ExpRelaxedOneHotCategorical(temperatures, logits=logits)
    reference = tfd.RelaxedOneHotCategorical(temperatures, logits=logits)
    log_sample = exp_reference.sample(200, seed=5).numpy()
    np.testing.assert_allclose(
        testing.to_numpy(
            kg.ops.exp_relaxed_one_hot_log_prob(log_sample, logits, temperatures)
        ),
        exp_reference.log_prob(log_sample).numpy(),
        rtol=1e-5,
    )
    sample = np.exp(log_sample)
    theirs = reference.log_prob(sample).numpy()
    finite = np.isfinite(theirs)
    assert finite.mean() > 0.9
    ours = testing.to_numpy(
        kg.ops.relaxed_one_hot_log_prob(sample, logits, temperatures)
    )
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5)


@pytest.mark.skipif(testing.backend() == "torch", reason="no XLA compiler on torch")
def test_batched_temperatures_compile():
    def sample(logits, temperature):
        return (
            kg.ops.gumbel_softmax(logits, temperature, axis=AXIS, seed=4),
            kg.ops.gumbel_top_k(logits, 2, temperature, axis=AXIS, seed=4),
        )

    temperatures = keras.ops.convert_to_tensor(TEMPERATURES)
    compiled, eager = testing.compiled_and_eager(sample, LOGITS, temperatures)
    for ours, reference in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
