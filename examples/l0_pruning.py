"""L0 pruning with Hard Concrete gates (Louizos, Welling & Kingma 2018).

A classifier learns which of its units to keep: `keras_gumbel.HardConcreteGate`
layers multiply units by random gates in training that are exactly 0 or exactly
1 with positive probability, and add `l0_weight * E[number of open gates]` to
the loss. After training, every unit whose inference gate is 0 is removed: the
script builds the smaller network, with the inference gates folded into its
weights, and checks that it computes the same predictions as the gated one.

Two architectures (`--model`):

- `mlp`: Louizos et al.'s MNIST MLP, 784-300-100-10, with gates on the inputs of
  each of its three dense layers (the pixels and both hidden layers), printed as
  the paper prints it, "kept pixels-kept units-kept units" (their result:
  219-214-100 at 1.4% test error);
- `convnet`: a small convnet, two 5x5 convolutions of 16 and 32 channels with
  2x2 max pooling, a dense layer of 128 units and the 10 outputs, with gates on
  the channels of both convolutions and on the 128 units.

Each gate costs `lambda / N` per weight it switches off, as in the authors'
code: `l0_weight = lambda * (weights per gate) / N`, with `N` the number of
training images. `--lambdas` trains one gated network per value, so the
table shows accuracy against the fraction of units kept. Beside each, the same
architecture trained without gates is pruned to the same number of units per
layer by weight magnitude (keep the units whose outgoing weights have the
largest L2 norm) and fine-tuned for `--finetune-epochs`.

Run `python examples/l0_pruning.py --help` for the flags.
"""

import argparse
import math
import pathlib
import time

import _cli
from _cli import (
    positive_float,
    positive_int,
    print_table,
    write_between_markers,
)
from _data import DATASET_HELP, DATASETS

MODELS = ("mlp", "convnet")


def lambdas(text):
    """argparse type: comma-separated positive lambdas."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text}"
        ) from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text}")
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=_cli.HelpFormatter
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help="architecture: mlp (Louizos et al.'s 784-300-100-10) or convnet",
    )
    parser.add_argument(
        "--dataset", choices=DATASETS, default="mnist5k", help=DATASET_HELP
    )
    parser.add_argument(
        "--lambdas",
        type=lambdas,
        default="0.03,0.1,0.3",
        help="comma-separated L0 strengths; each gate costs lambda / N per "
        "weight it switches off (0.1: the paper's MLP)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=100, help="epochs of every training run"
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=5,
        help="epochs of fine-tuning after magnitude pruning (0: none)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=100, help="batch size"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-3,
        help="Adam's learning rate",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of weights, gates and batches"
    )
    _cli.add_run_flags(parser, "l0_pruning", "the plot")
    parser.add_argument(
        "--results",
        default=None,
        help="markdown file to write the table into, between the markers of "
        "--model and --dataset (default: none)",
    )
    args = parser.parse_args(argv)
    if args.finetune_epochs < 0:
        parser.error(
            "argument --finetune-epochs: expected 0 or more, got "
            f"{args.finetune_epochs}"
        )
    return args


_cli.start(__name__, parse_args)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _data import load_or_exit  # noqa: E402

import keras_gumbel as kg  # noqa: E402

# The authors' MLP initialises the gates of the pixels at a drop rate of 0.2 and
# every other gate at 0.5.
INPUT_DROPRATE = 0.2
HIDDEN_DROPRATE = 0.5


def results_markers(model, dataset):
    """The markers between which `--results` writes the table of a run."""
    flags = f"--model {model} --dataset {dataset}"
    return f"<!-- l0_pruning {flags}: start -->", f"<!-- l0_pruning {flags}: end -->"


class Architecture:
    """The weighted layers of a network and where its gates sit.

    `sizes` are the numbers of gated units, in order; `prunable[i]` names the
    weighted layer whose output units gate `i` scales (None: the gate scales
    the network's input, the pixels). Pruning unit `u` of gate `i` removes
    output `u` of that layer and the inputs of the next weighted layer that
    read it.
    """

    def __init__(self, model, image_shape):
        self.model = model
        self.image_shape = image_shape
        pixels = int(np.prod(image_shape))
        if model == "mlp":
            self.sizes = (pixels, 300, 100)
        else:
            self.sizes = (16, 32, 128)
        # Weighted layers: 3 dense, or 2 convolutions and 2 dense.
        self.depth = 3 if model == "mlp" else 4

    def weights_per_gate(self, index):
        """The weights one gate switches off, as the authors' code counts them:
        the row of the next dense layer a dense input reads, or a convolution's
        whole filter and bias."""
        if self.model == "mlp":
            return (self.sizes[1:] + (10,))[index]
        if index == 0:
            return 5 * 5 * 1 + 1
        if index == 1:
            return 5 * 5 * self.sizes[0] + 1
        return 10

    def build(self, sizes=None, gates=None, seed=0):
        """The classifier with `sizes` units, with HardConcreteGates if `gates`
        (a list of per-gate `l0_weight`s) is given. Outputs are logits."""
        sizes = self.sizes if sizes is None else sizes
        initializer = keras.initializers.GlorotUniform(seed=seed)

        def gate(index, x):
            if gates is None:
                return x
            droprate = (
                INPUT_DROPRATE
                if (self.model == "mlp" and index == 0)
                else HIDDEN_DROPRATE
            )
            return kg.HardConcreteGate(
                l0_weight=gates[index],
                droprate_init=droprate,
                # One draw of the gates per batch, as the authors' code
                # trains (`local_rep=False`): cheaper than one per example.
                per_example=False,
                seed=seed + 1 + index,
                name=f"gate_{index}",
            )(x)

        if self.model == "mlp":
            inputs = keras.Input((sizes[0],))
            x = gate(0, inputs)
            for index, units in enumerate(sizes[1:], start=1):
                x = keras.layers.Dense(
                    units,
                    activation="relu",
                    kernel_initializer=initializer,
                    name=f"weighted_{index - 1}",
                )(x)
                x = gate(index, x)
            outputs = keras.layers.Dense(
                10, kernel_initializer=initializer, name="weighted_2"
            )(x)
            return keras.Model(inputs, outputs)
        inputs = keras.Input((*self.image_shape, 1))
        x = inputs
        for index in (0, 1):
            x = keras.layers.Conv2D(
                sizes[index],
                5,
                kernel_initializer=initializer,
                name=f"weighted_{index}",
            )(x)
            # The authors' L0Conv2d gates the convolution's output before the
            # nonlinearity.
            x = gate(index, x)
            x = keras.layers.ReLU()(x)
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(
            sizes[2],
            activation="relu",
            kernel_initializer=initializer,
            name="weighted_2",
        )(x)
        x = gate(2, x)
        outputs = keras.layers.Dense(
            10, kernel_initializer=initializer, name="weighted_3"
        )(x)
        return keras.Model(inputs, outputs)

    def weighted(self, model):
        """The `[kernel, bias]` NumPy pairs of the weighted layers, in order."""
        return [
            [np.array(w) for w in model.get_layer(f"weighted_{i}").get_weights()]
            for i in range(self.depth)
        ]

    def inputs(self, x, keep=None):
        """Images in the layout of the network (and its kept pixels)."""
        if self.model == "mlp":
            return x if keep is None else x[:, keep[0]]
        return x.reshape(-1, *self.image_shape, 1)

    def prune(self, weights, keep, scale, seed=0):
        """The smaller network that keeps units `keep[i]` of gate `i`, whose
        outputs are those of the full one with unit `u` of gate `i` scaled by
        `scale[i][u]` (the inference gates; ones for magnitude pruning).

        Gates are >= 0 and ReLU is positively homogeneous, so a gate on a
        layer's output folds into that layer's kernel columns and bias.
        """
        weights = [[w.copy() for w in pair] for pair in weights]
        if self.model == "mlp":
            # Gate 0 scales the pixels, the rows of the first kernel.
            weights[0][0] = weights[0][0] * scale[0][:, None]
            owners = {1: 0, 2: 1}
        else:
            owners = {0: 0, 1: 1, 2: 2}
        for index, layer in owners.items():
            kernel, bias = weights[layer]
            weights[layer] = [kernel * scale[index], bias * scale[index]]
        # Drop the pruned outputs of each owner and the inputs that read them.
        if self.model == "mlp":
            weights[0][0] = weights[0][0][keep[0]]
        for index, layer in owners.items():
            kept = keep[index]
            kernel, bias = weights[layer]
            weights[layer] = [kernel[..., kept], bias[kept]]
            following = weights[layer + 1][0]
            if following.ndim == 4:  # a convolution reads channels
                weights[layer + 1][0] = following[:, :, kept, :]
            elif self.model == "convnet" and index == 1:
                # Flatten of a 4 x 4 x C map: row (position * C + channel).
                channels = np.arange(following.shape[0]) % self.sizes[1]
                weights[layer + 1][0] = following[kept[channels]]
            else:
                weights[layer + 1][0] = following[kept]
        sizes = tuple(int(k.sum()) for k in keep)
        model = self.build(sizes, seed=seed)
        for layer, pair in enumerate(weights):
            model.get_layer(f"weighted_{layer}").set_weights(pair)
        return model

    def magnitude_keep(self, weights, sizes):
        """Per gate, the `sizes[i]` units whose outgoing weights have the
        largest L2 norm (the weights that read the unit in the next layer)."""
        keep = []
        for index, count in enumerate(sizes):
            following = weights[index if self.model == "mlp" else index + 1][0]
            if following.ndim == 4:
                norms = np.sqrt(np.sum(following**2, axis=(0, 1, 3)))
            elif self.model == "convnet" and index == 1:
                channels = np.arange(following.shape[0]) % self.sizes[1]
                rows = np.sum(following**2, axis=1)
                norms = np.sqrt(
                    np.bincount(channels, weights=rows, minlength=self.sizes[1])
                )
            else:
                norms = np.linalg.norm(following, axis=1)
            mask = np.zeros(len(norms), dtype=bool)
            mask[np.argsort(norms)[::-1][:count]] = True
            keep.append(mask)
        return keep

    def count_weights(self, sizes):
        """Weights and biases of the network with `sizes` units."""
        if self.model == "mlp":
            units = (*sizes, 10)
            return sum(a * b + b for a, b in zip(units[:-1], units[1:], strict=True))
        c1, c2, hidden = sizes
        return (
            (25 * c1 + c1)
            + (25 * c1 * c2 + c2)
            + (16 * c2 * hidden + hidden)
            + (hidden * 10 + 10)
        )

    def describe(self, sizes):
        return "-".join(str(s) for s in sizes)


def steps_to_close(learning_rate):
    """About how many Adam steps a gate needs to close from its initial value.

    Adam moves each parameter by at most about the learning rate per step,
    and a gate is 0 in inference once `log_alpha < log(-gamma / zeta)`
    (`log(1 / 11)` with the default limits); the pixels' gates start highest.
    """
    start = math.log(1 - INPUT_DROPRATE) - math.log(INPUT_DROPRATE)
    return math.ceil((start - math.log(1 / 11)) / learning_rate)


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y)), logits


def compile_and_fit(model, x, y, args, epochs, verbose, callbacks=()):
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=epochs,
        verbose=verbose,
        callbacks=list(callbacks),
    )


def run(args, data, verbose=1):
    """Trains the dense network and one gated network per lambda; prunes both.

    Returns the rows of the results table and the gated runs' histories.
    """
    arch = Architecture(args.model, data.image_shape)
    x_train, x_test = arch.inputs(data.x_train), arch.inputs(data.x_test)
    n = len(x_train)
    keras.utils.set_random_seed(args.seed)
    print(f"\nDense {args.model} {arch.describe(arch.sizes)}, no gates:")
    dense = arch.build(seed=args.seed)
    start = time.perf_counter()
    compile_and_fit(dense, x_train, data.y_train, args, args.epochs, verbose)
    dense_seconds = time.perf_counter() - start
    dense_accuracy, _ = accuracy(dense, x_test, data.y_test)
    dense_weights = arch.weighted(dense)
    total_units = sum(arch.sizes)
    total_weights = arch.count_weights(arch.sizes)
    rows = [
        {
            "method": "dense, no pruning",
            "lambda": None,
            "sizes": arch.sizes,
            "units": 1.0,
            "weights": 1.0,
            "accuracy": dense_accuracy,
            "seconds": dense_seconds,
        }
    ]
    histories = {}
    for lam in args.lambdas:
        l0_weights = [
            lam * arch.weights_per_gate(i) / n for i in range(len(arch.sizes))
        ]
        print(
            f"\nGated {args.model}, lambda = {lam:g} (l0_weight per gate: "
            + ", ".join(f"{w:.3g}" for w in l0_weights)
            + "):"
        )
        keras.utils.set_random_seed(args.seed)
        gated = arch.build(gates=l0_weights, seed=args.seed)
        start = time.perf_counter()
        history = compile_and_fit(
            gated,
            x_train,
            data.y_train,
            args,
            args.epochs,
            verbose,
            [kg.callbacks.OpenGatesLogger()],
        )
        seconds = time.perf_counter() - start
        histories[lam] = history.history
        gated_accuracy, gated_logits = accuracy(gated, x_test, data.y_test)
        gates = [gated.get_layer(f"gate_{i}") for i in range(len(arch.sizes))]
        keep = [g.open_gates() for g in gates]
        scale = [g.inference_gates() for g in gates]
        sizes = tuple(int(k.sum()) for k in keep)
        if min(sizes) == 0:
            print(
                f"lambda = {lam:g} closed every gate of a layer "
                f"({arch.describe(sizes)}); skipped."
            )
            continue
        pruned = arch.prune(arch.weighted(gated), keep, scale, seed=args.seed)
        pruned_accuracy, pruned_logits = accuracy(
            pruned, arch.inputs(data.x_test, keep), data.y_test
        )
        difference = float(np.max(np.abs(pruned_logits - gated_logits)))
        print(
            f"Pruned to {arch.describe(sizes)}: test accuracy {pruned_accuracy:.4f} "
            f"(gated network {gated_accuracy:.4f}); largest logit difference "
            f"pruned vs gated {difference:.2g}."
        )
        common = {
            "lambda": lam,
            "sizes": sizes,
            "units": sum(sizes) / total_units,
            "weights": arch.count_weights(sizes) / total_weights,
        }
        rows.append(
            {
                **common,
                "method": "L0 (HardConcreteGate), pruned",
                "accuracy": pruned_accuracy,
                "seconds": seconds,
                "logit_difference": difference,
            }
        )
        magnitude_keep = arch.magnitude_keep(dense_weights, sizes)
        ones = [np.ones(s, dtype="float32") for s in arch.sizes]
        magnitude = arch.prune(dense_weights, magnitude_keep, ones, seed=args.seed)
        x_kept = arch.inputs(data.x_train, magnitude_keep)
        x_test_kept = arch.inputs(data.x_test, magnitude_keep)
        before, _ = accuracy(magnitude, x_test_kept, data.y_test)
        rows.append(
            {
                **common,
                "method": "magnitude, no fine-tuning",
                "accuracy": before,
                "seconds": 0.0,
            }
        )
        if args.finetune_epochs:
            start = time.perf_counter()
            compile_and_fit(
                magnitude, x_kept, data.y_train, args, args.finetune_epochs, 0
            )
            after, _ = accuracy(magnitude, x_test_kept, data.y_test)
            rows.append(
                {
                    **common,
                    "method": f"magnitude, fine-tuned {args.finetune_epochs} epochs",
                    "accuracy": after,
                    "seconds": time.perf_counter() - start,
                }
            )
    return arch, rows, histories


def table(arch, rows):
    """The printed (and markdown) table: one row per network."""
    return [
        [
            row["method"],
            "" if row["lambda"] is None else f"{row['lambda']:g}",
            arch.describe(row["sizes"]),
            f"{100 * row['units']:.1f}%",
            f"{100 * row['weights']:.1f}%",
            f"{100 * row['accuracy']:.2f}%",
            f"{100 * (1 - row['accuracy']):.2f}%",
        ]
        for row in rows
    ]


HEADERS = [
    "method",
    "lambda",
    "architecture",
    "units kept",
    "weights kept",
    "test accuracy",
    "test error",
]


def save_plots(arch, rows, histories, args, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {
        "L0 (HardConcreteGate), pruned": ("o-", "C0"),
        "magnitude, no fine-tuning": ("x:", "C3"),
    }
    for method in sorted({r["method"] for r in rows if r["lambda"] is not None}):
        chosen = sorted(
            (r for r in rows if r["method"] == method), key=lambda r: r["weights"]
        )
        marker, color = styles.get(method, ("s--", "C1"))
        left.plot(
            [100 * r["weights"] for r in chosen],
            [100 * r["accuracy"] for r in chosen],
            marker,
            color=color,
            label=method,
        )
        if method.startswith("L0"):
            for r in chosen:
                left.annotate(
                    arch.describe(r["sizes"]),
                    (100 * r["weights"], 100 * r["accuracy"]),
                    fontsize=7,
                    xytext=(3, -9),
                    textcoords="offset points",
                )
    dense = rows[0]
    left.axhline(
        100 * dense["accuracy"],
        color="gray",
        lw=0.8,
        label=f"dense {arch.describe(arch.sizes)}",
    )
    left.set_xlim(0, 105)
    left.set_xlabel("weights kept (% of the dense network)")
    left.set_ylabel("test accuracy (%)")
    floor = min(
        100 * r["accuracy"] for r in rows if not r["method"].endswith("no fine-tuning")
    )
    top = max(100 * r["accuracy"] for r in rows)
    left.set_ylim(max(0, floor - 5), top + 1.5)
    left.legend(fontsize=8, loc="lower right")
    left.set_title(
        f"{args.model} on {args.dataset}: accuracy against size", fontsize=10
    )
    for lam, history in histories.items():
        open_units = sum(
            np.asarray(history[f"gate_{i}/open_gates"], dtype=float)
            for i in range(len(arch.sizes))
        )
        right.plot(
            np.arange(1, len(open_units) + 1), open_units, label=f"lambda = {lam:g}"
        )
    right.set_xlabel("epoch")
    right.set_ylabel("open gates (units kept in inference)")
    right.set_title("units kept during training", fontsize=10)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "l0_pruning.png", dpi=100)
    plt.close(figure)


def write_results(path, args, argv, arch, rows, data):
    lines = [
        f"Command: `python examples/l0_pruning.py {' '.join(argv)}` "
        f"({args.epochs} epochs of batch {args.batch_size}, dataset "
        f"`{args.dataset}`: {len(data.x_train)} training and {len(data.x_test)} "
        f"test images; seed {args.seed}).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
        *("| " + " | ".join(cells) + " |" for cells in table(arch, rows)),
    ]
    write_between_markers(
        path, "\n".join(lines), *results_markers(args.model, args.dataset)
    )


def main(argv=None):
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    data = load_or_exit(args.dataset)
    if args.model == "convnet" and data.image_shape != (28, 28):
        raise SystemExit(
            "error: --model convnet needs 28 x 28 images; "
            f"--dataset {args.dataset} has {data.image_shape}"
        )
    print(
        f"Data: {args.dataset}, {len(data.x_train)} training and "
        f"{len(data.x_test)} test images."
    )
    steps = args.epochs * math.ceil(len(data.x_train) / args.batch_size)
    _cli.warn_if_short(
        steps,
        steps_to_close(args.learning_rate),
        f"a gate needs about that many Adam steps at learning rate "
        f"{args.learning_rate:g} to close from its initial value (Adam moves "
        "log_alpha by about the learning rate per step), so fewer prune few units.",
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch, rows, histories = run(args, data)
    print(
        f"\nTest accuracy against size ({args.model}, {args.dataset}, "
        f"{args.epochs} epochs):"
    )
    print_table(table(arch, rows), HEADERS)
    save_plots(arch, rows, histories, args, out)
    print(f"\nPlot: {out / 'l0_pruning.png'}")
    if args.results:
        write_results(args.results, args, argv, arch, rows, data)
        print(f"Table written to {args.results}")
    return rows


if __name__ == "__main__":
    main()
