"""Last-axis primitives in the working dtype, shared by every family.

Inputs here are already validated, cast to the working dtype (float32, or
float64 for float64 inputs) and have the category axis last; `keras_gumbel.ops`
does that for its callers. Scores are logits, possibly perturbed by noise, with
`-inf` marking a category that cannot be chosen. Every function keeps those
categories at exactly 0 with exactly 0 gradient and never produces NaN or inf,
also for a row with no finite score.
"""

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_gumbel import _backend
from keras_gumbel._typing import TensorLike

__all__ = [
    "all_finite",
    "allowed",
    "finite_temperature",
    "nan_where",
    "ordinary_temperature",
    "shift_logits",
    "argmax",
    "masked_scores",
    "max_index",
    "one_hot_max",
    "reinmax_straight_through",
    "relaxed_top_k",
    "log1mexp",
    "mean_straight_through",
    "scaled_sigmoid",
    "row_max",
    "scaled_softmax",
    "straight_through",
    "straight_through_one_hot",
    "sum_to_shape",
    "tiny",
    "top_k_hot",
    "underflow_bound",
    "working_dtype",
]


def working_dtype(dtype: Any) -> str:
    """float64 stays float64; every other float computes in float32."""
    return (
        "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"
    )


def tiny(dtype: Any) -> float:
    """The smallest positive normal number of `dtype`."""
    return float(np.finfo(keras.backend.standardize_dtype(dtype)).tiny)


def underflow_bound(dtype: Any) -> float:
    """A `bound` with `exp(-bound) == 0` exactly in `dtype`.

    It lies below half the smallest subnormal, so clamping scaled scores at
    `-bound` changes no output value while keeping `0 * inf` out of gradients.
    """
    return 750.0 if keras.backend.standardize_dtype(dtype) == "float64" else 110.0


def shift_logits(
    logits: TensorLike, mask: TensorLike | None
) -> tuple[TensorLike, TensorLike]:
    """Masked logits shifted so each row's largest allowed one is 0; NaN rows.

    Sampling and the softmax are invariant to a shift of a row, and after it
    Gumbel noise added to the largest logits keeps all its bits, however large
    the logits were. A row with `+inf` logits is their limit: the `+inf`
    categories share the row and every other one has probability 0. The shift
    is constant for the gradient, so gradients are unchanged. Masked
    categories come out `-inf`. Returns the shifted logits and a boolean
    `[..., 1]` marking the rows with a NaN logit, which the caller makes NaN.
    """
    return _backend.current().shift_rows(masked_scores(logits, None, mask))


def nan_where(invalid: TensorLike, values: TensorLike) -> TensorLike:
    """`values` with NaN wherever the broadcast `invalid` is True."""
    return _backend.current().nan_where(invalid, values)


def all_finite(values: TensorLike) -> bool:
    """Whether every value is known to be finite; only eager PyTorch can tell
    (one read of a boolean), elsewhere False."""
    return _backend.current().all_finite(values)


def ordinary_temperature(temperature: TensorLike, minimum: float | None) -> bool:
    """Whether `temperature` is known to need none of the policy for extreme
    temperatures: every value at least `minimum` and within
    `[tiny, 1 / tiny]`, where the policy changes nothing. Only eager PyTorch
    can tell (one read of a boolean from the tensors); elsewhere the values
    are not known when the function is traced, and this is False.
    """
    return _backend.current().ordinary_temperature(temperature, minimum)


def finite_temperature(temperature: TensorLike) -> TensorLike:
    """A temperature of 0 or `+inf` as the nearest finite positive one.

    The tempered softmax at the smallest positive normal temperature is the
    one-hot of the row maximum, its limit at 0; at `1 / tiny`, the uniform
    distribution over the allowed categories, its limit at `+inf`. Not the
    largest finite number: XLA divides by multiplying with the reciprocal,
    which would be subnormal and flush to 0, and `-inf * 0` is NaN.
    """
    smallest = tiny(temperature.dtype)
    return clamp(temperature, smallest, 1.0 / smallest)


def masked_scores(logits, noise, mask):
    """`logits + noise` (or `logits`), with masked categories set to `-inf`.

    The mask goes through `where`, so masked logits get exactly zero gradient.
    """
    scores = logits + noise if noise is not None else logits
    if mask is not None:
        scores = ops.where(mask, scores, ops.cast(float("-inf"), scores.dtype))
    return scores


def allowed(scores):
    """True where a category can be chosen (a finite score)."""
    return scores > float("-inf")


def row_max(scores):
    """Stop-gradient row maximum (0 for rows with no finite score) and validity."""
    maximum = ops.max(scores, axis=-1, keepdims=True)
    valid = maximum > float("-inf")
    maximum = ops.where(valid, maximum, ops.zeros_like(maximum))
    return ops.stop_gradient(maximum), valid


def _shifted_softmax(scores, temperature):
    """`softmax(scores / temperature)`, and the row maximum it was shifted by.

    The scores are shifted by their row maximum before scaling, so the scaled
    scores lie in `[-inf, 0]` and neither huge scores nor tiny temperatures
    overflow.
    """
    maximum, _ = row_max(scores)
    return _softmax_below(scores, maximum, temperature), maximum


def _softmax_below(scores, maximum, temperature):
    """`softmax(scores / temperature)` of scores at most `maximum` (per row),
    with their maximum or, for a row with no finite score (all zeros out),
    any finite value."""
    # In [-inf, 0]: -inf (or an overflow to it) gives an exact 0 below.
    unnormalised = ops.exp((scores - maximum) / temperature)
    total = ops.sum(unnormalised, axis=-1, keepdims=True)
    # At least 1 where the maximum is a score, 0 in a row without one.
    total = ops.where(total > 0, total, ops.ones_like(total))
    return unnormalised / total


def _shifted_softmax_vjp(probs, scores, maximum, temperature, upstream):
    """Gradients of `_shifted_softmax` for the scores and the temperature.

    The softmax VJP is exactly 0 wherever `probs` is 0 (masked, `-inf` or
    underflowed categories, empty rows). `maximum` is only read for the
    temperature's gradient, and may be None when the temperature needs none.
    """
    backend = _backend.current()
    if not backend.temperature_needs_gradient(temperature):
        return backend.softmax_vjp_scores(probs, upstream, temperature), None
    d_scaled = backend.softmax_vjp(probs, upstream)
    return d_scaled / temperature, _temperature_vjp(
        d_scaled, scores, maximum, temperature
    )


def _temperature_vjp(d_scaled, scores, maximum, temperature):
    """The temperature's gradient, from that of the scaled scores.

    d scaled / d temperature = -scaled / temperature. The scaled scores are
    recomputed (the same operations, so the same values) rather than kept
    from the forward pass, which would hold a second tensor of the input's
    size for a gradient that is rarely asked for. They are clamped at
    -bound, where d_scaled is 0, so that 0 * inf never appears.
    """
    scaled = (scores - maximum) / temperature
    bound = underflow_bound(scaled.dtype)
    d_temperature = -sum_to_shape(d_scaled * ops.maximum(scaled, -bound), temperature)
    return d_temperature / temperature


def sum_to_shape(values, target):
    """`values` summed over the axes along which `target` broadcasts to it.

    The gradient of a broadcast input: a scalar temperature gets the sum over
    everything, one temperature per row the sum over its row (and over any
    leading axes, such as Gumbel-Rao's draws, that it does not have).
    """
    rank = len(target.shape)
    if rank == 0:
        return ops.sum(values)
    lead = len(values.shape) - rank
    axes = tuple(range(lead)) + tuple(
        lead + index for index, size in enumerate(target.shape) if size == 1
    )
    summed = ops.sum(values, axis=axes, keepdims=True) if axes else values
    return ops.reshape(summed, ops.shape(target))


def _upstream(args, upstream):
    # Keras passes the output gradient positionally on some backends and as
    # `upstream` on others.
    if upstream is None:
        (upstream,) = args
    return upstream


def _softmax_and_maximum(scores, temperature):
    """The softmax for a backward pass: the backend's fused one where exact."""
    probs = _backend.current().scaled_softmax(scores, temperature)
    if probs is not None:
        # The fused path runs only when the temperature needs no gradient,
        # which is also when the VJP needs no row maximum.
        return probs, None
    return _shifted_softmax(scores, temperature)


def scaled_softmax(scores, temperature):
    """`softmax(scores / temperature)` that never produces inf or NaN.

    Scores of `-inf` give exactly 0, a row with no finite score gives all
    zeros, and neither huge scores nor tiny temperatures overflow. The gradient
    is written by hand, `probs * (upstream - sum(upstream * probs)) /
    temperature`, so it is exactly 0 wherever the output is 0 and finite with
    respect to the temperature as well; autodiff of the shifted graph would
    take twice the passes and need a clamp in the forward pass. Where a
    backend's fused softmax gives the same values (PyTorch, without a trained
    temperature), that runs instead.
    """

    @ops.custom_gradient
    def relax(scores, temperature):
        probs, maximum = _shifted_softmax(scores, temperature)

        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            return _shifted_softmax_vjp(probs, scores, maximum, temperature, upstream)

        return probs, grad

    temperature = ops.cast(ops.convert_to_tensor(temperature), scores.dtype)
    probs = _backend.current().scaled_softmax(scores, temperature)
    if probs is not None:
        return probs
    return relax(scores, temperature)


def argmax(scores):
    """Index of the row maximum along the last axis, the first one on ties."""
    return _backend.current().argmax(scores)


def max_index(scores):
    """Index of the row maximum, -1 for a row with no finite score."""
    valid = ops.max(scores, axis=-1) > float("-inf")
    return ops.where(valid, argmax(scores), -1)


def one_hot_max(scores):
    """One-hot of the row maximum; all zeros for a row with no finite score."""
    # Index -1 one-hot encodes to all zeros: one `where` on the indices instead
    # of one on the whole one-hot tensor.
    count = ops.shape(scores)[-1]
    return _backend.current().one_hot(max_index(scores), count, scores.dtype)


def straight_through(hard, soft):
    """Forward value `hard`, gradient of `soft`, with `hard` exact in the forward.

    Written `hard + (soft - stop_gradient(soft))`: the bracket is exactly 0 in
    floating point, whereas `hard + soft - stop_gradient(soft)` is not.
    """
    return hard + (soft - ops.stop_gradient(soft))


def straight_through_one_hot(scores, temperature):
    """`one_hot_max(scores)` with the gradient of `scaled_softmax(scores, t)`.

    The values and gradients of `straight_through(one_hot_max(scores),
    scaled_softmax(scores, temperature))`, with the relaxed sample computed in
    the backward pass only: a forward pass without gradients (sampling,
    inference) makes no softmax at all, and one with gradients saves the two
    passes of the `hard + (soft - stop_gradient(soft))` trick.
    """

    @ops.custom_gradient
    def sample(scores, temperature):
        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            probs, maximum = _softmax_and_maximum(scores, temperature)
            return _shifted_softmax_vjp(probs, scores, maximum, temperature, upstream)

        return one_hot_max(scores), grad

    temperature = ops.cast(ops.convert_to_tensor(temperature), scores.dtype)
    return sample(scores, temperature)


def _relaxed(scores, temperature, maximum=None):
    """`softmax(scores / temperature)` for a backward pass: the backend's
    fused softmax where exact, else the shifted one (by `maximum`, the row
    maximum, if known)."""
    probs = _backend.current().scaled_softmax(scores, temperature)
    if probs is not None:
        return probs
    if maximum is None:
        maximum, _ = row_max(scores)
    return _softmax_below(scores, maximum, temperature)


def _softmax_scores_vjp(scores, maximum, temperature, upstream):
    probs = _relaxed(scores, temperature, maximum)
    return _backend.current().softmax_vjp_scores(probs, upstream, temperature)


def _softmax_temperature_vjp(scores, maximum, temperature, upstream):
    probs = _softmax_below(scores, maximum, temperature)
    d_scaled = _backend.current().softmax_vjp(probs, upstream)
    return _temperature_vjp(d_scaled, scores, maximum, temperature)


def _sigmoid_slope(values, temperature, upstream):
    """The scaled values clamped as `scaled_sigmoid` clamps them, and the
    gradient with respect to them (0 where the clamp holds)."""
    bound = underflow_bound(values.dtype)
    scaled = values / temperature
    inside = (scaled <= bound) & (scaled >= -bound)
    clamped = clamp(scaled, -bound, bound)
    sigmoid = ops.sigmoid(clamped)
    d_scaled = ops.where(
        inside, upstream * sigmoid * (1.0 - sigmoid), ops.zeros_like(sigmoid)
    )
    return clamped, d_scaled


def _sigmoid_values_vjp(values, temperature, upstream):
    _, d_scaled = _sigmoid_slope(values, temperature, upstream)
    return d_scaled / temperature


def _sigmoid_temperature_vjp(values, temperature, upstream):
    clamped, d_scaled = _sigmoid_slope(values, temperature, upstream)
    return -sum_to_shape(d_scaled * clamped, temperature) / temperature


_RELAXATIONS = {
    "softmax": (_softmax_scores_vjp, _softmax_temperature_vjp),
    "sigmoid": (_sigmoid_values_vjp, _sigmoid_temperature_vjp),
}


def mean_straight_through(hard, inputs, temperature, draws, perturbations, relaxation):
    """`hard` in the forward pass, with the gradient of a mean over draws.

    The gradient with respect to `inputs` and `temperature` is that of
    `mean_k relax(perturbed(k), temperature)` for k in `1..draws`, where
    `relax` is `scaled_softmax` (`relaxation="softmax"`, category axis last)
    or `scaled_sigmoid` (`"sigmoid"`, elementwise), and each `perturbed(k)` is
    `inputs` plus noise held constant: Gumbel-Rao's average of relaxed
    Jacobians (Paulus et al. 2021), or with one draw a straight-through
    gradient at perturbed logits (GST). `perturbations(inputs)` returns the
    function `perturbed`, made from the values the backward pass receives
    (JAX cannot differentiate through a closure over its inputs); `perturbed(k)`
    returns a tuple: the perturbed scores and their row maximum `[..., 1]`
    (the caller knows it, which saves a reduction per draw) for the softmax,
    the perturbed values alone for the sigmoid.

    The draws are made and used one at a time, in the backward pass, in a
    loop that carries one sum of the input's size: memory does not grow with
    `draws`, and a forward pass without gradients draws nothing but what
    `hard` needed. `perturbed` must give the same values each time it is
    called with the same index (a keyed draw).
    """
    inputs_vjp, temperature_vjp = _RELAXATIONS[relaxation]

    @ops.custom_gradient
    def estimate(inputs, temperature):
        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            perturbed = perturbations(inputs)

            def total(vjp, like):
                if draws == 1:
                    return vjp(*perturbed(1), temperature, upstream)

                def body(index, running):
                    return running + vjp(*perturbed(index + 1), temperature, upstream)

                return ops.fori_loop(0, draws, body, ops.zeros_like(like)) / draws

            d_inputs = total(inputs_vjp, inputs)
            # A separate loop, so that TensorFlow and JAX drop it whole when
            # the temperature's gradient is not used.
            if not _backend.current().temperature_needs_gradient(temperature):
                return d_inputs, None
            return d_inputs, total(temperature_vjp, temperature)

        return hard, grad

    temperature = ops.cast(ops.convert_to_tensor(temperature), inputs.dtype)
    return estimate(inputs, temperature)


def reinmax_straight_through(sample, scores, temperature):
    """`sample` in the forward pass, ReinMax's gradient in the backward pass.

    Liu et al. (2023), Algorithm 2: `2 J(pi_1)^T g - J(pi_0)^T g / 2` with
    `pi_0 = softmax(scores)`, `pi_1 = (sample + softmax(scores /
    temperature)) / 2` and `J(p)^T g = p (g - <p, g>)`, the softmax Jacobian
    at `p` applied to the incoming gradient `g`. Both `pi` are made in the
    backward pass; they are held constant, so the temperature gets no
    gradient. Masked (`-inf`) categories have `pi = 0` and get none either.
    """

    @ops.custom_gradient
    def estimate(scores, temperature):
        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            backend = _backend.current()
            pi_0 = _relaxed(scores, ops.ones_like(temperature))
            pi_1 = 0.5 * (sample + _relaxed(scores, temperature))
            d_scores = 2.0 * backend.softmax_vjp(pi_1, upstream)
            d_scores = d_scores - 0.5 * backend.softmax_vjp(pi_0, upstream)
            return d_scores, ops.zeros_like(temperature)

        return sample, grad

    temperature = ops.cast(ops.convert_to_tensor(temperature), scores.dtype)
    return estimate(scores, temperature)


def top_k_hot(scores: TensorLike, k: int) -> TensorLike:
    """k-hot of the `k` largest finite scores along the last axis.

    Scores of `-inf` are never chosen, so a row with fewer than `k` finite
    scores has only those set; each element is exactly 0.0 or 1.0.
    """
    values, indices = ops.top_k(scores, k)
    chosen = ops.cast(values > float("-inf"), scores.dtype)
    hot = ops.one_hot(indices, ops.shape(scores)[-1], dtype=scores.dtype)
    return ops.sum(hot * ops.expand_dims(chosen, -1), axis=-2)


def _log_sum_exp(scaled):
    """`logsumexp` along the last axis of values in `[-inf, 0]`-ish, any of them
    `-inf`: a row with no finite value gives `-inf` with zero gradient."""
    maximum = ops.stop_gradient(ops.max(scaled, axis=-1, keepdims=True))
    maximum = ops.where(maximum > float("-inf"), maximum, ops.zeros_like(maximum))
    total = ops.sum(ops.exp(scaled - maximum), axis=-1, keepdims=True)
    some = total > 0
    # Keep the unused branch finite: `where` passes 0 * inf = NaN gradients.
    log_total = ops.log(ops.where(some, total, ops.ones_like(total)))
    return ops.where(some, maximum + log_total, float("-inf"))


def _log_one_minus_softmax(probs, scores, temperature):
    """`log(1 - probs)` for `probs = softmax(scores / temperature)`, to full accuracy.

    At most one category of a row has a softmax above 1/2; for every other one
    `log1p(-p)` is accurate. For that one `1 - p` cancels, and it is
    `logsumexp(others) - logsumexp(all)` of the scaled scores instead, in log
    space, where nothing underflows: float32 gives the float64 answer for
    scores hundreds of temperatures apart. Tied categories always take the
    same branch, so ties stay exactly tied through every round (the recursion
    multiplies any asymmetry by about `1 / temperature` per round). A
    category whose every rival is `-inf` gets `-inf`: it leaves later rounds.
    """
    maximum, _ = row_max(scores)
    scaled = (scores - maximum) / temperature
    above_half = probs > 0.5
    log_rest = _log_sum_exp(ops.where(above_half, float("-inf"), scaled))
    log_above_half = log_rest - _log_sum_exp(scaled)
    log_below_half = ops.log1p(-ops.where(above_half, ops.zeros_like(probs), probs))
    return ops.where(above_half, log_above_half, log_below_half)


def relaxed_top_k(scores: TensorLike, k: int, temperature: TensorLike) -> TensorLike:
    """Relaxed k-hot of `scores` along the last axis (Xie & Ermon 2019).

    Round `j` of `k` takes `a_j = softmax(alpha_j / temperature)` and updates
    `alpha_{j+1} = alpha_j + log(1 - a_j)`; the result is `sum_j a_j`, which sums
    to `min(k, number of finite scores)`: rounds beyond the number of allowed
    categories add nothing, and a category that took all of a round (no rival
    left) is `-inf` in later ones, the limit of the update.
    """
    count = ops.sum(ops.cast(allowed(scores), scores.dtype), axis=-1, keepdims=True)
    alpha = scores
    total = ops.zeros_like(scores)
    for round_index in range(k):
        probs = scaled_softmax(alpha, temperature)
        active = ops.cast(count > round_index, scores.dtype)
        total = total + probs * active
        if round_index + 1 < k:
            alpha = alpha + _log_one_minus_softmax(probs, alpha, temperature)
    return total


def clamp(values, low, high):
    """`values` clamped to `[low, high]`, with zero gradient outside.

    `where`, not `ops.clip`, which returns float32 for float64 tensors on the
    torch backend (Keras 3.15).
    """
    high = ops.convert_to_tensor(high, dtype=values.dtype)
    low = ops.convert_to_tensor(low, dtype=values.dtype)
    values = ops.where(values > high, high, values)
    return ops.where(values < low, low, values)


def scaled_sigmoid(values, temperature):
    """`sigmoid(values / temperature)` with finite gradients at any temperature.

    The scaled values are clamped at `±bound`, where the sigmoid is exactly 0
    or 1 in the dtype, so its value is unchanged and an overflow of
    `values / temperature` to `±inf` cannot make `0 * inf` in the gradient.
    """
    bound = underflow_bound(values.dtype)
    return ops.sigmoid(clamp(values / temperature, -bound, bound))


def log1mexp(log_values):
    """`log(1 - exp(a))` for `a <= 0`, accurate near 0 and for very negative `a`."""
    near_zero = log_values > -0.6931471805599453
    # Each branch gets an argument where it is finite, for `where`'s gradient.
    safe_near = ops.where(near_zero, log_values, -ops.ones_like(log_values))
    safe_far = ops.where(near_zero, -ops.ones_like(log_values), log_values)
    return ops.where(
        near_zero, ops.log(-ops.expm1(safe_near)), ops.log1p(-ops.exp(safe_far))
    )
