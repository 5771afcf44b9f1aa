"""`keras_gumbel._backend`: every backend module offers the whole interface, and
the running backend's fast paths give what the portable defaults give."""

import importlib

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from keras_gumbel import _backend
from keras_gumbel._backend import portable
from tests import testing

BACKEND_MODULES = ("tensorflow", "torch", "jax")


@pytest.mark.parametrize("name", BACKEND_MODULES)
def test_every_fast_path_belongs_to_the_portable_interface(name):
    # Importing must not need the backend's library: each imports it lazily.
    module = importlib.import_module(f"keras_gumbel._backend.{name}")
    extras = {"StatefulOpSeed"}  # export's stand-in seed for TFLite graphs
    stray = set(module.__all__) - set(portable.__all__) - extras
    assert not stray, f"{name} defines {stray}, which nothing calls"
    for operation in set(module.__all__) - extras:
        assert callable(getattr(module, operation))


def test_current_fills_in_the_portable_defaults():
    paths = _backend.current()
    module = importlib.import_module(f"keras_gumbel._backend.{keras.backend.backend()}")
    for operation in portable.__all__:
        expected = getattr(module, operation, getattr(portable, operation))
        assert getattr(paths, operation) is expected


def test_name_is_the_running_backend():
    assert _backend.name() == keras.backend.backend()


def scores(shape=(64, 7), seed=0):
    values = np.random.default_rng(seed).normal(size=shape).astype("float32")
    values[0, 3] = -np.inf  # a category that cannot be chosen
    values[1, :] = [5.0, 5.0] + [0.0] * (shape[1] - 2)  # a tie: the first wins
    return values


def test_argmax_and_one_hot_match_the_portable_forms():
    x = keras.ops.convert_to_tensor(scores())
    module = _backend.current()
    np.testing.assert_array_equal(
        testing.to_numpy(module.argmax(x)), testing.to_numpy(portable.argmax(x))
    )
    index = keras.ops.convert_to_tensor(np.array([0, 3, -1, 6], "int32"))
    np.testing.assert_array_equal(
        testing.to_numpy(module.one_hot(index, 7, "float32")),
        testing.to_numpy(portable.one_hot(index, 7, "float32")),
    )
    # Index -1 is the empty row of `_numerics.one_hot_max`.
    assert testing.to_numpy(module.one_hot(index, 7, "float32"))[2].sum() == 0.0


def test_gumbel_from_uniform_matches_the_portable_form():
    u = np.random.default_rng(1).uniform(1e-30, 1.0, size=(128,)).astype("float32")
    module = _backend.current()
    fast = module.gumbel_from_uniform(keras.ops.convert_to_tensor(u.copy()))
    # Float32 rounding: relative near the noise's values, absolute near its zero.
    expected = -np.log(-np.log(u.astype("float64")))
    np.testing.assert_allclose(testing.to_numpy(fast), expected, rtol=1e-6, atol=1e-6)


def test_scaled_softmax_when_fused_equals_the_definition():
    module = _backend.current()
    x = keras.ops.convert_to_tensor(scores())
    temperature = keras.ops.convert_to_tensor(0.5)
    fused = module.scaled_softmax(x, temperature)
    if fused is None:
        return  # this backend has no fused softmax; callers take their own
    expected = np.exp(scores() / 0.5 - np.max(scores() / 0.5, axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(testing.to_numpy(fused), expected, rtol=1e-5, atol=1e-7)


def test_softmax_vjp_matches_the_portable_form():
    module = _backend.current()
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(5), size=(3, 4)).astype("float32")
    upstream = rng.normal(size=(3, 4, 5)).astype("float32")
    convert = keras.ops.convert_to_tensor
    np.testing.assert_allclose(
        testing.to_numpy(module.softmax_vjp(convert(probs), convert(upstream))),
        testing.to_numpy(portable.softmax_vjp(convert(probs), convert(upstream))),
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        testing.to_numpy(
            module.softmax_vjp_scores(convert(probs), convert(upstream), convert(0.5))
        ),
        testing.to_numpy(
            portable.softmax_vjp_scores(convert(probs), convert(upstream), convert(0.5))
        ),
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize("dtype", ["float32", testing.FLOAT64])
def test_uniform_draw_lies_in_tiny_to_one(dtype):
    draw = testing.to_numpy(_backend.current().uniform((4096,), dtype, 3))
    assert draw.dtype == np.dtype(dtype)
    assert draw.min() >= np.finfo(dtype).tiny and draw.max() < 1.0


@pytest.mark.parametrize("dtype", ["float32", testing.FLOAT64])
def test_argmax_resolves_the_working_dtype(dtype):
    # Scores a float32 cast would merge: the larger is exact in float64 only.
    step = 1.0 if dtype == "float32" else 1e-3
    x = keras.ops.convert_to_tensor(np.array([[1e7, 1e7 + step]], dtype))
    assert testing.to_numpy(_backend.current().argmax(x)).tolist() == [1]
    one_hot = kg.ops.argmax_one_hot(x)
    assert testing.to_numpy(one_hot).tolist() == [[0.0, 1.0]]


ROWS = np.array(
    [
        [np.nan, 1.0, 2.0],
        [np.inf, 1.0, np.inf],
        [-np.inf, -np.inf, -np.inf],
        [3.0, -1.0, 0.5],
    ],
    "float32",
)


def test_shift_rows_matches_the_portable_form():
    x = keras.ops.convert_to_tensor(ROWS)
    (fast, fast_nan), (slow, slow_nan) = (
        _backend.current().shift_rows(x),
        portable.shift_rows(x),
    )
    np.testing.assert_array_equal(
        testing.to_numpy(fast_nan), testing.to_numpy(slow_nan)
    )
    assert testing.to_numpy(fast_nan)[:, 0].tolist() == [True, False, False, False]
    # NaN rows are the caller's to overwrite; every other row must agree.
    np.testing.assert_array_equal(
        testing.to_numpy(fast)[1:], testing.to_numpy(slow)[1:]
    )
    np.testing.assert_array_equal(testing.to_numpy(slow)[3], [0.0, -4.0, -2.5])


def test_shift_rows_may_skip_a_shift_only_where_it_changes_nothing():
    # Maxima within the bound: a fast path may return the rows unshifted, so
    # they may differ from the portable form by a constant per row only.
    rows = np.array([[3.0, -1.0, 0.5], [-60.0, -61.0, -np.inf]], "float32")
    x = keras.ops.convert_to_tensor(rows)
    fast, fast_nan = (testing.to_numpy(v) for v in _backend.current().shift_rows(x))
    slow = testing.to_numpy(portable.shift_rows(x)[0])
    difference = np.where(np.isfinite(slow), fast - slow, 0.0)
    np.testing.assert_allclose(difference, difference[:, :1] * np.isfinite(slow))
    assert not fast_nan.any()
    # Beyond it, every fast path shifts: Gumbel noise must keep its bits.
    huge = keras.ops.convert_to_tensor(rows + 1e9)
    np.testing.assert_array_equal(
        testing.to_numpy(_backend.current().shift_rows(huge)[0]),
        testing.to_numpy(portable.shift_rows(huge)[0]),
    )


def test_nan_where_matches_the_portable_form():
    values = keras.ops.convert_to_tensor(np.ones((3, 2), "float32"))
    for invalid in ([[False], [True], [False]], [[False], [False], [False]]):
        invalid = keras.ops.convert_to_tensor(np.array(invalid))
        np.testing.assert_array_equal(
            testing.to_numpy(_backend.current().nan_where(invalid, values)),
            testing.to_numpy(portable.nan_where(invalid, values)),
        )


def test_ordinary_temperature_claims_only_what_the_policy_leaves_alone():
    # Claiming "ordinary" skips the policy for 0, +inf, NaN and too-small
    # temperatures, so a fast path may claim it only inside [max(minimum,
    # tiny), 1 / tiny]; portable never claims it.
    tiny = float(np.finfo("float32").tiny)
    check = _backend.current().ordinary_temperature
    for value, minimum in [
        (0.0, None),
        (tiny / 2, None),
        (np.inf, None),
        (np.nan, None),
        (0.9, 1.0),
        (2.0 / tiny, None),
    ]:
        temperature = keras.ops.convert_to_tensor(np.float32(value))
        assert check(temperature, minimum) is False, (value, minimum)
    rows = keras.ops.convert_to_tensor(np.array([0.5, 0.0], "float32"))
    assert check(rows, None) is False
    ordinary = keras.ops.convert_to_tensor(np.array([0.5, 1.0], "float32"))
    assert check(ordinary, 0.5) is (_backend.name() == "torch")
    assert portable.ordinary_temperature(ordinary, 0.5) is False


def test_all_finite_claims_only_finite_values():
    check = _backend.current().all_finite
    for bad in (np.nan, np.inf, -np.inf):
        values = keras.ops.convert_to_tensor(np.array([0.0, bad], "float32"))
        assert check(values) is False, bad
    finite = keras.ops.convert_to_tensor(np.array([0.0, -3e38], "float32"))
    assert check(finite) is (_backend.name() == "torch")
    assert portable.all_finite(finite) is False


def test_layers_with_ordinary_temperatures_equal_the_policy_path():
    # A temperature tensor takes the fast path on eager PyTorch and the policy's
    # `where`s elsewhere; a Python float skips both. All give the same sample.
    logits = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    for function in (kg.ops.gumbel_softmax, kg.ops.gumbel_sigmoid):
        as_float = function(logits, 0.7, seed=3)
        as_tensor = function(logits, keras.ops.convert_to_tensor(0.7), seed=3)
        np.testing.assert_array_equal(
            testing.to_numpy(as_float), testing.to_numpy(as_tensor)
        )
