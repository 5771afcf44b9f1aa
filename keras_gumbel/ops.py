"""Backend-agnostic Gumbel-Softmax math on `keras.ops`.

All functions take logits (unnormalised log-probabilities) of a floating-point
dtype and compute in float32 at least (float64 stays float64); results come back
in the dtype of `logits`. Functions that draw noise take `seed` as None (fresh
noise on every call), an int (the same noise on every call) or a
`keras.random.SeedGenerator` (a reproducible sequence).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_gumbel import _checks, _numerics, estimators, random
from keras_gumbel._typing import SeedLike, Shape, TensorLike

__all__ = [
    "sample_gumbel",
    "gumbel_softmax",
    "gumbel_top_k",
    "relaxed_one_hot_log_prob",
    "exp_relaxed_one_hot_log_prob",
    "categorical_kl_uniform",
    "argmax_one_hot",
    "tempered_softmax",
    "top_k_hot",
    "relaxed_top_k",
    "gumbel_sigmoid",
    "tempered_sigmoid",
    "bernoulli_mode",
    "relaxed_bernoulli_log_prob",
    "logit_relaxed_bernoulli_log_prob",
    "bernoulli_kl",
    "hard_concrete",
    "hard_concrete_l0",
]


def _prepare_mask(mask, logits, axis):
    """Broadcasts a category mask to `logits`.

    A mask of the rank of `logits` marks categories. A mask of one rank less is a
    Keras timestep/padding mask (e.g. from `Embedding(mask_zero=True)` upstream of
    a `[batch, time, categories]` tensor): it is expanded along `axis`, so a masked
    row has no allowed category and comes out all zeros.
    """
    if mask is None:
        return None
    mask = _bool_mask(mask)
    rank = len(logits.shape)
    if len(mask.shape) == rank - 1:
        mask = ops.expand_dims(mask, axis)
    elif len(mask.shape) != rank:
        raise ValueError(_mask_shape_message(mask, logits, rank))
    # Checked where both shapes are known; otherwise the backend's broadcast
    # fails when the graph runs.
    if not _broadcasts_to(tuple(mask.shape), tuple(logits.shape)):
        raise ValueError(_mask_shape_message(mask, logits, rank))
    return ops.broadcast_to(mask, ops.shape(logits))


def _bool_mask(mask):
    """`mask` as a boolean tensor; strings are refused by name."""
    if isinstance(mask, (str, bytes)) or (
        isinstance(mask, np.ndarray) and mask.dtype.kind in "SUO"
    ):
        raise TypeError(_checks.invalid("mask", "a boolean tensor", mask))
    mask = ops.convert_to_tensor(mask)
    dtype = keras.backend.standardize_dtype(mask.dtype)
    if dtype == "string":
        raise TypeError(_checks.invalid("mask", "a boolean tensor", mask))
    return mask if dtype == "bool" else ops.cast(mask, "bool")


def _mask_shape_message(mask, logits, rank):
    return (
        "Invalid value received for argument `mask`. Expected a boolean tensor "
        f"that broadcasts to the logits, of rank {rank} (one entry per category) "
        f"or {rank - 1} (one entry per row). Received: "
        f"mask.shape={tuple(mask.shape)} for logits.shape={tuple(logits.shape)}"
    )


def _to_last(tensor, axis, rank):
    return tensor if axis == rank - 1 else ops.moveaxis(tensor, axis, -1)


def _from_last(tensor, axis, rank):
    return tensor if axis == rank - 1 else ops.moveaxis(tensor, -1, axis)


def sample_gumbel(
    shape: Shape, dtype: str = "float32", seed: SeedLike = None
) -> TensorLike:
    """Draws standard Gumbel noise `-log(-log(u))`.

    The uniform draw lies in `[tiny, 1)` of float32 (float64 if asked), so the
    noise is always finite; it is cast to `dtype` at the end.

    Args:
        shape: Shape of the noise tensor.
        dtype: Floating-point dtype of the result.
        seed: None, an int in `[0, 2**31 - 1]`, or a `keras.random.SeedGenerator`.

    Returns:
        A tensor of shape `shape` and dtype `dtype`.

    Example:

    >>> import keras_gumbel as kg
    >>> noise = kg.ops.sample_gumbel((2, 3), seed=0)
    >>> tuple(noise.shape)
    (2, 3)
    """
    return random.gumbel(shape, dtype, seed)


def gumbel_softmax(
    logits: TensorLike,
    temperature: float | TensorLike = 1.0,
    *,
    hard: bool = False,
    estimator: estimators.EstimatorLike = None,
    axis: int = -1,
    mask: TensorLike | None = None,
    seed: SeedLike = None,
) -> TensorLike:
    """Draws a Gumbel-Softmax (Concrete) sample, relaxed or hard.

    The relaxed sample is `softmax((logits + g) / temperature)` with standard
    Gumbel noise `g` (Jang et al. 2017; Maddison et al. 2017). A hard sample is
    `one_hot(argmax(logits + g))`, an exact draw from `Categorical(softmax(logits))`
    (the Gumbel-Max trick); its gradient comes from `estimator`.

    Low temperatures give nearly one-hot relaxed samples (low bias) with
    high-variance gradients; high temperatures give smooth samples, low variance
    and more bias.

    Args:
        logits: Floating-point tensor of unnormalised log-probabilities.
            `-inf` marks an impossible category.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        hard: If True, return exact one-hot samples.
        estimator: Gradient estimator, one of `keras_gumbel.ESTIMATORS`, or a
            configured one such as `keras_gumbel.estimators.GumbelRao(draws=32)`.
            None means `"straight_through"` when `hard=True`, else
            `"gumbel_softmax"`. Hard estimators always return one-hot samples.
            `"reinmax"` needs `temperature >= 1` (checked when the temperature
            is a Python float).
        axis: The category axis.
        mask: Optional boolean tensor, broadcastable to `logits` (or one rank
            less: a row mask). False marks categories that must never be chosen:
            they get exactly 0 output and 0 gradient; a row with no allowed
            category is all zeros.
        seed: None, an int in `[0, 2**31 - 1]`, or a `keras.random.SeedGenerator`.

    Returns:
        A tensor of the shape and dtype of `logits` that sums to 1 along `axis`
        (0 for rows with no allowed category).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> logits = np.log(np.array([[0.1, 0.6, 0.3]], dtype="float32"))
    >>> sample = kg.ops.gumbel_softmax(logits, temperature=0.5, hard=True, seed=1)
    >>> float(keras.ops.sum(sample))
    1.0
    """
    temperature = _checks.check_temperatures(temperature)
    _checks.check_bool(hard, "hard")
    resolved = estimators.get(estimator, hard, temperature)
    seed = _checks.check_seed(seed)

    def sample(work_logits, work_temperature):
        return resolved.function(work_logits, work_temperature, mask=None, seed=seed)

    return _on_category_axis(
        sample, logits, temperature, axis, mask, resolved.min_temperature
    )


def _on_category_axis(
    function, logits, temperature, axis, mask, minimum=None, shift=True
):
    """Runs `function(logits, temperature)` in the working dtype, axis last.

    Validates `logits` and `axis`, casts to float32 (float64 stays), moves the
    category axis last and applies the mask, and undoes all of that on the
    result. The numerical policy (docs/numerics.md) is kept here, once for
    every function: logits are shifted so the row maximum is 0 (`+inf` logits
    win, and masked ones are `-inf`, so `function` needs no mask), a row
    with a NaN logit comes out NaN, a temperature tensor of 0 or `+inf` is its
    limit, and one below `minimum` (0 unless an estimator needs more) or NaN
    makes the whole output NaN. `temperature=None` means none is used.
    """
    logits = _checks.float_tensor(logits, "logits")
    rank = len(logits.shape)
    if rank == 0:
        raise ValueError(
            "Invalid value received for argument `logits`. Expected a tensor of rank "
            "at least 1 (the category axis). Received: logits.shape=()"
        )
    axis = _checks.check_axis(axis, rank)
    if logits.shape[axis] == 0:
        raise ValueError(
            "Invalid value received for argument `logits`. Expected at least one "
            f"category along axis {axis}. Received: logits.shape={tuple(logits.shape)}"
        )
    dtype = logits.dtype
    work_dtype = _numerics.working_dtype(dtype)
    mask = _prepare_mask(mask, logits, axis)
    work_logits = _to_last(ops.cast(logits, work_dtype), axis, rank)
    if mask is not None:
        mask = _to_last(mask, axis, rank)
    # A Python float was checked already, against the estimator's minimum too;
    # so is a tensor whose value eager PyTorch reads as an ordinary one.
    checked = temperature is None or isinstance(temperature, float)
    work_temperature = None
    if not checked:
        work_temperature = _temperature_tensor(temperature, work_dtype)
        checked = _numerics.ordinary_temperature(work_temperature, minimum)
    # +inf logits win even at a temperature of +inf: certainty is kept.
    if not checked:
        decided = ops.any(
            _numerics.masked_scores(work_logits, None, mask) == float("inf"),
            axis=-1,
            keepdims=True,
        )
    if shift:
        work_logits, invalid = _numerics.shift_logits(work_logits, mask)
    else:
        # The modes need only the order of the logits, which a shift could
        # round away ([1e9, 0, 10]).
        work_logits = _numerics.masked_scores(work_logits, None, mask)
        invalid = ops.any(ops.isnan(work_logits), axis=-1, keepdims=True)
    if temperature is not None:
        batch_shape = tuple(logits.shape[:axis]) + tuple(logits.shape[axis + 1 :])
        if work_temperature is None:
            work_temperature = _temperature_tensor(temperature, work_dtype)
        work_temperature = _per_row(
            work_temperature, batch_shape, rank - 1, tuple(logits.shape)
        )
        if not checked:
            valid = work_temperature >= (minimum or 0.0)
            invalid = invalid | ~valid
            # The limit at +inf is the uniform distribution over the allowed
            # categories, whatever their logits: at 1 / tiny it would not be
            # for logits beyond 1e37.
            uniform = (work_temperature == float("inf")) & ~decided
            work_logits = ops.where(
                uniform & _numerics.allowed(work_logits),
                ops.zeros_like(work_logits),
                work_logits,
            )
            work_temperature = _numerics.finite_temperature(
                ops.where(valid, work_temperature, ops.ones_like(work_temperature))
            )
    result = function(work_logits, work_temperature)
    result = _numerics.nan_where(invalid, result)
    return ops.cast(_from_last(result, axis, rank), dtype)


def _temperature_tensor(temperature, dtype):
    # A Python float converts straight to the working dtype: through float32
    # first, a float64 computation would use a rounded temperature.
    if isinstance(temperature, (float, np.ndarray)):
        return ops.convert_to_tensor(temperature, dtype=dtype)
    return ops.cast(temperature, dtype)


def _broadcasts_to(shape, target):
    """Whether `shape` broadcasts to `target` without enlarging it; sizes only
    known at run time (None) are left to the backend's broadcast."""
    return len(shape) <= len(target) and all(
        None in (size, full) or size in (1, full)
        for size, full in zip(reversed(shape), reversed(target), strict=False)
    )


def _per_row(temperature, batch_shape, axis, logits_shape):
    """A batch of temperatures with a size-1 category axis inserted at `axis`.

    A scalar stays a scalar. Otherwise the temperature must broadcast to
    `batch_shape`, the logits' shape without the category axis, as a batch of
    temperatures does in TFP's distributions: then every row is tempered by its
    own. It may not enlarge the batch, which would silently change the shape
    of the result. Sizes that are only known at run time are left to the
    backend's broadcast.
    """
    shape = tuple(temperature.shape)
    if not shape:
        return temperature
    if not _broadcasts_to(shape, batch_shape):
        raise ValueError(
            "Invalid value received for argument `temperature`. Expected a scalar "
            "or a tensor that broadcasts to the batch shape of the logits (their "
            f"shape without the category axis), {batch_shape}. Received: "
            f"temperature.shape={shape} for logits.shape={logits_shape}"
        )
    temperature = _with_rank(temperature, len(batch_shape))
    return temperature if axis is None else ops.expand_dims(temperature, axis)


def argmax_one_hot(
    logits: TensorLike, *, axis: int = -1, mask: TensorLike | None = None
) -> TensorLike:
    """One-hot of the most likely allowed category: the deterministic mode.

    Args:
        logits: Floating-point tensor of logits.
        axis: The category axis.
        mask: Optional boolean tensor (see `gumbel_softmax`).

    Returns:
        Exact one-hot rows (all zeros where no category is allowed), in the dtype
        of `logits`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> np.asarray(kg.ops.argmax_one_hot([[0.1, 2.0, -1.0]])).tolist()
    [[0.0, 1.0, 0.0]]
    """

    def mode(work_logits, _):
        return _numerics.one_hot_max(work_logits)

    return _on_category_axis(mode, logits, None, axis, mask, shift=False)


def tempered_softmax(
    logits: TensorLike,
    temperature: float | TensorLike = 1.0,
    *,
    axis: int = -1,
    mask: TensorLike | None = None,
) -> TensorLike:
    """`softmax(logits / temperature)` with masks, never NaN or inf.

    The noise-free counterpart of `gumbel_softmax`: masked categories are exactly
    0, a row with no allowed category is all zeros, and huge logits or tiny
    temperatures do not overflow.

    Args:
        logits: Floating-point tensor of logits.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        axis: The category axis.
        mask: Optional boolean tensor (see `gumbel_softmax`).

    Returns:
        A tensor of the shape and dtype of `logits`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> y = kg.ops.tempered_softmax([[0.0, 0.0]], temperature=0.5)
    >>> np.asarray(y).tolist()
    [[0.5, 0.5]]
    """
    temperature = _checks.check_temperatures(temperature)

    def relax(work_logits, work_temperature):
        return _numerics.scaled_softmax(work_logits, work_temperature)

    return _on_category_axis(relax, logits, temperature, axis, mask)


def _log_prob_inputs(values, logits, temperature, axis, name):
    values = _checks.float_tensor(values, name)
    logits = _checks.float_tensor(logits, "logits")
    temperature = _checks.check_temperatures(temperature)
    rank = max(len(values.shape), len(logits.shape))
    if rank == 0:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a tensor of "
            f"rank at least 1 (the category axis). Received: {name}.shape=()"
        )
    axis = _checks.check_axis(axis, rank)
    # Not `keras.backend.result_type`, which gives float32 for float64 on JAX
    # and PyTorch: float64 in either argument computes in float64.
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in (values, logits)}
    work_dtype = "float64" if "float64" in dtypes else "float32"
    # Broadcasting aligns trailing axes, so pad the lower-rank argument with
    # leading axes: `axis` then indexes the same category axis in both.
    values = _with_rank(ops.cast(values, work_dtype), rank)
    logits = _with_rank(ops.cast(logits, work_dtype), rank)
    n = logits.shape[axis] if logits.shape[axis] is not None else values.shape[axis]
    if n == 0:
        raise ValueError(
            "Invalid value received for argument `logits`. Expected at least one "
            f"category along axis {axis}. Received: logits.shape={tuple(logits.shape)}"
        )
    shape = _broadcast_shape(values.shape, logits.shape)
    temperature = _per_row(
        _temperature_tensor(temperature, work_dtype),
        shape[:axis] + shape[axis + 1 :],
        axis,
        tuple(logits.shape),
    )
    return values, logits, temperature, axis, n


def _smallest_normal_of(sample):
    # The sample's own dtype: a float32 coordinate below float32's smallest
    # normal number is an underflow there, also when the density is computed
    # in float64 (where the cast may have flushed it to 0 already).
    return _numerics.tiny(_checks.float_tensor(sample, "sample").dtype)


def _broadcast_shape(first, second):
    # Unknown sizes stay unknown unless the other one is known and not 1.
    shape = []
    for a, b in zip(first, second, strict=True):
        if a == 1 or a is None:
            shape.append(b if b != 1 else a)
        else:
            shape.append(a)
    return tuple(shape)


def _with_rank(tensor, rank):
    for _ in range(rank - len(tensor.shape)):
        tensor = ops.expand_dims(tensor, 0)
    return tensor


def _exp_concrete_log_density(log_sample, logits, temperature, axis, n):
    # Maddison et al. (2017), appendix C: density of the ExpConcrete variable
    # x = log y. `sum(scaled) - n * logsumexp(scaled)` is summed as a log-softmax:
    # subtracting the log-sum-exp per category before summing avoids the
    # cancellation of two sums of size n * |scaled|, which grows with n.
    # A temperature tensor that is not positive and finite has no density:
    # NaN, computed from a stand-in so that nothing else turns into NaN.
    valid = ops.isfinite(temperature) & (temperature > 0)
    temperature = ops.where(valid, temperature, ops.ones_like(temperature))
    scaled = logits - temperature * log_sample
    density = (
        math.lgamma(n)
        + (n - 1) * ops.log(temperature)
        + ops.sum(ops.log_softmax(scaled, axis=axis), axis=axis, keepdims=True)
    )
    density = ops.where(valid, density, ops.cast(float("nan"), density.dtype))
    return ops.squeeze(density, axis)


def relaxed_one_hot_log_prob(
    sample: TensorLike,
    logits: TensorLike,
    temperature: float | TensorLike,
    axis: int = -1,
    *,
    validate_args: bool = False,
) -> TensorLike:
    """Log-density of a relaxed one-hot (Concrete) sample.

    Maddison et al. (2017), eq. 11, in log space:
    `log p(y) = log((n-1)!) + (n-1) log tau + sum_k(logits_k - (tau+1) log y_k)
    - n logsumexp_k(logits_k - tau log y_k)`. Agrees with
    `tfp.distributions.RelaxedOneHotCategorical(temperature, logits).log_prob`.

    At low temperature, coordinates of a float sample underflow to exactly 0 and
    the density is then undefined (TFP returns NaN). Here such coordinates are
    read as the smallest positive normal number of the dtype, which keeps the
    result finite; for exact values at low temperature, keep samples in log space
    and use `exp_relaxed_one_hot_log_prob`.

    Args:
        sample: Points on the simplex, `[..., n]` along `axis`.
        logits: Logits of the distribution, broadcastable to `sample`.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        axis: The category axis.
        validate_args: If True, check that every point lies on the simplex
            (coordinates in `[0, 1]` summing to 1 within `10 * eps * n`, as
            TFP's `validate_args=True` does): a `ValueError` naming `sample`
            where the values are known in Python, NaN for the failing rows
            inside a compiled function, where nothing can raise.

    Returns:
        The log-density, with `axis` reduced, in the working dtype (float32, or
        float64 for float64 inputs). A point with a coordinate outside
        `[0, 1]` has density 0: `-inf`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> y = np.array([0.2, 0.3, 0.5], dtype="float32")
    >>> logp = kg.ops.relaxed_one_hot_log_prob(y, np.zeros(3, "float32"), 1.0)
    >>> bool(np.isfinite(logp))
    True
    """
    _checks.check_bool(validate_args, "validate_args")
    smallest = _smallest_normal_of(sample)
    sample, logits, temperature, axis, n = _log_prob_inputs(
        sample, logits, temperature, axis, "sample"
    )
    log_sample = ops.log(_numerics.clamp(sample, smallest, float("inf")))
    # Change of variables y = exp(x): the Jacobian contributes -sum_k log y_k.
    density = _exp_concrete_log_density(
        log_sample, logits, temperature, axis, n
    ) - ops.sum(log_sample, axis=axis)
    # The reading of underflowed coordinates above must not hide a NaN.
    density = _numerics.nan_where(ops.any(ops.isnan(sample), axis=axis), density)
    outside = ops.any((sample < 0) | (sample > 1), axis=axis)
    total = ops.sum(sample, axis=axis) - 1.0
    return _on_support(density, outside, total, n, validate_args, "sample")


def exp_relaxed_one_hot_log_prob(
    log_sample: TensorLike,
    logits: TensorLike,
    temperature: float | TensorLike,
    axis: int = -1,
    *,
    validate_args: bool = False,
) -> TensorLike:
    """Log-density of a log-space relaxed one-hot (ExpConcrete) sample.

    For `x = log y` with `y` a Concrete sample (Maddison et al. 2017, appendix C):
    `log p(x) = log((n-1)!) + (n-1) log tau + sum_k(logits_k - tau x_k)
    - n logsumexp_k(logits_k - tau x_k)`. Agrees with
    `tfp.distributions.ExpRelaxedOneHotCategorical(temperature, logits).log_prob`
    and stays finite at temperatures where the relaxed sample itself underflows.

    Args:
        log_sample: Log-space samples (`logsumexp` along `axis` is 0).
        logits: Logits of the distribution, broadcastable to `log_sample`.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        axis: The category axis.
        validate_args: If True, check that every point is a log-space point
            of the simplex (non-positive, `logsumexp` 0 within
            `10 * eps * n`): a `ValueError` naming `log_sample` where the
            values are known in Python, NaN for the failing rows inside a
            compiled function.

    Returns:
        The log-density, with `axis` reduced. A point with a positive
        coordinate has density 0: `-inf`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> x = np.log(np.array([0.2, 0.3, 0.5], dtype="float32"))
    >>> logp = kg.ops.exp_relaxed_one_hot_log_prob(x, np.zeros(3, "float32"), 1.0)
    >>> bool(np.isfinite(logp))
    True
    """
    _checks.check_bool(validate_args, "validate_args")
    log_sample, logits, temperature, axis, n = _log_prob_inputs(
        log_sample, logits, temperature, axis, "log_sample"
    )
    density = _exp_concrete_log_density(log_sample, logits, temperature, axis, n)
    outside = ops.any(log_sample > 0, axis=axis)
    total = ops.logsumexp(log_sample, axis=axis)
    return _on_support(density, outside, total, n, validate_args, "log_sample")


def _on_support(density, outside, error, n, validate_args, name):
    """The support policy of the log-densities (docs/numerics.md).

    `outside` marks points with a coordinate off the support, whose density is
    0; `error` is how far each point is from the constraint its coordinates
    must meet (a sum of 1, a log-sum-exp of 0), checked only if asked.
    """
    # A temperature without a density (NaN) stays NaN, also off the support.
    off = outside & ~ops.isnan(density)
    density = ops.where(off, ops.cast(float("-inf"), density.dtype), density)
    if not validate_args:
        return density
    tolerance = (
        10.0 * float(np.finfo(keras.backend.standardize_dtype(density.dtype)).eps) * n
    )
    failed = outside | ~(ops.abs(error) <= tolerance)
    known = _checks.concrete(failed)
    if known is None:
        return _numerics.nan_where(failed, density)
    if np.any(known):
        index = tuple(int(i) for i in np.argwhere(known)[0])
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected points of "
            "the support (coordinates in [0, 1] summing to 1 for `sample`, "
            "non-positive with a log-sum-exp of 0 for `log_sample`, within "
            f"{tolerance:.3g}). Received: {int(np.sum(known))} point(s) off it, "
            f"the first at batch index {index}"
        )
    return density


def categorical_kl_uniform(logits: TensorLike, axis: int = -1) -> TensorLike:
    """KL divergence from `Categorical(softmax(logits))` to the uniform distribution.

    `KL = sum_k p_k log p_k + log n`, the analytic KL term of a categorical VAE
    with a uniform prior (Jang et al. 2017). Categories with `-inf` logits have
    `p_k = 0` and contribute 0 (and 0 gradient), never NaN; a row with only
    `-inf` logits has KL 0.

    Args:
        logits: Floating-point tensor of logits.
        axis: The category axis.

    Returns:
        Non-negative KL per row, with `axis` reduced, in the working dtype.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> float(kg.ops.categorical_kl_uniform(np.zeros(4, "float32")))
    0.0
    """
    logits = _checks.float_tensor(logits, "logits")
    rank = len(logits.shape)
    axis = _checks.check_axis(axis, rank)
    logits = _to_last(
        ops.cast(logits, _numerics.working_dtype(logits.dtype)), axis, rank
    )
    n = logits.shape[-1]
    # +inf logits share the row (the limit), and a row whose logits are all
    # -inf has no distribution: it is read as uniform (KL 0) rather than
    # letting log_softmax turn it into NaN.
    logits, nan_rows = _numerics.shift_logits(logits, None)
    row_has_category = ops.max(logits, axis=-1, keepdims=True) > float("-inf")
    logits = ops.where(row_has_category, logits, ops.zeros_like(logits))
    log_probs = ops.log_softmax(logits, axis=-1)
    probs = ops.exp(log_probs)
    # Where p = 0 the term p log p is 0; guard log p so the gradient is not 0 * inf.
    safe_log_probs = ops.where(probs > 0, log_probs, ops.zeros_like(log_probs))
    kl = ops.sum(probs * safe_log_probs, axis=-1) + math.log(n)
    # Rounding can leave a tiny negative KL. `where`, not `ops.maximum`, which
    # returns float32 for float64 tensors on the torch backend (Keras 3.15);
    # the `where` costs the same, so it can stay after a fix.
    kl = ops.where(kl > 0, kl, ops.zeros_like(kl))
    return _numerics.nan_where(nan_rows[..., 0], kl)


def gumbel_top_k(
    logits: TensorLike,
    k: int,
    temperature: float | TensorLike = 1.0,
    *,
    hard: bool = False,
    axis: int = -1,
    mask: TensorLike | None = None,
    seed: SeedLike = None,
) -> TensorLike:
    """Draws a k-subset without replacement with Gumbel-top-k, relaxed or hard.

    With standard Gumbel noise `g`, the `k` largest of `logits + g` are an exact
    sample of `k` categories drawn one after another without replacement, each
    with probability proportional to `exp(logits)` among those left (the
    Gumbel-top-k trick; Kool et al. 2019, Vieira 2014). `hard=True` returns that
    sample as a k-hot vector (every element exactly 0.0 or 1.0) with the
    straight-through gradient of the relaxed sample drawn with the same noise.

    The relaxed sample is the relaxed top-k of Xie & Ermon (2019) on the
    perturbed logits `alpha_1 = logits + g`: `k` successive softmaxes
    `a_j = softmax(alpha_j / temperature)` with
    `alpha_{j+1} = alpha_j + log(1 - a_j)`, summed. It sums to `k` along `axis`
    and tends to the hard sample as the temperature goes to 0. At moderate
    temperatures a single element can exceed 1 (for two categories and
    `k = 2`, every temperature above 0.5 does so), because the update only
    shrinks a chosen category's weight by `1 - a_j`; use low temperatures (or
    `hard=True`) when the output must stay in `[0, 1]`.

    `log(1 - a_j)` is computed in log space where `a_j` is close to 1, so
    float32 gives the float64 recursion to round-off even for logits hundreds
    of temperatures apart, and tied logits stay exactly tied; outputs are
    finite at any temperature. The gradient with respect to logits that are
    (nearly) tied for the lead grows like `(1 / temperature) ** (k - 1)`,
    because each round multiplies their difference by about
    `1 / temperature` (about `2.5e39` for `k = 10` at `1e-4`). It is exact
    while it fits the dtype and overflows to inf or NaN beyond, never to a
    finite wrong value; keep `temperature ** (k - 1)` well above `1e-30` in
    float32, or compute in float64. Noise and softmaxes are computed in
    float32 (float64 for float64 logits).

    Args:
        logits: Floating-point tensor of unnormalised log-probabilities.
        k: Number of categories to choose, an integer in `[1, n]` where `n` is
            the size of `axis`.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        hard: If True, return exact k-hot samples with the straight-through
            gradient.
        axis: The category axis.
        mask: Optional boolean tensor, broadcastable to `logits` (or one rank
            less: a row mask). False marks categories that are never chosen:
            they get exactly 0 output and 0 gradient. A row with fewer than `k`
            allowed categories chooses all of them (its relaxed sample sums to
            their number); a row with none is all zeros.
        seed: None, an int in `[0, 2**31 - 1]`, or a `keras.random.SeedGenerator`.

    Returns:
        A tensor of the shape and dtype of `logits` that sums to
        `min(k, allowed categories)` along `axis`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> logits = np.log(np.array([[0.1, 0.4, 0.2, 0.3]], dtype="float32"))
    >>> subset = kg.ops.gumbel_top_k(logits, k=2, hard=True, seed=1)
    >>> float(keras.ops.sum(subset)), sorted(set(np.asarray(subset).ravel().tolist()))
    (2.0, [0.0, 1.0])
    >>> relaxed = kg.ops.gumbel_top_k(logits, k=2, temperature=0.5, seed=1)
    >>> round(float(keras.ops.sum(relaxed)), 4)
    2.0

    References are listed under `keras_gumbel.GumbelTopK`, the layer form.
    """
    k = _checks.check_positive_int(k, "k")
    temperature = _checks.check_temperatures(temperature)
    _checks.check_bool(hard, "hard")
    seed = _checks.check_seed(seed)

    def sample(work_logits, work_temperature):
        _check_k(k, work_logits)
        noise = random.gumbel(ops.shape(work_logits), work_logits.dtype, seed)
        scores = work_logits + noise
        soft = _numerics.relaxed_top_k(scores, k, work_temperature)
        if not hard:
            return soft
        return _numerics.straight_through(_numerics.top_k_hot(scores, k), soft)

    return _on_category_axis(sample, logits, temperature, axis, mask)


def _check_k(k, work_logits):
    # `work_logits` has the category axis last; its size may be unknown while
    # tracing, and is then checked where it becomes known.
    return _checks.check_positive_int(k, "k", 1, work_logits.shape[-1])


def top_k_hot(
    logits: TensorLike, k: int, *, axis: int = -1, mask: TensorLike | None = None
) -> TensorLike:
    """k-hot of the `k` most likely allowed categories: the deterministic mode.

    The counterpart of `argmax_one_hot` for `gumbel_top_k`, and what
    `keras_gumbel.GumbelTopK` returns in inference with `inference="argmax"`.

    Args:
        logits: Floating-point tensor of logits.
        k: Number of categories to choose, an integer in `[1, n]` where `n` is
            the size of `axis`.
        axis: The category axis.
        mask: Optional boolean tensor (see `gumbel_top_k`). A row with fewer
            than `k` allowed categories chooses all of them.

    Returns:
        k-hot rows, every element exactly 0.0 or 1.0, in the dtype of `logits`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> np.asarray(kg.ops.top_k_hot([[0.5, -1.0, 2.0, 0.0]], k=2)).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """
    k = _checks.check_positive_int(k, "k")

    def mode(work_logits, _):
        _check_k(k, work_logits)
        scores = work_logits
        return _numerics.top_k_hot(scores, k)

    return _on_category_axis(mode, logits, None, axis, mask, shift=False)


def relaxed_top_k(
    logits: TensorLike,
    k: int,
    temperature: float | TensorLike = 1.0,
    *,
    axis: int = -1,
    mask: TensorLike | None = None,
) -> TensorLike:
    """The relaxed top-k of Xie & Ermon (2019) of `logits`, without noise.

    The noise-free counterpart of `gumbel_top_k`, as `tempered_softmax` is of
    `gumbel_softmax`, and what `keras_gumbel.GumbelTopK` returns in inference
    with `inference="softmax"`: `k` successive softmaxes at `temperature`, each
    shrinking the weight of what the previous ones took, summed.

    Args:
        logits: Floating-point tensor of logits.
        k: Number of categories to choose, an integer in `[1, n]` where `n` is
            the size of `axis`.
        temperature: Positive float, or a tensor of them: a scalar, or one
            temperature per row (broadcastable to the logits' shape without
            `axis`).
        axis: The category axis.
        mask: Optional boolean tensor (see `gumbel_top_k`).

    Returns:
        A tensor of the shape and dtype of `logits` that sums to
        `min(k, allowed categories)` along `axis`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> y = kg.ops.relaxed_top_k([[0.0, 0.0, 0.0, 0.0]], k=2)
    >>> np.asarray(y).round(4).tolist()
    [[0.5, 0.5, 0.5, 0.5]]
    """
    k = _checks.check_positive_int(k, "k")
    temperature = _checks.check_temperatures(temperature)

    def relax(work_logits, work_temperature):
        _check_k(k, work_logits)
        scores = work_logits
        return _numerics.relaxed_top_k(scores, k, work_temperature)

    return _on_category_axis(relax, logits, temperature, axis, mask)


# The binary family: elementwise logits, no category axis.


def _elementwise(function, logits, temperature, mask=None, minimum=None, name="logits"):
    """Runs `function(logits, temperature)` elementwise in the working dtype.

    The binary counterpart of `_on_category_axis`, keeping the same policy
    (docs/numerics.md): `+inf` and `-inf` logits are their limits (read as the
    largest finite numbers, where every sigmoid is exactly 0 or 1), a NaN logit
    gives NaN there, a masked element is exactly 0 with exactly 0 gradient,
    and a temperature tensor of 0 or `+inf` is its limit, one below `minimum`
    or NaN makes the elements it tempers NaN.
    """
    logits = _checks.float_tensor(logits, name)
    dtype = logits.dtype
    work_dtype = _numerics.working_dtype(dtype)
    work_logits = ops.cast(logits, work_dtype)
    # None: no element is invalid (eager PyTorch read that every logit is finite).
    invalid = None
    if not _numerics.all_finite(work_logits):
        invalid = ops.isnan(work_logits)
        largest = float(np.finfo(work_dtype).max)
        work_logits = _numerics.clamp(
            ops.where(invalid, ops.zeros_like(work_logits), work_logits),
            -largest,
            largest,
        )
    if mask is not None:
        mask = _prepare_binary_mask(mask, logits)
        # Masked logits may be anything, NaN included: they are read as 0.
        work_logits = ops.where(mask, work_logits, ops.zeros_like(work_logits))
        if invalid is not None:
            invalid = invalid & mask
    work_temperature = None
    if temperature is not None:
        work_temperature = _temperature_tensor(temperature, work_dtype)
        # A Python float was checked already; so is a tensor whose value eager
        # PyTorch reads as an ordinary one.
        checked = isinstance(temperature, float) or _numerics.ordinary_temperature(
            work_temperature, minimum
        )
        work_temperature = _per_row(
            work_temperature, tuple(logits.shape), None, tuple(logits.shape)
        )
        if not checked:
            valid = work_temperature >= (minimum or 0.0)
            invalid = ~valid if invalid is None else invalid | ~valid
            work_temperature = _numerics.finite_temperature(
                ops.where(valid, work_temperature, ops.ones_like(work_temperature))
            )
    result = function(work_logits, work_temperature)
    if mask is not None:
        result = ops.where(mask, result, ops.zeros_like(result))
    if invalid is not None:
        result = _numerics.nan_where(invalid, result)
    return ops.cast(result, dtype)


def _prepare_binary_mask(mask, logits):
    mask = _bool_mask(mask)
    shape, target = tuple(mask.shape), tuple(logits.shape)
    if not _broadcasts_to(shape, target):
        raise ValueError(
            "Invalid value received for argument `mask`. Expected a boolean "
            "tensor that broadcasts to the logits. Received: "
            f"mask.shape={shape} for logits.shape={target}"
        )
    return ops.broadcast_to(mask, ops.shape(logits))


def gumbel_sigmoid(
    logits: TensorLike,
    temperature: float | TensorLike = 1.0,
    *,
    hard: bool = False,
    estimator: estimators.EstimatorLike = None,
    mask: TensorLike | None = None,
    seed: SeedLike = None,
) -> TensorLike:
    """Draws a binary Concrete (relaxed Bernoulli) sample, relaxed or hard.

    The relaxed sample is `sigmoid((logits + L) / temperature)` with standard
    logistic noise `L = log(u) - log(1 - u)` (Maddison et al. 2017, section
    3.3); a hard sample is `logits + L > 0`, an exact draw from
    `Bernoulli(sigmoid(logits))`, with the gradient of `estimator`. Each
    estimator is the binary form of its categorical one: `gumbel_softmax` on
    the two categories `(logits, 0)` gives the same samples in distribution
    and the same expected gradients, at about half the cost.

    Args:
        logits: Floating-point tensor of log-odds, any shape; every element is
            an independent binary choice. `+inf` is always 1, `-inf` always 0.
        temperature: Positive float, or a tensor of them broadcastable to
            `logits` (one per element, row, ...).
        hard: If True, return exact samples in {0, 1}.
        estimator: Gradient estimator, one of `keras_gumbel.ESTIMATORS` or a
            configured one (see `gumbel_softmax`). None means
            `"straight_through"` when `hard=True`, else `"gumbel_softmax"`.
        mask: Optional boolean tensor broadcastable to `logits`. False marks
            choices that are never made: exactly 0 with exactly 0 gradient.
        seed: None, an int in `[0, 2**31 - 1]`, or a `keras.random.SeedGenerator`.

    Returns:
        A tensor of the shape and dtype of `logits`, in `[0, 1]`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> logits = np.array([-2.0, 2.0] * 5000, "float32")
    >>> sample = np.asarray(kg.ops.gumbel_sigmoid(logits, hard=True, seed=0))
    >>> sorted(set(sample.tolist()))
    [0.0, 1.0]
    >>> bool(abs(sample[1::2].mean() - 1 / (1 + np.exp(-2.0))) < 0.02)
    True
    """
    temperature = _checks.check_temperatures(temperature)
    _checks.check_bool(hard, "hard")
    resolved = estimators.get(estimator, hard, temperature)
    seed = _checks.check_seed(seed)

    def sample(work_logits, work_temperature):
        return resolved.binary(work_logits, work_temperature, seed=seed)

    return _elementwise(sample, logits, temperature, mask, resolved.min_temperature)


def tempered_sigmoid(
    logits: TensorLike,
    temperature: float | TensorLike = 1.0,
    *,
    mask: TensorLike | None = None,
) -> TensorLike:
    """`sigmoid(logits / temperature)`: the noise-free `gumbel_sigmoid`.

    What `keras_gumbel.GumbelSigmoid` returns in inference with
    `inference="sigmoid"`; masked elements are exactly 0, and a temperature
    tensor follows the same policy as in `gumbel_sigmoid`.

    Args:
        logits: Floating-point tensor of log-odds.
        temperature: Positive float, or a tensor of them broadcastable to
            `logits`.
        mask: Optional boolean tensor broadcastable to `logits`.

    Returns:
        A tensor of the shape and dtype of `logits`, in `[0, 1]`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> np.asarray(kg.ops.tempered_sigmoid([0.0, 100.0], 0.5)).tolist()
    [0.5, 1.0]
    """
    temperature = _checks.check_temperatures(temperature)
    return _elementwise(_numerics.scaled_sigmoid, logits, temperature, mask)


def bernoulli_mode(logits: TensorLike, *, mask: TensorLike | None = None) -> TensorLike:
    """1 where `logits > 0`, else 0: the most likely value of each binary choice.

    The binary counterpart of `argmax_one_hot`, and what
    `keras_gumbel.GumbelSigmoid` returns in inference with `inference="argmax"`.
    A log-odds of exactly 0 gives 0, masked elements 0, NaN gives NaN.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> np.asarray(kg.ops.bernoulli_mode([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 1.0]
    """

    def mode(work_logits, _):
        return ops.cast(work_logits > 0, work_logits.dtype)

    return _elementwise(mode, logits, None, mask)


def _binary_log_prob_inputs(values, logits, temperature, name):
    values = _checks.float_tensor(values, name)
    logits = _checks.float_tensor(logits, "logits")
    temperature = _checks.check_temperatures(temperature)
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in (values, logits)}
    work_dtype = "float64" if "float64" in dtypes else "float32"
    rank = max(len(values.shape), len(logits.shape))
    values = _with_rank(ops.cast(values, work_dtype), rank)
    logits = _with_rank(ops.cast(logits, work_dtype), rank)
    shape = _broadcast_shape(values.shape, logits.shape)
    temperature = _per_row(
        _temperature_tensor(temperature, work_dtype), shape, None, tuple(logits.shape)
    )
    valid = ops.isfinite(temperature) & (temperature > 0)
    temperature = ops.where(valid, temperature, ops.ones_like(temperature))
    return values, logits, temperature, valid


def _logistic_log_density(logit_sample, logits, temperature, valid):
    # Maddison et al. (2017), section 3.3: the logit of a binary Concrete
    # sample is Logistic(logits / t, 1 / t), whose log-density is
    # log t - softplus(z) - softplus(-z) with z = t x - logits. The symmetric
    # form never subtracts two large numbers.
    z = temperature * logit_sample - logits
    density = ops.log(temperature) - ops.softplus(z) - ops.softplus(-z)
    return ops.where(valid, density, ops.cast(float("nan"), density.dtype))


def logit_relaxed_bernoulli_log_prob(
    logit_sample: TensorLike,
    logits: TensorLike,
    temperature: float | TensorLike,
) -> TensorLike:
    """Log-density of the logit `x = log(y) - log(1 - y)` of a binary Concrete sample.

    `x` is `Logistic(logits / temperature, 1 / temperature)` (Maddison et al.
    2017, section 3.3): `log p(x) = log t - softplus(t x - logits) -
    softplus(logits - t x)`. It stays exact at temperatures where the sample
    `y` itself is 0 or 1 in floating point, as the categorical
    `exp_relaxed_one_hot_log_prob` does.

    Args:
        logit_sample: Logits of samples, any real number.
        logits: Log-odds of the distribution, broadcastable to `logit_sample`.
        temperature: Positive float, or a tensor of them broadcastable to
            both. A tensor that is not positive and finite gives NaN.

    Returns:
        The elementwise log-density, in the working dtype.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> float(kg.ops.logit_relaxed_bernoulli_log_prob(0.0, 0.0, 1.0))  # log(1/4)
    -1.3862943649291992
    """
    logit_sample, logits, temperature, valid = _binary_log_prob_inputs(
        logit_sample, logits, temperature, "logit_sample"
    )
    return _logistic_log_density(logit_sample, logits, temperature, valid)


def relaxed_bernoulli_log_prob(
    sample: TensorLike,
    logits: TensorLike,
    temperature: float | TensorLike,
    *,
    validate_args: bool = False,
) -> TensorLike:
    """Log-density of a binary Concrete (relaxed Bernoulli) sample `y` in (0, 1).

    The density of the logit `x` of `y` (`logit_relaxed_bernoulli_log_prob`)
    with the change of variables `-log(y) - log(1 - y)`. Agrees with
    `tfp.distributions.RelaxedBernoulli(temperature, logits=logits).log_prob`.
    At low temperature a float sample is often exactly 0 or 1, where the
    density is undefined (TFP gives NaN or inf); here `y` and `1 - y` are read
    as at least the smallest positive normal number, which keeps the result
    finite. For exact values at low temperature, work with logits.

    Args:
        sample: Samples in `[0, 1]`.
        logits: Log-odds of the distribution, broadcastable to `sample`.
        temperature: Positive float, or a tensor of them broadcastable to both.
        validate_args: If True, a sample outside `[0, 1]` raises a
            `ValueError` naming `sample` where the values are known in Python,
            and is NaN inside a compiled function.

    Returns:
        The elementwise log-density, in the working dtype; `-inf` for a
        sample outside `[0, 1]` (density 0).

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> float(kg.ops.relaxed_bernoulli_log_prob(0.5, 0.0, 1.0))  # density 1
    0.0
    """
    _checks.check_bool(validate_args, "validate_args")
    smallest = _smallest_normal_of(sample)
    sample, logits, temperature, valid = _binary_log_prob_inputs(
        sample, logits, temperature, "sample"
    )
    log_sample = ops.log(_numerics.clamp(sample, smallest, float("inf")))
    # 1 - y is exact for y >= 1/2; below, log1p keeps the bits of a small y.
    complement = 1.0 - sample
    log_complement = ops.where(
        sample < 0.5,
        ops.log1p(-ops.where(sample < 0.5, sample, ops.zeros_like(sample))),
        ops.log(_numerics.clamp(complement, smallest, float("inf"))),
    )
    density = _logistic_log_density(
        log_sample - log_complement, logits, temperature, valid
    ) - (log_sample + log_complement)
    density = _numerics.nan_where(ops.isnan(sample), density)
    outside = (sample < 0) | (sample > 1)
    return _on_support(
        density, outside, ops.zeros_like(density), 1, validate_args, "sample"
    )


def bernoulli_kl(
    logits: TensorLike, prior_logits: float | TensorLike = 0.0
) -> TensorLike:
    """`KL(Bernoulli(sigmoid(logits)) || Bernoulli(sigmoid(prior_logits)))`.

    `p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q))`, with every log
    a `log_sigmoid` of the logits, so it is finite for logits up to the
    dtype's limits: `+inf` logits are `p = 1`, `-inf` are `p = 0`, and a term
    whose weight is 0 contributes 0 (and 0 gradient). Infinite prior logits
    give `+inf` where the posterior puts mass the prior does not.

    Args:
        logits: Floating-point tensor of log-odds.
        prior_logits: Log-odds of the prior, broadcastable to `logits`;
            0 is the uniform prior `Bernoulli(1/2)`.

    Returns:
        Non-negative KL per element (broadcast), in the working dtype.

    Example:

    >>> import keras_gumbel as kg
    >>> round(float(kg.ops.bernoulli_kl(100.0)), 4)  # log 2: certain vs fair
    0.6931
    """
    logits = _checks.float_tensor(logits, "logits")
    prior = _checks.float_tensor(prior_logits, "prior_logits")
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in (logits, prior)}
    work_dtype = "float64" if "float64" in dtypes else "float32"
    logits = ops.cast(logits, work_dtype)
    prior = ops.cast(prior, work_dtype)
    nan = ops.isnan(logits) | ops.isnan(prior)
    largest = float(np.finfo(work_dtype).max)
    logits = _numerics.clamp(
        ops.where(nan, ops.zeros_like(logits), logits), -largest, largest
    )
    prior = ops.where(nan, ops.zeros_like(prior), prior)

    def term(weight, log_p, log_q):
        # A weight of 0 contributes 0 even where log q is -inf.
        safe_log_q = ops.where(weight > 0, log_q, ops.zeros_like(log_q))
        return ops.where(
            weight > 0, weight * (log_p - safe_log_q), ops.zeros_like(weight)
        )

    p = ops.sigmoid(logits)
    kl = term(p, ops.log_sigmoid(logits), ops.log_sigmoid(prior)) + term(
        ops.sigmoid(-logits), ops.log_sigmoid(-logits), ops.log_sigmoid(-prior)
    )
    kl = ops.where(kl > 0, kl, ops.zeros_like(kl))
    return _numerics.nan_where(nan, kl)


def hard_concrete(
    log_alpha: TensorLike,
    temperature: float | TensorLike = 2 / 3,
    *,
    limits: tuple[float, float] = (-0.1, 1.1),
    seed: SeedLike = None,
) -> TensorLike:
    """Draws Hard Concrete gates (Louizos, Welling & Kingma 2018, eq. 9-10).

    A binary Concrete sample `s = sigmoid((L + log_alpha) / temperature)` is
    stretched to `(gamma, zeta) = limits` and clamped to `[0, 1]`:
    `min(1, max(0, s * (zeta - gamma) + gamma))`. The gate is exactly 0 with
    probability `sigmoid(temperature * log(-gamma / zeta) - log_alpha)` and
    exactly 1 with probability
    `sigmoid(log_alpha - temperature * log((1 - gamma) / (zeta - 1)))`, and is
    differentiable in `log_alpha` in between; the clamped gates have zero
    gradient. Defaults are the paper's: temperature 2/3, limits (-0.1, 1.1).

    Args:
        log_alpha: Floating-point tensor of gate log-odds, any shape.
        temperature: Positive float, or a tensor of them broadcastable to
            `log_alpha`.
        limits: `(gamma, zeta)` with `gamma < 0 < 1 < zeta`.
        seed: None, an int in `[0, 2**31 - 1]`, or a `keras.random.SeedGenerator`.

    Returns:
        Gates in `[0, 1]`, of the shape and dtype of `log_alpha`.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel as kg
    >>> gates = np.asarray(kg.ops.hard_concrete(np.zeros(10_000, "float32"), seed=0))
    >>> bool(gates.min() == 0.0 and gates.max() == 1.0)
    True
    """
    temperature = _checks.check_temperatures(temperature)
    gamma, zeta = _checks.check_limits(limits)
    seed = _checks.check_seed(seed)

    def gate(work_log_alpha, work_temperature):
        noise = random.logistic(ops.shape(work_log_alpha), work_log_alpha.dtype, seed)
        soft = _numerics.scaled_sigmoid(work_log_alpha + noise, work_temperature)
        return _numerics.clamp(soft * (zeta - gamma) + gamma, 0.0, 1.0)

    return _elementwise(gate, log_alpha, temperature, name="log_alpha")


def hard_concrete_l0(
    log_alpha: TensorLike,
    temperature: float | TensorLike = 2 / 3,
    *,
    limits: tuple[float, float] = (-0.1, 1.1),
) -> TensorLike:
    """The probability that a Hard Concrete gate is not 0: its expected L0 norm.

    `P(gate != 0) = sigmoid(log_alpha - temperature * log(-gamma / zeta))`
    (Louizos et al. 2018, eq. 12); summed over gates, the expected number of
    open gates, the differentiable L0 penalty.

    Args:
        log_alpha: Floating-point tensor of gate log-odds.
        temperature: Positive float, or a tensor of them broadcastable to
            `log_alpha`.
        limits: `(gamma, zeta)` with `gamma < 0 < 1 < zeta`.

    Returns:
        Probabilities in `[0, 1]`, of the shape and dtype of `log_alpha`.

    Example:

    >>> import keras_gumbel as kg
    >>> round(float(kg.ops.hard_concrete_l0(0.0)), 4)
    0.8318
    """
    temperature = _checks.check_temperatures(temperature)
    gamma, zeta = _checks.check_limits(limits)
    offset = math.log(-gamma / zeta)

    def probability(work_log_alpha, work_temperature):
        return ops.sigmoid(work_log_alpha - work_temperature * offset)

    return _elementwise(probability, log_alpha, temperature, name="log_alpha")
