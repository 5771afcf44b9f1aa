"""Argument validation shared by `ops` and the layers.

Every check fails with one sentence that names the argument, says what was
expected and shows what was received, in the style of Keras's own layers.
"""

import importlib.util
import math
import numbers

import keras
import numpy as np

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
SEED_LIMIT = 2**31


def invalid(name, expected, received):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={received!r}"
    )


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported, without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # An import hook refused it, or a stub.
        return False


def require_tensorflow(feature: str, extra: str) -> None:
    """Raises an ImportError naming the extra to install if TensorFlow is absent.

    TensorFlow is an optional dependency; `feature` (e.g.
    "`keras_gumbel.export.to_tflite`") is something that cannot work without it.
    """
    if not tensorflow_installed():
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed. Install it with "
            f'`pip install "keras-gumbel[{extra}]"` and run with '
            "KERAS_BACKEND=tensorflow.",
            name="tensorflow",
        )


def is_tensor_like(value):
    """True for backend tensors and Keras variables (values not known in Python)."""
    return isinstance(value, keras.Variable) or keras.ops.is_tensor(value)


def check_temperature(temperature, name="temperature"):
    """Validates a temperature known in Python; tensors pass through unchecked.

    A tensor or variable may only be known when the graph runs, where nothing
    can raise; what its values give is the numerical policy that `ops` keeps
    (docs/numerics.md).
    """
    if is_tensor_like(temperature):
        if not keras.backend.is_float_dtype(temperature.dtype):
            raise TypeError(
                invalid(name, "a floating-point tensor", temperature)
                + f" with dtype {temperature.dtype}"
            )
        return temperature
    if isinstance(temperature, np.ndarray) and temperature.ndim == 0:
        temperature = temperature.item()
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(invalid(name, "a positive float", temperature))
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(invalid(name, "a positive finite float", temperature))
    return float(temperature)


def is_real(value):
    """A Python or NumPy real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_non_negative(value, name):
    """Validates a non-negative finite float (a loss weight); returns it as float."""
    if not is_real(value):
        raise TypeError(invalid(name, "a non-negative float", value))
    if not math.isfinite(value) or value < 0:
        raise ValueError(invalid(name, "a non-negative finite float", value))
    return float(value)


def check_count(value, name, minimum):
    """Validates an int of at least `minimum`; returns it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(invalid(name, f"an int >= {minimum}", value))
    if value < minimum:
        raise ValueError(invalid(name, f"an int >= {minimum}", value))
    return int(value)


def check_limits(limits):
    """Validates the Hard Concrete stretch `(gamma, zeta)`; returns it as floats."""
    expected = "a pair (gamma, zeta) of finite floats with gamma < 0 and zeta > 1"
    if not isinstance(limits, (tuple, list)) or len(limits) != 2:
        raise TypeError(invalid("limits", expected, limits))
    if not all(is_real(value) for value in limits):
        raise TypeError(invalid("limits", expected, limits))
    gamma, zeta = float(limits[0]), float(limits[1])
    # An infinite zeta would make the stretch `s * (zeta - gamma)` NaN at s=0.
    if not (math.isfinite(gamma) and math.isfinite(zeta) and gamma < 0 < 1 < zeta):
        raise ValueError(invalid("limits", expected, limits))
    return gamma, zeta


def check_temperatures(temperature, name="temperature"):
    """`check_temperature`, also for a batch of temperatures known in Python.

    A list or NumPy array of one or more dimensions is checked element by
    element and returned as a float64 NumPy array; everything else is
    `check_temperature`'s business.
    """
    if isinstance(temperature, (list, tuple)) or (
        isinstance(temperature, np.ndarray) and temperature.ndim > 0
    ):
        try:
            values = np.asarray(temperature, dtype="float64")
        except (TypeError, ValueError):
            raise TypeError(invalid(name, "positive floats", temperature)) from None
        if values.ndim == 0 or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(invalid(name, "positive finite floats", temperature))
        return values
    return check_temperature(temperature, name)


def check_positive_int(value, name, low=1, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(invalid(name, "an integer", value))
    if value < low or (high is not None and value > high):
        bounds = f"an integer in [{low}, {high}]" if high else f"an integer >= {low}"
        raise ValueError(invalid(name, bounds, value))
    return int(value)


def check_axis(axis, ndim, name="axis"):
    """Returns `axis` as a non-negative index into a tensor of rank `ndim`."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(invalid(name, "an integer", axis))
    if ndim is not None and not -ndim <= axis < ndim:
        raise ValueError(
            invalid(
                name,
                f"an integer in [{-ndim}, {ndim - 1}] for a rank-{ndim} input",
                axis,
            )
        )
    return axis % ndim if ndim is not None else axis


def check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(invalid(name, "a bool", value))
    return value


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(invalid(name, f"one of {tuple(choices)}", value))
    return value


def check_seed(seed, name="seed"):
    """Accepts None, an int, or a `keras.random.SeedGenerator`."""
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            invalid(name, "None, an integer or a `keras.random.SeedGenerator`", seed)
        )
    # The range every backend's generator takes without wrapping: TensorFlow's
    # op seeds keep 31 bits, JAX's keys are uint32, PyTorch's Keras state int32.
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(invalid(name, "an integer in [0, 2**31 - 1]", seed))
    return int(seed)


def concrete(value):
    """`value` as a NumPy array where Python can see it, else None.

    None inside a traced function (`tf.function`, `jax.jit`), where the value
    only exists when the graph runs and a check on it cannot raise.
    """
    try:
        return keras.ops.convert_to_numpy(value)
    except Exception:  # Each backend raises its own error for a traced value.
        return None


def float_tensor(value, name):
    """Converts `value` to a tensor and insists on a floating-point dtype."""
    tensor = keras.ops.convert_to_tensor(value)
    if not hasattr(tensor, "ndim"):
        # A raw `tf.Variable` comes back unchanged, and the Keras ops that read
        # `ndim` (`moveaxis`, for a category axis that is not last) fail on it;
        # `copy` is `tf.identity` there, which reads it as a tensor.
        tensor = keras.ops.copy(tensor)
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"Invalid dtype received for argument `{name}`. Expected a "
            f"floating-point tensor (unnormalised log-probabilities). Received: "
            f"{name}.dtype={dtype}"
        )
    return tensor
