"""The numerical policy of docs/numerics.md: what values that arrive at run time give.

Temperatures that arrive as tensors or variables, NaN and +inf logits, huge
logits, and the argument checks that run before any graph does.
"""

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

LOGITS = np.log(np.array([[0.2, 0.3, 0.5]], "float32"))
ESTIMATORS = ("gumbel_softmax", "straight_through", "reinmax", "gumbel_rao", "gst")


def sampler(name):
    """Every function of `kg.ops` that takes logits and a temperature."""
    return {
        "relaxed": lambda x, t: kg.ops.gumbel_softmax(x, t, seed=0),
        "hard": lambda x, t: kg.ops.gumbel_softmax(x, t, hard=True, seed=0),
        "tempered_softmax": lambda x, t: kg.ops.tempered_softmax(x, t),
        "top_k": lambda x, t: kg.ops.gumbel_top_k(x, 2, t, seed=0),
        "top_k_hard": lambda x, t: kg.ops.gumbel_top_k(x, 2, t, hard=True, seed=0),
        "relaxed_top_k": lambda x, t: kg.ops.relaxed_top_k(x, 2, t),
    }[name]


SAMPLERS = (
    "relaxed",
    "hard",
    "tempered_softmax",
    "top_k",
    "top_k_hard",
    "relaxed_top_k",
)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_a_negative_or_nan_temperature_tensor_gives_nan(name, value):
    temperature = keras.Variable(value)
    output = testing.to_numpy(sampler(name)(LOGITS, temperature))
    assert np.all(np.isnan(output))


@pytest.mark.parametrize("name", ["relaxed", "hard", "tempered_softmax"])
def test_a_zero_temperature_tensor_gives_the_limit_a_one_hot_sample(name):
    temperature = keras.Variable(0.0)
    output = testing.to_numpy(sampler(name)(np.zeros((500, 3), "float32"), temperature))
    if name == "tempered_softmax":
        # Without noise every category ties: the limit shares the row.
        np.testing.assert_allclose(output, 1 / 3, rtol=1e-6)
        return
    testing.assert_exact_one_hot(output)
    # 500 draws of a fair 3-way choice: each count within 5 sigma of 500/3.
    counts = output.sum(axis=0)
    assert np.all(np.abs(counts - 500 / 3) < 5 * np.sqrt(500 * (1 / 3) * (2 / 3)))


def test_an_infinite_temperature_tensor_gives_the_uniform_limit():
    temperature = keras.Variable(float("inf"))
    logits = np.array([[1.0, 5.0, -np.inf]], "float32")
    output = testing.to_numpy(kg.ops.gumbel_softmax(logits, temperature, seed=0))
    np.testing.assert_allclose(output, [[0.5, 0.5, 0.0]], rtol=1e-6)


def test_an_annealed_layer_variable_of_zero_gives_finite_samples_and_gradients():
    layer = kg.GumbelSoftmax(1.0, seed=0)
    layer.temperature.assign(0.0)
    weights = keras.ops.convert_to_tensor(np.array([[1.0, -2.0, 0.5]], "float32"))
    gradient = testing.gradient(
        lambda x: keras.ops.sum(layer(x, training=True) * weights),
        LOGITS,
        compile=False,
    )
    testing.assert_exact_one_hot(layer(LOGITS, training=True))
    assert np.all(np.isfinite(gradient))


def test_reinmax_below_its_minimum_temperature_gives_nan():
    for temperature, finite in ((0.5, False), (1.0, True)):
        output = testing.to_numpy(
            kg.ops.gumbel_softmax(
                LOGITS, keras.Variable(temperature), estimator="reinmax", seed=0
            )
        )
        assert np.all(np.isfinite(output)) == finite
        assert np.all(np.isnan(output)) != finite


def test_annealing_refuses_a_value_below_a_layers_minimum_temperature():
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(3)(inputs)
    outputs = kg.GumbelSoftmax(1.0, estimator="reinmax", name="reinmax")(logits)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    annealing = kg.TemperatureAnnealing(kg.schedules.GeometricDecay(1.0, 0.5, 2))
    with pytest.raises(
        ValueError, match=r"step 1 .*'reinmax' needs a temperature >= 1"
    ):
        model.fit(
            np.zeros((8, 3)),
            np.zeros((8, 3)),
            batch_size=2,
            callbacks=[annealing],
            verbose=0,
        )
    assert kg.GumbelSoftmax(estimator="reinmax").min_temperature == 1.0
    assert kg.GumbelSoftmax().min_temperature == 0.0


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_nan_logit_makes_its_row_nan_and_leaves_the_others(name):
    logits = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], "float32")
    output = testing.to_numpy(sampler(name)(logits, 0.5))
    assert np.all(np.isnan(output[0]))
    assert np.all(np.isfinite(output[1]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_nan_logit_makes_its_row_nan_with_every_estimator(estimator):
    logits = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], "float32")
    output = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, 1.0, estimator=estimator, seed=0)
    )
    assert np.all(np.isnan(output[0])) and np.all(np.isfinite(output[1]))


@pytest.mark.parametrize("inference", ["argmax", "softmax", "sample"])
def test_a_nan_logit_is_nan_in_every_inference_mode(inference):
    logits = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], "float32")
    for layer in (
        kg.GumbelSoftmax(inference=inference, seed=0),
        kg.GumbelTopK(2, inference=inference, seed=0),
    ):
        output = testing.to_numpy(layer(logits))
        assert np.all(np.isnan(output[0])) and np.all(np.isfinite(output[1]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_positive_infinite_logit_wins_with_every_estimator(estimator):
    logits = np.array([[np.inf, 1.0, 2.0], [-1.0, np.inf, 0.0]], "float32")
    hard = estimator != "gumbel_softmax"
    output, gradient = (
        testing.to_numpy(
            kg.ops.gumbel_softmax(logits, 1.0, estimator=estimator, seed=0)
        ),
        testing.gradient(
            lambda x: keras.ops.sum(
                kg.ops.gumbel_softmax(x, 1.0, estimator=estimator, seed=0)
            ),
            logits,
        ),
    )
    np.testing.assert_array_equal(output, [[1, 0, 0], [0, 1, 0]])
    assert np.all(np.isfinite(gradient)), gradient
    if hard:
        testing.assert_exact_one_hot(output)


def test_several_infinite_logits_share_the_row():
    logits = np.array([[np.inf, np.inf, 0.0]] * 2000, "float32")
    hard = testing.to_numpy(kg.ops.gumbel_softmax(logits, hard=True, seed=0))
    assert np.all(hard[:, 2] == 0.0)
    # 2000 fair coin flips between the two: within 5 sigma (0.011) of 1/2.
    assert abs(hard[:, 0].mean() - 0.5) < 5 * 0.5 / np.sqrt(2000)
    mode = testing.to_numpy(kg.ops.tempered_softmax(logits[:1]))
    np.testing.assert_array_equal(mode, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize(
    "dtype, scale",
    [("float32", 1e9), pytest.param("float64", 1e30, marks=pytest.mark.jax_x64)],
)
def test_huge_logits_sample_as_their_differences_say(dtype, scale):
    # Sampling is invariant to a shift of the logits: equal huge logits are a
    # fair choice, however large, since the noise is added after the shift.
    logits = np.full((4000, 2), scale, dtype)
    frequencies = testing.to_numpy(
        kg.ops.gumbel_softmax(logits, hard=True, seed=0)
    ).mean(axis=0)
    # 4000 fair coin flips: within 5 sigma (0.0079) of 1/2.
    assert np.all(np.abs(frequencies - 0.5) < 5 * 0.5 / np.sqrt(4000)), frequencies


def test_bfloat16_logits_keep_their_order():
    logits = keras.ops.cast(
        keras.ops.convert_to_tensor([[2e38, 3e38, 0.0]]), "bfloat16"
    )
    mode = testing.to_numpy(kg.ops.argmax_one_hot(logits)).astype("float32")
    np.testing.assert_array_equal(mode, [[0.0, 1.0, 0.0]])


def test_kl_of_an_infinite_logit_is_the_limit_with_a_finite_gradient():
    logits = np.array([[np.inf, 0.0, 0.0]], "float32")
    kl = testing.to_numpy(kg.ops.categorical_kl_uniform(logits))
    np.testing.assert_allclose(kl, [np.log(3.0)], rtol=1e-6)
    gradient = testing.gradient(
        lambda x: keras.ops.sum(kg.ops.categorical_kl_uniform(x)), logits
    )
    assert np.all(np.isfinite(gradient))
    nan_row = np.array([[np.nan, 0.0, 0.0]], "float32")
    assert np.isnan(testing.to_numpy(kg.ops.categorical_kl_uniform(nan_row))[0])


@pytest.mark.parametrize(
    "function",
    [kg.ops.relaxed_one_hot_log_prob, kg.ops.exp_relaxed_one_hot_log_prob],
)
def test_log_densities_of_a_temperature_tensor_without_density_are_nan(function):
    sample = np.array([[0.2, 0.3, 0.5]], "float32")
    if function is kg.ops.exp_relaxed_one_hot_log_prob:
        sample = np.log(sample)
    for value in (0.0, -1.0, float("inf"), float("nan")):
        density = function(sample, np.zeros(3, "float32"), keras.Variable(value))
        assert np.isnan(testing.to_numpy(density)[0])


@pytest.mark.parametrize(
    "function",
    [kg.ops.relaxed_one_hot_log_prob, kg.ops.exp_relaxed_one_hot_log_prob],
)
@pytest.mark.jax_x64
def test_float64_log_densities_stay_float64(function):
    sample = np.array([[0.2, 0.3, 0.5]])
    density = function(sample, np.zeros(3), 0.7)
    assert keras.backend.standardize_dtype(density.dtype) == "float64"


@pytest.mark.jax_x64
def test_a_python_float_temperature_keeps_float64_precision():
    # 0.1 is not a float32 number: read through float32, the density moves.
    sample = np.array([0.2, 0.3, 0.5])
    ours = float(
        testing.to_numpy(kg.ops.relaxed_one_hot_log_prob(sample, np.zeros(3), 0.1))
    )
    log_y = np.log(sample)
    scaled = -0.1 * log_y
    expected = (
        np.log(2.0)
        + 2 * np.log(0.1)
        + np.sum(scaled - np.log(np.sum(np.exp(scaled))))
        - np.sum(log_y)
    )
    assert abs(ours - expected) < 1e-12


def test_a_mask_that_does_not_broadcast_is_refused_by_name():
    with pytest.raises(ValueError, match=r"`mask`.*mask.shape=\(1, 2\).*\(1, 3\)"):
        kg.ops.gumbel_softmax(np.zeros((1, 3), "float32"), mask=np.ones((1, 2), bool))


def test_a_string_mask_is_refused_by_name():
    with pytest.raises(TypeError, match="`mask`"):
        kg.ops.gumbel_softmax(np.zeros((1, 3), "float32"), mask="yes")


@pytest.mark.parametrize(
    "function",
    [
        lambda x: kg.ops.gumbel_softmax(x),
        lambda x: kg.ops.tempered_softmax(x),
        lambda x: kg.ops.argmax_one_hot(x),
        lambda x: kg.ops.gumbel_top_k(x, 1),
        lambda x: kg.ops.relaxed_one_hot_log_prob(x, x, 1.0),
    ],
)
def test_an_empty_category_axis_is_refused_by_name(function):
    with pytest.raises(ValueError, match=r"`logits`.*at least one category"):
        function(np.zeros((2, 0), "float32"))


def test_a_non_bool_hard_is_refused_by_name():
    with pytest.raises(TypeError, match="`hard`.*Received: hard='yes'"):
        kg.ops.gumbel_softmax(LOGITS, hard="yes")


def policy_cases(logits, temperature):
    """Every row of the policy at once: NaN, +inf, -inf, huge and plain rows."""
    return (
        kg.ops.gumbel_softmax(logits, temperature, seed=0),
        kg.ops.gumbel_softmax(logits, temperature, hard=True, seed=0),
        kg.ops.tempered_softmax(logits, temperature),
        kg.ops.argmax_one_hot(logits),
        kg.ops.categorical_kl_uniform(logits),
    )


POLICY_LOGITS = np.array(
    [
        [np.nan, 1.0, 2.0],
        [np.inf, 1.0, 2.0],
        [-np.inf, 1.0, -np.inf],
        [1e30, 1e30 - 1e24, 0.0],
        [0.0, 1.0, 2.0],
    ],
    "float32",
)


def check_policy(outputs):
    for output in outputs:
        assert np.all(np.isnan(output[0]))
        assert np.all(np.isfinite(output[1:]))
    relaxed, hard, softmax, mode, _ = outputs
    for one_hot in (hard, mode):
        np.testing.assert_array_equal(one_hot[1:3], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(softmax[1:3], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(relaxed[1:].sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.skipif(
    not testing.CAN_JIT_COMPILE, reason="XLA compilation: TensorFlow and JAX"
)
def test_the_policy_holds_compiled_as_eager():
    compiled, eager = testing.compiled_and_eager(
        lambda x, t: policy_cases(x, t),
        keras.ops.convert_to_tensor(POLICY_LOGITS),
        keras.ops.convert_to_tensor(0.5),
    )
    check_policy(compiled)
    check_policy(eager)


def test_the_policy_holds_in_graph_mode():
    if keras.backend.backend() != "tensorflow":
        check_policy(
            [testing.to_numpy(value) for value in policy_cases(POLICY_LOGITS, 0.5)]
        )
        return
    import tensorflow as tf

    # Graph mode without XLA takes the TensorFlow fast paths (`tf.cond`).
    outputs = tf.function(policy_cases)(tf.constant(POLICY_LOGITS), tf.constant(0.5))
    check_policy([value.numpy() for value in outputs])


def backend_variable(values):
    """A variable of the backend itself (a raw `tf.Variable` on TensorFlow)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.Variable(values)
    return keras.Variable(values)


def test_logits_in_a_variable_work_on_any_axis():
    values = np.log(np.array([[0.2, 0.5], [0.3, 0.1], [0.5, 0.4]], "float32"))
    logits = backend_variable(values)
    for output in (
        kg.ops.gumbel_softmax(logits, axis=0, hard=True, seed=0),
        kg.ops.tempered_softmax(logits, axis=0),
        kg.GumbelSoftmax(axis=0)(logits),
    ):
        assert testing.to_numpy(output).shape == (3, 2)
    np.testing.assert_array_equal(
        testing.to_numpy(kg.ops.argmax_one_hot(logits, axis=0)),
        [[0, 1], [0, 0], [1, 0]],
    )


@pytest.mark.parametrize("seed", [-1, 2**31, 2**32 + 1, 2**64 + 5])
def test_a_seed_outside_the_portable_range_is_refused_by_name(seed):
    with pytest.raises(ValueError, match=r"`seed`.*\[0, 2\*\*31 - 1\]"):
        kg.ops.gumbel_softmax(LOGITS, seed=seed)
    with pytest.raises(ValueError, match="`seed`"):
        kg.GumbelSoftmax(seed=seed)


def test_seeds_at_the_ends_of_the_range_draw_distinct_streams():
    logits = np.zeros((64, 8), "float32")
    draws = [
        testing.to_numpy(kg.ops.gumbel_softmax(logits, seed=seed))
        for seed in (0, 1, 2**31 - 1)
    ]
    for first in range(3):
        for second in range(first + 1, 3):
            assert not np.array_equal(draws[first], draws[second])
    layer_draws = [
        testing.to_numpy(kg.GumbelSoftmax(seed=seed)(logits, training=True))
        for seed in (1, 2**31 - 1)
    ]
    assert not np.array_equal(*layer_draws)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: kg.GumbelSoftmax(hard=True, dtype="mixed_float16", seed=0),
        lambda: kg.GumbelTopK(1, hard=True, dtype="mixed_float16", seed=0),
    ],
)
def test_float32_logits_reach_a_mixed_precision_layer_uncast(layer):
    # Cast to float16 first, both would be -inf and the row empty.
    layer = layer()
    logits = np.array([[-1e5, -1e5 + 1.0]], "float32")
    for training in (True, False):
        output = layer(logits, training=training)
        assert keras.backend.standardize_dtype(output.dtype) == "float16"
        if not training:
            np.testing.assert_array_equal(testing.to_numpy(output), [[0.0, 1.0]])
        else:
            assert testing.to_numpy(output).astype("float32").sum() == 1.0


@pytest.mark.jax_x64
def test_relaxed_top_k_in_float32_is_the_float64_recursion():
    # A softmax of exp(-200) underflows to 0 in float32; the recursion must
    # not read that as "the first category took everything".
    np.testing.assert_allclose(
        testing.to_numpy(kg.ops.relaxed_top_k([[0.0, -200.0]], 2, 1.0)),
        [[1.5, 0.5]],
        rtol=1e-6,
    )
    # 64 rows of 12 logits spread over [-300, 300] (so many softmaxes
    # underflow), at temperatures from 0.5 to 5 and every k: float32 within
    # 2e-5 * k of the float64 recursion on the same (float32-rounded) logits.
    logits = np.random.default_rng(7).uniform(-300, 300, size=(64, 12))
    logits = logits.astype("float32")
    for temperature in (0.5, 1.0, 5.0):
        for k in range(1, 13):
            single = testing.to_numpy(kg.ops.relaxed_top_k(logits, k, temperature))
            double = testing.to_numpy(
                kg.ops.relaxed_top_k(logits.astype("float64"), k, temperature)
            )
            np.testing.assert_allclose(single, double, atol=2e-5 * k)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tied_logits_stay_tied_through_every_round(dtype):
    logits = keras.ops.zeros((1, 8), dtype)
    y = testing.to_numpy(kg.ops.relaxed_top_k(logits, 8, 0.01)).astype("float32")
    assert np.all(y == y[0, 0])
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)
    layer = kg.GumbelTopK(8, 0.01, inference="softmax")
    np.testing.assert_array_equal(
        testing.to_numpy(layer(np.zeros((1, 8), "float32"))), y
    )


@pytest.mark.jax_x64
@pytest.mark.parametrize("k", [2, 3, 6, 10, 20, 48])
@pytest.mark.parametrize("temperature", [1e-4, 0.1, 1.0])
def test_relaxed_top_k_gradients_are_exact_or_overflow(k, temperature):
    # Two logits of 1e30 tied for the lead among 48: the exact gradient grows
    # like (1 / temperature) ** (k - 1). float32 must give the float64 value
    # where it fits, and a non-finite one (never a finite wrong one) beyond.
    def gradient(dtype):
        logits = np.zeros((1, 48), dtype)
        logits[0, :2] = 1e30
        weights = keras.ops.arange(48, dtype=dtype)
        return testing.gradient(
            lambda x: keras.ops.sum(weights * kg.ops.relaxed_top_k(x, k, temperature)),
            logits,
        )

    single, double = gradient("float32"), gradient("float64")
    assert np.all(np.isfinite(double))
    fits = np.abs(double) < 1e37
    if np.all(fits):
        np.testing.assert_allclose(single, double, rtol=1e-4, atol=1e-6)
    else:
        # The overflow may spread NaN through the row; what stays finite is exact.
        assert not np.any(np.isfinite(single[~fits]))
        finite = np.isfinite(single)
        np.testing.assert_allclose(single[finite], double[finite], rtol=1e-4)


LOGITS3 = np.array([0.5, -1.0, 0.0], "float32")
# Each density with its points given on the simplex (the log-space one takes
# their logarithms).
LOG_DENSITIES = {
    "sample": lambda y, **kw: kg.ops.relaxed_one_hot_log_prob(y, LOGITS3, 0.5, **kw),
    "log_sample": lambda y, **kw: kg.ops.exp_relaxed_one_hot_log_prob(
        np.log(y), LOGITS3, 0.5, **kw
    ),
}
ON_SIMPLEX = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], "float32")


def test_a_point_outside_the_support_has_density_zero():
    y = testing.to_numpy(
        kg.ops.relaxed_one_hot_log_prob(
            np.array([[0.2, 0.3, 0.5], [1.2, -0.1, -0.1]], "float32"), LOGITS3, 0.5
        )
    )
    assert np.isfinite(y[0]) and y[1] == -np.inf
    x = testing.to_numpy(
        kg.ops.exp_relaxed_one_hot_log_prob(
            np.array([[-1.0, -1.5, -0.9], [0.5, -2.0, -2.0]], "float32"), LOGITS3, 0.5
        )
    )
    assert x[1] == -np.inf


@pytest.mark.parametrize("name", sorted(LOG_DENSITIES))
def test_validate_args_refuses_points_off_the_simplex_by_name(name):
    density = LOG_DENSITIES[name]
    ok = testing.to_numpy(density(ON_SIMPLEX, validate_args=True))
    np.testing.assert_array_equal(ok, testing.to_numpy(density(ON_SIMPLEX)))
    # Sums 1.1: inside [0, 1] coordinate-wise, but off the simplex.
    off = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.1]], "float32")
    testing.assert_error(
        ValueError, lambda: density(off, validate_args=True), name, "index (1,)"
    )
    testing.assert_error(
        TypeError,
        lambda: density(ON_SIMPLEX, validate_args="yes"),
        "validate_args",
        "yes",
    )


@pytest.mark.skipif(testing.backend() == "torch", reason="no XLA compiler on torch")
def test_validate_args_inside_a_compiled_function_gives_nan_rows():
    off = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.1]], "float32")

    def density(sample):
        return (
            kg.ops.relaxed_one_hot_log_prob(sample, LOGITS3, 0.5, validate_args=True),
        )

    if testing.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(density)
    else:
        import jax

        compiled = jax.jit(density)
    (y,) = compiled(off)
    y = testing.to_numpy(y)
    assert np.isfinite(y[0]) and np.isnan(y[1])


def test_a_nan_coordinate_gives_a_nan_density():
    sample = np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]], "float32")
    for density in (
        kg.ops.relaxed_one_hot_log_prob(sample, LOGITS3, 0.5),
        kg.ops.exp_relaxed_one_hot_log_prob(np.log(sample), LOGITS3, 0.5),
    ):
        density = testing.to_numpy(density)
        assert np.isnan(density[0]) and np.isfinite(density[1])
