"""HardConcreteGate: learned Hard Concrete gates with an L0 penalty, as a layer."""

import keras
import numpy as np
import pytest
from scipy import special

import keras_gumbel as kg
from tests import testing

X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
# [batch, heads, time, dim]: the layout of attention heads.
HEADS = np.random.default_rng(1).normal(size=(4, 3, 2, 5)).astype("float32")
LOG_ALPHA = np.array([-2.0, -0.5, 0.0, 1.0, 3.0], "float32")
# 10,000 examples of 5 gates: 50,000 gates per draw.
EXAMPLES = 10_000


def gate_probabilities(log_alpha, temperature=2 / 3, limits=(-0.1, 1.1)):
    """P(gate = 0), P(gate <= 1/2) and P(gate = 1), in float64 (eq. 9-12).

    The stretched Concrete `s (zeta - gamma) + gamma` is below `t` when the
    logistic noise is below `temperature * logit((t - gamma) / (zeta - gamma))
    - log_alpha`.
    """
    gamma, zeta = limits
    log_alpha = np.asarray(log_alpha, "float64")

    def below(t):
        return special.expit(
            temperature * special.logit((t - gamma) / (zeta - gamma)) - log_alpha
        )

    return below(0.0), below(0.5), 1.0 - below(1.0)


def deterministic_gates(log_alpha, limits=(-0.1, 1.1)):
    gamma, zeta = limits
    stretched = special.expit(np.asarray(log_alpha, "float64")) * (zeta - gamma)
    return np.clip(stretched + gamma, 0.0, 1.0)


def built_gate(log_alpha=LOG_ALPHA, **kwargs):
    layer = kg.HardConcreteGate(**kwargs)
    layer.build((None, len(log_alpha)))
    layer.log_alpha.assign(log_alpha)
    return layer


@pytest.mark.parametrize(
    "init_kwargs, x",
    [
        ({}, X),
        ({"l0_weight": 0.1, "per_example": False, "seed": 1}, X),
        (
            {
                "temperature": 0.5,
                "limits": (-0.2, 1.3),
                "l0_weight": 0.05,
                "axis": (1, -1),
                "droprate_init": 0.2,
                "seed": 3,
            },
            HEADS,
        ),
    ],
    ids=["default", "per_batch", "heads_and_features"],
)
def test_layer_contract(init_kwargs, x, tmp_path):
    testing.run_layer_test(
        kg.HardConcreteGate,
        init_kwargs,
        x,
        supports_masking=True,
        mask_passes_through=True,
        tmp_path=tmp_path,
    )


def test_config_is_the_constructor_arguments():
    layer = kg.HardConcreteGate(
        0.5, limits=[-0.2, 1.5], l0_weight=2, axis=[1, 2], per_example=False, seed=7
    )
    config = layer.get_config()
    assert {
        key: config[key]
        for key in (
            "temperature",
            "limits",
            "l0_weight",
            "axis",
            "per_example",
            "droprate_init",
            "seed",
        )
    } == {
        "temperature": 0.5,
        "limits": (-0.2, 1.5),
        "l0_weight": 2.0,
        "axis": (1, 2),
        "per_example": False,
        "droprate_init": 0.5,
        "seed": 7,
    }
    # The temperature is annealed from outside, never learned.
    assert "trainable_temperature" not in config
    assert not layer.temperature.trainable


def test_inference_multiplies_by_the_deterministic_gates_exactly():
    layer = built_gate(np.array([-3.0, -2.3, 0.0, 2.0, 3.0], "float32"), seed=0)
    gates = layer.inference_gates()
    np.testing.assert_allclose(gates, deterministic_gates(layer.log_alpha), rtol=1e-6)
    np.testing.assert_array_equal(
        testing.to_numpy(layer(X)), X * gates[None].astype("float32")
    )
    # Closed exactly where sigmoid(log_alpha) * 1.2 - 0.1 <= 0, that is
    # log_alpha <= log(1 / 11), about -2.398; fully open where it reaches 1.
    np.testing.assert_array_equal(layer.open_gates(), [False, True, True, True, True])
    assert gates[0] == 0.0 and gates[-1] == 1.0
    # Eq. 13 has no temperature: annealing it leaves inference unchanged.
    layer.temperature.assign(0.1)
    np.testing.assert_array_equal(layer.inference_gates(), gates)


@pytest.mark.parametrize(
    "temperature, limits", [(2 / 3, (-0.1, 1.1)), (0.4, (-0.2, 1.5))]
)
def test_training_gates_are_exact_zeros_and_ones_at_closed_form_rates(
    temperature, limits
):
    layer = built_gate(temperature=temperature, limits=limits, seed=4)
    gates = testing.to_numpy(
        layer(np.ones((EXAMPLES, len(LOG_ALPHA)), "float32"), training=True)
    )
    assert np.all((gates >= 0.0) & (gates <= 1.0))
    # 3 rates for each of 5 gates from 10,000 draws each: 15 tests at 5 sigma
    # (two-sided 5.7e-7 each), a family-wise false alarm below 1e-5
    # (Bonferroni).
    expected = gate_probabilities(LOG_ALPHA, temperature, limits)
    observed = (gates == 0.0, gates <= 0.5, gates == 1.0)
    for rate, frequency in zip(expected, observed, strict=True):
        sigma = np.sqrt(rate * (1 - rate) / EXAMPLES)
        np.testing.assert_array_less(np.abs(frequency.mean(axis=0) - rate), 5 * sigma)
    np.testing.assert_allclose(layer.gate_probabilities(), 1.0 - expected[0], rtol=1e-6)


def test_gates_are_fresh_every_call_and_reproducible_from_the_seed():
    x = np.ones((64, 5), "float32")
    layer = built_gate(seed=5)
    first = testing.to_numpy(layer(x, training=True))
    assert not np.array_equal(first, testing.to_numpy(layer(x, training=True)))
    replay = built_gate(seed=5)
    np.testing.assert_array_equal(testing.to_numpy(replay(x, training=True)), first)


def test_one_gate_per_example_or_per_batch_shared_over_the_other_axes():
    x = np.ones((64, 4, 3, 2), "float32")
    per_example = kg.HardConcreteGate(axis=1, seed=6)
    gates = testing.to_numpy(per_example(x, training=True))
    assert tuple(per_example.log_alpha.shape) == (4,)
    # Input ones: the output is the gates, one per example and head, shared
    # by every time step and feature of the head.
    np.testing.assert_array_equal(gates, np.broadcast_to(gates[:, :, :1, :1], x.shape))
    assert len(np.unique(gates[:, 0, 0, 0])) > 1

    per_batch = kg.HardConcreteGate(axis=(1, -1), per_example=False, seed=6)
    gates = testing.to_numpy(per_batch(x, training=True))
    assert tuple(per_batch.log_alpha.shape) == (4, 2)
    np.testing.assert_array_equal(gates, np.broadcast_to(gates[:1, :, :1, :], x.shape))
    assert len(np.unique(gates[0, :, 0, :])) > 1


def test_the_l0_penalty_is_added_in_training_and_reaches_log_alpha():
    layer = built_gate(l0_weight=0.3, seed=7)
    assert layer.l0_weight.name == "l0_weight"
    assert keras.backend.standardize_dtype(layer.l0_weight.dtype) == "float32"
    assert not layer.l0_weight.trainable
    layer(X, training=True)
    (penalty,) = layer.losses
    probabilities = 1.0 - gate_probabilities(LOG_ALPHA)[0]
    np.testing.assert_allclose(
        testing.to_numpy(penalty), 0.3 * probabilities.sum(), rtol=1e-6
    )
    np.testing.assert_allclose(
        testing.to_numpy(penalty),
        0.3 * testing.to_numpy(kg.ops.hard_concrete_l0(layer.log_alpha)).sum(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        testing.to_numpy(layer.expected_l0()), probabilities.sum(), rtol=1e-6
    )
    layer(X)
    assert layer.losses == []  # inference adds no penalty

    def penalty_of_a_training_call():
        layer(X, training=True)
        return sum(layer.losses)

    # d/d log_alpha of 0.3 * sigmoid(log_alpha - c) is 0.3 * p (1 - p).
    np.testing.assert_allclose(
        testing.variable_gradient(penalty_of_a_training_call, layer.log_alpha),
        0.3 * probabilities * (1 - probabilities),
        rtol=1e-5,
    )
    # The weight is a variable: assigning it (annealing) changes the penalty.
    layer.l0_weight.assign(0.0)
    layer(X, training=True)
    assert testing.to_numpy(sum(layer.losses)) == 0.0


def test_open_gates_appear_in_the_fit_history():
    inputs = keras.Input((5,))
    gate = kg.HardConcreteGate(l0_weight=0.01, seed=8, name="gate")
    model = keras.Model(inputs, keras.layers.Dense(1)(gate(inputs)))
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(
        X,
        np.ones((8, 1), "float32"),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[kg.callbacks.OpenGatesLogger()],
    ).history
    assert len(history["gate/expected_open_gates"]) == 2
    np.testing.assert_allclose(
        history["gate/expected_open_gates"][-1],
        testing.to_numpy(gate.expected_l0()),
        rtol=1e-6,
    )
    assert history["gate/open_gates"] == [5, 5]

    plain = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    plain.compile(optimizer="adam", loss="mse")
    testing.assert_error(
        ValueError,
        lambda: plain.fit(
            X,
            np.ones((8, 1)),
            verbose=0,
            callbacks=[kg.callbacks.OpenGatesLogger()],
        ),
        "keras_gumbel.HardConcreteGate",
        plain.name,
    )


def test_a_large_l0_weight_closes_the_uninformative_gates():
    # The target depends on features 0 and 1 only; an L0 weight of 0.05 costs
    # less than what dropping either of them costs the squared error.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x[:, :1] - x[:, 1:2]).astype("float32")
    inputs = keras.Input((8,))
    gate = kg.HardConcreteGate(l0_weight=0.05, seed=9)
    dense = keras.layers.Dense(
        1, kernel_initializer=keras.initializers.GlorotUniform(seed=0)
    )
    model = keras.Model(inputs, dense(gate(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    assert gate.open_gates().sum() == 8
    model.fit(x, y, batch_size=64, epochs=20, shuffle=False, verbose=0)
    np.testing.assert_array_equal(gate.open_gates(), [True, True] + [False] * 6)


def test_initial_log_alpha_follows_the_papers_code():
    # 10,000 units: the sample mean is within 5 sigma (5 * 0.01 / 100) of
    # log(1 - d) - log(d), the sample standard deviation within 5 sigma
    # (5 * 0.01 / sqrt(2 * 10,000)) of 0.01.
    for droprate_init in (0.5, 0.2):
        layer = kg.HardConcreteGate(droprate_init=droprate_init, seed=10)
        layer.build((None, 10_000))
        log_alpha = testing.to_numpy(layer.log_alpha).astype("float64")
        mean = np.log(1 - droprate_init) - np.log(droprate_init)
        assert abs(log_alpha.mean() - mean) < 5 * 0.01 / 100
        assert abs(log_alpha.std() - 0.01) < 5 * 0.01 / np.sqrt(2 * 10_000)
    again = kg.HardConcreteGate(droprate_init=0.2, seed=10)
    again.build((None, 10_000))
    np.testing.assert_array_equal(testing.to_numpy(again.log_alpha), log_alpha)


def test_saving_keeps_log_alpha_and_the_seed_state(tmp_path):
    inputs = keras.Input((5,))
    gate = kg.HardConcreteGate(l0_weight=0.5, seed=11, name="gate")
    model = keras.Model(inputs, gate(inputs))
    gate.log_alpha.assign(LOG_ALPHA)
    gate.l0_weight.assign(0.25)
    model(X, training=True)  # advances the generator
    loaded = testing.assert_model_save_load(model, X, tmp_path / "gate.keras")
    restored = loaded.get_layer("gate")
    np.testing.assert_array_equal(testing.to_numpy(restored.log_alpha), LOG_ALPHA)
    assert testing.to_numpy(restored.l0_weight) == 0.25
    # The reloaded layer draws the gates the original would have drawn next.
    np.testing.assert_array_equal(
        testing.to_numpy(loaded(X, training=True)),
        testing.to_numpy(model(X, training=True)),
    )


def test_mixed_precision_computes_gates_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = built_gate(seed=12)
    y = layer(X)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.log_alpha.dtype) == "float32"
    # float32 gates, rounded once to bfloat16 for the product.
    expected = keras.ops.cast(X, "bfloat16") * keras.ops.cast(
        layer.inference_gates(), "bfloat16"
    )
    np.testing.assert_array_equal(
        testing.to_numpy(y).astype("float32"),
        testing.to_numpy(expected).astype("float32"),
    )
    layer(X, training=True)
    (penalty,) = layer.losses
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, error, name, shown",
    [
        ({"limits": (0.1, 1.1)}, ValueError, "limits", "(0.1, 1.1)"),
        ({"limits": (-0.1, 0.9)}, ValueError, "limits", "(-0.1, 0.9)"),
        ({"limits": (-0.1, float("inf"))}, ValueError, "limits", "inf"),
        ({"limits": (-0.1,)}, TypeError, "limits", "(-0.1,)"),
        ({"limits": ("a", 1.1)}, TypeError, "limits", "'a'"),
        ({"l0_weight": -0.1}, ValueError, "l0_weight", "-0.1"),
        ({"l0_weight": float("nan")}, ValueError, "l0_weight", "nan"),
        ({"l0_weight": True}, TypeError, "l0_weight", "True"),
        ({"axis": 1.0}, TypeError, "axis", "1.0"),
        ({"axis": ()}, TypeError, "axis", "()"),
        ({"axis": (1, 1)}, ValueError, "axis", "(1, 1)"),
        ({"per_example": 1}, TypeError, "per_example", "1"),
        ({"droprate_init": 0.0}, ValueError, "droprate_init", "0.0"),
        ({"droprate_init": 1}, ValueError, "droprate_init", "1"),
        ({"temperature": 0.0}, ValueError, "temperature", "0.0"),
        ({"trainable_temperature": True}, ValueError, "trainable_temperature", "True"),
    ],
    ids=lambda value: str(value) if not isinstance(value, type) else value.__name__,
)
def test_bad_arguments_fail_naming_the_argument(kwargs, error, name, shown):
    testing.assert_error(error, lambda: kg.HardConcreteGate(**kwargs), name, shown)


@pytest.mark.parametrize(
    "axis, shown", [(0, "axis=0"), (-4, "axis=-4"), (4, "axis=4"), ((1, -3), "(1, -3)")]
)
def test_axes_are_checked_against_the_input(axis, shown):
    layer = kg.HardConcreteGate(axis=axis)
    testing.assert_error(ValueError, lambda: layer(HEADS), "axis", shown)


def test_bad_inputs_and_unbuilt_layers_fail_clearly():
    with pytest.raises(ValueError, match="rank >= 2"):
        kg.HardConcreteGate()(np.ones((5,), "float32"))
    testing.assert_error(
        TypeError,
        lambda: kg.HardConcreteGate()(np.ones((2, 5), "int32")),
        "inputs",
        "int32",
    )
    with pytest.raises(ValueError, match="call it on an input first"):
        kg.HardConcreteGate().open_gates()
