import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

FEATURES = 20
INFORMATIVE = np.array([3, 7, 11, 16])
STEPS = 192  # 12 epochs of 16 batches
# Four steps per compiled execution, for speed; Keras runs the PyTorch backend
# one step at a time (it refuses `steps_per_execution > 1` there).
STEPS_PER_EXECUTION = 1 if keras.backend.backend() == "torch" else 4


def selection_problem(seed, scales=(1.0, 1.0, 1.0, 1.0)):
    """20 standard normal features; the targets are 4 of them, scaled."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, FEATURES)).astype("float32")
    return x, x[:, INFORMATIVE] * np.asarray(scales, "float32")


def train_selector(x, y, seed, **options):
    """Concrete selector + linear decoder, trained with the paper's geometric
    annealing from 10 to 0.01 (Abid et al. 2019) over `STEPS` steps."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    selector = kg.ConcreteSelect(4, seed=seed, **options)
    outputs = keras.layers.Dense(y.shape[1])(selector(inputs))
    model = keras.Model(inputs, outputs)
    # Learning rate 0.2 while the selectors choose, 0.02 for the last quarter
    # (temperature below 0.06, choices frozen) so the decoder settles; at one
    # constant rate two selectors can settle on the same feature.
    learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
        [STEPS * 3 // 4], [0.2, 0.02]
    )
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "mse",
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    annealing = kg.TemperatureAnnealing(
        kg.schedules.GeometricDecay(start=10.0, end=0.01, steps=STEPS)
    )
    model.fit(x, y, batch_size=64, epochs=STEPS // 16, callbacks=[annealing], verbose=0)
    return model, selector


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"units": 3, "seed": 0},
        {
            "units": 4,
            "temperature": 2.0,
            "duplicate_penalty": 0.5,
            "unique": True,
            "seed": 1,
        },
    ],
)
def test_layer_behaviour(init_kwargs, tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 10))
    testing.run_layer_test(
        kg.ConcreteSelect,
        init_kwargs,
        x,
        expected_output_shape=(8, init_kwargs["units"]),
        tmp_path=tmp_path,
    )


def test_learns_the_informative_features():
    x, y = selection_problem(0)
    model, selector = train_selector(x, y, seed=0)
    np.testing.assert_array_equal(np.sort(selector.selected_indices()), INFORMATIVE)
    # Annealed: the last update ran before the last execution of steps.
    np.testing.assert_allclose(
        float(testing.to_numpy(selector.temperature)),
        10.0 * 0.001 ** ((STEPS - STEPS_PER_EXECUTION) / STEPS),
        rtol=1e-5,
    )
    # Inference uses exactly the selected features, so the decoder fits well.
    assert float(model.evaluate(x, y, verbose=0)) < 0.05


def test_duplicates_without_options_and_their_remedies():
    # One target has 5 times the scale of the others: every selector is drawn
    # to its feature, and without help several settle on it.
    x, y = selection_problem(1, scales=(5.0, 1.0, 1.0, 1.0))
    _, plain = train_selector(x, y, seed=0)
    assert len(set(plain.selected_indices())) < 4
    # unique=True: selectors sample without replacement in training, so each
    # learns a different feature, and inference never repeats one.
    _, unique = train_selector(x, y, seed=0, unique=True)
    np.testing.assert_array_equal(np.sort(unique.selected_indices()), INFORMATIVE)
    # The penalty lowers the overlap of the learned selection distributions.
    _, penalised = train_selector(x, y, seed=0, duplicate_penalty=5.0)
    assert float(testing.to_numpy(penalised.overlap())) < float(
        testing.to_numpy(plain.overlap())
    )


def test_inference_is_an_exact_gather():
    layer = kg.ConcreteSelect(3, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    layer.build(x.shape)
    logits = np.full((3, 6), -1.0, "float32")
    logits[[0, 1, 2], [4, 0, 4]] = 2.0
    layer.logits.assign(logits)
    indices = layer.selected_indices()
    assert indices.shape == (3,) and np.issubdtype(indices.dtype, np.integer)
    np.testing.assert_array_equal(indices, [4, 0, 4])
    x[:, 2] = np.nan  # an unselected feature never leaks into the output
    x[:, 3] = np.inf
    np.testing.assert_array_equal(testing.to_numpy(layer(x)), x[:, indices])


def test_training_mixes_features_by_relaxed_samples():
    layer = kg.ConcreteSelect(3, temperature=1.0, seed=1)
    eye = np.eye(6, dtype="float32")
    # With identity inputs the output is the transposed selection matrix.
    samples = [testing.to_numpy(layer(eye, training=True)).T for _ in range(2)]
    for sample in samples:
        assert sample.shape == (3, 6) and np.all(sample >= 0)
        np.testing.assert_allclose(sample.sum(axis=-1), 1.0, atol=1e-6)
    assert not np.allclose(samples[0], samples[1])  # fresh noise every call
    layer.temperature.assign(1e4)  # high temperature: nearly uniform
    np.testing.assert_allclose(
        testing.to_numpy(layer(eye, training=True)), 1 / 6, atol=1e-2
    )


def test_unique_selection_never_repeats_a_feature():
    layer = kg.ConcreteSelect(3, temperature=0.1, unique=True, seed=2)
    layer.build((None, 5))
    logits = np.zeros((3, 5), "float32")
    logits[:, 1] = 5.0  # every selector prefers feature 1
    logits[1, 3] = 4.0
    logits[2, [0, 3]] = [3.0, 3.5]
    layer.logits.assign(logits)
    # In order: selector 0 takes 1, selector 1 its next best 3, selector 2 then 0.
    np.testing.assert_array_equal(layer.selected_indices(), [1, 3, 0])
    x = np.random.default_rng(1).normal(size=(2, 5)).astype("float32")
    np.testing.assert_array_equal(testing.to_numpy(layer(x)), x[:, [1, 3, 0]])
    eye = np.eye(5, dtype="float32")
    for _ in range(5):
        sample = testing.to_numpy(layer(eye, training=True)).T
        assert len(set(np.argmax(sample, axis=-1))) == 3
        np.testing.assert_allclose(sample.sum(axis=-1), 1.0, atol=1e-6)


def test_duplicate_penalty_is_added_to_the_losses():
    layer = kg.ConcreteSelect(3, duplicate_penalty=2.0, seed=0)
    layer.build((None, 4))
    logits = np.array([[9, 0, 0, 0], [9, 0, 0, 0], [0, 0, 9, 0]], "float32")
    layer.logits.assign(logits)
    layer(np.ones((2, 4), "float32"), training=True)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.maximum(probs.sum(0) - 1, 0).sum()  # about 1: one duplicate
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        float(testing.to_numpy(layer.losses[0])), 2 * expected, 1e-5
    )
    assert not kg.ConcreteSelect(3).losses


def test_save_load_keeps_selection_and_temperature(tmp_path):
    inputs = keras.Input((FEATURES,))
    selector = kg.ConcreteSelect(4, unique=True, seed=3)
    model = keras.Model(inputs, keras.layers.Dense(2)(selector(inputs)))
    # A learned state: sharp logits favouring distinct features, annealed.
    logits = np.random.default_rng(4).normal(size=(4, FEATURES)).astype("float32")
    logits[np.arange(4), INFORMATIVE] += 10.0
    selector.logits.assign(logits)
    selector.temperature.assign(0.05)
    x, _ = selection_problem(2)
    loaded = testing.assert_model_save_load(model, x[:8], tmp_path / "select.keras")
    restored = next(
        layer for layer in loaded.layers if isinstance(layer, kg.ConcreteSelect)
    )
    np.testing.assert_array_equal(
        restored.selected_indices(), selector.selected_indices()
    )


def test_config_round_trip():
    layer = kg.ConcreteSelect(
        5, temperature=3.0, duplicate_penalty=0.5, unique=True, seed=7, name="sel"
    )
    clone = testing.assert_config_round_trip(layer)
    assert (clone.units, clone.duplicate_penalty, clone.unique) == (5, 0.5, True)
    assert clone.initial_temperature == 3.0 and clone.seed == 7


@pytest.mark.parametrize(
    "units, error",
    [(0, ValueError), (-2, ValueError), (True, TypeError), (2.5, TypeError)],
)
def test_bad_units(units, error):
    with pytest.raises(error, match=r"argument `units`.*Received: units="):
        kg.ConcreteSelect(units)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"rank-2.*Received: inputs.shape="):
        kg.ConcreteSelect(2)(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"rank-2.*Received: inputs.shape="):
        kg.ConcreteSelect(2)(np.zeros((4,), "float32"))
    with pytest.raises(ValueError, match="duplicate_penalty"):
        kg.ConcreteSelect(2, duplicate_penalty=-1.0)
    with pytest.raises(TypeError, match="duplicate_penalty"):
        kg.ConcreteSelect(2, duplicate_penalty="high")
    with pytest.raises(TypeError, match="unique"):
        kg.ConcreteSelect(2, unique=1)
    with pytest.raises(ValueError, match=r"units.*\[1, 3\]"):
        kg.ConcreteSelect(4, unique=True)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="temperature"):
        kg.ConcreteSelect(2, temperature=0.0)
    with pytest.raises(ValueError, match="call it on an input"):
        kg.ConcreteSelect(2).selected_indices()
