"""Times Gumbel-Softmax sampling side by side and prints a table of ratios.

Every candidate draws one relaxed sample of a `[4096, 1024]` float32 logits
tensor (`--shape`), forward only and forward + backward (the gradient of
`sum(sample * weights)` with respect to the logits, asked for as the
vector-Jacobian product with cotangent `weights` so that no loss computation is
timed), in TensorFlow graph mode
(`tf.function`) and with XLA (`tf.function(jit_compile=True)`):

- `ours layer`: `keras_gumbel.GumbelSoftmax(training=True)`, relaxed; the
  reference every ratio is taken against;
- `ours layer hard`: the same layer with `hard=True` (straight-through);
- `ours ops`: `keras_gumbel.ops.gumbel_softmax(logits, seed=None)`;
- `tfp`: `tfp.distributions.RelaxedOneHotCategorical(t, logits).sample()`
  (reparameterized);
- `keras uniform`: the blog-post snippet,
  `softmax((logits - log(-log(keras.random.uniform(...) + eps) + eps)) / t)`;
- `torch` (if torch is installed): `torch.nn.functional.gumbel_softmax`, eager
  (PyTorch has no graph/XLA mode here, so it appears in both columns);
- `floor`: one uniform draw (the same Philox draw as ours,
  `keras_gumbel.random.uniform`) plus one fused `tf.nn.softmax`: the least any
  sampler must do;
- `gumbel floor`: the same draw, the Gumbel transform `-log(-log(u))`, the
  temperature and one fused `tf.nn.softmax`: the least a Gumbel-Softmax
  sampler must do with TensorFlow's own kernels (the fused softmax rounds a
  dominant entry to `1 - 2**-24` rather than 1, so it is a bound, not a
  sampler we would ship).

Candidates run round-robin (the order rotates every round) after a warm-up, so
that load from other processes on a shared machine hits all of them alike; the
table reports medians.

With `KERAS_BACKEND=jax` or `KERAS_BACKEND=torch` the script times the same
sample on that backend instead (forward and forward + backward; JAX under
`jax.jit`, PyTorch eagerly), against that backend's usual alternative
(`jax.random.gumbel` + `jax.nn.softmax`, `torch.nn.functional.gumbel_softmax`),
the `keras.random.uniform` snippet and the floor, plus the uniform draw alone:
`keras_gumbel.random.uniform` against `keras.random.uniform` with the clamp to
`[tiny, 1)` it needs. There the reference row is `ours ops`.

Usage:
    python benchmarks/sampling.py                 # full run, a few minutes
    python benchmarks/sampling.py --quick         # smaller shape, fewer repeats
    python benchmarks/sampling.py --repeats 50 --shape 4096,1024
    KERAS_BACKEND=jax python benchmarks/sampling.py
    KERAS_BACKEND=torch python benchmarks/sampling.py
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's default CPU allocator hands 16 MB buffers back to the system and
# page-faults them in again, at a cost that depends on the heap's history: the
# same computation then takes 42 or 56 ms from one run to the next. Its BFC
# allocator keeps the memory, so cells move less (the interquartile range of a
# fwd+bwd cell fell from 14 to 4 ms); the medians agree within the default's
# spread. Set TF_CPU_ALLOCATOR_USE_BFC=false to time the default.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
# PyTorch's OpenMP workers spin after each op by default, which would steal the
# cores from TensorFlow's threads running next in the round-robin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_gumbel  # noqa: E402

# Each candidate gets its own tf.function of the same Python step function;
# TensorFlow warns about that as if it were retracing.
tf.get_logger().setLevel("ERROR")

TEMPERATURE = 0.5
EPS = 1e-20  # the blog snippet's epsilon

# The targets of issue 2, checked on the `ours layer` row.
TARGET_VS_TFP = 0.8  # forward + backward
TARGET_XLA_VS_GRAPH = 1.15
TARGET_VS_FLOOR = 1.3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Time Gumbel-Softmax samplers side by side (TensorFlow "
        "graph mode and XLA) and print median times and ratios."
    )
    parser.add_argument(
        "--shape",
        default="4096,1024",
        help="Logits shape, comma-separated; the last axis holds the categories. "
        "Default: 4096,1024.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=30,
        help="Timed runs per candidate and setting (median reported). Default: 30.",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="Untimed runs per candidate before timing. Default: 3.",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="Seconds of timed runs after which a candidate stops (after at "
        "least 3 runs). Default: 30.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: shape 512,256, 5 repeats, 1 warm-up.",
    )
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="Leave out torch.nn.functional.gumbel_softmax even if installed.",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.repeats, args.warmup = "512,256", 5, 1
    try:
        args.shape = tuple(int(size) for size in args.shape.split(","))
    except ValueError:
        parser.error(f"--shape must be integers separated by commas: {args.shape}")
    if len(args.shape) < 1 or min(args.shape) < 1:
        parser.error(f"--shape must be positive integers: {args.shape}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


# Samplers: each maps float32 logits (category axis last) to a relaxed sample.


def ours_layer(hard=False):
    layer = keras_gumbel.GumbelSoftmax(TEMPERATURE, hard=hard, seed=0)
    return lambda logits: layer(logits, training=True)


def ours_ops(logits):
    return keras_gumbel.ops.gumbel_softmax(logits, TEMPERATURE)


def tfp_sampler():
    import tensorflow_probability as tfp

    def sample(logits):
        distribution = tfp.distributions.RelaxedOneHotCategorical(
            TEMPERATURE, logits=logits
        )
        return distribution.sample()

    return sample


def keras_uniform_sampler():
    generator = keras.random.SeedGenerator(0)

    def sample(logits):
        uniform = keras.random.uniform(tf.shape(logits), seed=generator)
        gumbel = -keras.ops.log(-keras.ops.log(uniform + EPS) + EPS)
        return keras.ops.softmax((logits + gumbel) / TEMPERATURE, axis=-1)

    return sample


def floor_sampler():
    generator = keras.random.SeedGenerator(0)

    def sample(logits):
        # The same Philox draw as ours (keras_gumbel.random.uniform), one
        # fused softmax, and nothing else.
        uniform = keras_gumbel.random.uniform(tf.shape(logits), seed=generator)
        return tf.nn.softmax(logits + uniform)

    return sample


def gumbel_floor_sampler():
    generator = keras.random.SeedGenerator(0)

    def sample(logits):
        # What every Gumbel-Softmax sampler computes (the draw, the Gumbel
        # transform, the temperature), finished by TensorFlow's fused softmax
        # and its built-in gradient.
        uniform = keras_gumbel.random.uniform(tf.shape(logits), seed=generator)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        return tf.nn.softmax((logits + gumbel) / TEMPERATURE)

    return sample


def tensorflow_candidates():
    return {
        "ours layer": ours_layer(),
        "ours layer hard": ours_layer(hard=True),
        "ours ops": ours_ops,
        "tfp": tfp_sampler(),
        "keras uniform": keras_uniform_sampler(),
        "floor": floor_sampler(),
        "gumbel floor": gumbel_floor_sampler(),
    }


def tensorflow_runner(sample, backward, jit_compile):
    """A compiled function running one forward (+ backward) pass."""
    if backward:

        def step(logits, weights):
            # The gradient of `sum(sample * weights)`, asked for as a
            # vector-Jacobian product: the loss's own broadcast and product would
            # add two passes over the tensor to every candidate alike.
            with tf.GradientTape() as tape:
                tape.watch(logits)
                drawn = sample(logits)
            return tape.gradient(drawn, logits, output_gradients=weights)

    else:

        def step(logits, weights):
            return sample(logits)

    return tf.function(step, jit_compile=jit_compile)


def torch_runner(shape, backward):
    try:
        import torch
    except ImportError:
        return None
    generator = np.random.default_rng(1)
    logits = torch.tensor(generator.normal(size=shape).astype("float32"))
    weights = torch.tensor(generator.normal(size=shape).astype("float32"))
    if backward:
        logits.requires_grad_(True)

        def run():
            sample = torch.nn.functional.gumbel_softmax(logits, tau=TEMPERATURE)
            (grad,) = torch.autograd.grad(sample, logits, grad_outputs=weights)
            return grad

    else:

        def run():
            with torch.no_grad():
                return torch.nn.functional.gumbel_softmax(logits, tau=TEMPERATURE)

    return run


def settings():
    for backward in (False, True):
        for jit_compile in (False, True):
            yield backward, jit_compile


def setting_name(backward, jit_compile):
    return ("fwd+bwd" if backward else "forward") + (" xla" if jit_compile else "")


def build(shape, use_torch=True):
    """All (candidate, setting) -> zero-argument callables."""
    generator = np.random.default_rng(0)
    logits = tf.constant(generator.normal(size=shape).astype("float32"))
    weights = tf.constant(generator.normal(size=shape).astype("float32"))
    runs = {}
    for name, sample in tensorflow_candidates().items():
        for backward, jit_compile in settings():
            function = tensorflow_runner(sample, backward, jit_compile)
            key = name, setting_name(backward, jit_compile)
            runs[key] = lambda function=function: function(logits, weights)
    for backward in (False, True) if use_torch else ():
        run = torch_runner(shape, backward)
        if run is not None:
            for jit_compile in (False, True):
                runs["torch", setting_name(backward, jit_compile)] = run
    return runs


def measure(runs, repeats, warmup, budget):
    """Seconds of every run, by round; candidates interleaved, order rotated."""
    keys = list(runs)
    for index, key in enumerate(keys):
        print(
            f"\rwarm-up {index + 1}/{len(keys)}: {key[0]} ({key[1]})".ljust(70),
            end="",
            file=sys.stderr,
            flush=True,
        )
        for _ in range(warmup):
            runs[key]()
    times = {key: {} for key in keys}
    for repeat in range(repeats):
        print(
            f"\rround {repeat + 1}/{repeats}".ljust(70),
            end="",
            file=sys.stderr,
            flush=True,
        )
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            # A candidate that takes seconds per run (the default random
            # generator under XLA) stops after 3 runs once it used its budget.
            if len(times[key]) >= 3 and sum(times[key].values()) > budget:
                continue
            start = time.perf_counter()
            result = runs[key]()
            # On CPU TensorFlow and PyTorch return once the values are computed;
            # touching the shape keeps the result alive until the clock stops.
            # JAX dispatches asynchronously and must be waited for.
            if hasattr(result, "block_until_ready"):
                result.block_until_ready()
            _ = result.shape
            times[key][repeat] = time.perf_counter() - start
    print("\r".ljust(71), end="\r", file=sys.stderr, flush=True)
    return times


def medians_of(times):
    """Median seconds and number of runs, per (candidate, column)."""
    medians = {key: statistics.median(values.values()) for key, values in times.items()}
    counts = {key: len(values) for key, values in times.items()}
    return medians, counts


def paired_ratio(times, numerator, denominator):
    """Ratio of two cells, with its spread over rounds.

    Both candidates ran back to back in every round, so the per-round ratio
    cancels the load that drifts between rounds. Returns the median per-round
    ratio and its 25th and 75th percentiles; for a cell cut short by its budget
    (fewer than 10 common rounds), the ratio of the medians and no spread.
    """
    common = times[numerator].keys() & times[denominator].keys()
    if len(common) < 10:
        ratio = statistics.median(times[numerator].values()) / statistics.median(
            times[denominator].values()
        )
        return ratio, None, None
    ratios = [times[numerator][r] / times[denominator][r] for r in common]
    low, _, high = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), low, high


def format_ratio(label, ratio, low, high):
    spread = f"[{low:4.2f}-{high:4.2f}]" if low is not None else " " * 11
    return f"  {label:<34} {ratio:5.2f} {spread}"


def versions():
    parts = [
        f"python {platform.python_version()}",
        f"tensorflow {tf.__version__}",
        f"keras {keras.__version__}",
        f"keras-gumbel {keras_gumbel.__version__}",
    ]
    try:
        import tensorflow_probability as tfp

        parts.append(f"tensorflow-probability {tfp.__version__}")
    except ImportError:
        pass
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch not installed")
    return ", ".join(parts)


def print_table(medians, counts, args, columns, reference_of):
    """Median ms per candidate and column, and the ratio to `reference_of(name)`."""
    names = list(dict.fromkeys(name for name, _ in medians))
    width = max(len(name) for name in names) + 2
    print("".ljust(width) + "".join(column.rjust(18) for column in columns))
    for name in names:
        reference = reference_of(name)
        cells = []
        for column in columns:
            if (name, column) not in medians:
                cells.append("-".rjust(18))
                continue
            value = medians[name, column]
            ratio = value / medians[reference, column]
            short = "*" if counts[name, column] < args.repeats else " "
            cells.append(f"{value * 1e3:8.2f}{short}({ratio:5.2f}x)".rjust(18))
        print(name.ljust(width) + "".join(cells))
    if any(count < args.repeats for count in counts.values()):
        print(f"* fewer runs (at least 3): over the {args.budget:g} s budget")


def report(times, args):
    medians, counts = medians_of(times)
    columns = [setting_name(b, j) for b, j in settings()]
    reference = "ours layer"
    print(
        f"shape {args.shape} float32, temperature {TEMPERATURE}, "
        f"median of {args.repeats} runs, {os.cpu_count()} CPU cores, "
        f"TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC')}"
    )
    print(versions())
    print()
    print("Median time in ms (ratio to `ours layer` in the same column):")
    print_table(medians, counts, args, columns, lambda name: reference)
    print()
    print(
        "Targets (`ours layer`): median of the per-round ratios [25th-75th percentile]"
    )
    checks = []
    for column in ("fwd+bwd", "fwd+bwd xla"):
        checks.append(
            (
                f"{column}: ours / tfp",
                (reference, column),
                ("tfp", column),
                TARGET_VS_TFP,
            )
        )
    for pass_name in ("forward", "fwd+bwd"):
        checks.append(
            (
                f"{pass_name}: ours xla / ours graph",
                (reference, pass_name + " xla"),
                (reference, pass_name),
                TARGET_XLA_VS_GRAPH,
            )
        )
    for column in columns:
        checks.append(
            (
                f"{column}: ours / floor",
                (reference, column),
                ("floor", column),
                TARGET_VS_FLOOR,
            )
        )
    met = True
    for label, numerator, denominator, target in checks:
        ratio, low, high = paired_ratio(times, numerator, denominator)
        verdict = "met" if ratio <= target else "MISSED"
        met = met and ratio <= target
        print(
            f"{format_ratio(label, ratio, low, high)}  (target <= {target:4.2f})  "
            f"{verdict}"
        )
    # The floors are the least a sampler must do, so where they are not below
    # TARGET_VS_TFP x TFP no sampler can be (docs/performance.md).
    print()
    print("For scale (the floors against TFP, and ours against the Gumbel floor):")
    lines = []
    for column in ("fwd+bwd", "fwd+bwd xla"):
        for floor in ("floor", "gumbel floor"):
            lines.append((f"{column}: {floor} / tfp", floor, "tfp", column))
    for column in columns:
        lines.append(
            (f"{column}: ours / gumbel floor", reference, "gumbel floor", column)
        )
    for label, numerator, denominator, column in lines:
        ratio = paired_ratio(times, (numerator, column), (denominator, column))
        print(format_ratio(label, *ratio).rstrip())
    return met


# JAX and PyTorch: the same sample on the backend Keras runs on.


def backend_candidates(backend, shape):
    """Samplers and draws for JAX or PyTorch: name -> function of the logits."""
    ops = keras.ops

    def ours_ops_sample(logits):
        # An int seed: the same noise on every call, which costs the same to
        # draw and keeps the JAX function pure.
        return keras_gumbel.ops.gumbel_softmax(logits, TEMPERATURE, seed=0)

    def ours_hard_sample(logits):
        return keras_gumbel.ops.gumbel_softmax(logits, TEMPERATURE, hard=True, seed=0)

    def keras_uniform_sample(logits):
        uniform = keras.random.uniform(ops.shape(logits), seed=0)
        gumbel = -ops.log(-ops.log(uniform + EPS) + EPS)
        return ops.softmax((logits + gumbel) / TEMPERATURE, axis=-1)

    def floor_sample(logits):
        uniform = keras_gumbel.random.uniform(ops.shape(logits), seed=0)
        return ops.softmax(logits + uniform, axis=-1)

    def ours_draw(logits):
        return keras_gumbel.random.uniform(ops.shape(logits), seed=0)

    def keras_draw(logits):
        tiny = float(np.finfo("float32").tiny)
        return ops.maximum(keras.random.uniform(ops.shape(logits), seed=0), tiny)

    samplers = {
        "ours ops": ours_ops_sample,
        "ours ops hard": ours_hard_sample,
        "keras uniform": keras_uniform_sample,
        "floor": floor_sample,
    }
    if backend == "jax":
        import jax

        key = jax.random.key(0)

        def jax_sample(logits):
            gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
            return jax.nn.softmax((logits + gumbel) / TEMPERATURE, axis=-1)

        samplers["jax.random.gumbel"] = jax_sample
    else:
        import torch

        def torch_sample(logits):
            return torch.nn.functional.gumbel_softmax(logits, tau=TEMPERATURE)

        samplers["torch gumbel_softmax"] = torch_sample
    draws = {"draw: ours": ours_draw, "draw: keras uniform": keras_draw}
    return samplers, draws


def backend_build(backend, shape):
    """(candidate, column) -> zero-argument callables on JAX or PyTorch."""
    generator = np.random.default_rng(0)
    logits = keras.ops.convert_to_tensor(generator.normal(size=shape).astype("float32"))
    weights = keras.ops.convert_to_tensor(
        generator.normal(size=shape).astype("float32")
    )
    samplers, draws = backend_candidates(backend, shape)
    runs = {}
    if backend == "jax":
        import jax

        for name, sample in samplers.items():
            forward = jax.jit(sample)
            # The same vector-Jacobian product as on TensorFlow.
            backward = jax.jit(lambda x, w, f=sample: jax.vjp(f, x)[1](w)[0])
            runs[name, "forward"] = lambda f=forward: f(logits)
            runs[name, "fwd+bwd"] = lambda f=backward: f(logits, weights)
        for name, draw in draws.items():
            compiled = jax.jit(draw)
            runs[name, "forward"] = lambda f=compiled: f(logits)
    else:
        import torch

        leaf = logits.detach().clone().requires_grad_(True)
        for name, sample in samplers.items():

            def forward(f=sample):
                with torch.no_grad():
                    return f(logits)

            def backward(f=sample):
                (grad,) = torch.autograd.grad(f(leaf), leaf, grad_outputs=weights)
                return grad

            runs[name, "forward"] = forward
            runs[name, "fwd+bwd"] = backward
        for name, draw in draws.items():
            runs[name, "forward"] = lambda f=draw: f(logits)
    return runs


def backend_report(backend, medians, counts, args):
    print(
        f"{backend}: shape {args.shape} float32, temperature {TEMPERATURE}, "
        f"median of {args.repeats} runs, {os.cpu_count()} CPU cores"
    )
    import importlib

    module = importlib.import_module(backend)
    print(
        f"python {platform.python_version()}, {backend} {module.__version__}, "
        f"keras {keras.__version__}, keras-gumbel {keras_gumbel.__version__}"
    )
    print()
    print("Median time in ms (ratio to `ours ops`; draws: to `draw: ours`):")
    print_table(
        medians,
        counts,
        args,
        ["forward", "fwd+bwd"],
        lambda name: "draw: ours" if name.startswith("draw:") else "ours ops",
    )


def main(argv=None):
    args = parse_args(argv)
    backend = keras.backend.backend()
    if backend != "tensorflow":
        runs = backend_build(backend, args.shape)
        times = measure(runs, args.repeats, args.warmup, args.budget)
        backend_report(backend, *medians_of(times), args)
        return
    runs = build(args.shape, use_torch=not args.no_torch)
    report(measure(runs, args.repeats, args.warmup, args.budget), args)


if __name__ == "__main__":
    main()
