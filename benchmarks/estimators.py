"""Gradient estimators side by side: optimisation, and bias and variance.

Two measurements, for every estimator in `keras_gumbel.ESTIMATORS` and the
temperatures 0.5, 1 and 2 (ReinMax only at temperatures >= 1, which is all it
supports):

1. Polynomial programming (Liu et al. 2023, Section 6.1): 128 binary variables
   z_i ~ Bernoulli, as 2-category logits theta in R^{128 x 2} starting at 0,
   loss sum_i |z_i - 0.45|^p / 128 for p in {1.5, 2, 3}, Adam (lr 1e-3), batch
   64. The best achievable expected loss is 0.45^p (every z_i = 0). Reported:
   the exact expected loss E[f(z)] under the learned distribution (computed in
   closed form, no sampling) minus 0.45^p, at 1/8 of the run and at its end,
   mean +- std over seeds. All seeds and all three p train in parallel inside
   one XLA-compiled loop per (estimator, temperature).
2. Bias and variance against the exact gradient on an enumerable problem: one
   8-category variable with fixed random logits and targets t, loss
   f(z) = sum_k |z_k - t_k|^p for p = 2 (quadratic) and p = 3. The exact
   gradient of E[f(D)] is a sum over the 8 outcomes. Reported, relative to the
   norm of the exact gradient: the bias of the mean estimate (with its Monte
   Carlo noise floor) and the per-sample standard deviation.

What each estimator costs in time and memory, on every backend, is
`benchmarks/estimator_cost.py`.

Usage:

    python benchmarks/estimators.py            # full run (8000 steps, 5 seeds)
    python benchmarks/estimators.py --quick    # a smoke run, about 1.5 min on 2 cores
    python benchmarks/estimators.py --steps 2000 --seeds 3

Prints markdown tables (progress goes to stderr).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_gumbel as kg  # noqa: E402

tf.get_logger().setLevel("ERROR")

TEMPERATURES = (0.5, 1.0, 2.0)
POWERS = (1.5, 2.0, 3.0)
TARGET = 0.45
VARIABLES = 128


def progress(message):
    print(message, file=sys.stderr, flush=True)


def supported(estimator, temperature):
    minimum = kg.estimators.get(estimator).min_temperature
    return minimum is None or temperature >= minimum


def configurations():
    return [
        (estimator, temperature)
        for estimator in kg.ESTIMATORS
        for temperature in TEMPERATURES
        if supported(estimator, temperature)
    ]


# 1. Polynomial programming.


def expected_loss(theta, powers):
    """Exact E[sum_i |z_i - t|^p / 128] under z_i ~ Bernoulli(softmax(theta_i)[1])."""
    ones = tf.nn.softmax(theta, axis=-1)[..., 1]
    per_variable = ones * (1.0 - TARGET) ** powers + (1.0 - ones) * TARGET**powers
    return tf.reduce_mean(per_variable, axis=-1)


class PolynomialProgramming:
    """Trains every (p, seed) pair at once for one estimator.

    One XLA-compiled training loop per estimator, shared by all temperatures
    (the temperature is a tensor argument, so changing it does not recompile).
    """

    def __init__(self, estimator, seeds, batch, seed):
        shape = (len(POWERS), seeds, VARIABLES, 2)
        self.powers = tf.reshape(tf.constant(POWERS, tf.float32), (len(POWERS), 1, 1))
        self.theta = tf.Variable(tf.zeros(shape))
        self.first_moment = tf.Variable(tf.zeros(shape))
        self.second_moment = tf.Variable(tf.zeros(shape))
        self.step = tf.Variable(0.0)
        self.generator = keras.random.SeedGenerator(seed)
        self.estimator = estimator
        self.batch = batch
        # autograph=False: the loop is an explicit tf.while_loop, and no source
        # is re-read while tracing.
        self.train = tf.function(self._train, jit_compile=True, autograph=False)

    def _train(self, count, temperature):
        def body(index):
            self._step(temperature)
            return (index + 1,)

        tf.while_loop(lambda index: index < count, body, (tf.constant(0),))
        return expected_loss(self.theta, self.powers) - TARGET ** self.powers[..., 0]

    def _step(self, temperature):
        beta_1, beta_2, learning_rate, epsilon = 0.9, 0.999, 1e-3, 1e-8
        shape = (self.batch,) + tuple(self.theta.shape)
        with tf.GradientTape() as tape:
            tape.watch(self.theta)
            logits = tf.broadcast_to(self.theta, shape)
            z = kg.ops.gumbel_softmax(
                logits,
                temperature,
                estimator=self.estimator,
                seed=self.generator,
            )[..., 1]
            # Summing the independent (p, seed) problems leaves each
            # one's gradient unchanged.
            loss = tf.reduce_sum(
                tf.reduce_mean(tf.abs(z - TARGET) ** self.powers, axis=0)
            ) / float(VARIABLES)
        gradient = tape.gradient(loss, self.theta)
        self.step.assign_add(1.0)
        self.first_moment.assign(beta_1 * self.first_moment + (1 - beta_1) * gradient)
        self.second_moment.assign(
            beta_2 * self.second_moment + (1 - beta_2) * gradient**2
        )
        corrected_first = self.first_moment / (1 - beta_1**self.step)
        corrected_second = self.second_moment / (1 - beta_2**self.step)
        self.theta.assign_sub(
            learning_rate * corrected_first / (tf.sqrt(corrected_second) + epsilon)
        )

    def run(self, temperature, steps):
        """Expected loss minus the optimum after steps // 8 and after `steps`
        steps from theta = 0, shape [len(POWERS), seeds] each."""
        for variable in (self.theta, self.first_moment, self.second_moment):
            variable.assign(tf.zeros_like(variable))
        self.step.assign(0.0)
        temperature = tf.constant(temperature, tf.float32)
        early = steps // 8
        gap_early = self.train(tf.constant(early), temperature).numpy()
        gap_final = self.train(tf.constant(steps - early), temperature).numpy()
        return gap_early, gap_final


# 2. Bias and variance on an enumerable problem.

CATEGORIES = 8


def enumerable_problem():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=CATEGORIES)
    targets = rng.uniform(size=CATEGORIES)
    return logits, targets


def exact_gradient(logits, targets, power):
    """d/dlogits E[f(D)], f(z) = sum_k |z_k - t_k|^p, by enumeration (float64)."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    eye = np.eye(CATEGORIES)
    values = np.sum(np.abs(eye - targets) ** power, axis=-1)
    return sum(values[i] * probs[i] * (eye[i] - probs) for i in range(CATEGORIES))


def bias_and_deviation(estimator, temperature, power, samples, seed):
    logits, targets = enumerable_problem()
    exact = exact_gradient(logits, targets, power)
    tiled = tf.constant(np.tile(logits.astype("float32"), (samples, 1)))
    targets = tf.constant(targets.astype("float32"))

    def per_sample_gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = kg.ops.gumbel_softmax(x, temperature, estimator=estimator, seed=seed)
            loss = tf.reduce_sum(tf.abs(y - targets) ** power)
        return tape.gradient(loss, x)

    grads = per_sample_gradients(tiled).numpy().astype("float64")
    norm = np.linalg.norm(exact)
    mean = grads.mean(axis=0)
    total_variance = grads.var(axis=0).sum()
    bias = np.linalg.norm(mean - exact) / norm
    floor = np.sqrt(total_variance / samples) / norm
    deviation = np.sqrt(total_variance) / norm
    return bias, floor, deviation


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000, help="training steps")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument(
        "--samples",
        type=int,
        default=200_000,
        help="per-sample gradients for bias/variance",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (overrides sizes)"
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds, args.samples = 400, 2, 20_000
    began = time.perf_counter()

    print(
        f"# Estimator benchmark\n\nsteps={args.steps}, seeds={args.seeds}, "
        f"batch={args.batch}, samples={args.samples}, TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, "
        f"{os.cpu_count()} CPUs\n"
    )

    progress("bias and variance ...")
    print(
        "## Bias and variance against the exact gradient\n\n"
        f"One {CATEGORIES}-category variable, f(z) = sum_k |z_k - t_k|^p. "
        "Relative bias ||E[g] - grad|| / ||grad|| (± its Monte Carlo noise "
        "floor) and relative per-sample standard deviation sqrt(tr Cov[g]) / "
        f"||grad||, from {args.samples} samples.\n"
    )
    print(
        "| estimator | temperature | bias p=2 | std p=2 | bias p=3 | std p=3 |\n"
        "|---|---|---|---|---|---|"
    )
    for estimator, temperature in configurations():
        cells = []
        for power in (2.0, 3.0):
            bias, floor, deviation = bias_and_deviation(
                estimator, temperature, power, args.samples, seed=3
            )
            cells += [f"{bias:.3f} ± {floor:.3f}", f"{deviation:.2f}"]
        print(
            f"| {estimator} | {temperature} | " + " | ".join(cells) + " |",
            flush=True,
        )
        progress(f"  {estimator:16s} temperature={temperature}")
    print()

    progress("polynomial programming ...")
    header = (
        "| estimator | temperature | "
        + " | ".join(f"p={p} @ {args.steps // 8}" for p in POWERS)
        + " | "
        + " | ".join(f"p={p} @ {args.steps}" for p in POWERS)
        + " |"
    )
    print(
        "## Polynomial programming\n\n"
        "Expected loss minus the optimum 0.45^p, x 1e-3 (mean ± std over "
        "seeds), after 1/8 of the steps and at the end. Lower is better.\n"
    )
    print(header)
    print("|" + "---|" * (2 + 2 * len(POWERS)), flush=True)
    problems = {}
    for estimator, temperature in configurations():
        start = time.perf_counter()
        if estimator not in problems:
            problems[estimator] = PolynomialProgramming(
                estimator, args.seeds, args.batch, seed=1
            )
        early, final = problems[estimator].run(temperature, args.steps)
        cells = [
            f"{1e3 * gap.mean():.2f} ± {1e3 * gap.std():.2f}"
            for gaps in (early, final)
            for gap in gaps
        ]
        print(
            f"| {estimator} | {temperature} | " + " | ".join(cells) + " |", flush=True
        )
        progress(
            f"  {estimator:16s} temperature={temperature}: "
            f"{time.perf_counter() - start:.1f} s"
        )
    print(f"\nTotal wall time: {(time.perf_counter() - began) / 60:.1f} min.")


if __name__ == "__main__":
    main()
