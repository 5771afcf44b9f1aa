"""Times the binary path against two categories, side by side, per estimator.

For every estimator, `binary` is `keras_gumbel.ops.gumbel_sigmoid(logits)` on a
`[4096, 1024]` float32 tensor of log-odds (`--shape`), and `two categories` is
what a user without it writes: `gumbel_softmax` on the logits stacked with
zeros, `[..., 2]`, keeping the first category. Both are timed forward +
backward (the vector-Jacobian product with a fixed cotangent), compiled as each
backend compiles (`tf.function` on TensorFlow, `jax.jit` on JAX, eager on
PyTorch). On TensorFlow, `tfp.distributions.RelaxedBernoulli(t,
logits).sample()` is timed too (relaxed only, its one sampler).

The candidates run round-robin in one process, the order rotating every round,
so that load from elsewhere hits all of them alike; the table gives each
candidate's median time and the median of the per-round ratios binary / two
categories, with the target of the binary family issue: at most 0.6.

Usage:
    python benchmarks/binary.py               # a few minutes
    python benchmarks/binary.py --quick       # a smoke run
    KERAS_BACKEND=jax python benchmarks/binary.py
    KERAS_BACKEND=torch python benchmarks/binary.py
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import forward_backward  # noqa: E402

import keras_gumbel as kg  # noqa: E402

TEMPERATURE = 1.0  # ReinMax needs >= 1
TARGET = 0.6
# An int seed (the same noise every call), which `jax.jit` needs; the cost is
# that of any seed.
SEED = 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096,1024", help="Default: 4096,1024.")
    parser.add_argument("--repeats", type=int, default=20, help="Default: 20.")
    parser.add_argument("--quick", action="store_true", help="Shape 256,64, 3 repeats.")
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.repeats = "256,64", 3
    args.shape = tuple(int(size) for size in args.shape.split(","))
    if args.repeats < 1 or min(args.shape) < 1:
        parser.error("--repeats and --shape must be positive")
    return args


def binary(estimator):
    hard = estimator != "gumbel_softmax"
    return lambda x: kg.ops.gumbel_sigmoid(
        x, TEMPERATURE, hard=hard, estimator=estimator, seed=SEED
    )


def two_categories(estimator):
    hard = estimator != "gumbel_softmax"

    def sample(x):
        stacked = keras.ops.stack([x, keras.ops.zeros_like(x)], axis=-1)
        y = kg.ops.gumbel_softmax(
            stacked, TEMPERATURE, hard=hard, estimator=estimator, seed=SEED
        )
        return y[..., 0]

    return sample


def tfp_relaxed_bernoulli(x):
    import tensorflow_probability as tfp

    return tfp.distributions.RelaxedBernoulli(TEMPERATURE, logits=x).sample()


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.normal(size=args.shape).astype("float32"))
    cotangent = keras.ops.convert_to_tensor(
        rng.normal(size=args.shape).astype("float32")
    )
    candidates = {}
    for estimator in kg.ESTIMATORS:
        candidates[(estimator, "binary")] = binary(estimator)
        candidates[(estimator, "two categories")] = two_categories(estimator)
    if keras.backend.backend() == "tensorflow":
        candidates[("gumbel_softmax", "tfp")] = tfp_relaxed_bernoulli
    runners = {
        key: forward_backward(f, x, cotangent, jit_compile=False)
        for key, f in candidates.items()
    }
    for run in runners.values():
        run()  # compile and warm up
    times = {key: [] for key in runners}
    keys = list(runners)
    for round_index in range(args.repeats):
        print(f"round {round_index + 1}/{args.repeats}", file=sys.stderr, end="\r")
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            runners[key]()
            times[key].append(time.perf_counter() - start)
    print(file=sys.stderr)
    print(
        f"backend {keras.backend.backend()}, shape {args.shape}, fwd+bwd, "
        f"{args.repeats} interleaved rounds, medians"
    )
    print(f"{'estimator':<16}{'binary ms':>11}{'two cat. ms':>13}{'ratio':>8}  target")
    for estimator in kg.ESTIMATORS:
        ours, theirs = (
            times[(estimator, "binary")],
            times[(estimator, "two categories")],
        )
        ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        verdict = "ok" if ratio <= TARGET else "MISSED"
        print(
            f"{estimator:<16}{1e3 * statistics.median(ours):>11.2f}"
            f"{1e3 * statistics.median(theirs):>13.2f}{ratio:>8.2f}"
            f"  <= {TARGET} {verdict}"
        )
    if ("gumbel_softmax", "tfp") in times:
        ours, tfp = (
            times[("gumbel_softmax", "binary")],
            times[("gumbel_softmax", "tfp")],
        )
        ratio = statistics.median(a / b for a, b in zip(ours, tfp, strict=True))
        print(f"relaxed binary / tfp RelaxedBernoulli: {ratio:.2f}")


if __name__ == "__main__":
    main()
