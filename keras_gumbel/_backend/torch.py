"""PyTorch fast paths: fewer kernels and fewer fresh tensors for the same values.

PyTorch runs eagerly, one kernel and usually one new tensor per operation, and
on CPU every new tensor costs a round of page faults; so these paths fuse
operations or work in place where the result is the same (docs/backends.md has
the timings). PyTorch is imported inside the functions, so this module imports
where PyTorch is not installed.
"""

import keras
import numpy as np

from keras_gumbel._backend import portable

__all__ = [
    "all_finite",
    "gumbel_from_uniform",
    "nan_where",
    "ordinary_temperature",
    "scaled_softmax",
    "shift_rows",
    "softmax_vjp_scores",
    "stream_key",
    "stream_uniform",
    "temperature_needs_gradient",
    "uniform",
]


def _seed_words(seed):
    """The two 32-bit words of a checked seed: a Keras seed state, `(seed, 0)`
    for an int, or a fresh draw of Keras's global generator for None."""
    if seed is None:
        with portable.SEED_LOCK:
            return int(keras.random.randint((), 0, 2**31 - 1, dtype="int32")), 0
    if isinstance(seed, keras.random.SeedGenerator):
        with portable.SEED_LOCK:
            state = seed.next()
        first, second = (int(word) for word in keras.ops.convert_to_numpy(state))
        return first, second
    return seed, 0


def _mix_seed(seed):
    """A 32-bit seed for a `torch.Generator`, mixing both words of a Keras seed.

    Keras seeds a `torch.Generator` with `(seed + counter) mod 2**32`, so the
    generators seeded 11 and 12 draw the same numbers one call apart, and two
    layers with nearby seeds share their noise. The CPU generator keeps only 32
    bits of its seed, so both words go through the SplitMix64 finaliser (Steele
    et al., 2014) and its low 32 bits seed it instead.
    """
    first, second = _seed_words(seed)
    words = ((first & 0xFFFFFFFF) << 32) | (second & 0xFFFFFFFF)
    return portable.splitmix64(words) & 0xFFFFFFFF


def _device():
    return keras.ops.convert_to_tensor(0.0).device


def _draw(shape, dtype, torch_seed):
    """`U[tiny, 1)` from a generator seeded with `torch_seed` (None on the meta
    device, where generators do not exist and only shapes are inferred)."""
    import torch

    device = _device()
    torch_dtype = getattr(torch, dtype)
    if torch_seed is None:
        return torch.rand(shape, dtype=torch_dtype, device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed(torch_seed)
    draw = torch.rand(shape, generator=generator, dtype=torch_dtype, device=device)
    return draw.clamp_min_(np.finfo(dtype).tiny)


def uniform(shape, dtype, seed):
    """`U[tiny, 1)` from one `torch.rand` and an in-place clamp.

    `keras.random.uniform` adds `(maxval - minval) * u + minval` and the caller a
    separate `maximum`: three passes over the draw that change nothing here.
    """
    if _device().type == "meta":
        return _draw(shape, dtype, None)
    return _draw(shape, dtype, _mix_seed(seed))


def stream_key(seed):
    """The seed's two words, as a tensor: a stream's draws mix in their index."""
    import torch

    if _device().type == "meta":
        return torch.zeros((2,), dtype=torch.int64)
    return torch.tensor(_seed_words(seed), dtype=torch.int64)


def stream_uniform(shape, dtype, key, index):
    """Draw `index` of `key` from a generator seeded with both words and the index.

    The loop over draws runs eagerly here, so the index is a Python int.
    """
    if _device().type == "meta":
        return _draw(shape, dtype, None)
    first, second = (int(word) for word in key.tolist())
    return _draw(
        shape, dtype, portable.stream_seed(first, second, int(index)) & 0xFFFFFFFF
    )


def gumbel_from_uniform(uniforms):
    """`-log(-log(u))` in place: the draw is fresh and no one else holds it."""
    return uniforms.log_().neg_().log_().neg_()


def temperature_needs_gradient(temperature):
    """PyTorch computes whatever a backward function returns, so ask autograd."""
    return bool(getattr(temperature, "requires_grad", True))


def softmax_vjp_scores(probs, upstream, temperature):
    """`probs * (upstream - sum(upstream * probs)) / temperature`, one new tensor."""
    d_scores = upstream * probs
    inner = d_scores.sum(dim=-1, keepdim=True)
    return d_scores.addcmul_(probs, inner, value=-1).div_(temperature)


def scaled_softmax(scores, temperature):
    """`torch.softmax` where it gives what the shifted softmax gives; else None.

    The fused kernel and its own backward cost two kernels where the shifted
    softmax with its hand-written gradient costs about a dozen. It gives a row
    with no finite score NaN instead of zeros, and autograd would give a
    trained temperature `0 * inf` from a `-inf` score, so those cases (and
    tracing, where the row check cannot run) return None.
    """
    import torch

    # `torch.compiler.is_compiling` is new in PyTorch 2.3; before it, a compiled
    # function gets a graph break at the row check, and the same values. The
    # fallback can go once the torch extra requires 2.3.
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
    if temperature.requires_grad or scores.device.type == "meta" or compiling:
        return None
    with torch.no_grad():
        row_max = torch.amax(scores, dim=-1, keepdim=True)
    if not bool(torch.all(row_max > float("-inf"))):
        return None
    # Shifted before scaling so that a tiny temperature cannot overflow; the
    # shift changes neither the softmax nor its gradient. In place: the
    # shifted scores are a fresh tensor.
    shifted = scores - row_max
    return torch.softmax(shifted.div_(temperature), dim=-1)


def _symbolic(tensor):
    # Keras infers shapes on the meta device, where values cannot be read.
    import torch

    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
    return tensor.device.type == "meta" or compiling


def shift_rows(scores):
    """The portable shift where it changes anything, after one reduction.

    PyTorch runs eagerly, so the values decide: `torch.amax` propagates NaN,
    and the portable form runs only for a batch with a row whose maximum lies
    beyond `portable.UNSHIFTED_BOUND`, is `+inf` or NaN.
    """
    import torch

    if _symbolic(scores):
        return portable.shift_rows(scores)
    with torch.no_grad():
        maximum = torch.amax(scores, dim=-1, keepdim=True)
        in_range = (maximum.abs() <= portable.UNSHIFTED_BOUND) | (
            maximum == float("-inf")
        )
    if not bool(torch.all(in_range)):
        return portable.shift_rows(scores)
    return scores, torch.isnan(maximum)


def nan_where(invalid, values):
    """The portable `where`, run only when some entry is invalid."""
    import torch

    if _symbolic(values) or bool(torch.any(invalid)):
        return portable.nan_where(invalid, values)
    return values


def ordinary_temperature(temperature, minimum):
    """Read whether every temperature lies in `[max(minimum, tiny), 1 / tiny]`.

    There the policy's `where`s and clamp change no value and no gradient, and
    one read of a boolean costs less than the dozen operations they dispatch.
    NaN fails the comparisons, so it keeps the policy.
    """
    import torch

    if _symbolic(temperature):
        return False
    tiny = float(np.finfo(keras.backend.standardize_dtype(temperature.dtype)).tiny)
    lower = max(minimum or 0.0, tiny)
    with torch.no_grad():
        return bool(torch.all((temperature >= lower) & (temperature <= 1.0 / tiny)))


def all_finite(values):
    """Read whether every value is finite, when the policy for NaN and infinite
    logits would change nothing; one boolean read instead of its operations."""
    import torch

    if _symbolic(values):
        return False
    with torch.no_grad():
        return bool(torch.isfinite(values).all())
