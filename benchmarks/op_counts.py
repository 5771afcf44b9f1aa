"""The profile behind the time ratios: how many operations each sampler runs.

`benchmarks/training.py` and `benchmarks/estimator_cost.py` measure time; this
script says where it goes. It runs the sampling layers of the discrete VAEs as
the models call them in training (`GumbelSoftmax` on `[100, 20, 10]` logits,
`GumbelSigmoid` on `[100, 200]`, both with their temperature in a variable, as
annealing needs) forward and backward, beside the `keras.random.uniform`
snippet and the backend's native sampler (`benchmarks/training.py`'s
`PeerSampler`), and counts what each one hands to the backend:

- PyTorch (eager): the ATen operations dispatched, forward and backward,
  counted with a `TorchDispatchMode`; eager PyTorch pays a fixed cost per
  operation, so at small sizes time follows this count. The table names the
  operations ours runs that the native sampler does not. A second table counts
  every estimator of `keras_gumbel.ops.gumbel_softmax` against
  `torch.nn.functional.gumbel_softmax(hard=True)`, and a third whole
  `train_on_batch` steps of `benchmarks/training.py`'s four models.
- JAX: the kernels XLA's compiled program runs (the instructions of its
  entry computation other than parameters, constants, tuples and bitcasts;
  a fusion is one kernel), and every HLO instruction in it.
- TensorFlow (graph mode, no XLA): the operations of the `tf.function` graph
  other than constants, identities and no-ops; each is one kernel launch.

Each row also gives the median forward + backward time over interleaved rounds
(`benchmarks/_timing.py`) and its ratio to the snippet.

Usage:
    KERAS_BACKEND=torch python benchmarks/op_counts.py
    KERAS_BACKEND=jax python benchmarks/op_counts.py
    python benchmarks/op_counts.py                  # TensorFlow
    python benchmarks/op_counts.py --rounds 3       # a quicker, noisier run
"""

import argparse
import collections
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    format_ratio,
    interleaved,
    median,
    paired_ratio,
    progress,
    setup,
)
from training import MODELS, peers, runner, sampler  # noqa: E402

import keras_gumbel as kg  # noqa: E402

SHAPES = {"categorical": (100, 20, 10), "binary": (100, 200)}
# Bookkeeping that launches no kernel of its own.
HLO_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}
GRAPH_FREE = {"Const", "Identity", "NoOp", "Placeholder", "IdentityN"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved timing rounds (7)"
    )
    parser.add_argument(
        "--seconds", type=float, default=0.05, help="length of one timing (0.05 s)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


# Counting, per backend.


def torch_counter():
    """A context manager whose `.ops` counts the ATen operations run inside it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    return Count()


def torch_step(function, x, cotangent):
    def run():
        leaf = x.detach().requires_grad_(True)
        (gradient,) = __import__("torch").autograd.grad(function(leaf), leaf, cotangent)
        return gradient

    return run


def count_torch(run):
    run()  # lazily made state (seed generators, caches) is not the steady state
    with torch_counter() as counter:
        run()
    return counter.ops


def layer_step(layer, x, cotangent):
    """A zero-argument forward + backward call of `layer` in training, compiled
    as the backend compiles, and its operation counts."""
    backend = keras.backend.backend()
    layer(x, training=True)  # builds it
    if backend == "torch":
        run = torch_step(lambda v: layer(v, training=True), x, cotangent)
        return run, count_torch(run)
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        state = [v.value for v in layer.non_trainable_variables]

        def step(v, state):
            def forward(w):
                return layer.stateless_call(trainable, state, w, training=True)

            _, pullback, state = jax.vjp(forward, v, has_aux=True)
            return pullback(cotangent)[0], state

        compiled = jax.jit(step).lower(x, state).compile()
        holder = {"state": state}

        def run():
            gradient, holder["state"] = compiled(x, holder["state"])
            return gradient.block_until_ready()

        return run, hlo_counts(compiled.as_text())
    import tensorflow as tf

    @tf.function(jit_compile=False)
    def step(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = layer(v, training=True)
        return tape.gradient(y, v, output_gradients=cotangent)

    graph = step.get_concrete_function(x).graph
    kinds = collections.Counter(
        op.type for op in graph.get_operations() if op.type not in GRAPH_FREE
    )
    return (lambda: step(x).numpy()), kinds


def hlo_counts(text):
    """Kernels of the entry computation of compiled HLO text (a fusion is one),
    and the instructions of the whole module."""
    entry = text[text.index("ENTRY") :]
    entry = entry[: entry.index("\n}")]
    kernels = collections.Counter()
    for line in entry.splitlines()[1:]:
        match = re.search(r"=\s*\S+\s+([a-z][\w-]*)\(", line)
        if match and match.group(1) not in HLO_FREE:
            kernels[match.group(1)] += 1
    instructions = sum(
        1 for line in text.splitlines() if re.search(r"=\s*\S+\s+[a-z][\w-]*\(", line)
    )
    kernels["(instructions in the module)"] = instructions
    return kernels


def total(counts):
    return sum(n for name, n in counts.items() if not name.startswith("("))


# The tables.


def layer_rows():
    """(family, kind) -> a fresh sampling layer, temperature 1 in a variable."""
    return {
        (family, kind): sampler(kind, binary=family == "binary")
        for family in SHAPES
        for kind in peers()
        if kind != "none"
    }


def describe(counts):
    if keras.backend.backend() == "jax":
        return (
            f"{total(counts)} kernels, "
            f"{counts['(instructions in the module)']} instructions"
        )
    return str(total(counts))


def difference(ours, peer):
    """The operations `ours` runs more often than `peer`, most frequent first."""
    extra = collections.Counter(ours)
    extra.subtract(peer)
    return ", ".join(
        f"{name} x{n}"
        for name, n in extra.most_common()
        if n > 0 and not name.startswith("(")
    )


def main(argv=None):
    args = parse_args(argv)
    versions = setup()
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    runs, counts = {}, {}
    for (family, kind), layer in layer_rows().items():
        shape = SHAPES[family]
        x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        cotangent = keras.ops.convert_to_tensor(
            rng.normal(size=shape).astype("float32")
        )
        progress(f"counting {family}, {kind}")
        runs[(family, kind)], counts[(family, kind)] = layer_step(layer, x, cotangent)
    times = interleaved(runs, args.rounds, seconds=args.seconds)
    unit = {
        "torch": "ATen operations",
        "jax": "XLA kernels (instructions)",
        "tensorflow": "graph operations",
    }[backend]
    native = [kind for kind in peers() if kind not in ("ours", "snippet", "none")]
    print(
        f"## Sampling layers, forward + backward, on {backend}\n\n{versions}; "
        f"median of {args.rounds} interleaved rounds [interquartile range].\n"
    )
    print(f"| layer | sampler | {unit} | time (ms) | time / snippet |")
    print("|---|---|---|---|---|")
    for (family, kind), run_counts in counts.items():
        ratio = paired_ratio(times[(family, kind)], times[(family, "snippet")])
        print(
            f"| {family} {list(SHAPES[family])} | {kind} | {describe(run_counts)} | "
            f"{1e3 * median(times[(family, kind)]):.3f} | {format_ratio(ratio)} |"
        )
    peer = native[0] if native else "snippet"
    print(f"\nWhat ours runs beyond `{peer}`:\n")
    for family in SHAPES:
        extra = difference(counts[(family, "ours")], counts[(family, peer)])
        print(f"- {family}: {extra or 'nothing'}")
    if backend == "torch":
        torch_tables(rng)
    progress("done")


def torch_tables(rng):
    """Estimators against torch's hard sampler, and whole train steps."""
    import torch

    x = torch.as_tensor(rng.normal(size=SHAPES["categorical"]).astype("float32"))
    cotangent = torch.as_tensor(rng.normal(size=x.shape).astype("float32"))
    seed = keras.random.SeedGenerator(0)
    functions = {
        "torch gumbel_softmax(hard=True)": lambda v: torch.nn.functional.gumbel_softmax(
            v, tau=1.0, hard=True
        ),
        **{
            name: (
                lambda v, name=name: kg.ops.gumbel_softmax(
                    v, 1.0, estimator=name, seed=seed
                )
            )
            for name in kg.ESTIMATORS
            if name != "gumbel_rao"
        },
    }
    native = count_torch(torch_step(functions[next(iter(functions))], x, cotangent))
    print(
        "\n## Estimators, `keras_gumbel.ops.gumbel_softmax` with a float "
        "temperature, forward + backward, [100, 20, 10]\n"
    )
    print("| sampler | ATen operations | host reads | beyond torch's hard sampler |")
    print("|---|---|---|---|")
    for name, function in functions.items():
        ops_ = count_torch(torch_step(function, x, cotangent))
        extra = difference(ops_, native) if ops_ is not native else ""
        print(f"| {name} | {total(ops_)} | {ops_['_local_scalar_dense']} | {extra} |")
    print("\n## Whole train steps (`train_on_batch`), ATen operations\n")
    kinds = peers()
    print("| model | " + " | ".join(kinds) + " | ours - torch |")
    print("|---|" + "---|" * (len(kinds) + 1))
    for name in MODELS:
        cells = {
            kind: total(count_torch(runner(name, kind, False, 1))) for kind in kinds
        }
        print(
            f"| {name} | "
            + " | ".join(str(cells[kind]) for kind in kinds)
            + f" | {cells['ours'] - cells['torch']} |"
        )


if __name__ == "__main__":
    main()
