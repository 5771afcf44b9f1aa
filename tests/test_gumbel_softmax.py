"""The `keras_gumbel.GumbelSoftmax` layer."""

import math

import keras
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras import ops

import keras_gumbel as kg
from tests import testing

LOGITS_5 = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15], dtype="float32"))


def random_logits(*shape, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype("float32")


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"seed": 0},
        {"temperature": 0.5, "hard": True, "inference": "sample", "seed": 1},
        {
            "estimator": "gumbel_rao",
            "hard": True,
            "axis": 1,
            "inference": "softmax",
            "trainable_temperature": True,
            "seed": 2,
        },
    ],
)
def test_layer_behaviour(init_kwargs, tmp_path):
    testing.run_layer_test(
        kg.GumbelSoftmax,
        init_kwargs,
        random_logits(8, 3, 5),
        supports_masking=True,
        tmp_path=tmp_path,
    )


# Training: fresh, reproducible samples.


@pytest.mark.parametrize("hard", [False, True])
def test_training_samples_are_normalised(hard):
    layer = kg.GumbelSoftmax(0.5, hard=hard, seed=0)
    values = testing.to_numpy(layer(random_logits(8, 3, 5), training=True))
    assert np.all(values >= 0.0)
    np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-6)
    if hard:
        testing.assert_exact_one_hot(values)
    else:
        assert np.all((values > 0.0) & (values < 1.0))


def test_each_call_draws_fresh_noise_and_an_int_seed_reproduces_the_sequence():
    logits = random_logits(4, 6)
    first, second = kg.GumbelSoftmax(seed=7), kg.GumbelSoftmax(seed=7)
    sequence_first = [testing.to_numpy(first(logits, training=True)) for _ in range(3)]
    sequence_second = [
        testing.to_numpy(second(logits, training=True)) for _ in range(3)
    ]
    for a, b in zip(sequence_first, sequence_second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(sequence_first[0], sequence_first[1])
    assert not np.array_equal(sequence_first[1], sequence_first[2])
    other = testing.to_numpy(kg.GumbelSoftmax(seed=8)(logits, training=True))
    assert not np.array_equal(other, sequence_first[0])
    unseeded = [
        testing.to_numpy(kg.GumbelSoftmax()(logits, training=True)) for _ in "ab"
    ]
    assert not np.array_equal(*unseeded)


@pytest.mark.parametrize("jit_compile", [False, testing.JIT_COMPILE])
def test_compiled_model_draws_fresh_noise_every_step(jit_compile):
    # `predict` runs in inference mode; a model that samples at inference
    # ("sample") must still draw new noise in every compiled call.
    inputs = keras.Input((6,))
    outputs = kg.GumbelSoftmax(inference="sample", seed=1)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(jit_compile=jit_compile)
    x = np.zeros((32, 6), dtype="float32")
    first = model.predict_on_batch(x)
    second = model.predict_on_batch(x)
    testing.assert_exact_one_hot(first)
    testing.assert_exact_one_hot(second)
    assert not np.array_equal(first, second)


def test_hard_frequencies_in_training_match_softmax():
    # 50,000 hard samples of 5 categories through the layer; chi-square
    # goodness of fit to softmax(logits) at level 1e-3.
    layer = kg.GumbelSoftmax(0.3, hard=True, seed=2)
    sample = layer(np.broadcast_to(LOGITS_5, (50_000, 5)), training=True)
    testing.assert_exact_one_hot(sample)
    assert testing.chi_square_pvalue(sample, testing.softmax(LOGITS_5)) > 1e-3


def test_hard_gradient_equals_relaxed_gradient_with_the_same_noise():
    logits = random_logits(16, 5, seed=1)
    weights = ops.convert_to_tensor(random_logits(16, 5, seed=2))

    def loss(hard):
        # Two layers with the same seed draw the same noise.
        layer = kg.GumbelSoftmax(0.6, hard=hard, seed=3)
        return lambda v: ops.sum(layer(v, training=True) * weights)

    relaxed = testing.gradient(loss(False), logits)
    straight_through = testing.gradient(loss(True), logits)
    assert np.abs(relaxed).max() > 1e-3
    np.testing.assert_allclose(straight_through, relaxed, rtol=1e-6, atol=1e-7)


# Inference modes.


def test_inference_argmax_is_deterministic():
    logits = random_logits(10, 3, 4)
    layer = kg.GumbelSoftmax(inference="argmax", seed=0)
    expected = np.eye(4)[np.argmax(logits, -1)]
    for training in (None, False):
        np.testing.assert_array_equal(
            testing.to_numpy(layer(logits, training=training)), expected
        )
    along_1 = kg.GumbelSoftmax(axis=1)(logits)
    np.testing.assert_array_equal(
        testing.to_numpy(along_1), np.moveaxis(np.eye(3)[np.argmax(logits, 1)], -1, 1)
    )


def test_inference_softmax_is_tempered_softmax():
    logits = random_logits(10, 4, scale=3.0)
    layer = kg.GumbelSoftmax(0.4, inference="softmax")
    np.testing.assert_allclose(
        testing.to_numpy(layer(logits)),
        testing.softmax(logits / 0.4),
        rtol=1e-5,
        atol=1e-7,
    )
    layer.temperature.assign(2.5)
    np.testing.assert_allclose(
        testing.to_numpy(layer(logits)),
        testing.softmax(logits / 2.5),
        rtol=1e-5,
        atol=1e-7,
    )


def test_inference_sample_is_a_fresh_categorical_sample():
    # 50,000 inference samples; chi-square goodness of fit at level 1e-3.
    layer = kg.GumbelSoftmax(5.0, inference="sample", seed=4)
    batch = np.broadcast_to(LOGITS_5, (50_000, 5))
    first, second = layer(batch), layer(batch, training=False)
    testing.assert_exact_one_hot(first)
    assert not np.array_equal(testing.to_numpy(first), testing.to_numpy(second))
    # The temperature does not change the distribution of a hard sample.
    assert testing.chi_square_pvalue(first, testing.softmax(LOGITS_5)) > 1e-3


# Masks.


@pytest.mark.parametrize("inference", ["argmax", "softmax", "sample"])
@pytest.mark.parametrize("hard", [False, True])
def test_explicit_category_mask(hard, inference):
    logits = random_logits(6, 5, seed=3)
    mask = np.random.default_rng(3).random((6, 5)) < 0.6
    mask[:, 2] = True
    mask[4] = False
    layer = kg.GumbelSoftmax(0.5, hard=hard, inference=inference, seed=1)
    weights = ops.convert_to_tensor(random_logits(6, 5, seed=4))
    for training in (True, False):
        values = testing.to_numpy(layer(logits, training=training, mask=mask))
        assert np.all(values[~mask] == 0.0)
        np.testing.assert_array_equal(values[4], 0.0)
        np.testing.assert_allclose(np.delete(values, 4, 0).sum(-1), 1.0, rtol=1e-6)
    grad = testing.gradient(
        lambda v: ops.sum(layer(v, training=True, mask=mask) * weights), logits
    )
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~mask] == 0.0)


@pytest.mark.parametrize("hard", [False, True])
def test_row_mask_from_masking_layer(hard):
    # Masking yields a [batch, time] mask for [batch, time, categories] logits:
    # padded timesteps come out all zeros, in every mode.
    inputs = keras.Input((4, 6))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    layer = kg.GumbelSoftmax(hard=hard, inference="softmax", seed=0)
    model = keras.Model(inputs, layer(masked))
    x = random_logits(3, 4, 6)
    x[:, 2] = 0.0
    for training in (True, False):
        values = testing.to_numpy(model(x, training=training))
        np.testing.assert_array_equal(values[:, 2], 0.0)
        np.testing.assert_allclose(values[:, [0, 1, 3]].sum(-1), 1.0, rtol=1e-6)
    # The mask keeps flowing to the next layer.
    assert layer.compute_mask(masked, np.ones((3, 4), bool)) is not None


class SqueezeKeepingMask(keras.layers.Layer):
    """[batch, n, 1] -> [batch, n], passing an upstream [batch, n] mask on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return ops.squeeze(inputs, -1)

    def compute_mask(self, inputs, mask=None):
        return mask


def test_category_mask_from_embedding_mask_zero():
    # Pointer-style choice over tokens: the padding token 0 gets a False entry
    # in the Embedding mask, which arrives with the rank of the logits and marks
    # categories that must never be chosen.
    vocabulary, n = 20, 7
    tokens = keras.Input((n,), dtype="int32")
    scores = keras.layers.Embedding(vocabulary, 1, mask_zero=True)(tokens)
    logits = SqueezeKeepingMask()(scores)
    outputs = kg.GumbelSoftmax(hard=True, inference="softmax", seed=0)(logits)
    model = keras.Model(tokens, outputs)
    ids = np.random.default_rng(0).integers(1, vocabulary, size=(2000, n))
    ids[:, [1, 4]] = 0
    ids[0] = 0  # no real token at all
    for training in (True, False):
        values = testing.to_numpy(model(ids, training=training))
        assert np.all(values[ids == 0] == 0.0)
        np.testing.assert_array_equal(values[0], 0.0)
        np.testing.assert_allclose(values[1:].sum(-1), 1.0, rtol=1e-6)
    testing.assert_exact_one_hot(testing.to_numpy(model(ids[1:], training=True)))


def test_infinite_logits_act_as_a_mask():
    logits = random_logits(5, 4)
    logits[:, 0] = -np.inf
    logits[3] = -np.inf
    layer = kg.GumbelSoftmax(0.2, hard=True, inference="softmax", seed=0)
    for training in (True, False):
        values = testing.to_numpy(layer(logits, training=training))
        assert np.all(values[:, 0] == 0.0)
        np.testing.assert_array_equal(values[3], 0.0)
    grad = testing.gradient(lambda v: ops.sum(layer(v, training=True) ** 2), logits)
    assert np.all(np.isfinite(grad))


# Bad input.


@pytest.mark.parametrize(
    "kwargs, error_type, name, shown",
    [
        ({"temperature": 0.0}, ValueError, "temperature", "temperature=0.0"),
        ({"temperature": -1}, ValueError, "temperature", "temperature=-1"),
        ({"temperature": math.nan}, ValueError, "temperature", "temperature=nan"),
        ({"temperature": math.inf}, ValueError, "temperature", "temperature=inf"),
        ({"temperature": "hot"}, TypeError, "temperature", "temperature='hot'"),
        ({"estimator": "gumble"}, ValueError, "estimator", "estimator='gumble'"),
        (
            {"estimator": "gumbel_softmax", "hard": True},
            ValueError,
            "estimator",
            "estimator='gumbel_softmax', hard=True",
        ),
        ({"inference": "mode"}, ValueError, "inference", "inference='mode'"),
        ({"inference": None}, ValueError, "inference", "inference=None"),
        ({"hard": "yes"}, TypeError, "hard", "hard='yes'"),
        (
            {"trainable_temperature": 1},
            TypeError,
            "trainable_temperature",
            "trainable_temperature=1",
        ),
        ({"axis": 1.5}, TypeError, "axis", "axis=1.5"),
        ({"seed": 1.5}, TypeError, "seed", "seed=1.5"),
        ({"seed": "0"}, TypeError, "seed", "seed='0'"),
        ({"seed": keras.random.SeedGenerator(0)}, TypeError, "seed", "seed=<"),
    ],
)
def test_bad_constructor_arguments(kwargs, error_type, name, shown):
    testing.assert_error(error_type, lambda: kg.GumbelSoftmax(**kwargs), name, shown)


@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_integer_and_boolean_logits_are_rejected(dtype):
    for logits in (np.ones((2, 3), dtype), ops.ones((2, 3), dtype=dtype)):
        for training in (True, False):
            testing.assert_error(
                TypeError,
                lambda v=logits, t=training: kg.GumbelSoftmax()(v, training=t),
                "logits",
                f"logits.dtype={dtype}",
            )


def test_axis_out_of_range_and_bad_mask_rank_are_rejected():
    logits = np.zeros((2, 3), dtype="float32")
    testing.assert_error(
        ValueError, lambda: kg.GumbelSoftmax(axis=2)(logits), "axis", "axis=2"
    )
    testing.assert_error(
        ValueError, lambda: kg.GumbelSoftmax(axis=-3)(logits), "axis", "axis=-3"
    )
    for training in (True, False):
        testing.assert_error(
            ValueError,
            lambda t=training: kg.GumbelSoftmax()(
                logits, training=t, mask=np.ones((2, 3, 1), bool)
            ),
            "mask",
            "mask.shape=(2, 3, 1)",
        )


# Precision and extremes.


@pytest.mark.parametrize(
    "policy", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"]
)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 1e-4, "hard": False, "inference": "softmax"},
        {"temperature": 0.5, "hard": True, "inference": "sample"},
    ],
)
def test_low_precision_policies(policy, kwargs):
    x = random_logits(8, 5, scale=3.0)
    x[0] = [6e4, -6e4, 0.0, 1.0, -np.inf]
    layer = testing.assert_mixed_precision(
        lambda: kg.GumbelSoftmax(seed=0, **kwargs), x, policy
    )
    assert layer.compute_dtype == policy.removeprefix("mixed_")
    keras.config.set_dtype_policy(policy)
    weights = ops.convert_to_tensor(random_logits(8, 5, seed=1))
    grad = testing.gradient(
        lambda v: ops.sum(ops.cast(layer(v, training=True), "float32") * weights),
        ops.cast(x, layer.compute_dtype),
    )
    assert np.all(np.isfinite(grad.astype("float32")))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_logits_that_overflow_half_precision_win_instead_of_giving_nan(policy):
    # A mixed policy autocasts float32 logits of 1e30 to float16 +inf; such a
    # category is read as certain, and several of them share the row: evenly
    # without noise, by the noise's draw in a sample (the limit of equal huge
    # logits), which in half precision sums to 1 within two rounding steps.
    keras.config.set_dtype_policy(policy)
    logits = np.array([[1e30, 0.0, -1e30], [1e30, 1e30, 0.0]], dtype="float32")
    # The spacing of the compute dtype at 1.
    ulp_of_one = {"mixed_float16": 2.0**-10, "mixed_bfloat16": 2.0**-7}[policy]
    for hard in (False, True):
        layer = kg.GumbelSoftmax(0.5, hard=hard, inference="softmax", seed=0)
        for training in (True, False):
            values = testing.to_numpy(layer(logits, training=training)).astype(
                "float32"
            )
            assert np.all(np.isfinite(values))
            np.testing.assert_allclose(values.sum(-1), 1.0, atol=2 * ulp_of_one)
            assert values[0, 0] == 1.0
            assert values[1, 2] == 0.0
            if not training:
                np.testing.assert_array_equal(values[1], [0.5, 0.5, 0.0])


def test_explicit_float16_dtype_and_variable_temperature_stays_float32():
    layer = kg.GumbelSoftmax(0.5, dtype="float16", seed=0)
    sample = layer(random_logits(4, 3).astype("float16"), training=True)
    assert keras.backend.standardize_dtype(sample.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.temperature.dtype) == "float32"


@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_and_tiny_temperature(hard):
    logits = np.array(
        [[1e30, -1e30, 0.0, -np.inf], [-1e30] * 4, [0.1, 0.2, -np.inf, 0.0]],
        dtype="float32",
    )
    weights = ops.convert_to_tensor(random_logits(3, 4))
    for temperature in (1e-4, 1.0):
        layer = kg.GumbelSoftmax(temperature, hard=hard, inference="softmax", seed=0)
        for training in (True, False):
            values = testing.to_numpy(layer(logits, training=training))
            assert np.all(np.isfinite(values)) and np.all(values >= 0.0)
            np.testing.assert_allclose(values.sum(-1), 1.0, rtol=1e-6)
            assert values[0, 0] == pytest.approx(1.0)
        grad = testing.gradient(
            lambda v, layer=layer: ops.sum(layer(v, training=True) * weights), logits
        )
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("hard", [False, True])
def test_gradient_wrt_trainable_temperature_at_tiny_temperature(hard):
    layer = kg.GumbelSoftmax(1e-4, hard=hard, trainable_temperature=True, seed=0)
    logits = ops.convert_to_tensor(random_logits(16, 6, scale=0.01))
    weights = ops.convert_to_tensor(random_logits(16, 6, seed=1))
    assert np.all(np.isfinite(testing.to_numpy(layer(logits, training=True))))
    grad = testing.variable_gradient(
        lambda: ops.sum(layer(logits, training=True) * weights), layer.temperature
    )
    assert grad.shape == () and np.isfinite(grad)


# Models, compilation and the temperature variable.


def classification_data(n=512, features=8, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    projection = rng.normal(size=(features, classes))
    y = np.eye(classes, dtype="float32")[np.argmax(x @ projection, -1)]
    return x, y


def sampler_model(layer, features=8, classes=5):
    inputs = keras.Input((features,))
    return keras.Model(inputs, layer(keras.layers.Dense(classes)(inputs)))


@pytest.mark.parametrize("jit_compile", [False, testing.JIT_COMPILE])
@pytest.mark.parametrize("hard", [False, True])
def test_fit_decreases_the_loss(jit_compile, hard):
    keras.utils.set_random_seed(0)
    x, y = classification_data()
    model = sampler_model(kg.GumbelSoftmax(0.5, hard=hard, seed=0))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="mse", jit_compile=jit_compile
    )
    history = model.fit(x, y, batch_size=64, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    # The loss of a 5-way one-hot guess at random is 0.32; learning the linear
    # classes must at least halve it.
    assert history[-1] < 0.5 * history[0]


class CountingGumbelSoftmax(kg.GumbelSoftmax):
    """Counts Python executions of `call`: once per trace in compiled functions."""

    traces = 0

    def call(self, inputs, training=None, mask=None):
        CountingGumbelSoftmax.traces += 1
        return super().call(inputs, training=training, mask=mask)


@pytest.mark.parametrize("jit_compile", [False, testing.JIT_COMPILE])
def test_assigned_temperature_takes_effect_without_retracing(jit_compile):
    classes = 5
    layer = CountingGumbelSoftmax(1e3, inference="softmax", seed=0)
    model = sampler_model(layer, classes=classes)
    # Learning rate 0: train_on_batch reports the loss of fixed weights.
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile
    )
    x = random_logits(64, 8)
    logits = testing.to_numpy(model.layers[1](x))
    uniform = np.full((64, classes), 1 / classes, dtype="float32")

    # Inference: softmax(logits / temperature), with the assigned temperature.
    np.testing.assert_allclose(
        model.predict_on_batch(x), testing.softmax(logits / 1e3), rtol=1e-5, atol=1e-7
    )
    traces = CountingGumbelSoftmax.traces
    layer.temperature.assign(0.3)
    np.testing.assert_allclose(
        model.predict_on_batch(x), testing.softmax(logits / 0.3), rtol=1e-5, atol=1e-6
    )

    # Training: at temperature 1000 a sample is uniform to within 1e-2 per
    # entry (noise and logits are O(10)), so its squared error to uniform is
    # tiny; at 0.05 it is nearly one-hot, with squared error near 0.16.
    layer.temperature.assign(1e3)
    loss_hot = model.train_on_batch(x, uniform)
    train_traces = CountingGumbelSoftmax.traces
    layer.temperature.assign(0.05)
    loss_cold = model.train_on_batch(x, uniform)
    assert loss_hot < 1e-4
    assert loss_cold > 0.05
    layer.temperature.assign(0.3)
    model.predict_on_batch(x)
    # Steps are traced once and then reused on TensorFlow (always a
    # tf.function) and on JAX with jit_compile=True. On JAX with
    # jit_compile=False and on PyTorch they run the Python code every time, so
    # there is no trace to reuse and the counts say nothing.
    if testing.backend() == "tensorflow" or (
        jit_compile and testing.backend() == "jax"
    ):
        assert train_traces > traces  # the train step was traced once, in between
        assert CountingGumbelSoftmax.traces == train_traces


def test_trainable_temperature_learns_and_stays_positive():
    # The loss is minus the purity sum(y^2) of the sample, which grows as the
    # temperature falls for every noise draw (a tempered softmax's Renyi-2
    # entropy increases with the temperature), so gradient descent lowers the
    # temperature. (A squared error to the likeliest category's one-hot does
    # not: softer samples hedge when another category wins, and its expected
    # value is lowest near temperature 0.55.) Adam's steps of about 0.5 would
    # take it below zero within five steps; the constraint stops it at 0.01.
    layer = kg.GumbelSoftmax(2.0, trainable_temperature=True, seed=0)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, layer(inputs))
    assert any(w is layer.temperature for w in model.trainable_weights)

    def negative_purity(y_true, y_pred):
        return -ops.sum(ops.square(y_pred), axis=-1)

    model.compile(optimizer=keras.optimizers.Adam(0.5), loss=negative_purity)
    x = np.broadcast_to(10 * LOGITS_5, (256, 5)).copy()
    y = np.eye(5, dtype="float32")[np.full(256, np.argmax(LOGITS_5))]
    temperatures = []

    class RecordTemperature(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # Through `self.model`: on JAX the trainer holds the variables
            # between steps and writes them back when a callback reads it.
            (variable,) = (w for w in self.model.weights if w is layer.temperature)
            temperatures.append(float(testing.to_numpy(variable)))

    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[RecordTemperature()])
    assert temperatures[0] < 2.0
    assert min(temperatures) >= np.float32(0.01)
    assert min(temperatures) == pytest.approx(0.01)
    assert temperatures[-1] == min(temperatures)  # and stays there
    assert all(np.isfinite(temperatures))


def test_non_trainable_temperature_is_not_trained():
    layer = kg.GumbelSoftmax(2.0, seed=0)
    model = sampler_model(layer)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    x, y = classification_data(n=64)
    model.fit(x, y, epochs=1, verbose=0)
    assert float(testing.to_numpy(layer.temperature)) == 2.0
    assert all(w is not layer.temperature for w in model.trainable_weights)


@keras.saving.register_keras_serializable(package="keras_gumbel_tests")
class SubclassedSampler(keras.Model):
    def __init__(self, classes=5, temperature=0.5, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.dense = keras.layers.Dense(classes)
        self.sampler = kg.GumbelSoftmax(temperature, hard=True, seed=3, name="sampler")

    def call(self, inputs, training=None):
        return self.sampler(self.dense(inputs), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"classes": self.classes, "temperature": self.sampler.initial_temperature}
        )
        return config


def sequential_model():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(5),
            kg.GumbelSoftmax(0.5, hard=True, inference="argmax", seed=1),
        ]
    )


def functional_model():
    inputs = keras.Input((8,))
    logits = keras.layers.Dense(5)(inputs)
    sample = kg.GumbelSoftmax(
        0.5, estimator="straight_through", axis=-1, inference="softmax", seed=2
    )(logits)
    return keras.Model(inputs, keras.layers.Dense(1)(sample))


def subclassed_model():
    model = SubclassedSampler()
    model(np.zeros((1, 8), dtype="float32"))
    return model


@pytest.mark.parametrize(
    "make_model", [sequential_model, functional_model, subclassed_model]
)
def test_models_train_save_and_load(make_model, tmp_path):
    keras.utils.set_random_seed(0)
    model = make_model()
    x, y = classification_data(n=64)
    if model(x[:1]).shape[-1] == 1:
        y = y[:, :1]
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(history[-1])
    sampler = next(
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, kg.GumbelSoftmax)
    )
    sampler.temperature.assign(0.37)
    loaded = testing.assert_model_save_load(model, x, str(tmp_path / "model.keras"))
    restored = next(
        layer
        for layer in loaded._flatten_layers()
        if isinstance(layer, kg.GumbelSoftmax)
    )
    assert float(testing.to_numpy(restored.temperature)) == pytest.approx(0.37)
    assert restored.get_config() == sampler.get_config()
    assert restored.get_config()["temperature"] == 0.5  # the initial value
    sample = testing.to_numpy(restored(random_logits(4, 5), training=True))
    assert np.all(np.isfinite(sample))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 0.3, "hard": True},
        {"hard": True, "estimator": "straight_through", "axis": 1},
        {"inference": "softmax", "trainable_temperature": True, "seed": 12},
        {"inference": "sample", "name": "sampler", "dtype": "mixed_float16"},
    ],
)
def test_config_round_trip(kwargs):
    layer = kg.GumbelSoftmax(**kwargs)
    clone = testing.assert_config_round_trip(layer)
    config = layer.get_config()
    for key, value in kwargs.items():
        if key != "dtype":
            assert config[key] == value
    assert clone.temperature.trainable == layer.temperature.trainable
    assert clone.initial_temperature == layer.initial_temperature


# Property test.


@st.composite
def layer_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    temperature = 10.0 ** draw(st.floats(-3.0, 3.0))
    hard = draw(st.booleans())
    inference = draw(st.sampled_from(["argmax", "softmax", "sample"]))
    training = draw(st.booleans())
    seed = draw(st.integers(0, 2**20))
    return shape, axis, temperature, hard, inference, training, seed


# The explicit examples, run on every backend: both temperature extremes, rank 4.
@settings(deadline=None, max_examples=testing.PROPERTY_EXAMPLES, derandomize=True)
@given(layer_cases())
@example(((2, 3, 1, 4), 1, 1e-3, True, "sample", True, 5))
@example(((3, 5), -1, 1e3, False, "softmax", True, 6))
def test_layer_outputs_are_finite_nonnegative_and_normalised(case):
    shape, axis, temperature, hard, inference, training, seed = case
    logits = random_logits(*shape, seed=seed, scale=10.0)
    layer = kg.GumbelSoftmax(
        temperature, hard=hard, axis=axis, inference=inference, seed=seed
    )
    values = testing.to_numpy(layer(logits, training=training))
    assert values.shape == shape
    assert np.all(np.isfinite(values)) and np.all(values >= 0.0)
    np.testing.assert_allclose(values.sum(axis=axis), 1.0, rtol=1e-5)
    if (training and hard) or (not training and inference != "softmax"):
        assert np.all((values == 0.0) | (values == 1.0))
