"""GumbelSigmoid: the binary twin of GumbelSoftmax, as a layer."""

import keras
import numpy as np
import pytest
from scipy import special

import keras_gumbel as kg
from tests import testing

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel export and TFLite conversion need the TensorFlow backend",
)
X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
LOGITS = np.array([-2.0, -0.5, 0.0, 0.8, 3.0], "float32")
DRAWS = 4000


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {},
        {"hard": True, "seed": 1},
        {"estimator": "gumbel_rao", "seed": 2},
        {"estimator": kg.estimators.GST(gap=2.0), "inference": "sigmoid"},
        {"temperature": 1.5, "estimator": "reinmax", "inference": "sample"},
        {"trainable_temperature": True, "seed": 3},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()) or "default",
)
def test_layer_contract(init_kwargs, tmp_path):
    testing.run_layer_test(
        kg.GumbelSigmoid, init_kwargs, X, supports_masking=True, tmp_path=tmp_path
    )


def test_inference_modes():
    logits = LOGITS[None]
    np.testing.assert_array_equal(
        testing.to_numpy(kg.GumbelSigmoid()(logits)), [[0, 0, 0, 1, 1]]
    )
    np.testing.assert_allclose(
        testing.to_numpy(kg.GumbelSigmoid(0.5, inference="sigmoid")(logits)),
        special.expit(logits / 0.5),
        rtol=1e-6,
    )
    samples = testing.to_numpy(
        kg.GumbelSigmoid(inference="sample", seed=0)(np.tile(LOGITS, (DRAWS, 1)))
    )
    assert_bernoulli(samples, LOGITS)


def assert_bernoulli(samples, logits):
    """Exact 0/1 values with frequencies within 5 sigma of sigmoid(logits)."""
    assert np.all((samples == 0) | (samples == 1))
    p = special.expit(logits.astype("float64"))
    sigma = np.sqrt(p * (1 - p) / len(samples))
    np.testing.assert_array_less(np.abs(samples.mean(0) - p), 5 * sigma + 1e-12)


def test_training_samples_are_fresh_and_reproducible():
    logits = np.tile(LOGITS, (DRAWS, 1))
    layer = kg.GumbelSigmoid(hard=True, seed=4)
    first = testing.to_numpy(layer(logits, training=True))
    second = testing.to_numpy(layer(logits, training=True))
    assert_bernoulli(first, LOGITS)
    assert not np.array_equal(first, second)
    replay = kg.GumbelSigmoid(hard=True, seed=4)
    np.testing.assert_array_equal(
        testing.to_numpy(replay(logits, training=True)), first
    )


def test_the_minimum_temperature_of_its_estimator_is_kept():
    testing.assert_error(
        ValueError,
        lambda: kg.GumbelSigmoid(0.5, estimator="reinmax"),
        "temperature",
        "reinmax",
    )
    assert kg.GumbelSigmoid(1.0, estimator="reinmax").min_temperature == 1.0
    assert kg.GumbelSigmoid().min_temperature == 0.0
    testing.assert_error(
        ValueError,
        lambda: kg.GumbelSigmoid(inference="softmax"),
        "inference",
        "softmax",
    )


def test_annealing_and_training_a_model():
    inputs = keras.Input((5,))
    gate = kg.GumbelSigmoid(2.0, hard=True, seed=5, name="gate")
    outputs = keras.layers.Dense(1)(gate(keras.layers.Dense(5)(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    schedule = kg.schedules.GeometricDecay(2.0, 0.5, steps=4)
    history = model.fit(
        X,
        np.ones((8, 1), "float32"),
        batch_size=2,
        epochs=1,
        verbose=0,
        callbacks=[kg.TemperatureAnnealing(schedule)],
    )
    assert np.isfinite(history.history["loss"][0])
    # Four steps: the last one ran at the schedule's value for step 3.
    np.testing.assert_allclose(
        testing.to_numpy(gate.temperature), float(schedule(3)), rtol=1e-6
    )


@tensorflow_only
def test_exported_sample_endpoint_draws_bernoulli_samples(tmp_path):
    import tensorflow as tf

    logits = keras.Input((len(LOGITS),))
    model = keras.Model(logits, kg.GumbelSigmoid(seed=1)(logits))
    kg.export.export_saved_model(model, tmp_path / "model")
    reloaded = tf.saved_model.load(str(tmp_path / "model"))
    batch = np.tile(LOGITS, (DRAWS, 1))
    np.testing.assert_array_equal(reloaded.serve(batch[:1]), [[0, 0, 0, 1, 1]])
    first = reloaded.sample(batch).numpy()
    assert_bernoulli(first, LOGITS)
    assert not np.array_equal(first, reloaded.sample(batch).numpy())
    seeded = reloaded.sample_with_seed(batch, seed=3).numpy()
    np.testing.assert_array_equal(seeded, reloaded.sample_with_seed(batch, seed=3))


@tensorflow_only
def test_tflite_samples_with_builtin_ops():
    from ai_edge_litert.interpreter import Interpreter

    logits = keras.Input((len(LOGITS),))
    model = keras.Model(logits, kg.GumbelSigmoid(inference="sample", seed=1)(logits))
    interpreter = Interpreter(model_content=kg.export.to_tflite(model))
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    (samples,) = runner(**{name: np.tile(LOGITS, (DRAWS, 1))}).values()
    assert_bernoulli(samples, LOGITS)
