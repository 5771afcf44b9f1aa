import itertools

import keras
import numpy as np
import pytest
from scipy import special, stats

import keras_gumbel as kg
from tests import testing

PROBS = np.array([0.05, 0.1, 0.15, 0.3, 0.4])


def exact_subset_probabilities(probs, k):
    """P(unordered subset) of k draws without replacement, by enumerating orders.

    Drawing one after another with probability proportional to `probs` among
    what is left: P(i1, ..., ik) = prod_j p_ij / (1 - sum_{l<j} p_il).
    """
    result = {}
    for order in itertools.permutations(range(len(probs)), k):
        p, taken = 1.0, 0.0
        for i in order:
            p *= probs[i] / (1.0 - taken)
            taken += probs[i]
        subset = tuple(sorted(order))
        result[subset] = result.get(subset, 0.0) + p
    return result


def reference_relaxed_top_k(keys, k, temperature):
    """The relaxed top-k of Xie & Ermon (2019), in float64 NumPy."""
    alpha = np.asarray(keys, dtype="float64")
    total = np.zeros_like(alpha)
    for _ in range(k):
        a = special.softmax(alpha / temperature, axis=-1)
        total += a
        alpha = alpha + np.log1p(-a)
    return total


@pytest.mark.parametrize(
    "init_kwargs, shape",
    [
        ({"k": 2, "seed": 0}, (8, 6)),
        (
            {
                "k": 2,
                "temperature": 2.0,
                "hard": True,
                "inference": "sample",
                "seed": 1,
            },
            (8, 6),
        ),
        ({"k": 2, "axis": 1, "inference": "softmax", "seed": 2}, (8, 3, 5)),
    ],
)
def test_layer_behaviour(init_kwargs, shape, tmp_path):
    logits = np.random.default_rng(0).normal(size=shape)
    testing.run_layer_test(
        kg.GumbelTopK, init_kwargs, logits, supports_masking=True, tmp_path=tmp_path
    )


def test_hard_subsets_follow_exact_sampling_without_replacement():
    n, k, samples = 5, 2, 20_000
    logits = np.tile(np.log(PROBS).astype("float32"), (samples, 1))
    subsets = testing.to_numpy(kg.ops.gumbel_top_k(logits, k, hard=True, seed=1234))
    assert np.all(subsets.sum(axis=-1) == k)
    exact = exact_subset_probabilities(PROBS, k)
    assert len(exact) == 10 and np.isclose(sum(exact.values()), 1.0)
    keys = [tuple(np.flatnonzero(row)) for row in subsets]
    observed = np.array([keys.count(subset) for subset in exact], dtype="float64")
    expected = samples * np.array(list(exact.values()))
    # Chi-square over the 10 subsets (9 degrees of freedom), N = 20000 draws:
    # rejecting at p < 1e-4 is a 3.9-sigma false-alarm rate.
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    # Inclusion frequencies: P(i in S) from the same enumeration, 4 sigma each.
    inclusion = np.array([sum(p for s, p in exact.items() if i in s) for i in range(n)])
    sigma = np.sqrt(inclusion * (1 - inclusion) / samples)
    np.testing.assert_array_less(np.abs(subsets.mean(axis=0) - inclusion), 4 * sigma)


def test_hard_is_the_top_k_of_perturbed_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 7)).astype("float32")
    subsets = testing.to_numpy(kg.ops.gumbel_top_k(logits, 3, hard=True, seed=7))
    # The same int seed draws the same noise (one draw per call).
    keys = logits + testing.to_numpy(kg.ops.sample_gumbel(logits.shape, seed=7))
    expected = np.zeros_like(logits)
    np.put_along_axis(expected, np.argsort(-keys, axis=-1)[:, :3], 1.0, axis=-1)
    np.testing.assert_array_equal(subsets, expected)
    assert set(np.unique(subsets)) == {0.0, 1.0}


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.0])
def test_relaxed_matches_xie_ermon_recursion(temperature):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(32, 6)).astype("float32")
    relaxed = testing.to_numpy(kg.ops.gumbel_top_k(logits, 3, temperature, seed=3))
    keys = logits + testing.to_numpy(kg.ops.sample_gumbel(logits.shape, seed=3))
    np.testing.assert_allclose(
        relaxed, reference_relaxed_top_k(keys, 3, temperature), atol=2e-5
    )


def test_relaxed_two_categories_closed_form():
    # n = k = 2 with key gap d: a_1 = sigmoid(d/t) and the update leaves a gap
    # d (1 - 1/t), so item 1 totals sigmoid(d/t) + sigmoid(d (t - 1) / t^2).
    # At t = 0.5 that is exactly 1; above 0.5 it exceeds 1 for d > 0.
    layer = kg.GumbelTopK(2, inference="softmax")
    d = 0.8
    for temperature in (0.5, 1.0, 2.0):
        layer.temperature.assign(temperature)
        out = testing.to_numpy(layer(np.array([[d, 0.0]], "float32")))
        first = special.expit(d / temperature) + special.expit(
            d * (temperature - 1) / temperature**2
        )
        np.testing.assert_allclose(out, [[first, 2 - first]], rtol=1e-5)


@pytest.mark.parametrize("temperature", [1e-3, 0.1, 0.5, 1.0, 5.0])
def test_relaxed_sums_to_k_and_is_non_negative(temperature):
    rng = np.random.default_rng(2)
    logits = (3 * rng.normal(size=(256, 7))).astype("float32")
    relaxed = testing.to_numpy(kg.ops.gumbel_top_k(logits, 3, temperature, seed=4))
    np.testing.assert_allclose(relaxed.sum(axis=-1), 3.0, atol=1e-5)
    assert np.all(relaxed >= 0)


def test_relaxed_tends_to_hard_as_temperature_goes_to_zero():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2000, 6)).astype("float32")
    hard = testing.to_numpy(kg.ops.gumbel_top_k(logits, 2, hard=True, seed=5))
    errors = []
    for temperature in (1.0, 0.1, 1e-2, 1e-4, 1e-6):
        relaxed = testing.to_numpy(kg.ops.gumbel_top_k(logits, 2, temperature, seed=5))
        errors.append(np.abs(relaxed - hard).mean())
    assert all(later < earlier for earlier, later in itertools.pairwise(errors))
    # At t = 1e-6 every row whose top keys are not within ~1e-5 of each other
    # (all 2000 here) is k-hot to float32 precision, and inside [0, 1].
    relaxed = testing.to_numpy(kg.ops.gumbel_top_k(logits, 2, 1e-6, seed=5))
    np.testing.assert_allclose(relaxed, hard, atol=1e-5)


def test_hard_gradient_equals_relaxed_gradient():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(8, 6)).astype("float32")
    weights = keras.ops.convert_to_tensor(rng.normal(size=(8, 6)).astype("float32"))

    def loss(hard):
        def f(x):
            sample = kg.ops.gumbel_top_k(x, 3, 0.7, hard=hard, seed=11)
            return keras.ops.sum(sample * weights)

        return f

    hard_gradient = testing.gradient(loss(True), logits)
    relaxed_gradient = testing.gradient(loss(False), logits)
    assert np.all(np.isfinite(hard_gradient))
    assert np.abs(hard_gradient).max() > 0
    np.testing.assert_array_equal(hard_gradient, relaxed_gradient)


@pytest.mark.parametrize("hard", [False, True])
def test_masked_items_are_never_chosen_and_get_no_gradient(hard):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(500, 6)).astype("float32")
    mask = rng.random((500, 6)) < 0.7
    mask[:, :3] = True  # at least 3 allowed per row
    sample = testing.to_numpy(
        kg.ops.gumbel_top_k(logits, 3, 0.5, hard=hard, mask=mask, seed=1)
    )
    assert np.all(sample[~mask] == 0.0)
    np.testing.assert_allclose(sample.sum(axis=-1), 3.0, atol=1e-5)
    weights = keras.ops.convert_to_tensor(rng.normal(size=(500, 6)).astype("float32"))
    grad = testing.gradient(
        lambda x: keras.ops.sum(
            kg.ops.gumbel_top_k(x, 3, 0.5, hard=hard, mask=mask, seed=1) * weights
        ),
        logits,
    )
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~mask] == 0.0)


@pytest.mark.parametrize("hard", [False, True])
def test_fewer_allowed_than_k_chooses_only_the_allowed(hard):
    logits = np.zeros((3, 5), "float32")
    mask = np.array(
        [
            [True, False, True, False, False],  # 2 allowed, k = 3
            [False, False, False, False, False],  # none allowed
            [True, True, True, True, False],  # 4 allowed
        ]
    )
    sample = testing.to_numpy(
        kg.ops.gumbel_top_k(logits, 3, 0.5, hard=hard, mask=mask, seed=2)
    )
    assert np.all(np.isfinite(sample))
    np.testing.assert_allclose(sample[0], [1, 0, 1, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(sample[1], np.zeros(5))
    np.testing.assert_allclose(sample[2].sum(), 3.0, atol=1e-6)
    assert sample[2, 4] == 0.0
    grad = testing.gradient(
        lambda x: keras.ops.sum(
            kg.ops.gumbel_top_k(x, 3, 0.5, hard=hard, mask=mask, seed=2)
            * keras.ops.arange(5, dtype="float32")
        ),
        logits,
    )
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~mask] == 0.0)


@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_and_temperatures_stay_finite(hard):
    rng = np.random.default_rng(6)
    logits = (1e4 * rng.normal(size=(16, 8))).astype("float32")
    logits[:, 0] = 1e4  # ties and near-ties at the top
    logits[:, 1] = 1e4
    for temperature in (1e-8, 1e-2, 1e3):
        sample = testing.to_numpy(
            kg.ops.gumbel_top_k(logits, 4, temperature, hard=hard, seed=3)
        )
        assert np.all(np.isfinite(sample))
        np.testing.assert_allclose(sample.sum(axis=-1), 4.0, atol=1e-4)
        grad = testing.gradient(
            lambda x, t=temperature: keras.ops.sum(
                kg.ops.gumbel_top_k(x, 4, t, hard=hard, seed=3)
                * keras.ops.arange(8, dtype="float32")
            ),
            logits,
        )
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("axis", [0, 1, -3])
def test_any_axis_equals_moving_the_axis_last(axis):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(5, 6, 4)).astype("float32")
    last = np.moveaxis(logits, axis, -1)
    for hard in (False, True):
        on_axis = testing.to_numpy(
            kg.ops.gumbel_top_k(logits, 2, 0.5, hard=hard, axis=axis, seed=9)
        )
        # The category axis is moved last before the noise is drawn, so the
        # same int seed gives the same sample.
        moved = testing.to_numpy(kg.ops.gumbel_top_k(last, 2, 0.5, hard=hard, seed=9))
        assert on_axis.shape == logits.shape
        np.testing.assert_array_equal(np.moveaxis(on_axis, axis, -1), moved)
        np.testing.assert_allclose(on_axis.sum(axis=axis), 2.0, atol=1e-5)


@pytest.mark.parametrize(
    "dtype",
    [
        "float16",
        "bfloat16",
        testing.FLOAT64,
    ],
)
def test_dtypes(dtype):
    logits = keras.ops.cast(np.log(np.tile(PROBS, (16, 1))), dtype)
    for hard in (False, True):
        sample = kg.ops.gumbel_top_k(logits, 2, 0.5, hard=hard, seed=1)
        assert keras.backend.standardize_dtype(sample.dtype) == dtype
        values = testing.to_numpy(keras.ops.cast(sample, "float32"))
        assert np.all(np.isfinite(values))
        np.testing.assert_allclose(values.sum(axis=-1), 2.0, atol=2e-2)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.function(jit_compile=True)"
)
def test_jit_compile():
    import tensorflow as tf

    logits = tf.constant(np.log(np.tile(PROBS, (8, 1))), tf.float32)
    mask = tf.constant(np.tile([True, True, False, True, True], (8, 1)))
    generator = keras.random.SeedGenerator(0)

    @tf.function(jit_compile=True)
    def draw(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = kg.ops.gumbel_top_k(x, 2, 0.5, hard=True, mask=mask, seed=generator)
            loss = tf.reduce_sum(y * tf.range(5, dtype=tf.float32))
        return y, tape.gradient(loss, x)

    sample, grad = draw(logits)
    assert np.all(sample.numpy().sum(-1) == 2)
    assert np.all(sample.numpy()[:, 2] == 0)
    assert np.all(np.isfinite(grad.numpy()))
    again, _ = draw(logits)
    assert not np.array_equal(sample.numpy(), again.numpy())


@pytest.mark.parametrize(
    "k, error",
    [(0, ValueError), (6, ValueError), (True, TypeError), (2.0, TypeError)],
)
def test_bad_k(k, error):
    with pytest.raises(error, match=r"argument `k`.*Received: k="):
        kg.ops.gumbel_top_k(np.zeros((2, 5), "float32"), k)
    if k != 6:
        with pytest.raises(error, match=r"argument `k`"):
            kg.GumbelTopK(k)
    else:
        with pytest.raises(error, match=r"Expected an integer in \[1, 5\]"):
            kg.GumbelTopK(k)(np.zeros((2, 5), "float32"))


def test_bad_arguments():
    logits = np.zeros((2, 5), "float32")
    with pytest.raises(ValueError, match="temperature"):
        kg.ops.gumbel_top_k(logits, 2, 0.0)
    with pytest.raises(TypeError, match="hard"):
        kg.ops.gumbel_top_k(logits, 2, hard="yes")
    with pytest.raises(TypeError, match="logits"):
        kg.ops.gumbel_top_k(np.zeros((2, 5), "int32"), 2)
    with pytest.raises(ValueError, match="axis"):
        kg.ops.gumbel_top_k(logits, 2, axis=2)
    with pytest.raises(ValueError, match="inference"):
        kg.GumbelTopK(2, inference="mode")
    with pytest.raises(TypeError, match="hard"):
        kg.GumbelTopK(2, hard=1)
    with pytest.raises(ValueError, match="temperature"):
        kg.GumbelTopK(2, temperature=-1.0)


def test_layer_training_and_inference_modes():
    logits = np.log(np.array([[0.5, 0.1, 0.3, 0.1], [0.1, 0.2, 0.3, 0.4]], "float32"))
    layer = kg.GumbelTopK(2, temperature=0.5, hard=True, seed=0)
    first, second = (testing.to_numpy(layer(logits, training=True)) for _ in range(2))
    for sample in (first, second):
        assert np.all(sample.sum(-1) == 2) and set(np.unique(sample)) <= {0.0, 1.0}
    np.testing.assert_array_equal(
        testing.to_numpy(layer(logits)), [[1, 0, 1, 0], [0, 0, 1, 1]]
    )
    relaxed = kg.GumbelTopK(2, temperature=0.5, inference="softmax")
    np.testing.assert_allclose(
        testing.to_numpy(relaxed(logits)),
        reference_relaxed_top_k(logits, 2, 0.5),
        atol=1e-5,
    )
    sampler = kg.GumbelTopK(2, inference="sample", seed=1)
    draws = np.stack([testing.to_numpy(sampler(logits)) for _ in range(20)])
    assert np.all(draws.sum(-1) == 2)
    assert len({d.tobytes() for d in draws}) > 1  # random, not the argmax


def test_layer_seed_makes_sequences_reproducible():
    logits = np.zeros((4, 6), "float32")
    a, b = kg.GumbelTopK(3, seed=5), kg.GumbelTopK(3, seed=5)
    for _ in range(3):
        np.testing.assert_array_equal(
            testing.to_numpy(a(logits, training=True)),
            testing.to_numpy(b(logits, training=True)),
        )


def test_layer_mask_argument_and_propagation():
    layer = kg.GumbelTopK(2, hard=True, seed=0)
    logits = np.zeros((3, 4), "float32")
    mask = np.array([[1, 1, 0, 1], [0, 0, 1, 0], [1, 1, 1, 1]], bool)
    for training in (True, False):
        out = testing.to_numpy(layer(logits, training=training, mask=mask))
        assert np.all(out[~mask] == 0)
        np.testing.assert_array_equal(out.sum(-1), [2, 1, 2])
    # A Keras mask from upstream (one rank less: padded rows) reaches the layer.
    inputs = keras.Input((3,), dtype="int32")
    embedded = keras.layers.Embedding(5, 4, mask_zero=True)(inputs)
    outputs = kg.GumbelTopK(2)(embedded)
    model = keras.Model(inputs, outputs)
    out = testing.to_numpy(model(np.array([[1, 2, 0]])))
    np.testing.assert_array_equal(out.sum(-1), [[2, 2, 0]])


def test_layer_temperature_is_annealable():
    layer = kg.GumbelTopK(2, temperature=2.0, inference="softmax")
    assert isinstance(layer, kg.AnnealableLayer)
    logits = np.array([[2.0, 1.0, 0.0]], "float32")
    hot = testing.to_numpy(layer(logits))
    layer.temperature.assign(1e-3)
    cold = testing.to_numpy(layer(logits))
    np.testing.assert_allclose(cold, [[1, 1, 0]], atol=1e-6)
    assert not np.allclose(hot, cold)


def test_layer_config_round_trip():
    layer = kg.GumbelTopK(
        3, temperature=0.7, hard=True, axis=1, inference="sample", seed=4, name="top"
    )
    clone = testing.assert_config_round_trip(layer)
    assert (clone.k, clone.hard, clone.axis, clone.inference) == (3, True, 1, "sample")
    assert clone.initial_temperature == 0.7 and clone.seed == 4


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_hard_samples_are_exactly_k_hot_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    layer = kg.GumbelTopK(2, hard=True, seed=0)
    x = np.log(np.tile(PROBS, (4, 1))).astype("float32")
    out = testing.to_numpy(keras.ops.cast(layer(x, training=True), "float32"))
    np.testing.assert_array_equal(out.sum(-1), 2.0)


@pytest.mark.parametrize(
    "function", [kg.ops.top_k_hot, lambda x, k: kg.ops.relaxed_top_k(x, k, 0.5)]
)
def test_noise_free_top_k_ops_check_k_by_name(function):
    logits = np.zeros((2, 4), "float32")
    with pytest.raises(ValueError, match=r"`k`.*\[1, 4\].*Received: k=5"):
        function(logits, 5)
    with pytest.raises(TypeError, match="`k`.*Received: k=1.5"):
        function(logits, 1.5)
    np.testing.assert_allclose(testing.to_numpy(function(logits, 4)), 1.0, rtol=1e-6)
