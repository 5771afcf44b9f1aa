"""What the cost benchmarks share: interleaved timing and paired ratios.

Every candidate is a zero-argument callable that runs to completion (it waits
for JAX's asynchronous dispatch). Candidates are timed round-robin, the order
rotating every round, so that load from other processes on a shared machine
hits all of them alike; a ratio between two candidates is the median of their
per-round ratios, which cancels the load that drifts between rounds, with its
interquartile range as the spread.
"""

import os
import statistics
import sys
import time

import keras


def progress(message):
    print(message, file=sys.stderr, flush=True)


def calls_per_timing(run, seconds):
    """How many calls of `run` one timing needs to last about `seconds`: fast
    calls are timed in batches, so that the clock's resolution and the
    per-call overhead of the timer do not count."""
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    return max(1, round(seconds / max(elapsed, 1e-6)))


def interleaved(runs, rounds, warmup=2, seconds=0.05, budget=None, label=""):
    """Seconds per call of every candidate, by round: `{key: {round: seconds}}`.

    `runs` maps keys to zero-argument callables. Each is called `warmup` times
    first (compilation), then timed once per round in batches of calls that
    last about `seconds`. A candidate whose timings have taken `budget`
    seconds (after at least 3 rounds) sits out the remaining rounds.
    """
    keys = list(runs)
    repeats = {}
    for index, key in enumerate(keys):
        progress(f"{label}warm-up {index + 1}/{len(keys)}: {key}")
        for _ in range(warmup):
            runs[key]()
        repeats[key] = calls_per_timing(runs[key], seconds)
    times = {key: {} for key in keys}
    for round_index in range(rounds):
        progress(f"{label}round {round_index + 1}/{rounds}")
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            spent = sum(times[key].values()) * repeats[key]
            if budget is not None and len(times[key]) >= 3 and spent > budget:
                continue
            start = time.perf_counter()
            for _ in range(repeats[key]):
                runs[key]()
            times[key][round_index] = (time.perf_counter() - start) / repeats[key]
    return times


def median(times):
    """The median of one candidate's per-round seconds."""
    return statistics.median(times.values())


def paired_ratio(numerator, denominator):
    """Median of the per-round ratios over the rounds both candidates ran,
    and their 25th and 75th percentiles."""
    ratios = [numerator[r] / denominator[r] for r in numerator if r in denominator]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, middle, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return middle, low, high


def format_ratio(ratio):
    median, low, high = ratio
    return f"{median:.2f} [{low:.2f}-{high:.2f}]"


def forward_backward(sample, x, cotangent, jit_compile=True):
    """A zero-argument callable running `sample` forward and backward (the
    vector-Jacobian product with `cotangent`), compiled as each backend
    compiles: `tf.function` (with XLA if `jit_compile`) on TensorFlow,
    `jax.jit` on JAX, eagerly on PyTorch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=jit_compile)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = sample(x)
            return tape.gradient(y, x, output_gradients=cotangent)

        return lambda: step(x).numpy()
    if backend == "jax":
        import jax

        step = jax.jit(lambda x: jax.vjp(sample, x)[1](cotangent)[0])
        return lambda: step(x).block_until_ready()
    import torch

    def run():
        leaf = x.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(sample(leaf), leaf, cotangent)
        return gradient

    return run


def setup():
    """Quiets TensorFlow, whose tf.function per candidate it reports as
    retracing, and returns a line naming the versions and the machine."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
    import keras_gumbel

    module = __import__(backend)
    return (
        f"{backend} {module.__version__}, keras {keras.__version__}, "
        f"keras-gumbel {keras_gumbel.__version__}, {os.cpu_count()} CPU cores"
    )
