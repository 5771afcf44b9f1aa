"""Property-based tests of the numerical policy of docs/numerics.md.

tests/test_numerical_policy.py checks each row of the policy on a hand-picked
example; here Hypothesis draws the inputs: ranks 1-4, every valid axis (negative
too), 1 to 2000 categories (at most 20,000 elements), every float dtype and the
layers' dtype policies (mixed ones included, set per layer or globally),
scalar temperatures from 1e-4 to 1e3 as a Python float, a tensor or a
`keras.Variable` (and tensors of exactly 0 and +inf, the policy's limits),
logits anywhere up to the limits of their dtype with `-inf`, `+inf` and NaN
entries, category, broadcast and row masks with rows where nothing is allowed,
every estimator of `kg.ESTIMATORS`, hard and relaxed samples, and `k` at 1, at
`n` and in between. Each example is checked against what the policy promises:

- a row with a NaN logit (in a category the mask allows) is NaN, every entry;
  every other row is finite;
- masked and `-inf` categories are exactly 0, and so are their gradients; the
  gradients of every row without a NaN are finite (top-k: where the policy
  promises it), and exactly 0 in a row that `+inf` logits decide;
- a sample sums to 1 (`min(k, allowed)` for top-k, 0 for a row where nothing is
  allowed); hard samples are exactly one-hot (k-hot);
- `+inf` categories win; the noise-free modes and the limits of temperature
  tensors agree with NumPy references;
- outputs keep the documented dtype and shape.

Tolerances (the working dtype computes, the output dtype stores; `eps` is the
machine epsilon of each, `u = eps / 2` the unit roundoff):

- a row sum of `n` entries, each a softmax output rounded a few times, is off
  by at most `n` rounding errors of the working dtype (recursive summation),
  plus one more per relaxed top-k round, plus the rounding of each entry to the
  output dtype (`eps_out` relative, and `underflow(out)` absolute for values
  near its smallest normal):
  `|sum - s| <= s * ((n + k + 2) * eps_work + eps_out) + n * underflow(out)`;
- the tempered softmax against a long double reference: the scaled difference
  `z = (x - max) / t` is rounded three times (difference, temperature,
  division), which `exp` turns into a relative error of about `3 |z| u`, for
  `|z|` only up to `|log tiny|` (below, the value is 0 or subnormal);
  normalising adds `n` more:
  `|y - p| <= p * ((n + 8 |log tiny_work| + 8) eps_work + eps_out)
  + 2 tiny_work + underflow(out)`;
- the KL and the log-density: the same first-order error analysis, summed
  over their terms (`reference_kl`, `reference_log_prob`).

None of these is tuned to what a backend happens to give: they are worst-case
bounds of the arithmetic, with a factor of about 2 to spare. Hard samples,
masked entries and the gradients that must be 0 are compared exactly.

JAX compiles every primitive again for each new shape when run eagerly (about
3 s per example here), so on JAX the functions of `kg.ops` run under `jax.jit`
(Python-known arguments such as a float temperature stay Python values, closed
over) and the layers run eagerly; TensorFlow and PyTorch run eagerly
throughout. Float64 examples enable `jax.enable_x64` for their duration, as the
`jax_x64` marker does for whole tests.
"""

import contextlib
import dataclasses
import math

import keras
import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from keras import ops

import keras_gumbel as kg
from tests import testing

BACKEND = keras.backend.backend()

# Examples per property test. TensorFlow runs an example in about 30 ms and
# PyTorch in about 15 ms; JAX compiles every new shape (jitted ops: about 0.5 s
# an example, eager layers: about 1 s), so it draws far fewer, and the module
# stays within about a minute on each backend on a 2-core machine.
MAX_EXAMPLES = {"tensorflow": 100, "torch": 80}.get(BACKEND, 12)
LAYER_EXAMPLES = {"tensorflow": 80, "torch": 60}.get(BACKEND, 10)
# No "explain" phase, which runs every failing example again to list lines.
# JAX does not shrink either: each step compiles again, and a failure already
# shows the one row that breaks the property, which is the reproduction.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if BACKEND != "jax":
    PHASES.append(Phase.shrink)

settings.register_profile(
    "keras_gumbel_properties",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=MAX_EXAMPLES,
    phases=PHASES,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROPERTIES = settings.get_profile("keras_gumbel_properties")

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
NUMPY_DTYPES = {
    "float16": np.dtype("float16"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype("float32"),
    "float64": np.dtype("float64"),
}
# Elements per example: enough for 20 rows of 1000 categories, small enough
# that an example takes milliseconds.
MAX_ELEMENTS = 20_000
MAX_CATEGORIES = 2000
# Top-k runs `k` softmax rounds (unrolled, when traced); beyond `k = 1` the
# examples keep `k` and their size small enough for a few rounds per second.
MAX_K = 24
MAX_TOP_K_ELEMENTS = 4000
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1e3


def finfo(dtype):
    return ml_dtypes.finfo(NUMPY_DTYPES[dtype])


def eps(dtype):
    return float(finfo(dtype).eps)


def tiny(dtype):
    return float(finfo(dtype).tiny)


def underflow(dtype):
    """The largest error of storing a small value in `dtype`.

    Below the smallest normal number a backend may flush to zero, so that
    number bounds the error (negligible next to any other error here), except
    in float16, whose subnormals every backend here keeps: rounding to its
    subnormal spacing of 2**-24 errs by half that, with a factor 2 to spare.
    """
    return 2.0**-24 if dtype == "float16" else tiny(dtype)


def working_dtype(*dtypes):
    """float64 stays float64; everything narrower computes in float32."""
    return "float64" if "float64" in dtypes else "float32"


@contextlib.contextmanager
def x64_if(needed):
    """JAX's 64-bit types for the duration of one float64 example."""
    if BACKEND != "jax" or not needed:
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


# Inputs.


@dataclasses.dataclass(eq=False)
class Case:
    """Logits and mask as drawn, and the facts about them the checks read.

    `values` holds the logits exactly as their dtype stores them, in float64.
    The per-category arrays (`last`, `allowed`, ...) are `[rows, n]`: the
    category axis last and the other axes flattened into rows.
    """

    dtype: str
    shape: tuple
    axis: int
    values: np.ndarray
    mask: np.ndarray | None
    description: str
    seed: int

    def __post_init__(self):
        self.n = self.shape[self.axis]
        if self.mask is None:
            full = np.ones(self.shape, bool)
        else:
            mask = self.mask
            if mask.ndim == len(self.shape) - 1:
                # A row mask: one entry per row, expanded along the axis.
                mask = np.expand_dims(mask, self.axis)
            full = np.broadcast_to(mask, self.shape)
        x = self.rows(self.values)
        full = self.rows(full)
        self.last = x
        self.allowed_by_mask = full
        # A NaN under the mask is never read: the mask wins (the policy does
        # not say which wins; this is what a mask is for).
        self.nan_row = np.any(np.isnan(x) & full, axis=-1)
        with np.errstate(invalid="ignore"):
            self.allowed = full & (x > -np.inf)
            self.pos_inf = full & (x == np.inf)
        self.count = self.allowed.sum(axis=-1)
        self.inf_count = self.pos_inf.sum(axis=-1)
        self.clean = ~self.nan_row

    def rows(self, array):
        """`array` of the logits' shape as `[rows, n]`, category axis last."""
        return np.moveaxis(np.asarray(array), self.axis, -1).reshape(-1, self.n)

    def __repr__(self):
        mask = "None" if self.mask is None else f"shape {self.mask.shape}"
        return (
            f"Case(dtype={self.dtype!r}, shape={self.shape}, axis={self.axis}, "
            f"{self.description}, mask={mask}, seed={self.seed})"
        )

    def tensor(self):
        """The logits as a backend tensor of their dtype."""
        values = self.values.astype(NUMPY_DTYPES[self.dtype])
        if self.dtype == "bfloat16":
            # NumPy's bfloat16 is not every backend's: cast on the backend,
            # exactly (float32 holds every bfloat16 number).
            return ops.cast(ops.convert_to_tensor(values.astype("float32")), "bfloat16")
        return ops.convert_to_tensor(values)

    def show(self, row, **arrays):
        """The logits, mask and given `[rows, n]` arrays of `row`."""
        batch = tuple(np.delete(np.array(self.shape), self.axis % len(self.shape)))
        lines = [
            f"{self!r}",
            f"row {row} (index {tuple(map(int, np.unravel_index(row, batch)))}):",
            f"  logits {self.last[row].tolist()}",
            f"  allowed by mask {self.allowed_by_mask[row].astype(int).tolist()}",
        ]
        lines += [
            f"  {name} {np.asarray(array)[row].tolist()}"
            for name, array in arrays.items()
        ]
        return "\n".join(lines)


def fail_if(bad, case, message, **arrays):
    """Fails with the first row where `bad` holds, shown in full."""
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{message}: {int(np.sum(bad))} row(s), the first:\n"
            + case.show(row, **arrays)
        )


def _offsets(dtype):
    largest = float(finfo(dtype).max)
    values = [0.0, 50.0, -50.0, 1e4, -1e4, 0.5 * largest, -0.5 * largest]
    if largest > 1e31:
        values += [1e30, -1e30]
    return values


@st.composite
def cases(
    draw,
    *,
    dtypes=FLOAT_DTYPES,
    max_categories=MAX_CATEGORIES,
    max_elements=MAX_ELEMENTS,
    specials=True,
    masks=True,
):
    """Logits of any rank, axis, size and dtype, with specials and a mask."""
    dtype = draw(st.sampled_from(dtypes))
    rank = draw(st.integers(1, 4))
    axis = draw(st.integers(-rank, rank - 1))
    n = draw(st.one_of(st.integers(1, 8), st.integers(1, max_categories)))
    budget = max(1, max_elements // n)
    batch = []
    for _ in range(rank - 1):
        size = draw(st.integers(1, max(1, min(12, budget))))
        budget = max(1, budget // size)
        batch.append(size)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    largest = float(finfo(dtype).max)
    last_shape = (*batch, n)

    # The finite values: close together, tied, or spread over the whole range
    # of the dtype (where differences overflow), some exactly at its limits.
    spread = draw(st.sampled_from(["normal", "ties", "wide", "extreme"]))
    if spread in ("normal", "ties"):
        offset = draw(st.sampled_from(_offsets(dtype)))
        scale = draw(st.sampled_from([1.0, 1e-3, 30.0, 1e4]))
        if spread == "normal":
            values = offset + scale * rng.standard_normal(last_shape)
        else:
            values = offset + scale * rng.integers(0, 3, last_shape)
        description = f"{spread} around {offset:.3g} by {scale:.3g}"
    else:
        exponent = rng.uniform(-3.0, math.log10(largest), last_shape)
        values = rng.choice([-1.0, 1.0], last_shape) * 10.0**exponent
        if spread == "extreme":
            limits = rng.random(last_shape) < 0.2
            values[limits] = rng.choice([-largest, largest], last_shape)[limits]
        description = f"{spread} up to {largest:.3g}"
    values = np.clip(values, -largest, largest)

    if specials:
        nan_rows = draw(st.sampled_from([0.0, 0.0, 0.25]))
        inf_rows = draw(st.sampled_from([0.0, 0.25, 0.6]))
        neg_inf = draw(st.sampled_from([0.0, 0.3, 0.9]))
        empty_rows = draw(st.sampled_from([0.0, 0.2]))
        rows = values.reshape(-1, n)
        rows[rng.random(rows.shape) < neg_inf] = -np.inf
        rows[rng.random(len(rows)) < empty_rows] = -np.inf
        for special, fraction, most in ((np.inf, inf_rows, 3), (np.nan, nan_rows, 2)):
            for row in np.flatnonzero(rng.random(len(rows)) < fraction):
                count = rng.integers(1, min(most, n) + 1)
                rows[row, rng.choice(n, count, replace=False)] = special
        description += (
            f", NaN rows {nan_rows}, +inf rows {inf_rows}, -inf {neg_inf}, "
            f"-inf rows {empty_rows}"
        )
    # Exactly the numbers the dtype holds.
    values = values.astype(NUMPY_DTYPES[dtype]).astype("float64")
    shape = list(batch)
    shape.insert(axis % rank, n)
    values = np.moveaxis(values, -1, axis % rank)

    mask = None
    if masks:
        kind = draw(st.sampled_from(["none", "categories", "broadcast", "rows"]))
        if kind != "none":
            density = draw(st.sampled_from([0.7, 0.3, 1.0]))
            masked_rows = draw(st.sampled_from([0.0, 0.25]))
            if kind == "rows":
                mask = np.asarray(rng.random(batch) < density)
            else:
                mask_shape = list(shape)
                if kind == "broadcast":
                    mask_shape = [
                        1 if rng.random() < 0.5 else size for size in mask_shape
                    ]
                mask = rng.random(mask_shape) < density
                # Rows where nothing is allowed.
                last = np.moveaxis(mask, axis % rank, -1)
                last[rng.random(last.shape[:-1]) < masked_rows] = False
                mask = np.moveaxis(last, -1, axis % rank)
            description += f", {kind} mask of density {density}"
    return Case(dtype, tuple(shape), axis, values, mask, description, seed)


@dataclasses.dataclass(eq=False)
class Temperature:
    """A temperature as a Python float, a float32 tensor or a keras.Variable."""

    value: float
    kind: str
    trainable: bool = False

    def make(self):
        if self.kind == "float":
            return self.value
        if self.kind == "tensor":
            return ops.convert_to_tensor(self.value, dtype="float32")
        return keras.Variable(self.value, dtype="float32", trainable=self.trainable)

    @property
    def exact(self):
        """The value the function receives (a tensor holds it in float32)."""
        if self.kind == "float":
            return self.value
        return float(np.float32(self.value))


@st.composite
def temperatures(draw, minimum=MIN_TEMPERATURE):
    value = 10.0 ** draw(st.floats(math.log10(minimum), math.log10(MAX_TEMPERATURE)))
    kind = draw(st.sampled_from(["float", "tensor", "variable"]))
    trainable = kind == "variable" and draw(st.booleans())
    return Temperature(value, kind, trainable)


# Running a function, with or without its gradient.


def _read(value):
    """A backend array as float64 NumPy, and its dtype."""
    dtype = keras.backend.standardize_dtype(value.dtype)
    if BACKEND == "torch":
        return value.detach().cpu().double().numpy(), dtype
    return np.asarray(testing.to_numpy(value)).astype("float64"), dtype


def run(function, case, *, gradient):
    """`function(logits)` as (values, dtype, gradient of sum(w * values) or None).

    `w` is uniform in [-1, 1], so that softmax gradients stay below 1 / (2 t) and
    fit float16 at every temperature drawn. On JAX the function runs under
    `jax.jit`.
    """
    logits = case.tensor()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        if not gradient:
            return (*_read(jax.jit(function)(logits)), None)

        def loss(x):
            y = function(x)
            weights = _weights(y.shape, case.seed)
            return jnp.sum(y.astype("float32") * weights), y

        (_, y), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(logits)
        return (*_read(y), _read(grad)[0])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        if not gradient:
            return (*_read(function(logits)), None)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            y = function(logits)
            weights = _weights(y.shape, case.seed)
            loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
        grad = tape.gradient(loss, logits)
        assert grad is not None, "the output does not depend on the logits"
        return (*_read(y), _read(grad)[0])
    if BACKEND == "torch":
        import torch

        if not gradient:
            with torch.no_grad():
                return (*_read(function(logits)), None)
        logits = logits.detach().clone().requires_grad_(True)
        y = function(logits)
        weights = torch.as_tensor(_weights(tuple(y.shape), case.seed))
        (y.float() * weights).sum().backward()
        return (*_read(y), _read(logits.grad)[0])
    raise NotImplementedError(BACKEND)


def _weights(shape, seed):
    return (
        np.random.default_rng(seed + 1).uniform(-1, 1, tuple(shape)).astype("float32")
    )


# Checks. Each takes outputs as `[rows, n]` (`Case.rows`) and checks the rows
# without a NaN logit, unless it says otherwise.


def sum_tolerance(expected, n, rounds, work, out):
    """The bound on `|row sum - expected|` of the module docstring."""
    return expected * ((n + rounds + 2) * eps(work) + eps(out)) + n * underflow(out)


def check_output(y, dtype, case, expected_dtype):
    """Dtype, shape, NaN rows exactly where a logit is NaN, finite elsewhere.

    Returns `y` as `[rows, n]`.
    """
    assert dtype == expected_dtype, (dtype, expected_dtype)
    assert y.shape == case.shape, (y.shape, case.shape)
    y = case.rows(y)
    fail_if(
        case.nan_row & ~np.all(np.isnan(y), axis=-1),
        case,
        "a row with a NaN logit is not NaN throughout",
        output=y,
    )
    fail_if(
        case.clean & ~np.all(np.isfinite(y), axis=-1),
        case,
        "a row without a NaN logit is not finite",
        output=y,
    )
    return y


def check_samples(y, case, *, k, hard, upper, work, out, rounds):
    """Samples: in `[0, upper]`; exactly 0 where not allowed; summing to
    `min(k, allowed)` (exactly, and every entry exactly 0 or 1, when hard)."""
    clean = case.clean
    with np.errstate(invalid="ignore"):
        fail_if(
            clean & np.any((y < 0.0) | (y > upper), axis=-1),
            case,
            f"an entry outside [0, {upper}]",
            output=y,
        )
        fail_if(
            clean & np.any(~case.allowed & (y != 0.0), axis=-1),
            case,
            "a masked or -inf category is not exactly 0",
            output=y,
        )
    expected = np.minimum(k, case.count)
    total = np.sum(np.where(clean[:, None], y, 0.0), axis=-1)
    if hard:
        fail_if(
            clean & np.any((y != 0.0) & (y != 1.0), axis=-1),
            case,
            "a hard sample has an entry other than 0 and 1",
            output=y,
        )
        fail_if(
            clean & (total != expected),
            case,
            f"a hard sample does not sum to min({k}, allowed)",
            output=y,
            total=total[:, None],
            expected=expected[:, None],
        )
    else:
        tolerance = sum_tolerance(expected, case.n, rounds, work, out)
        fail_if(
            clean & (np.abs(total - expected) > tolerance),
            case,
            f"a relaxed sample does not sum to min({k}, allowed)",
            output=y,
            total=total[:, None],
            expected=expected[:, None],
            tolerance=tolerance[:, None],
        )


def check_infinite_rows_win(y, case, k, *, relaxed_share=True):
    """An `+inf` category wins: with at least `k` of them (or, for a relaxed
    one-hot sample, any), every other category is exactly 0; with fewer, each
    of them is chosen (exactly 1)."""
    rows = case.clean & (case.inf_count > 0)
    only = rows & ((case.inf_count >= k) | relaxed_share)
    fail_if(
        only & np.any(~case.pos_inf & (y != 0.0), axis=-1),
        case,
        "a category other than the +inf ones is not 0 in a row with +inf",
        output=y,
    )
    fail_if(
        (rows & ~only) & np.any(case.pos_inf & (y != 1.0), axis=-1),
        case,
        f"an +inf category is not chosen by top-{k}",
        output=y,
    )


def check_gradient(grad, case, *, finite_rows=None, zero_rows=None):
    """Exactly 0 where not allowed (masked or `-inf`); finite on `finite_rows`
    (default: every row without a NaN); exactly 0 on `zero_rows`."""
    assert grad.shape == case.shape, (grad.shape, case.shape)
    grad = case.rows(grad)
    clean = case.clean
    fail_if(
        clean & np.any(~case.allowed & (grad != 0.0), axis=-1),
        case,
        "the gradient of a masked or -inf category is not exactly 0",
        gradient=grad,
    )
    finite_rows = clean if finite_rows is None else clean & finite_rows
    fail_if(
        finite_rows & ~np.all(np.isfinite(grad), axis=-1),
        case,
        "a gradient is not finite",
        gradient=grad,
    )
    if zero_rows is not None:
        fail_if(
            clean & zero_rows & np.any(grad != 0.0, axis=-1),
            case,
            "the gradient of a row that +inf logits decide is not 0",
            gradient=grad,
        )


def keys(case):
    """Logits ordered as the policy orders them: masked and `-inf` below every
    finite logit, `+inf` above; NaN rows are not read."""
    return np.where(case.allowed, np.nan_to_num(case.last, nan=0.0), -np.inf)


def check_top_set(y, case, k):
    """`y` is exactly 0 or 1 and marks `min(k, allowed)` allowed categories,
    none of them below a category left out."""
    order = keys(case)
    clean = case.clean
    chosen = y == 1.0
    fail_if(
        clean & np.any((y != 0.0) & ~chosen, axis=-1),
        case,
        "an entry other than 0 and 1",
        output=y,
    )
    fail_if(
        clean & (chosen.sum(axis=-1) != np.minimum(k, case.count)),
        case,
        f"not min({k}, allowed) categories chosen",
        output=y,
    )
    fail_if(
        clean & np.any(chosen & ~case.allowed, axis=-1),
        case,
        "a masked or -inf category chosen",
        output=y,
    )
    left = case.allowed & ~chosen
    lowest_chosen = np.min(np.where(chosen, order, np.inf), axis=-1)
    highest_left = np.max(np.where(left, order, -np.inf), axis=-1)
    fail_if(
        clean & (lowest_chosen < highest_left),
        case,
        f"a category left out of the top {k} is above a chosen one",
        output=y,
    )


def reference_softmax(case, temperature):
    """`softmax(logits / t)` over the allowed categories in long double, with
    the policy's limits: `+inf` categories share the row, nothing allowed is 0."""
    x = keys(case).astype(np.longdouble)
    finite = np.where(np.isfinite(x), x, -np.inf)
    top = np.max(finite, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (finite - top) / np.longdouble(temperature)
    unnormalised = np.exp(scaled)
    total = unnormalised.sum(axis=-1, keepdims=True)
    probs = np.divide(
        unnormalised, total, out=np.zeros_like(unnormalised), where=total > 0
    )
    inf_rows = case.inf_count[:, None] > 0
    shared = case.pos_inf / np.maximum(case.inf_count[:, None], 1)
    return np.where(inf_rows, shared, probs).astype("float64")


def softmax_tolerance(probs, work, out):
    """The bound of the module docstring on `|y - p|`, elementwise."""
    log_tiny = abs(math.log(tiny(work)))
    rtol = (probs.shape[-1] + 8 * log_tiny + 8) * eps(work) + eps(out)
    return probs * rtol + 2 * tiny(work) + underflow(out)


def top_k_gradient_is_promised(case, temperature):
    """Rows where docs/numerics.md promises a finite top-k gradient.

    "Not promised yet": at very low temperatures with tied huge logits the
    gradient can be infinite, so rows holding tied finite logits beyond the
    policy's +-64 are not checked for finiteness (the policy names no
    temperature). And float16 holds gradients only up to 65504, which the
    k-round recursion exceeds below a temperature of 1 (its gradient grows like
    1 / t**2: 7.5e7 at t = 1e-4 for two tied logits), so float16 is checked
    from t = 1 on.
    """
    if case.dtype == "float16" and temperature < 1.0:
        return np.zeros(case.count.shape, bool)
    order = keys(case)
    huge = case.allowed & np.isfinite(order) & (np.abs(order) > 64)
    values = np.sort(np.where(huge, order, np.nan), axis=-1)
    tied = np.any(values[:, 1:] == values[:, :-1], axis=-1)
    return ~tied


# The samplers.


ESTIMATOR_CHOICES = [(None, False), (None, True)] + [
    (name, hard)
    for name in kg.ESTIMATORS
    for hard in ((False,) if name == "gumbel_softmax" else (False, True))
]


def is_one_hot(estimator, hard):
    return hard or estimator not in (None, "gumbel_softmax")


@st.composite
def gumbel_softmax_cases(draw):
    estimator, hard = draw(st.sampled_from(ESTIMATOR_CHOICES))
    minimum = 1.0 if estimator == "reinmax" else MIN_TEMPERATURE
    return draw(cases()), draw(temperatures(minimum)), estimator, hard


@PROPERTIES
@given(gumbel_softmax_cases())
def test_gumbel_softmax_keeps_the_policy(arguments):
    case, temperature, estimator, hard = arguments
    with x64_if(case.dtype == "float64"):
        t = temperature.make()

        def sample(x):
            return kg.ops.gumbel_softmax(
                x,
                t,
                hard=hard,
                estimator=estimator,
                axis=case.axis,
                mask=case.mask,
                seed=case.seed % 2**31,
            )

        y, dtype, grad = run(sample, case, gradient=True)
    y = check_output(y, dtype, case, case.dtype)
    check_samples(
        y,
        case,
        k=1,
        hard=is_one_hot(estimator, hard),
        upper=1.0,
        work=working_dtype(case.dtype),
        out=case.dtype,
        rounds=1,
    )
    check_infinite_rows_win(y, case, 1)
    # Every estimator's gradient is a softmax's: 0 where +inf logits decide.
    check_gradient(grad, case, zero_rows=case.inf_count > 0)


@st.composite
def top_k_cases(draw, **kwargs):
    """Cases with a `k`: 1, the number of categories, or in between."""
    choice = draw(st.sampled_from(["one", "all", "some"]))
    if choice == "one":
        return draw(cases(**kwargs)), 1
    case = draw(cases(max_categories=MAX_K, max_elements=MAX_TOP_K_ELEMENTS, **kwargs))
    k = case.n if choice == "all" else draw(st.integers(1, case.n))
    return case, k


@PROPERTIES
@given(top_k_cases(), temperatures(), st.booleans())
def test_gumbel_top_k_keeps_the_policy(arguments, temperature, hard):
    case, k = arguments
    with x64_if(case.dtype == "float64"):
        t = temperature.make()

        def sample(x):
            return kg.ops.gumbel_top_k(
                x,
                k,
                t,
                hard=hard,
                axis=case.axis,
                mask=case.mask,
                seed=case.seed % 2**31,
            )

        y, dtype, grad = run(sample, case, gradient=True)
    y = check_output(y, dtype, case, case.dtype)
    check_samples(
        y,
        case,
        k=k,
        hard=hard,
        upper=k,
        work=working_dtype(case.dtype),
        out=case.dtype,
        rounds=k,
    )
    if hard:
        check_infinite_rows_win(y, case, k, relaxed_share=False)
    check_gradient(
        grad,
        case,
        finite_rows=top_k_gradient_is_promised(case, temperature.exact),
        zero_rows=case.inf_count >= k,
    )


# Temperature tensors of 0 and +inf: the limits.


def reference_limit(case, temperature):
    """The limit of a tempered softmax: at 0 the largest allowed logits share
    the row (`+inf` ones above all), at `+inf` the allowed categories do."""
    order = keys(case)
    if temperature == 0.0:
        top = np.max(order, axis=-1, keepdims=True)
        share = case.allowed & (order == top)
    else:
        share = case.allowed
    count = share.sum(axis=-1, keepdims=True)
    return share / np.maximum(count, 1)


LIMIT_FUNCTIONS = ["tempered_softmax"] + [
    f"{name}:{hard}" for name, hard in ESTIMATOR_CHOICES
]


@PROPERTIES
@given(
    cases(),
    st.sampled_from([0.0, math.inf]),
    st.sampled_from(["tensor", "variable"]),
    st.sampled_from(LIMIT_FUNCTIONS),
)
def test_temperature_tensors_of_zero_and_infinity_give_the_limits(
    case, limit, kind, function
):
    temperature = Temperature(limit, kind)
    estimator, hard = None, False
    if function != "tempered_softmax":
        name, hard = function.split(":")
        estimator, hard = (None if name == "None" else name), hard == "True"
    with x64_if(case.dtype == "float64"):
        t = temperature.make()
        if function == "tempered_softmax":

            def call(x):
                return kg.ops.tempered_softmax(x, t, axis=case.axis, mask=case.mask)

        else:

            def call(x):
                return kg.ops.gumbel_softmax(
                    x,
                    t,
                    hard=hard,
                    estimator=estimator,
                    axis=case.axis,
                    mask=case.mask,
                    seed=case.seed % 2**31,
                )

        y, dtype, grad = run(call, case, gradient=True)
    if estimator == "reinmax" and limit == 0.0:
        # Below the estimator's minimum: NaN for the whole output.
        assert np.all(np.isnan(y)), y
        return
    y = check_output(y, dtype, case, case.dtype)
    work = working_dtype(case.dtype)
    one_hot = function != "tempered_softmax" and (
        limit == 0.0 or is_one_hot(estimator, hard)
    )
    check_samples(
        y, case, k=1, hard=one_hot, upper=1.0, work=work, out=case.dtype, rounds=1
    )
    if function == "tempered_softmax" or not one_hot:
        # The limit's values. At +inf, a row with +inf logits is left out: the
        # policy does not say which of its two limits wins there.
        probs = reference_limit(case, limit)
        rows = case.clean & ((case.inf_count == 0) | (limit == 0.0))
        tolerance = softmax_tolerance(probs, work, case.dtype)
        error = np.abs(y - probs)
        fail_if(
            rows & np.any(error > tolerance, axis=-1),
            case,
            f"a temperature tensor of {limit} does not give the limit",
            output=y,
            reference=probs,
        )
    else:
        check_infinite_rows_win(y, case, 1)
    # At 0 the one-hot does not move: the gradient is 0 wherever the limit is
    # a one-hot (always with noise; with a unique largest logit without). Tied
    # largest logits without noise are a limit whose gradient diverges.
    order = keys(case)
    unique = (order == order.max(axis=-1, keepdims=True)).sum(axis=-1) == 1
    if limit != 0.0:
        settled = np.zeros(case.count.shape, bool)
    elif function == "tempered_softmax":
        settled = unique
    else:
        settled = np.ones(case.count.shape, bool)
    finite = settled if limit == 0.0 and function == "tempered_softmax" else None
    check_gradient(grad, case, finite_rows=finite, zero_rows=settled)


# The noise-free modes.


@PROPERTIES
@given(cases(), temperatures())
def test_tempered_softmax_matches_the_reference(case, temperature):
    with x64_if(case.dtype == "float64"):
        t = temperature.make()
        y, dtype, grad = run(
            lambda x: kg.ops.tempered_softmax(x, t, axis=case.axis, mask=case.mask),
            case,
            gradient=True,
        )
    y = check_output(y, dtype, case, case.dtype)
    work = working_dtype(case.dtype)
    check_samples(
        y, case, k=1, hard=False, upper=1.0, work=work, out=case.dtype, rounds=1
    )
    check_infinite_rows_win(y, case, 1)
    probs = reference_softmax(case, temperature.exact)
    tolerance = softmax_tolerance(probs, work, case.dtype)
    error = np.abs(y - probs)
    fail_if(
        case.clean & np.any(error > tolerance, axis=-1),
        case,
        "the tempered softmax is off the reference",
        output=y,
        reference=probs,
        excess=error - tolerance,
    )
    check_gradient(grad, case, zero_rows=case.inf_count > 0)


@PROPERTIES
@given(cases())
def test_argmax_one_hot_marks_a_most_likely_allowed_category(case):
    with x64_if(case.dtype == "float64"):
        y, dtype, _ = run(
            lambda x: kg.ops.argmax_one_hot(x, axis=case.axis, mask=case.mask),
            case,
            gradient=False,
        )
    check_top_set(check_output(y, dtype, case, case.dtype), case, 1)


@PROPERTIES
@given(top_k_cases(), temperatures())
def test_noise_free_top_k_modes_keep_the_policy(arguments, temperature):
    case, k = arguments
    with x64_if(case.dtype == "float64"):
        t = temperature.make()
        hot, hot_dtype, _ = run(
            lambda x: kg.ops.top_k_hot(x, k, axis=case.axis, mask=case.mask),
            case,
            gradient=False,
        )
        relaxed, relaxed_dtype, grad = run(
            lambda x: kg.ops.relaxed_top_k(x, k, t, axis=case.axis, mask=case.mask),
            case,
            gradient=True,
        )
    check_top_set(check_output(hot, hot_dtype, case, case.dtype), case, k)
    relaxed = check_output(relaxed, relaxed_dtype, case, case.dtype)
    check_samples(
        relaxed,
        case,
        k=k,
        hard=False,
        upper=k,
        work=working_dtype(case.dtype),
        out=case.dtype,
        rounds=k,
    )
    check_gradient(
        grad,
        case,
        finite_rows=top_k_gradient_is_promised(case, temperature.exact),
        zero_rows=case.inf_count >= k,
    )


def reference_kl(case, work):
    """KL(softmax(logits) || uniform) in long double with the policy's limits
    (`+inf` logits share the row, a row of `-inf` has KL 0), and a bound on the
    error of computing it in `work`.

    The log-softmax `l_i = z_i - log(sum exp z)` of the shifted logits `z`
    carries an error of about `(|z_i| + n + 2) u`; the sum `sum p_i l_i` adds
    `p_i (|l_i| + 1)` times that for each term, and `(n + 2) u` times the sum
    of the magnitudes of the terms and `log n`.
    """
    n = case.n
    x = keys(case).astype(np.longdouble)
    finite = np.where(np.isfinite(x), x, -np.inf)
    top = np.max(finite, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = finite - top
        log_probs = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
        # A row of -inf has no distribution (NaN here); its KL is 0 below.
        probs = np.nan_to_num(np.exp(log_probs), nan=0.0)
        size = np.where(probs > 0, np.abs(log_probs), 0.0)
        shift = np.where(probs > 0, np.abs(z), 0.0)
    log_n = np.log(np.longdouble(n))
    kl = np.sum(np.where(probs > 0, probs * log_probs, 0.0), axis=-1) + log_n
    kl = np.where(case.inf_count > 0, log_n - np.log(np.maximum(case.inf_count, 1)), kl)
    kl = np.where(case.count == 0, 0.0, kl)
    u = eps(work)
    per_term = np.sum(probs * (size + 1) * (shift + n + 2), axis=-1)
    summed = (n + 2) * (np.sum(probs * size, axis=-1) + log_n)
    bound = 2 * u * (per_term + summed) + 4 * n * tiny(work)
    return kl.astype("float64"), bound.astype("float64")


def reduced_shape(case):
    axis = case.axis % len(case.shape)
    return case.shape[:axis] + case.shape[axis + 1 :]


@PROPERTIES
@given(cases(masks=False))
def test_categorical_kl_uniform_matches_the_reference(case):
    with x64_if(case.dtype == "float64"):
        kl, dtype, grad = run(
            lambda x: kg.ops.categorical_kl_uniform(x, axis=case.axis),
            case,
            gradient=True,
        )
    work = working_dtype(case.dtype)
    # The axis reduced, in the working dtype.
    assert dtype == work, (dtype, work)
    assert kl.shape == reduced_shape(case), (kl.shape, reduced_shape(case))
    kl = kl.reshape(-1)
    reference, bound = reference_kl(case, work)
    fail_if(case.nan_row & ~np.isnan(kl), case, "the KL of a NaN row is not NaN")
    with np.errstate(invalid="ignore"):
        fail_if(
            case.clean & ~(np.abs(kl - reference) <= bound),
            case,
            "the KL is off the reference",
            kl=kl[:, None],
            reference=reference[:, None],
            bound=bound[:, None],
        )
        fail_if(case.clean & ~(kl >= 0), case, "the KL is negative", kl=kl[:, None])
    check_gradient(grad, case, zero_rows=case.inf_count > 0)


# Log-densities.


@st.composite
def log_prob_cases(draw):
    """Finite logits (up to 1e4) and a point inside the simplex, each of its
    own dtype."""
    case = draw(cases(specials=False, masks=False, dtypes=("float32", "float64")))
    case = dataclasses.replace(case, values=np.clip(case.values, -1e4, 1e4))
    sample_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    sharpness = draw(st.sampled_from([0.1, 1.0, 30.0]))
    rng = np.random.default_rng(case.seed + 2)
    scores = sharpness * rng.standard_normal(case.shape)
    sample = np.exp(scores - scores.max(axis=case.axis, keepdims=True))
    sample /= sample.sum(axis=case.axis, keepdims=True)
    sample = sample.astype(NUMPY_DTYPES[sample_dtype]).astype("float64")
    points = Case(sample_dtype, case.shape, case.axis, sample, None, "sample", 0)
    return case, points, draw(temperatures())


def reference_log_prob(case, points, temperature, work):
    """The relaxed one-hot log-density in long double, and its error bound.

    `log((n-1)!) + (n-1) log t + sum_k(s_k - lse(s)) - sum_k log y_k` with
    `s = logits - t log y`, `y` read as at least `tiny` of the sample's own
    dtype (docs/numerics.md: below it a coordinate has underflowed, and the
    cast to a wider working dtype may have flushed it to 0).
    Each `s_k` is off by `3 u |t log y_k| + u |s_k|`, which the log-softmax
    passes on with its own `u (|s_k| + |max s| + n + 2)`; each sum of `n` terms
    adds `n u` times their magnitudes, and the final sum a few `u` of each.
    """
    n = case.n
    logits = case.last.astype(np.longdouble)
    y = points.last.astype(np.longdouble)
    smallest = np.longdouble(tiny(points.dtype))
    y = np.where(y > smallest, y, smallest)
    t = np.longdouble(temperature)
    log_y = np.log(y)
    scaled = logits - t * log_y
    top = scaled.max(axis=-1, keepdims=True)
    lse = top + np.log(np.sum(np.exp(scaled - top), axis=-1, keepdims=True))
    log_softmax = scaled - lse
    constant = math.lgamma(n) + (n - 1) * np.log(t)
    density = constant + log_softmax.sum(axis=-1) - log_y.sum(axis=-1)
    per_category = np.sum(
        3 * np.abs(t * log_y) + 2 * np.abs(scaled) + np.abs(top) + n + 2, axis=-1
    )
    sums = n * (np.abs(log_softmax).sum(axis=-1) + np.abs(log_y).sum(axis=-1))
    terms = (
        abs(math.lgamma(n))
        + 2 * (n - 1) * abs(np.log(t))
        + np.abs(log_softmax.sum(axis=-1))
        + np.abs(log_y.sum(axis=-1))
    )
    bound = 2 * eps(work) * (per_category + sums + 4 * terms)
    return density.astype("float64"), bound.astype("float64")


@PROPERTIES
@given(log_prob_cases())
def test_relaxed_one_hot_log_prob_matches_the_reference(arguments):
    case, points, temperature = arguments
    work = working_dtype(case.dtype, points.dtype)
    with x64_if(work == "float64"):
        t = temperature.make()
        sample = points.tensor()
        density, dtype, _ = run(
            lambda x: kg.ops.relaxed_one_hot_log_prob(sample, x, t, axis=case.axis),
            case,
            gradient=False,
        )
    # float64 in either argument computes (and returns) float64.
    assert dtype == work, (dtype, work, case.dtype, points.dtype)
    assert density.shape == reduced_shape(case), (density.shape, reduced_shape(case))
    density = density.reshape(-1)
    reference, bound = reference_log_prob(case, points, temperature.exact, work)
    with np.errstate(invalid="ignore"):
        fail_if(
            ~(np.abs(density - reference) <= bound),
            case,
            f"the log-density at temperature {temperature} is off the reference",
            sample=points.last,
            density=density[:, None],
            reference=reference[:, None],
            bound=bound[:, None],
        )


# Layers.


POLICIES = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "mixed_float16",
    "mixed_bfloat16",
)


@st.composite
def layer_cases(draw):
    top_k = draw(st.booleans())
    if top_k:
        (case, k), estimator, hard = draw(top_k_cases()), None, draw(st.booleans())
    else:
        (case, k), (estimator, hard) = (
            (draw(cases()), 1),
            draw(st.sampled_from(ESTIMATOR_CHOICES)),
        )
    minimum = 1.0 if estimator == "reinmax" else MIN_TEMPERATURE
    temperature = draw(temperatures(minimum)).value
    return {
        "case": case,
        "top_k": top_k,
        "k": k,
        "estimator": estimator,
        "hard": hard,
        "temperature": temperature,
        "policy": draw(st.sampled_from(POLICIES)),
        "set_globally": draw(st.booleans()),
        "training": draw(st.booleans()),
        "inference": draw(st.sampled_from(["argmax", "softmax", "sample"])),
    }


def make_layer(arguments, **kwargs):
    case = arguments["case"]
    common = {
        "temperature": arguments["temperature"],
        "hard": arguments["hard"],
        "axis": case.axis,
        "inference": arguments["inference"],
        "seed": case.seed % 2**31,
        **kwargs,
    }
    if arguments["top_k"]:
        return kg.GumbelTopK(arguments["k"], **common)
    return kg.GumbelSoftmax(estimator=arguments["estimator"], **common)


@settings(PROPERTIES, max_examples=LAYER_EXAMPLES)
@given(layer_cases())
def test_layers_keep_the_policy_under_every_dtype_policy(arguments):
    case, policy, k = arguments["case"], arguments["policy"], arguments["k"]
    with x64_if("float64" in (case.dtype, policy)):
        if arguments["set_globally"]:
            keras.config.set_dtype_policy(policy)
            kwargs = {}
        else:
            kwargs = {"dtype": policy}
        try:
            layer = make_layer(arguments, **kwargs)
            output = layer(
                case.tensor(), training=arguments["training"], mask=case.mask
            )
        finally:
            keras.config.set_dtype_policy("float32")
        y, dtype = _read(output)
    # Mixed policies compute in half precision, and return it.
    expected_dtype = policy.removeprefix("mixed_")
    assert layer.compute_dtype == expected_dtype, (layer.compute_dtype, policy)
    y = check_output(y, dtype, case, expected_dtype)
    if arguments["training"]:
        one_hot = arguments["hard"] or (
            not arguments["top_k"]
            and is_one_hot(arguments["estimator"], arguments["hard"])
        )
        mode = "sample" if one_hot else "relaxed"
    else:
        mode = arguments["inference"]
    if mode == "argmax":
        check_top_set(y, case, k)
        return
    check_samples(
        y,
        case,
        k=k,
        hard=mode == "sample",
        upper=k,
        work=working_dtype(case.dtype),
        out=expected_dtype,
        rounds=k,
    )
    if mode == "sample":
        check_infinite_rows_win(y, case, k, relaxed_share=False)
    elif not arguments["top_k"]:
        check_infinite_rows_win(y, case, 1)
