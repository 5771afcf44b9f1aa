"""Times a training step of `GumbelQuantizer` against the code users write instead.

Each candidate is a one-layer Keras model on the dVAE example's feature map,
`[128, 7, 7, 64]` (`--batch`), trained with `train_on_batch` (Adam, squared
error against zeros), so the time is that of a whole compiled `fit` step as
each backend runs it: forward, backward and the update.

- `quantizer`: `keras_gumbel.GumbelQuantizer(512, 64, kl_weight=0.1)`: the
  projection, a relaxed sample, the codebook mixture, the KL term and the two
  perplexities;
- `quantizer, einsum mix`: the same layer mixing the codebook with
  `einsum("...gc,gcd->...gd")`, as it did before the mixture became one
  batched matmul per group (the reason this script exists: on TensorFlow the
  einsum made the layer about 30 times slower);
- `snippet`: what a user writes by hand: `Dense(512)`, Gumbel noise from
  `keras.random.uniform`, a softmax, `Dense(64)` as the codebook; no KL term, no
  perplexities, so it is a floor rather than an equal.

The candidates run round-robin, the order rotating every round, and the table
gives each one's median step time and the median per-round ratio to the
quantizer.

Usage:
    python benchmarks/quantizer.py              # about a minute
    python benchmarks/quantizer.py --quick      # a smoke run
    KERAS_BACKEND=jax python benchmarks/quantizer.py
    KERAS_BACKEND=torch python benchmarks/quantizer.py
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
from keras import ops  # noqa: E402

import keras_gumbel as kg  # noqa: E402

NUM_CODES = 512
CODE_DIM = 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="Default: 128.")
    parser.add_argument("--rounds", type=int, default=20, help="Default: 20.")
    parser.add_argument("--quick", action="store_true", help="Batch 8, 3 rounds.")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.rounds = 8, 3
    if args.batch < 1 or args.rounds < 1:
        parser.error("--batch and --rounds must be positive")
    return args


class EinsumQuantizer(kg.GumbelQuantizer):
    """The layer with its former codebook mixture."""

    def _mix(self, weights):
        mixed = ops.einsum("...gc,gcd->...gd", weights, self.codebook)
        return ops.reshape(mixed, (*ops.shape(mixed)[:-2], self.groups * self.code_dim))


class GumbelNoiseSoftmax(keras.layers.Layer):
    """The usual snippet: softmax(logits + Gumbel noise) at temperature 1."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.random.SeedGenerator(0)

    def call(self, logits):
        uniform = keras.random.uniform(
            ops.shape(logits), minval=1e-9, maxval=1.0, seed=self.generator
        )
        return ops.softmax(logits - ops.log(-ops.log(uniform)))


def candidates():
    def model(*layers):
        built = keras.Sequential([keras.Input((7, 7, 64)), *layers])
        built.compile(optimizer="adam", loss="mse")
        return built

    return {
        "quantizer": model(kg.GumbelQuantizer(NUM_CODES, CODE_DIM, kl_weight=0.1)),
        "quantizer, einsum mix": model(
            EinsumQuantizer(NUM_CODES, CODE_DIM, kl_weight=0.1)
        ),
        "snippet": model(
            keras.layers.Dense(NUM_CODES),
            GumbelNoiseSoftmax(),
            keras.layers.Dense(CODE_DIM, use_bias=False),
        ),
    }


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 7, 7, 64)).astype("float32")
    y = np.zeros((args.batch, 7, 7, CODE_DIM), "float32")
    models = candidates()
    for model in models.values():
        model.train_on_batch(x, y)  # compile and warm up
        model.train_on_batch(x, y)
    times = {name: [] for name in models}
    names = list(models)
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr, end="\r")
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            models[name].train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    print(file=sys.stderr)
    print(
        f"backend {keras.backend.backend()}, train_on_batch on "
        f"[{args.batch}, 7, 7, 64] -> {NUM_CODES} codes x {CODE_DIM}, "
        f"{args.rounds} interleaved rounds, medians"
    )
    print(f"{'candidate':<24}{'ms per step':>12}{'/ quantizer':>13}")
    ours = times["quantizer"]
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times[name], ours, strict=True))
        print(f"{name:<24}{1e3 * statistics.median(times[name]):>12.1f}{ratio:>13.2f}")


if __name__ == "__main__":
    main()
