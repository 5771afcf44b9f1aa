"""What each gradient estimator costs: forward + backward time and peak memory.

For every estimator in `keras_gumbel.ESTIMATORS`, decoupled straight-through
(`StraightThrough(forward_temperature=2)`) and `GumbelRao(draws=K)` for K in
{10, 100, 1000}, one call computes a sample of float32 logits of each shape
(`[100, 20, 10]`, the discrete VAE's latent, and `[4096, 1024]`) and its
vector-Jacobian product with a fixed cotangent, compiled as each backend
compiles: `tf.function(jit_compile=True)` on TensorFlow, `jax.jit` on JAX,
eagerly on PyTorch (Keras's default there; `torch.compile` takes minutes per
function on a CPU). Temperature 1 (ReinMax needs at least 1); the seed is a
`SeedGenerator` on TensorFlow and PyTorch and an int on JAX, where a generator
cannot advance inside `jax.jit`.

Time: candidates run round-robin (`benchmarks/_timing.py`); the table gives
the median time and the median of the per-round ratios to plain Gumbel-Softmax
with its interquartile range; a candidate that has used its time budget
(`--budget`, Gumbel-Rao with K = 1000 at the large shape) sits out the
remaining rounds, after at least 3. Peak memory, relative to plain Gumbel-Softmax,
is what the call needs beyond its inputs, measured as each backend allows:

- TensorFlow: the peak of its CPU allocator's bytes in use during one call,
  less those in use before (`tf.config.experimental.get_memory_info`, which
  the BFC allocator reports; the script turns it on);
- JAX: XLA's buffer assignment of the compiled program, scratch plus output
  bytes (`memory_analysis()`), exact and without running it;
- PyTorch: the rise of the process's peak resident set size during one call
  (Linux `VmHWM`, reset before each call), with glibc told to map every
  allocation of 64 KiB or more on its own, so that freed tensors leave the
  resident set at once; the median over rounds.

Goals (issue 17): every hard estimator other than Gumbel-Rao within 1.3 x plain
Gumbel-Softmax's time; Gumbel-Rao's peak memory within 2 x for every K.

Usage:
    python benchmarks/estimator_cost.py                 # TensorFlow
    KERAS_BACKEND=jax python benchmarks/estimator_cost.py
    KERAS_BACKEND=torch python benchmarks/estimator_cost.py
    python benchmarks/estimator_cost.py --quick         # a smoke run
"""

import argparse
import ctypes
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The allocator whose peak TensorFlow can report on CPU.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    format_ratio,
    forward_backward,
    interleaved,
    median,
    paired_ratio,
    progress,
    setup,
)

import keras_gumbel as kg  # noqa: E402

TEMPERATURE = 1.0
SHAPES = ((100, 20, 10), (4096, 1024))
DRAWS = (10, 100, 1000)
TIME_GOAL = 1.3
MEMORY_GOAL = 2.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        default=";".join(",".join(map(str, shape)) for shape in SHAPES),
        help="Logits shapes, ';'-separated, each comma-separated. "
        "Default: 100,20,10;4096,1024.",
    )
    parser.add_argument(
        "--draws",
        default=",".join(map(str, DRAWS)),
        help="Gumbel-Rao draws K, comma-separated. Default: 10,100,1000.",
    )
    parser.add_argument("--rounds", type=int, default=7, help="Default: 7.")
    parser.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="Seconds of timing after which a candidate (Gumbel-Rao with many "
        "draws) sits out the remaining rounds, after at least 3. Default: 120.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A smoke run: shapes 8,4,3 and 64,32, K in 2,5, 2 rounds.",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.draws, args.rounds = "8,4,3;64,32", "2,5", 2
    try:
        args.shapes = [
            tuple(int(size) for size in shape.split(","))
            for shape in args.shapes.split(";")
        ]
        args.draws = [int(draws) for draws in args.draws.split(",")]
    except ValueError:
        parser.error("--shapes and --draws take integers")
    if args.rounds < 1 or min(args.draws) < 1:
        parser.error("--rounds and --draws must be positive")
    return args


def candidates(draws):
    """Row name -> (estimator argument, whether it is a hard estimator)."""
    rows = {}
    for name in kg.ESTIMATORS:
        if name == "gumbel_rao":
            for count in draws:
                rows[f"gumbel_rao K={count}"] = kg.estimators.GumbelRao(draws=count)
        else:
            rows[name] = name
        if name == "straight_through":
            rows["straight_through t_f=2"] = kg.estimators.StraightThrough(2.0)
    return rows


def sampler(estimator):
    backend = keras.backend.backend()
    seed = 0 if backend == "jax" else keras.random.SeedGenerator(0)
    return lambda x: kg.ops.gumbel_softmax(
        x, TEMPERATURE, estimator=estimator, seed=seed
    )


# Peak memory.

_LIBC = ctypes.CDLL("libc.so.6")
_M_MMAP_THRESHOLD = -3


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_memory(sample, run, x, cotangent):
    """Bytes one forward + backward call needs beyond its inputs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        run()
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        run()
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    if backend == "jax":
        import jax

        step = jax.jit(lambda x: jax.vjp(sample, x)[1](cotangent)[0])
        analysis = step.lower(x).compile().memory_analysis()
        return analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    _LIBC.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status("VmRSS")
    result = run()
    peak = _status("VmHWM") - before
    del result
    return peak


def measure(shape, rows, rounds, budget):
    rng = np.random.default_rng(1)
    x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    cotangent = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    samplers = {name: sampler(estimator) for name, estimator in rows.items()}
    runs = {
        name: forward_backward(sample, x, cotangent)
        for name, sample in samplers.items()
    }
    times = interleaved(runs, rounds, warmup=1, budget=budget, label=f"{shape}: ")
    memory = {name: [] for name in runs}
    # Resident-set peaks vary from call to call; the allocator's peak and
    # XLA's buffer assignment do not.
    for _ in range(3 if keras.backend.backend() == "torch" else 1):
        for name, run in runs.items():
            memory[name].append(peak_memory(samplers[name], run, x, cotangent))
    return times, {name: statistics.median(values) for name, values in memory.items()}


def report(shape, times, memory):
    base = "gumbel_softmax"
    print(
        f"\n### `{list(shape)}`\n\n"
        "| estimator | time (ms) | time / Gumbel-Softmax | goal | "
        "peak memory (MB) | memory / Gumbel-Softmax | goal |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name in times:
        ratio = paired_ratio(times[name], times[base])
        memory_ratio = memory[name] / memory[base] if memory[base] else float("nan")
        time_goal = memory_goal = ""
        # Judged on the ratios as printed, to two decimals.
        if name.startswith("gumbel_rao"):
            met = round(memory_ratio, 2) <= MEMORY_GOAL
            memory_goal = f"<= {MEMORY_GOAL} {'met' if met else 'MISSED'}"
        elif name != base:
            met = round(ratio[0], 2) <= TIME_GOAL
            time_goal = f"<= {TIME_GOAL} {'met' if met else 'MISSED'}"
        print(
            f"| {name} | {1e3 * median(times[name]):.2f} | "
            f"{format_ratio(ratio)} | {time_goal} | {memory[name] / 2**20:.2f} | "
            f"{memory_ratio:.2f} | {memory_goal} |"
        )


def main(argv=None):
    args = parse_args(argv)
    versions = setup()
    if keras.backend.backend() == "torch":
        # Freed tensors of 64 KiB or more go back to the system at once, so
        # that the resident set follows the memory in use.
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    print(
        f"## Estimator cost on {keras.backend.backend()}\n\n{versions}; forward "
        f"+ backward, temperature {TEMPERATURE}, median of {args.rounds} "
        "interleaved rounds [interquartile range of the per-round ratios]."
    )
    rows = candidates(args.draws)
    for shape in args.shapes:
        times, memory = measure(shape, rows, args.rounds, args.budget)
        report(shape, times, memory)
    progress("done")


if __name__ == "__main__":
    main()
