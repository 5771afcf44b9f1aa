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
from collections.abc import Callable

import keras
from keras import ops

from keras_gumbel import random

__all__ = [
    "Estimator",
    "get",
    "register",
    "gumbel_softmax",
    "straight_through",
]


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A registered estimator: its name, whether it is hard, and its function."""

    name: str
    hard: bool
    function: Callable
    description: str


_REGISTRY: dict[str, Estimator] = {}


def register(name, *, hard):
    """Registers `function` under `name`; its docstring's first line describes it."""

    def decorator(function):
        summary = (function.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = Estimator(name, hard, function, summary)
        return function

    return decorator


def names():
    """The registered estimator names, in registration order."""
    return tuple(_REGISTRY)


def get(estimator, hard=False):
    """Resolves the `estimator` argument of `gumbel_softmax` to an `Estimator`.

    `None` means `"straight_through"` when `hard=True`, else `"gumbel_softmax"`.
    A relaxed estimator cannot give a hard sample, so asking for both is an error;
    a hard estimator is hard whatever `hard` says.
    """
    if estimator is None:
        estimator = "straight_through" if hard else "gumbel_softmax"
    if not isinstance(estimator, str) or estimator not in _REGISTRY:
        raise ValueError(
            "Invalid value received for argument `estimator`. Expected None or one "
            f"of {names()}. Received: estimator={estimator!r}"
        )
    resolved = _REGISTRY[estimator]
    if hard and not resolved.hard:
        raise ValueError(
            f"Invalid value received for argument `estimator`. The estimator "
            f"{estimator!r} gives relaxed samples, so it cannot be combined with "
            f"hard=True; use one of "
            f"{tuple(e.name for e in _REGISTRY.values() if e.hard)}. "
            f"Received: estimator={estimator!r}, hard=True"
        )
    return resolved


# Shared numerics. Everything below works on the last axis.


def _underflow_bound(dtype):
    # exp(-bound) rounds to exactly 0 in `dtype` (below half the smallest
    # subnormal), so clamping scaled scores at -bound changes no output value.
    return 750.0 if keras.backend.standardize_dtype(dtype) == "float64" else 110.0


def masked_scores(logits, noise, mask):
    """`logits + noise`, with masked categories set to `-inf`.

    The mask goes through `where`, so masked logits get exactly zero gradient.
    """
    scores = logits + noise if noise is not None else logits
    if mask is not None:
        scores = ops.where(mask, scores, ops.cast(float("-inf"), scores.dtype))
    return scores


def _row_max(scores):
    """Stop-gradient row maximum (0 for rows with no finite score) and validity."""
    row_max = ops.max(scores, axis=-1, keepdims=True)
    valid = row_max > float("-inf")
    row_max = ops.where(valid, row_max, ops.zeros_like(row_max))
    return ops.stop_gradient(row_max), valid


def tempered_softmax(scores, temperature):
    """`softmax(scores / temperature)` that never produces inf or NaN.

    Scores of `-inf` (masked, or `-inf` logits) give exactly 0, a row with no
    finite score gives all zeros, and neither huge scores nor tiny temperatures
    overflow: scores are shifted by their maximum before scaling, and shifted
    scores below `-bound * temperature` are clamped there, where `exp` already
    underflows to 0, so that no intermediate (or its gradient) is infinite.
    """
    row_max, valid = _row_max(scores)
    bound = _underflow_bound(scores.dtype)
    shifted = ops.maximum(scores - row_max, -bound * temperature)
    unnormalised = ops.exp(shifted / temperature)
    total = ops.sum(unnormalised, axis=-1, keepdims=True)
    total = ops.where(valid, total, ops.ones_like(total))
    return unnormalised / total


def one_hot_argmax(scores):
    """One-hot of the row argmax; all zeros for a row with no finite score."""
    _, valid = _row_max(scores)
    index = ops.argmax(scores, axis=-1)
    hot = ops.one_hot(index, ops.shape(scores)[-1], dtype=scores.dtype)
    return ops.where(valid, hot, ops.zeros_like(hot))


def straight_through_value(hard, soft):
    """Forward value `hard`, gradient of `soft`, with `hard` exact in the forward.

    Written `hard + (soft - stop_gradient(soft))`: the bracket is exactly 0 in
    floating point, whereas `hard + soft - stop_gradient(soft)` is not.
    """
    return hard + (soft - ops.stop_gradient(soft))


def gumbel_noise(logits, seed):
    return random.gumbel(ops.shape(logits), logits.dtype, seed)


# Estimators.


@register("gumbel_softmax", hard=False)
def gumbel_softmax(logits, temperature, *, mask, seed):
    """Relaxed sample `softmax((logits + g) / temperature)` (Jang et al. 2017, eq. 1).

    Forward and backward are those of the Concrete relaxation itself (Maddison et
    al. 2017): the pathwise gradient of a relaxed sample, unbiased for the relaxed
    objective and biased for the discrete one.
    """
    scores = masked_scores(logits, gumbel_noise(logits, seed), mask)
    return tempered_softmax(scores, temperature)


@register("straight_through", hard=True)
def straight_through(logits, temperature, *, mask, seed):
    """Straight-through Gumbel-Softmax (Jang et al. 2017, section 2.2).

    Forward: `one_hot(argmax(logits + g))`, an exact categorical sample
    (Gumbel-Max). Backward: the gradient of the relaxed sample drawn with the same
    noise `g`, as `torch.nn.functional.gumbel_softmax(hard=True)` does.
    """
    scores = masked_scores(logits, gumbel_noise(logits, seed), mask)
    soft = tempered_softmax(scores, temperature)
    return straight_through_value(one_hot_argmax(scores), soft)
