"""Plots the binary family for the docs: binary Concrete and Hard Concrete gates.

Writes `docs/images/binary.png`, shown on the "Binary choices" page: on the
left, histograms of `keras_gumbel.ops.gumbel_sigmoid` samples at three
temperatures (one log-odds), with the exact density; on the right, how often
`keras_gumbel.ops.hard_concrete` gates are exactly 0 and exactly 1 against
`log_alpha`, with the closed forms and `hard_concrete_l0`.

    python docs/plot_binary.py [--output PATH]
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

DEFAULT_OUTPUT = pathlib.Path(__file__).parent / "images" / "binary.png"
DRAWS = 100_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))

    logit = 1.0
    grid = np.linspace(0.005, 0.995, 300).astype("float32")
    for temperature, color in ((0.3, "C0"), (1.0, "C1"), (3.0, "C2")):
        samples = keras.ops.convert_to_numpy(
            kg.ops.gumbel_sigmoid(np.full(DRAWS, logit, "float32"), temperature, seed=0)
        )
        left.hist(samples, bins=60, range=(0, 1), density=True, alpha=0.35, color=color)
        density = np.exp(
            keras.ops.convert_to_numpy(
                kg.ops.relaxed_bernoulli_log_prob(grid, logit, temperature)
            )
        )
        left.plot(grid, density, color=color, label=f"temperature {temperature}")
    left.set_ylim(0, 4)
    left.set_xlabel("sample y")
    left.set_title(
        f"gumbel_sigmoid, log-odds {logit}: histogram and density", fontsize=9
    )
    left.legend(fontsize=8)

    # Closed forms (lines) against the frequencies of 20,000 gates (dots).
    gamma, zeta, temperature = -0.1, 1.1, 2 / 3
    curve = np.linspace(-4, 4, 200)
    dots = np.linspace(-4, 4, 9).astype("float32")
    gates = keras.ops.convert_to_numpy(
        kg.ops.hard_concrete(np.tile(dots, (20_000, 1)), temperature, seed=1)
    )
    closed = {
        "P(gate = 0)": 1 / (1 + np.exp(curve - temperature * np.log(-gamma / zeta))),
        "P(gate = 1)": 1
        / (1 + np.exp(temperature * np.log((1 - gamma) / (zeta - 1)) - curve)),
        "P(gate != 0), hard_concrete_l0": keras.ops.convert_to_numpy(
            kg.ops.hard_concrete_l0(curve.astype("float32"), temperature)
        ),
    }
    frequencies = [
        np.mean(gates == 0, 0),
        np.mean(gates == 1, 0),
        np.mean(gates != 0, 0),
    ]
    for (label, line), frequency, color in zip(
        closed.items(), frequencies, ("C3", "C2", "C0"), strict=True
    ):
        right.plot(curve, line, color=color, label=label)
        right.plot(dots, frequency, "o", color=color, markersize=4)
    right.set_xlabel("log_alpha")
    right.set_ylabel("probability")
    right.set_title(
        "hard_concrete (t = 2/3, limits (-0.1, 1.1)):\n"
        "lines closed form, dots 20,000 gates each",
        fontsize=9,
    )
    right.legend(fontsize=8)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
