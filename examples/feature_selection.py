"""Concrete autoencoder: choose 50 of 784 pixels (Abid et al. 2019).

A `keras_gumbel.ConcreteSelect` layer learns which `k` input pixels to keep: each
of its `k` selectors is a Concrete (Gumbel-Softmax) distribution over the 784
pixels, whose temperature falls geometrically from 10 to 0.01 over training
(`keras_gumbel.schedules.GeometricDecay`, the schedule of the paper), so that each
selector settles on one pixel. A decoder (two hidden layers of 320 units, as in the
paper) reconstructs the whole image from the selected pixels.

The held-out metric is the one of Table 1 of Abid et al.: fit an ordinary linear
regression from the `k` selected pixels to all pixels on the training images and
report its mean squared error on held-out images. The script prints it next to
three baselines: `k` random pixels, the `k` pixels of highest variance, and PCA
with `k` components (the best linear reconstruction from any `k` linear
features, so a lower bound for every pixel subset).

Run `python examples/feature_selection.py --help` for the flags.
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


def seed_list(text):
    """argparse type: comma-separated integer seeds."""
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected at least one seed, got {text!r}")
    return seeds


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=_cli.HelpFormatter
    )
    parser.add_argument(
        "--dataset", choices=DATASETS, default="mnist5k", help=DATASET_HELP
    )
    parser.add_argument(
        "--k", type=positive_int, default=50, help="number of pixels to select"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=100,
        help="passes over the training images; the temperature falls over all of them",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="batch size"
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, default=1e-2, help="Adam's step size"
    )
    parser.add_argument(
        "--start-temperature",
        type=positive_float,
        default=10.0,
        help="the selectors' temperature at the first update (Abid et al.: 10)",
    )
    parser.add_argument(
        "--end-temperature",
        type=positive_float,
        default=0.01,
        help="the temperature at the last update, reached geometrically "
        "(Abid et al.: 0.01)",
    )
    parser.add_argument(
        "--unique",
        action="store_true",
        help="selectors choose distinct pixels (ConcreteSelect(unique=True))",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of weights, samples and batches"
    )
    _cli.add_run_flags(parser, "feature_selection", "the pictures")
    parser.add_argument(
        "--protocol",
        choices=("holdout", "abid"),
        default="holdout",
        help="holdout: train on the dataset's training images, score on the "
        "held-out ones, pictures; abid: Abid et al.'s Table 1 protocol (10,000 "
        "images: 5400 training, 600 validation, 4000 test), linear MSE and "
        "extremely-randomized-trees accuracy over --seeds, beside the baselines",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default="0,1,2",
        help="comma-separated seeds for --protocol abid",
    )
    parser.add_argument(
        "--results",
        default=None,
        help="markdown file that --protocol abid writes its table into (default: none)",
    )
    args = parser.parse_args(argv)
    if args.protocol == "abid" and args.dataset not in ("fashion_mnist", "mnist"):
        parser.error(
            "argument --protocol: abid needs 10,000 images of 28 x 28, "
            f"--dataset fashion_mnist or mnist; got --dataset {args.dataset}"
        )
    return parser, args


_cli.start(__name__, lambda argv: parse_args(argv)[1])

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _data import load_or_exit  # noqa: E402

import keras_gumbel as kg  # noqa: E402

# Abid et al.'s code trains until the selectors' mean largest probability
# reaches this, doubling the epochs until it does.
CONVERGED_PROBABILITY = 0.998


def updates_to_converge(pixels, learning_rate):
    """The fewest Adam updates after which a selector can meet Abid et al.'s test.

    A selector's largest probability is `CONVERGED_PROBABILITY` once its
    logit leads each of the other `pixels - 1` logits by
    `log(p / (1 - p) * (pixels - 1))` (12.9 for 784 pixels). The logits start
    near 0 (Glorot normal), and Adam moves each by about the learning rate per
    update, so the lead grows by at most about twice the learning rate.
    """
    p = CONVERGED_PROBABILITY
    lead = math.log(p / (1 - p) * (pixels - 1))
    return math.ceil(lead / (2 * learning_rate))


def warn_if_short(args, images, pixels):
    updates = args.epochs * math.ceil(images / args.batch_size)
    _cli.warn_if_short(
        updates,
        updates_to_converge(pixels, args.learning_rate),
        f"a selector's logit must lead the other {pixels - 1} by "
        f"log({CONVERGED_PROBABILITY} / {1 - CONVERGED_PROBABILITY:.3f} x "
        f"{pixels - 1}) for its largest probability to reach "
        f"{CONVERGED_PROBABILITY} (Abid et al.'s convergence test), and Adam "
        f"moves each logit by about the learning rate, {args.learning_rate:g}, "
        "per update; shorter runs can select pixels no better than at random.",
    )


def build_model(pixels, k, seed, unique):
    selector = kg.ConcreteSelect(k, temperature=10.0, unique=unique, seed=seed)
    decoder = keras.Sequential(
        [
            keras.layers.Dense(320),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dropout(0.1, seed=seed),
            keras.layers.Dense(320),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dropout(0.1, seed=seed),
            keras.layers.Dense(pixels, activation="sigmoid"),
        ],
        name="decoder",
    )
    inputs = keras.Input((pixels,))
    outputs = decoder(selector(inputs))
    return keras.Model(inputs, outputs, name="concrete_autoencoder"), selector


def linear_mse(x_train, x_test, columns):
    """Held-out MSE of a least-squares regression from `columns` to all pixels."""
    from sklearn.linear_model import LinearRegression

    regression = LinearRegression().fit(x_train[:, columns], x_train)
    prediction = regression.predict(x_test[:, columns])
    return float(np.mean((prediction - x_test) ** 2)), prediction


def pca_mse(x_train, x_test, components):
    from sklearn.decomposition import PCA

    pca = PCA(components, random_state=0).fit(x_train)
    prediction = pca.inverse_transform(pca.transform(x_test))
    return float(np.mean((prediction - x_test) ** 2))


def save_pictures(x_train, x_test, indices, decoded, linear, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = int(round(math.sqrt(x_train.shape[1])))
    rows, columns = np.unravel_index(np.unique(indices), (side, side))
    figure = plt.figure(figsize=(4, 4))
    plt.imshow(x_train.mean(axis=0).reshape(side, side), cmap="gray")
    plt.scatter(columns, rows, s=28, facecolors="none", edgecolors="red")
    plt.title(
        f"{len(np.unique(indices))} selected pixels on the mean image", fontsize=9
    )
    plt.axis("off")
    figure.tight_layout()
    figure.savefig(out / "selected_pixels.png", dpi=100)
    plt.close(figure)

    shown = 8
    observed = np.full_like(x_test[:shown], np.nan)
    observed[:, indices] = x_test[:shown, indices]
    panels = [
        ("held-out image", x_test),
        ("selected pixels only", observed),
        ("concrete autoencoder decoder", decoded),
        ("linear regression from selected pixels", linear),
    ]
    figure, axes = plt.subplots(len(panels), shown, figsize=(shown, 4.7))
    figure.subplots_adjust(
        left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.3
    )
    for row, (title, images) in enumerate(panels):
        for column in range(shown):
            axis = axes[row, column]
            axis.set_facecolor("midnightblue")
            axis.imshow(
                np.clip(images[column].reshape(side, side), 0, 1),
                cmap="gray",
                vmin=0,
                vmax=1,
            )
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_title(title, loc="left", fontsize=9)
    figure.savefig(out / "reconstructions.png", dpi=100)
    plt.close(figure)


def train_selector(args, x_train, seed, validation=None, verbose=1):
    """Trains the concrete autoencoder; returns (model, selector, seconds)."""
    keras.utils.set_random_seed(seed)
    model, selector = build_model(x_train.shape[1], args.k, seed, args.unique)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="mse")
    steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
    schedule = kg.schedules.GeometricDecay(
        args.start_temperature, args.end_temperature, steps
    )
    start = time.perf_counter()
    model.fit(
        x_train,
        x_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=None if validation is None else (validation, validation),
        callbacks=[kg.TemperatureAnnealing(schedule)],
        verbose=verbose,
    )
    return model, selector, time.perf_counter() - start


def trees_accuracy(x_train, y_train, x_test, y_test, columns, seed):
    """Test accuracy of 50 extremely randomized trees on the `columns`."""
    from sklearn.ensemble import ExtraTreesClassifier

    trees = ExtraTreesClassifier(n_estimators=50, random_state=seed, n_jobs=1)
    trees.fit(x_train[:, columns], y_train)
    return float(trees.score(x_test[:, columns], y_test))


def pca_features(x_train, x_test, components):
    from sklearn.decomposition import PCA

    pca = PCA(components, random_state=0).fit(x_train)
    return pca.transform(x_train), pca.transform(x_test)


# Abid et al. (2019), Table 1, MNIST-Fashion: linear-regression MSE and
# extremely-randomized-trees accuracy.
ABID_FASHION = {
    "concrete autoencoder": (0.041, 0.677),
    "PCA": (0.012, 0.825),
}
ABID_MARKERS = (
    "<!-- feature_selection --protocol abid: start -->",
    "<!-- feature_selection --protocol abid: end -->",
)


def abid_split(data):
    """Abid et al.'s protocol: 10,000 images, 6000 for training and validation
    (90/10) and the other 4000 for testing, drawn with the fixed data seed
    from the dataset's training split."""
    order = np.random.default_rng(1234).permutation(len(data.x_train))[:10_000]
    x, y = data.x_train[order], data.y_train[order]
    return (x[:5400], y[:5400]), (x[5400:6000], y[5400:6000]), (x[6000:], y[6000:])


def abid_protocol(args, argv):
    """Every seed: train, then score the selection and the baselines."""
    data = load_or_exit(args.dataset)
    (x_train, y_train), (x_val, _), (x_test, y_test) = abid_split(data)
    print(
        f"Abid et al.'s protocol on {args.dataset}: {len(x_train)} training, "
        f"{len(x_val)} validation and {len(x_test)} test images; k={args.k}; "
        f"seeds {args.seeds}."
    )
    warn_if_short(args, len(x_train), x_train.shape[1])
    scores = {}

    def add(name, mse, accuracy):
        scores.setdefault(name, []).append((mse, accuracy))

    for seed in args.seeds:
        print(f"\nSeed {seed}:")
        _, selector, seconds = train_selector(args, x_train, seed, x_val)
        columns = np.unique(selector.selected_indices())
        add(
            "concrete autoencoder",
            linear_mse(x_train, x_test, columns)[0],
            trees_accuracy(x_train, y_train, x_test, y_test, columns, seed),
        )
        print(f"{len(columns)} distinct pixels; training {seconds:.0f} s.")
        random = np.random.default_rng(seed).choice(784, args.k, replace=False)
        add(
            f"{args.k} random pixels",
            linear_mse(x_train, x_test, random)[0],
            trees_accuracy(x_train, y_train, x_test, y_test, random, seed),
        )
        variance = np.argsort(x_train.var(axis=0))[::-1][: args.k]
        add(
            f"{args.k} highest-variance pixels",
            linear_mse(x_train, x_test, variance)[0],
            trees_accuracy(x_train, y_train, x_test, y_test, variance, seed),
        )
        train_pca, test_pca = pca_features(x_train, x_test, args.k)
        everything = np.arange(args.k)
        add(
            "PCA",
            pca_mse(x_train, x_test, args.k),
            trees_accuracy(train_pca, y_train, test_pca, y_test, everything, seed),
        )

    rows = []
    for name, values in scores.items():
        mse, accuracy = np.array(values).T
        paper = ABID_FASHION.get(name) if args.dataset == "fashion_mnist" else None
        rows.append(
            [
                name,
                f"{mse.mean():.4f} ± {mse.std(ddof=1) if len(mse) > 1 else 0:.4f}",
                f"{accuracy.mean():.3f} ± "
                f"{accuracy.std(ddof=1) if len(accuracy) > 1 else 0:.3f}",
                "" if paper is None else f"{paper[0]:.3f}",
                "" if paper is None else f"{paper[1]:.3f}",
            ]
        )
    headers = [
        f"features (k = {args.k})",
        "linear MSE",
        "trees accuracy",
        "paper MSE",
        "paper accuracy",
    ]
    print(f"\nTest scores, mean ± standard deviation over seeds {args.seeds}:")
    print_table(rows, headers)
    if args.results:
        lines = [
            f"Command: `python examples/feature_selection.py {' '.join(argv)}` "
            f"({args.epochs} epochs of batch {args.batch_size}, dataset "
            f"`{args.dataset}`; mean ± standard deviation over seeds "
            f"{', '.join(map(str, args.seeds))}).",
            "",
            "| " + " | ".join(headers) + " |",
            "|" + "---|" * len(headers),
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
        write_between_markers(args.results, "\n".join(lines), *ABID_MARKERS)
        print(f"Table written to {args.results}")
    return scores


def main(argv=None):
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = parse_args(argv)
    if args.protocol == "abid":
        return abid_protocol(args, argv)
    loaded = load_or_exit(args.dataset)
    x_train, x_test = loaded.x_train, loaded.x_test
    pixels = x_train.shape[1]
    if args.k >= pixels:
        parser.error(
            f"argument --k: expected fewer than the {pixels} pixels of "
            f"--dataset {args.dataset}, got {args.k}"
        )
    print(
        f"Data: {args.dataset}, {len(x_train)} training and {len(x_test)} held-out "
        f"images of {pixels} pixels; selecting k={args.k}."
    )
    warn_if_short(args, len(x_train), pixels)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, selector, seconds = train_selector(args, x_train, args.seed)

    indices = selector.selected_indices()
    distinct = len(np.unique(indices))
    decoded = model.predict(x_test, verbose=0)
    decoder_mse = float(np.mean((decoded - x_test) ** 2))
    cae_mse, linear = linear_mse(x_train, x_test, np.unique(indices))
    rng = np.random.default_rng(args.seed)
    random_mse, _ = linear_mse(
        x_train, x_test, rng.choice(pixels, args.k, replace=False)
    )
    variance = np.argsort(x_train.var(axis=0))[::-1][: args.k]
    variance_mse, _ = linear_mse(x_train, x_test, variance)
    principal_mse = pca_mse(x_train, x_test, args.k)
    save_pictures(x_train, x_test[:8], indices, decoded, linear, out)

    print()
    print(
        f"Held-out reconstruction MSE (pixels in [0, 1]); {distinct} distinct of "
        f"{args.k} selected pixels; final temperature "
        f"{float(keras.ops.convert_to_numpy(selector.temperature)):.3f}; "
        f"training {seconds:.0f} s."
    )
    print_table(
        [
            [f"concrete autoencoder, {distinct} pixels", f"{cae_mse:.4f}"],
            [f"{args.k} random pixels", f"{random_mse:.4f}"],
            [f"{args.k} highest-variance pixels", f"{variance_mse:.4f}"],
            [f"PCA, {args.k} components", f"{principal_mse:.4f}"],
            ["concrete autoencoder's own decoder (nonlinear)", f"{decoder_mse:.4f}"],
        ],
        ["features (linear regression to all pixels)", "MSE"],
    )
    print(f"\nPictures are in {out}/")
    return {
        "cae_mse": cae_mse,
        "random_mse": random_mse,
        "variance_mse": variance_mse,
        "pca_mse": principal_mse,
        "decoder_mse": decoder_mse,
        "distinct": distinct,
        "indices": indices,
    }


if __name__ == "__main__":
    main()
