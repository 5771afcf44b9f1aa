"""Times this checkout against another revision, interleaved, in one process.

A refactor should not slow anything down, and timings taken in two processes on a
shared machine differ by more than a refactor changes. This script extracts the
package at `--base` (a git revision) into a temporary folder as
`keras_gumbel_base`, imports it beside the working tree's `keras_gumbel`, and
times the same operations from both in alternating order: every round runs each
operation once from each revision, and the table reports the median over rounds
of the per-round ratio `this / base`, with its interquartile range. A ratio near
1.00, within its range, is no change.

Operations, on `[4096, 1024]` float32 logits (`--shape`), forward and
forward + backward (the VJP with a fixed cotangent):

- `relaxed`: `ops.gumbel_softmax(logits, 0.5)`;
- `straight_through`: `ops.gumbel_softmax(logits, 0.5, hard=True)`;
- `gumbel_rao`: `hard=True, estimator="gumbel_rao"` (10 draws);
- `top_k`: `ops.gumbel_top_k(logits, 8, 0.5)`;
- `layer`: a `GumbelSoftmax(hard=True)` layer in training mode.

On TensorFlow each runs under `tf.function` (graph) and `tf.function(jit_compile=True)`
(XLA); on JAX under `jax.jit`; on PyTorch eagerly, as Keras runs `fit` there.

Usage:
    python benchmarks/revisions.py --base HEAD~3
    python benchmarks/revisions.py --base main --quick
    KERAS_BACKEND=jax python benchmarks/revisions.py --base 910bfc0
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras_gumbel  # noqa: E402

TEMPERATURE = 0.5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Time this checkout against another git revision, "
        "interleaved in one process, and print per-round ratios."
    )
    parser.add_argument("--base", required=True, help="Git revision to compare with.")
    parser.add_argument(
        "--shape", default="4096,1024", help="Logits shape. Default: 4096,1024."
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="Timed rounds. Default: 15."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: shape 256,64, 3 rounds."
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.rounds = "256,64", 3
    args.shape = tuple(int(size) for size in args.shape.split(","))
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def load_base(revision, directory):
    """Imports the package at `revision` as `keras_gumbel_base`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "keras_gumbel"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    package = pathlib.Path(directory) / "keras_gumbel"
    for path in package.rglob("*.py"):
        # Every mention, the Keras registration package included, so the two
        # revisions' layers do not replace each other in Keras's registry.
        text = re.sub(r"\bkeras_gumbel\b", "keras_gumbel_base", path.read_text())
        path.write_text(text)
    package.rename(pathlib.Path(directory) / "keras_gumbel_base")
    sys.path.insert(0, directory)
    import keras_gumbel_base

    return keras_gumbel_base


def operations(package):
    # An int seed: the same work as a generator's, and usable under jax.jit.
    ops = package.ops
    layer = package.GumbelSoftmax(TEMPERATURE, hard=True, seed=0)
    return {
        "relaxed": lambda x: ops.gumbel_softmax(x, TEMPERATURE, seed=0),
        "straight_through": lambda x: ops.gumbel_softmax(
            x, TEMPERATURE, hard=True, seed=0
        ),
        "gumbel_rao": lambda x: ops.gumbel_softmax(
            x, TEMPERATURE, hard=True, estimator="gumbel_rao", seed=0
        ),
        "top_k": lambda x: ops.gumbel_top_k(x, 8, TEMPERATURE, seed=0),
        "layer": lambda x: layer(x, training=True),
    }


def tensorflow_runners(function, logits, weights, backward, jit_compile):
    import tensorflow as tf

    def step(x):
        if not backward:
            return function(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        return tape.gradient(y, x, output_gradients=weights)

    compiled = tf.function(step, jit_compile=jit_compile)
    return lambda: compiled(logits).numpy()


def jax_runners(function, logits, weights, backward):
    import jax

    if backward:

        def step(x):
            _, vjp = jax.vjp(function, x)
            return vjp(weights)[0]

    else:
        step = function
    compiled = jax.jit(step)
    return lambda: compiled(logits).block_until_ready()


def torch_runners(function, logits, weights, backward):
    import torch

    def run():
        if not backward:
            with torch.no_grad():
                return function(logits)
        x = logits.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(function(x), x, weights)
        return gradient

    return run


def settings():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return [("graph", False), ("XLA", True)]
    return [("jit" if backend == "jax" else "eager", None)]


def runner(function, logits, weights, backward, jit_compile):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tensorflow_runners(function, logits, weights, backward, jit_compile)
    if backend == "jax":
        return jax_runners(function, logits, weights, backward)
    return torch_runners(function, logits, weights, backward)


def build(packages, shape):
    rng = np.random.default_rng(0)
    logits = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    weights = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    cells = {}
    for setting, jit_compile in settings():
        for backward in (False, True):
            column = f"{setting} {'fwd+bwd' if backward else 'fwd'}"
            for revision, package in packages.items():
                for name, function in operations(package).items():
                    if keras.backend.backend() == "jax" and name == "layer":
                        continue  # a stateful layer cannot advance under jax.jit
                    cells[(name, column, revision)] = runner(
                        function, logits, weights, backward, jit_compile
                    )
    return cells


def measure(cells, rounds):
    """Warms every cell up, then times each once per round, alternating order."""
    keys = list(cells)
    for key in keys:
        cells[key]()
    times = {key: [] for key in keys}
    for round_index in range(rounds):
        order = keys if round_index % 2 == 0 else keys[::-1]
        for key in order:
            start = time.perf_counter()
            cells[key]()
            times[key].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{rounds}", file=sys.stderr, flush=True)
    return times


def quartiles(values):
    low, median, high = np.percentile(values, [25, 50, 75])
    return low, median, high


def report(times, args):
    rows = list(dict.fromkeys(name for name, _, _ in times))
    columns = list(dict.fromkeys(column for _, column, _ in times))
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"shape {args.shape}, {args.rounds} rounds; this checkout vs {args.base}"
    )
    print("median of per-round ratios this / base [interquartile range]")
    print("| operation | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in rows:
        cells = []
        for column in columns:
            this = times.get((name, column, "this"))
            base = times.get((name, column, "base"))
            if this is None:
                cells.append("-")
                continue
            ratios = [t / b for t, b in zip(this, base, strict=True)]
            low, median, high = quartiles(ratios)
            base_ms = statistics.median(base) * 1e3
            cells.append(f"{median:.2f} [{low:.2f}, {high:.2f}] of {base_ms:.1f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        base = load_base(args.base, directory)
        packages = {"this": keras_gumbel, "base": base}
        times = measure(build(packages, args.shape), args.rounds)
    report(times, args)


if __name__ == "__main__":
    main()
