import math

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

# float32 evaluation of hand-computed float64 values: a few ulps of float32.
RTOL = 1e-6


def _value(schedule, step):
    return float(testing.to_numpy(schedule(step)))


# ExponentialDecay(initial=1, rate=1e-4, minimum=0.5, every=500): the value
# changes at multiples of 500 to exp(-1e-4 * 500k) and reaches the floor once
# exp(-1e-4 t) < 0.5, i.e. at the first multiple of 500 above ln 2 / 1e-4 = 6931.5.
@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1.0),
        (499, 1.0),  # still the first plateau
        (500, 0.951229424500714),  # exp(-0.05)
        (1499, 0.9048374180359595),  # exp(-0.1)
        (6999, 0.522045776761016),  # exp(-0.65), last value above the floor
        (7000, 0.5),  # exp(-0.7) = 0.4966 is clipped to the floor
        (10**6, 0.5),  # long past the end
    ],
)
def test_exponential_decay_formula(step, expected):
    schedule = kg.schedules.ExponentialDecay(
        initial=1.0, rate=1e-4, minimum=0.5, every=500
    )
    assert _value(schedule, step) == pytest.approx(expected, rel=RTOL)


def test_exponential_decay_scales_with_initial_and_defaults():
    schedule = kg.schedules.ExponentialDecay(initial=2.0, rate=1e-3, minimum=0.1)
    # every=1000 by default: 2 * exp(-1e-3 * 1000) = 2 / e after 1000 steps.
    assert _value(schedule, 999) == pytest.approx(2.0, rel=RTOL)
    assert _value(schedule, 1000) == pytest.approx(0.7357588823428847, rel=RTOL)
    default = kg.schedules.ExponentialDecay()
    assert default.get_config() == {
        "initial": 1.0,
        "rate": 3e-5,
        "minimum": 0.5,
        "every": 1000,
    }
    # 1 * exp(-3e-5 * 23000) = 0.5016 > 0.5; at 24000, 0.4868 hits the floor.
    assert _value(default, 23999) == pytest.approx(0.5015760690660556, rel=RTOL)
    assert _value(default, 24000) == 0.5


# GeometricDecay(start=10, end=0.01, steps=1000): 10 * 0.001 ** (t / 1000).
@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 10.0),
        (250, 1.7782794100389228),  # 10 * 0.001 ** 0.25
        (500, 0.31622776601683794),  # 10 * 0.001 ** 0.5
        (1000, 0.01),  # the end
        (5000, 0.01),  # past the end
    ],
)
def test_geometric_decay_formula(step, expected):
    schedule = kg.schedules.GeometricDecay(start=10.0, end=0.01, steps=1000)
    assert _value(schedule, step) == pytest.approx(expected, rel=RTOL)


def test_geometric_decay_falls_by_the_same_factor_every_step():
    schedule = kg.schedules.GeometricDecay(start=4.0, end=0.25, steps=4)
    values = [_value(schedule, step) for step in range(6)]
    # (0.25 / 4) ** (1 / 4) = 0.5 per step, then constant at the end.
    np.testing.assert_allclose(values, [4.0, 2.0, 1.0, 0.5, 0.25, 0.25], rtol=RTOL)


def test_schedules_accept_tensor_steps_and_return_float32():
    for schedule in (
        kg.schedules.ExponentialDecay(every=10),
        kg.schedules.GeometricDecay(steps=10),
    ):
        for step in (keras.ops.convert_to_tensor(7, "int64"), np.int32(7)):
            value = schedule(step)
            assert keras.backend.standardize_dtype(value.dtype) == "float32"
            assert _value(schedule, step) == _value(schedule, 7)


def test_schedules_serialize_through_keras_saving():
    for schedule in (
        kg.schedules.ExponentialDecay(initial=2.0, rate=1e-4, minimum=0.3, every=7),
        kg.schedules.GeometricDecay(start=5.0, end=0.1, steps=30),
    ):
        serialized = keras.saving.serialize_keras_object(schedule)
        assert serialized["registered_name"].startswith("keras_gumbel>")
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is type(schedule)
        assert restored.get_config() == schedule.get_config()
        clone = type(schedule).from_config(schedule.get_config())
        for step in (0, 13, 100):
            assert _value(restored, step) == _value(schedule, step)
            assert _value(clone, step) == _value(schedule, step)


def test_schedule_survives_keras_file_as_learning_rate(tmp_path):
    # Our schedules are LearningRateSchedules, so a model that uses one (here as
    # its optimizer's learning rate) saves and loads it with the `.keras` file.
    schedule = kg.schedules.GeometricDecay(start=0.1, end=0.001, steps=100)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    config = loaded.optimizer.get_config()["learning_rate"]
    assert config == model.optimizer.get_config()["learning_rate"]
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, kg.schedules.GeometricDecay)
    assert restored.get_config() == schedule.get_config()
    # One step was taken, and the loaded optimizer continues from it.
    assert float(testing.to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(
        _value(schedule, 1), rel=RTOL
    )


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"initial": 0.0}, ValueError, "initial"),
        ({"initial": float("nan")}, ValueError, "initial"),
        ({"initial": "1"}, TypeError, "initial"),
        ({"rate": -1e-5}, ValueError, "rate"),
        ({"rate": float("inf")}, ValueError, "rate"),
        ({"rate": True}, TypeError, "rate"),
        ({"minimum": -0.5}, ValueError, "minimum"),
        ({"minimum": 2.0}, ValueError, "minimum"),  # above initial=1.0
        ({"every": 0}, ValueError, "every"),
        ({"every": 1.5}, TypeError, "every"),
    ],
)
def test_exponential_decay_rejects_bad_arguments(kwargs, error, argument):
    with pytest.raises(error, match=f"argument `{argument}`.*Received: {argument}="):
        kg.schedules.ExponentialDecay(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({}, ValueError, "steps"),  # steps is required
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 10.0}, TypeError, "steps"),
        ({"steps": 10, "start": -1.0}, ValueError, "start"),
        ({"steps": 10, "end": 0.0}, ValueError, "end"),
        ({"steps": 10, "end": math.inf}, ValueError, "end"),
    ],
)
def test_geometric_decay_rejects_bad_arguments(kwargs, error, argument):
    with pytest.raises(error, match=f"argument `{argument}`.*Received: {argument}="):
        kg.schedules.GeometricDecay(**kwargs)
