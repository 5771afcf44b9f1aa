"""Gradient estimators for categorical samples, one function per estimator.

Every estimator has the same signature::

    estimator(logits, temperature, *, mask, seed) -> sample

`logits` arrive in the working dtype (float32 or float64) with the category axis
last; `mask` is None or a boolean tensor broadcastable to `logits` (False marks a
category that must never be chosen); `temperature` is a scalar in the working
dtype; `seed` is whatever `keras_gumbel.random` accepts. The returned sample has
the shape of `logits`; masked categories are exactly 0 and get exactly 0
gradient, and a row with no allowed category is all zeros.

Adding an estimator is one decorated function: `@register("name", hard=...)`.
A hard estimator's forward value is an exact one-hot sample from
`Categorical(softmax(logits))`.
"""

import dataclasses
import inspect
import numbers
from collections.abc import Callable
from typing import Any, NoReturn

import keras
import numpy as np
from keras import ops

from keras_gumbel import _backend, _checks, _numerics, random
from keras_gumbel._numerics import masked_scores, one_hot_max, scaled_softmax
from keras_gumbel._typing import SeedLike, TensorLike

__all__ = [
    "Estimator",
    "EstimatorLike",
    "get",
    "register",
    "register_binary",
    "ConfiguredEstimator",
    "GST",
    "GumbelRao",
    "StraightThrough",
    "deserialize",
    "gst",
    "gumbel_rao",
    "names",
    "relaxed",
    "reinmax",
    "serialize",
    "straight_through",
]


def _no_binary_form(*args: Any, **kwargs: Any) -> NoReturn:
    raise NotImplementedError(
        "This estimator has no binary form: register one with "
        "`keras_gumbel.estimators.register_binary(name)`."
    )


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A registered estimator: its name, whether it is hard, and its function."""

    name: str
    hard: bool
    function: Callable
    min_temperature: float | None = None
    # The binary form, `binary(logits, temperature, *, seed) -> sample`, on
    # elementwise logits: the estimator applied to the two categories
    # `(logits, 0)`, returning the first one's sample.
    binary: Callable = _no_binary_form


_REGISTRY: dict[str, Estimator] = {}


class ConfiguredEstimator:
    """A registered estimator with non-default options, usable as `estimator=`.

    Subclasses set `name` (the registered estimator) and store their options as
    attributes; `get_config()` returns the options, which are passed to the
    registered function as keyword arguments.
    """

    name: str

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "ConfiguredEstimator":
        return cls(**config)

    def __call__(
        self,
        logits: TensorLike,
        temperature: TensorLike,
        *,
        mask: TensorLike | None,
        seed: SeedLike,
    ) -> TensorLike:
        function = _REGISTRY[self.name].function
        return function(logits, temperature, mask=mask, seed=seed, **self.get_config())

    def binary(
        self, logits: TensorLike, temperature: TensorLike, *, seed: SeedLike
    ) -> TensorLike:
        """The binary form of the registered estimator, with these options."""
        function = _REGISTRY[self.name].binary
        return function(logits, temperature, seed=seed, **self.get_config())

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({options})"


# What an `estimator=` argument accepts: a registered name, a configured
# estimator, its serialized form (from a layer config), or None.
EstimatorLike = str | ConfiguredEstimator | dict | None


def register(
    name: str, *, hard: bool, min_temperature: float | None = None
) -> Callable[[Callable], Callable]:
    """Registers the decorated estimator function under `name`.

    `min_temperature` is the smallest temperature the method supports (None:
    any positive temperature).
    """

    def decorator(function):
        _REGISTRY[name] = Estimator(name, hard, function, min_temperature)
        return function

    return decorator


def register_binary(name: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the binary form of estimator `name`."""

    def decorator(function):
        _REGISTRY[name] = dataclasses.replace(_REGISTRY[name], binary=function)
        return function

    return decorator


def names() -> tuple[str, ...]:
    """The registered estimator names, in registration order."""
    return tuple(_REGISTRY)


def get(
    estimator: EstimatorLike,
    hard: bool = False,
    temperature: float | TensorLike | None = None,
) -> Estimator:
    """Resolves the `estimator` argument of `gumbel_softmax` to an `Estimator`.

    `estimator` is None, a registered name, a configured estimator such as
    `GumbelRao(draws=32)`, or the serialized form of one (a dict, as found in a
    layer config). `None` means `"straight_through"` when `hard=True`, else
    `"gumbel_softmax"`. A relaxed estimator cannot give a hard sample, so asking
    for both is an error; a hard estimator is hard whatever `hard` says.

    A `temperature` known in Python is checked against the smallest temperature
    the method supports; a tensor or variable temperature cannot be checked
    here, and keeping it in range is the caller's job.
    """
    estimator = deserialize(estimator)
    if estimator is None:
        estimator = "straight_through" if hard else "gumbel_softmax"
    if isinstance(estimator, ConfiguredEstimator):
        resolved = dataclasses.replace(
            _REGISTRY[estimator.name], function=estimator, binary=estimator.binary
        )
    elif isinstance(estimator, str) and estimator in _REGISTRY:
        resolved = _REGISTRY[estimator]
    else:
        raise ValueError(
            "Invalid value received for argument `estimator`. Expected None, one "
            f"of {names()}, or a configured estimator such as "
            "`keras_gumbel.estimators.GumbelRao(draws=32)`. "
            f"Received: estimator={estimator!r}"
        )
    if hard and not resolved.hard:
        raise ValueError(
            f"Invalid value received for argument `estimator`. The estimator "
            f"{estimator!r} gives relaxed samples, so it cannot be combined with "
            f"hard=True; use one of "
            f"{tuple(e.name for e in _REGISTRY.values() if e.hard)}. "
            f"Received: estimator={estimator!r}, hard=True"
        )
    minimum = resolved.min_temperature
    lowest = None
    if isinstance(temperature, np.ndarray):
        lowest = float(np.min(temperature))
    elif isinstance(temperature, numbers.Real):
        lowest = float(temperature)
    if minimum is not None and lowest is not None and lowest < minimum:
        raise ValueError(
            "Invalid value received for argument `temperature`. The estimator "
            f"{resolved.name!r} needs a temperature >= {minimum}. "
            f"Received: temperature={temperature!r}"
        )
    return resolved


def serialize(estimator: EstimatorLike) -> str | dict | None:
    """The config form of an `estimator` argument: names stay names, configured
    estimators become Keras-serialized dicts."""
    if isinstance(estimator, ConfiguredEstimator):
        return keras.saving.serialize_keras_object(estimator)
    return estimator


def deserialize(estimator: EstimatorLike) -> EstimatorLike:
    """Inverse of `serialize`: a serialized dict becomes a configured estimator."""
    if not isinstance(estimator, dict):
        return estimator
    try:
        restored = keras.saving.deserialize_keras_object(estimator)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "Invalid value received for argument `estimator`. Expected a "
            "serialized configured estimator. "
            f"Received: estimator={estimator!r}"
        ) from error
    if not isinstance(restored, ConfiguredEstimator):
        raise ValueError(
            "Invalid value received for argument `estimator`. Expected a "
            "serialized configured estimator. "
            f"Received: estimator={estimator!r}"
        )
    return restored


def _gumbel_noise(logits, seed):
    return random.gumbel(ops.shape(logits), logits.dtype, seed)


# Estimators.


@register("gumbel_softmax", hard=False)
def relaxed(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    mask: TensorLike | None,
    seed: SeedLike,
) -> TensorLike:
    """Relaxed sample `softmax((logits + g) / temperature)` (Jang et al. 2017, eq. 1).

    Forward and backward are those of the Concrete relaxation itself (Maddison et
    al. 2017): the pathwise gradient of a relaxed sample, unbiased for the relaxed
    objective and biased for the discrete one.
    """
    scores = masked_scores(logits, _gumbel_noise(logits, seed), mask)
    return scaled_softmax(scores, temperature)


@register("straight_through", hard=True)
def straight_through(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    mask: TensorLike | None,
    seed: SeedLike,
    forward_temperature: float = 1.0,
) -> TensorLike:
    """Straight-through Gumbel-Softmax (Jang et al. 2017, section 2.2).

    Forward: `one_hot(argmax(logits + g))`, an exact categorical sample
    (Gumbel-Max). Backward: the gradient of the relaxed sample drawn with the same
    noise `g`, as `torch.nn.functional.gumbel_softmax(hard=True)` does.

    Decoupled straight-through (Shah et al. 2024) gives the forward pass a
    temperature of its own, `forward_temperature` = `t_f`, and leaves
    `temperature` to the backward pass: the sample is drawn from
    `Categorical(softmax(logits / t_f))`, as `one_hot(argmax(logits / t_f +
    g))`, and the gradient is that of `softmax((logits / t_f + g) /
    temperature)`, the relaxation of that same draw. `t_f` sets how random the
    sample is (above 1 it explores more, below 1 less), `temperature` how the
    gradient spreads over the categories. `t_f = 1` is plain straight-through.
    """
    noise = _gumbel_noise(logits, seed)
    if forward_temperature != 1.0:
        # `logits / t_f + g` scaled by t_f: the same argmax, and the same
        # softmax at temperature `t_f * temperature`, with no pass over the
        # logits (and none over their gradient).
        noise = noise * forward_temperature
        temperature = temperature * forward_temperature
    scores = masked_scores(logits, noise, mask)
    return _numerics.straight_through_one_hot(scores, temperature)


@register("reinmax", hard=True, min_temperature=1.0)
def reinmax(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    mask: TensorLike | None,
    seed: SeedLike,
) -> TensorLike:
    """ReinMax: second-order accurate straight-through (Liu et al. 2023).

    Forward: an exact one-hot sample `D ~ Categorical(softmax(logits))`
    (Gumbel-Max). Backward (Algorithm 2 of the paper, with `pi_0 =
    softmax(logits)`, `pi_1 = (D + softmax(logits / temperature)) / 2`):
    the gradient is that of `2 * pi_1 - pi_0 / 2`, where each `pi` is taken
    as the output of a softmax of `logits` (Algorithm 2, lines 4-5), i.e.
    `grad_logits = 2 J(pi_1)^T g - J(pi_0)^T g / 2` with `J(p) = diag(p) - p p^T`
    and `g` the incoming gradient. This is Heun's method applied to the
    gradient of `E[f(D)]`, second-order accurate where straight-through is
    first-order; in expectation it equals the true gradient when `f` is
    quadratic in `D` and `temperature=1`.

    The temperature only moves the evaluation point `pi_1`; it does not scale
    the gradient. Temperatures below 1 are rejected, as in the authors'
    reference code (a Python temperature is checked; a tensor temperature, e.g.
    a layer variable under annealing, cannot be and must be kept >= 1 by the
    caller). The forward pass computes the sample alone; both `pi` are made
    in the backward pass.
    """
    scores = masked_scores(logits, None, mask)
    sample = one_hot_max(masked_scores(logits, _gumbel_noise(logits, seed), mask))
    return _numerics.reinmax_straight_through(sample, scores, temperature)


def _conditional_gumbel(scores, index):
    """A function from uniform draws to `logits + G - max(logits + G)` for
    Gumbel noise `G` conditioned on `argmax = index` (-1: a row with no
    allowed category), and to that row maximum, 0.

    The construction Paulus et al. (2021) use (the top-down Gumbel of
    Maddison et al. 2014): the maximum of `logits + G` is
    `Gumbel(logsumexp(logits))` and lands on the sampled category; every other
    category is a Gumbel with location `logits_j` truncated below that maximum.
    With i.i.d. `E = -log(u) ~ Exponential(1)`: `top = logsumexp(logits) - log
    E_i` and `score_j = -log(E_j exp(-logits_j) + exp(-top))`, so `score_j -
    top = -softplus(log E_j - logits_j + top)`: in log space, where huge logits
    do not overflow, and at most 0 in floating point too. The sampled category
    is at 0; a disallowed one (a score of `-inf`) comes out as `-inf`, the
    softplus of `+inf`. It runs in the backward pass, where everything is a
    constant. Only the rows' log-partitions are kept from one draw to the
    next, and the chosen draw is gathered, so that a draw needs no tensor of
    the input's size but its uniforms.
    """
    row_max, valid = _numerics.row_max(scores)
    total = ops.sum(ops.exp(scores - row_max), axis=-1, keepdims=True)
    log_partition = row_max + ops.log(ops.where(valid, total, ops.ones_like(total)))
    index = ops.expand_dims(index, -1)
    sampled = index >= 0
    first = ops.where(sampled, index, ops.zeros_like(index))
    zero = ops.zeros((), scores.dtype)

    def conditional(uniforms):
        chosen_uniform = ops.take_along_axis(uniforms, first, axis=-1)
        chosen_log_exponential = ops.log(-ops.log(chosen_uniform))
        top = log_partition - ops.where(
            sampled, chosen_log_exponential, ops.zeros_like(chosen_log_exponential)
        )
        below = -ops.softplus(ops.log(-ops.log(uniforms)) - scores + top)
        chosen = ops.arange(ops.shape(scores)[-1], dtype=index.dtype) == index
        return ops.where(chosen, zero, below), zero

    return conditional


@register("gumbel_rao", hard=True)
def gumbel_rao(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    mask: TensorLike | None,
    seed: SeedLike,
    draws: int = 10,
) -> TensorLike:
    """Gumbel-Rao: straight-through Gumbel-Softmax averaged over noise given the sample.

    Paulus, Maddison & Krause (2021), the Gumbel-Rao Monte Carlo estimator
    GR-MCK: forward, an exact one-hot sample `D = one_hot(argmax(
    logits + G))` (Gumbel-Max); backward, the average over `draws` = K
    conditional noise draws `G_k ~ G | D` of the straight-through Gumbel-Softmax
    Jacobian, `(1/K) sum_k d softmax((logits + G_k) / temperature) / d logits`,
    each `G_k` held fixed. This is a Monte Carlo estimate of `E[grad_ST | D]`,
    so its mean equals that of `"straight_through"` and its variance is no
    larger (Rao-Blackwell), decreasing with K. The derivative is not taken
    through the reparameterisation of `G_k | D`, since only then does the mean
    equal the straight-through mean.

    The sample and the K conditional draws are draws 0 to K of one random
    stream (`keras_gumbel.random.stream_key`), so no random number is used
    twice. The backward pass makes the conditional draws one at a time and
    adds up their Jacobian-vector products in a loop, so memory does not
    grow with K; its time does, linearly. Any positive temperature works.
    """
    scores = masked_scores(logits, None, mask)
    shape = ops.shape(logits)
    key = random.stream_key(seed)
    uniforms = random.stream_uniform(shape, key, 0, logits.dtype)
    index = _numerics.max_index(scores - ops.log(-ops.log(uniforms)))
    sample = _backend.current().one_hot(index, shape[-1], logits.dtype)

    def perturbations(scores):
        conditional = _conditional_gumbel(scores, index)
        return lambda draw: conditional(
            random.stream_uniform(shape, key, draw, logits.dtype)
        )

    return _numerics.mean_straight_through(
        sample, scores, temperature, draws, perturbations, "softmax"
    )


@register("gst", hard=True)
def gst(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    mask: TensorLike | None,
    seed: SeedLike,
    gap: float = 1.0,
) -> TensorLike:
    """Gapped straight-through (GST, Fan et al. 2022), the GST-1.0 variant.

    Forward: an exact one-hot sample `D ~ Categorical(softmax(logits))`
    (Gumbel-Max). Backward: the straight-through gradient of
    `softmax(perturbed / temperature)`, where the perturbation is a
    deterministic function of `D` (the paper's `m2`, Section 4.2): the sampled
    category's logit is raised to the largest logit and every other logit is
    lowered to at most `max(logits) - gap`. The perturbed logits have their
    argmax at `D`, ahead of every other category by at least `gap`, and since
    they are deterministic given `D`, the estimator needs no resampling (the
    reference code's `gst_mover`). The shift is held constant, so the gradient
    is `J(q)^T g / temperature` with `q = softmax(perturbed / temperature)`.
    `gap=1.0` is the paper's GST-1.0; configure it with
    `keras_gumbel.estimators.GST(gap=...)`. The forward pass computes the
    sample alone; the perturbed logits and their softmax are made in the
    backward pass.
    """
    scores = masked_scores(logits, None, mask)
    sample = one_hot_max(masked_scores(logits, _gumbel_noise(logits, seed), mask))

    def perturbations(scores):
        row_max, _ = _numerics.row_max(scores)
        # The sampled category at the row maximum, every other at most `gap`
        # below it: `scores - relu(scores - row_max + gap)`, as a `where`.
        ceiling = row_max - gap
        lowered = ops.where(scores < ceiling, scores, ceiling)
        perturbed = ops.where(sample > 0, row_max, lowered)
        return lambda _: (perturbed, row_max)

    return _numerics.mean_straight_through(
        sample, scores, temperature, 1, perturbations, "softmax"
    )


# Binary forms. Each is its categorical estimator on the two categories
# `(logits, 0)`: the difference of their Gumbel noises is logistic noise `L`,
# so `logits + L > 0` is the Gumbel-Max sample of the first category and
# `sigmoid((logits + L) / t)` is its relaxed sample. Logits arrive finite (the
# caller clamps +-inf and masks), elementwise, in the working dtype.


def _logistic_noise(logits, seed):
    return random.logistic(ops.shape(logits), logits.dtype, seed)


def _bernoulli(scores):
    return ops.cast(scores > 0, scores.dtype)


@register_binary("gumbel_softmax")
def relaxed_binary(
    logits: TensorLike, temperature: TensorLike, *, seed: SeedLike
) -> TensorLike:
    """The binary Concrete sample `sigmoid((logits + L) / temperature)`."""
    return _numerics.scaled_sigmoid(logits + _logistic_noise(logits, seed), temperature)


@register_binary("straight_through")
def straight_through_binary(
    logits: TensorLike,
    temperature: TensorLike,
    *,
    seed: SeedLike,
    forward_temperature: float = 1.0,
) -> TensorLike:
    """Forward `logits + L > 0`; backward through the relaxed sample of that `L`.

    With a `forward_temperature` `t_f`, the logits are `logits / t_f`, as the
    categories `(logits / t_f, 0)` of the categorical form.
    """
    noise = _logistic_noise(logits, seed)
    if forward_temperature != 1.0:
        # As in the categorical form: scaled by t_f, `logits / t_f + L`.
        noise = noise * forward_temperature
        temperature = temperature * forward_temperature
    scores = logits + noise
    soft = _numerics.scaled_sigmoid(scores, temperature)
    return _numerics.straight_through(_bernoulli(scores), soft)


def _value_zero_slope(logits, slope):
    # Exactly 0, with derivative `slope` with respect to `logits`.
    return ops.stop_gradient(slope) * (logits - ops.stop_gradient(logits))


@register_binary("reinmax")
def reinmax_binary(
    logits: TensorLike, temperature: TensorLike, *, seed: SeedLike
) -> TensorLike:
    """ReinMax on `(logits, 0)`: the softmax Jacobian of two categories at `p` is
    `p (1 - p)`, so the gradient is `2 q1 (1 - q1) - q0 (1 - q0) / 2` times the
    incoming one, `q0 = sigmoid(logits)`, `q1 = (D + sigmoid(logits / t)) / 2`."""
    sample = _bernoulli(logits + _logistic_noise(logits, seed))
    q0 = ops.sigmoid(logits)
    q1 = 0.5 * (sample + _numerics.scaled_sigmoid(logits, temperature))
    slope = 2.0 * q1 * (1.0 - q1) - 0.5 * q0 * (1.0 - q0)
    return sample + _value_zero_slope(logits, slope)


@register_binary("gumbel_rao")
def gumbel_rao_binary(
    logits: TensorLike, temperature: TensorLike, *, seed: SeedLike, draws: int = 10
) -> TensorLike:
    """Gumbel-Rao on `(logits, 0)`: the straight-through gradient averaged over
    `draws` logistic noises drawn given the sample `D`.

    Given `D = 1` the perturbed logit `v = logits + L` is logistic about
    `logits` truncated to `v > 0`; inverting its survival function
    `sigmoid(logits - v) / sigmoid(logits)` at a uniform `u` gives
    `v = logits - logit(u * sigmoid(logits))`, and `D = 0` is its mirror image.
    The logit is taken in log space, so it is finite for any `logits`. The
    draws are made one at a time in the backward pass, as in `gumbel_rao`.
    """
    shape = ops.shape(logits)
    key = random.stream_key(seed)
    uniforms = random.stream_uniform(shape, key, 0, logits.dtype)
    sample = _bernoulli(logits + (ops.log(uniforms) - ops.log1p(-uniforms)))
    sign = 2.0 * sample - 1.0

    def perturbations(logits):
        log_sigmoid = ops.log_sigmoid(sign * logits)

        def perturbed(draw):
            uniforms = random.stream_uniform(shape, key, draw, logits.dtype)
            log_p = ops.log(uniforms) + log_sigmoid
            return (logits - sign * (log_p - _numerics.log1mexp(log_p)),)

        return perturbed

    return _numerics.mean_straight_through(
        sample, logits, temperature, draws, perturbations, "sigmoid"
    )


@register_binary("gst")
def gst_binary(
    logits: TensorLike, temperature: TensorLike, *, seed: SeedLike, gap: float = 1.0
) -> TensorLike:
    """GST on `(logits, 0)`: the perturbed logit difference is
    `max(logits, gap)` given `D = 1` and `min(logits, -gap)` given `D = 0`,
    shifted from `logits` by a constant."""
    sample = _bernoulli(logits + _logistic_noise(logits, seed))
    # `where`, not `ops.maximum`, which returns float32 for float64 tensors on
    # the torch backend (Keras 3.15).
    above = ops.where(logits > gap, logits, ops.cast(gap, logits.dtype))
    below = ops.where(logits < -gap, logits, ops.cast(-gap, logits.dtype))
    perturbed = ops.where(sample > 0, above, below)
    shift = ops.stop_gradient(perturbed - logits)
    soft = _numerics.scaled_sigmoid(logits + shift, temperature)
    return _numerics.straight_through(sample, soft)


def _default(function, option):
    # An option class takes its defaults from the estimator function, so that
    # `GumbelRao()` and `estimator="gumbel_rao"` cannot drift apart.
    return inspect.signature(function).parameters[option].default


def _positive_float(value, name):
    # Options are Python floats: they are part of the layer config.
    if _checks.is_tensor_like(value):
        raise TypeError(
            f"Invalid value received for argument `{name}`. Expected a positive "
            f"float. Received: {name}={value!r}"
        )
    return _checks.check_temperature(value, name)


@keras.saving.register_keras_serializable(package="keras_gumbel")
class StraightThrough(ConfiguredEstimator):
    """Decoupled straight-through: `"straight_through"` with a forward temperature.

    Shah et al. (2024) separate the two jobs one temperature does in
    straight-through Gumbel-Softmax: how random the forward sample is, and how
    the backward pass spreads the gradient over the categories. Here the
    forward sample is drawn from `Categorical(softmax(logits /
    forward_temperature))` (Gumbel-Max on the tempered logits) and the gradient
    is that of the relaxed sample `softmax((logits / forward_temperature + g)
    / temperature)` of the same draw: `temperature`, the layer's annealable
    variable, is the backward temperature. A forward temperature above 1
    samples closer to uniform (more exploration, more codes in use), below 1
    closer to the argmax; 1 is `"straight_through"` exactly. The binary form
    tempers the logit in the same way.

    Args:
        forward_temperature: The temperature of the sampled distribution, a
            positive float. Defaults to 1.0 (plain straight-through).

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> estimator = keras_gumbel.estimators.StraightThrough(forward_temperature=2.0)
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1]] * 20_000, "float32"))
    >>> sample = keras_gumbel.ops.gumbel_softmax(
    ...     logits, temperature=0.5, estimator=estimator, seed=0
    ... )
    >>> frequencies = keras.ops.convert_to_numpy(keras.ops.mean(sample, axis=0))
    >>> expected = np.sqrt([0.7, 0.2, 0.1]) / np.sqrt([0.7, 0.2, 0.1]).sum()
    >>> # softmax(log(p) / 2): 20,000 draws, sigma <= 0.0036, 5 sigma < 0.018
    >>> bool(np.all(np.abs(frequencies - expected) < 0.018))
    True

    Reference:
        - [Shah et al., 2024. Improving Discrete Optimisation Via Decoupled
          Straight-Through Gumbel-Softmax](https://arxiv.org/abs/2410.13331)
    """

    name = "straight_through"

    def __init__(
        self,
        forward_temperature: float = _default(straight_through, "forward_temperature"),
    ) -> None:
        self.forward_temperature = _positive_float(
            forward_temperature, "forward_temperature"
        )

    def get_config(self) -> dict:
        return {"forward_temperature": self.forward_temperature}


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GumbelRao(ConfiguredEstimator):
    """The `"gumbel_rao"` estimator with a chosen number of conditional draws.

    Pass it wherever an estimator name is accepted. More draws lower the
    gradient variance (never its mean) at a backward cost linear in `draws`.

    Args:
        draws: Number K of conditional Gumbel draws, an integer >= 1.
            Defaults to 10, as `estimator="gumbel_rao"`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel
    >>> estimator = keras_gumbel.estimators.GumbelRao(draws=32)
    >>> layer = keras_gumbel.GumbelSoftmax(estimator=estimator, seed=0)
    >>> sample = layer(np.zeros((2, 3), "float32"), training=True)
    >>> np.asarray(sample).sum(axis=-1).tolist()
    [1.0, 1.0]

    Reference:
        - [Paulus et al., 2021. Rao-Blackwellizing the Straight-Through
          Gumbel-Softmax Gradient Estimator](https://arxiv.org/abs/2010.04838)
    """

    name = "gumbel_rao"

    def __init__(self, draws: int = _default(gumbel_rao, "draws")) -> None:
        self.draws = _checks.check_positive_int(draws, "draws")

    def get_config(self) -> dict:
        return {"draws": self.draws}


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GST(ConfiguredEstimator):
    """The `"gst"` estimator with a chosen gap.

    Args:
        gap: The logit gap between the sampled category and every other one
            in the perturbed logits, a positive float. Defaults to 1.0 (the
            paper's GST-1.0), as `estimator="gst"`.

    Example:

    >>> import keras_gumbel
    >>> keras_gumbel.estimators.GST(gap=2.0)
    GST(gap=2.0)

    Reference:
        - [Fan et al., 2022. Training Discrete Deep Generative Models via
          Gapped Straight-Through Estimator](https://arxiv.org/abs/2206.07235)
    """

    name = "gst"

    def __init__(self, gap: float = _default(gst, "gap")) -> None:
        self.gap = _positive_float(gap, "gap")

    def get_config(self) -> dict:
        return {"gap": self.gap}
