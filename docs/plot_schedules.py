"""Plots the temperature schedules of `keras_gumbel.schedules` for the docs.

Writes `docs/images/schedules.png`, shown on the "Temperature annealing" page:

    python docs/plot_schedules.py [--output PATH]
"""

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

import keras_gumbel as kg  # noqa: E402

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

DEFAULT_OUTPUT = pathlib.Path(__file__).parent / "images" / "schedules.png"


def values(schedule, steps):
    return keras.ops.convert_to_numpy(schedule(steps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the PNG (default: {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args()

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)

    steps = np.arange(40_001)
    for rate, every in [(1e-4, 1000), (3e-5, 1000), (1e-5, 500)]:
        schedule = kg.schedules.ExponentialDecay(
            initial=1.0, rate=rate, minimum=0.5, every=every
        )
        left.plot(
            steps,
            values(schedule, steps),
            drawstyle="steps-post",
            label=f"rate={rate:g}, every={every}",
        )
    left.set_title("ExponentialDecay(initial=1.0, minimum=0.5)\nJang et al. 2017")
    left.set_xlabel("optimizer step")
    left.set_ylabel("temperature")
    left.set_ylim(0.45, 1.02)
    left.legend()

    epochs = np.arange(301)
    geometric = kg.schedules.GeometricDecay(start=10.0, end=0.01, steps=300)
    cosine = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=10.0, decay_steps=300, alpha=0.001
    )
    right.plot(epochs, values(geometric, epochs), label="GeometricDecay")
    right.plot(
        epochs,
        values(cosine, epochs),
        linestyle="--",
        label="keras CosineDecay(alpha=0.001)",
    )
    right.set_yscale("log")
    right.set_title("GeometricDecay(start=10, end=0.01, steps=300)\nAbid et al. 2019")
    right.set_xlabel("epoch")
    right.set_ylabel("temperature (log scale)")
    right.legend()

    for axes in (left, right):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
