"""Convolutional discrete VAE tokenizer: DALL-E's dVAE recipe at small scale.

A tokenizer turns each 28 x 28 grayscale image into a 7 x 7 grid of integer codes
(tokens) from a learned codebook, and a detokenizer turns the grid back into an
image, as the discrete VAE of DALL-E (Ramesh et al. 2021, section 2.1 and
appendix A) does for 256 x 256 photographs with a 32 x 32 grid of 8192 codes.

The model (all choices of this script, scaled down from DALL-E's ResNets):

- encoder: `Conv2D(32, 4, strides=2)` -> 14 x 14 x 32, `Conv2D(64, 4, strides=2)`
  -> 7 x 7 x 64, `Conv2D(64, 3)`, each with ReLU and "same" padding; the 3 x 3
  convolution lets neighbouring codes see each other's patches;
- codebook: `keras_gumbel.GumbelQuantizer(num_codes=512, code_dim=64)` on the
  7 x 7 x 64 feature map, one code per position (`groups=1`); it projects the 64
  features of a position to 512 code logits and, in training, returns the
  relaxed Gumbel-Softmax mixture of the 64-dimensional codebook vectors
  (`hard=False`, as DALL-E trains); in inference the vector of the most likely
  code, `decode(encode(x))`;
- decoder, the mirror image: `Conv2D(64, 3)`, `Conv2DTranspose(32, 4,
  strides=2)` -> 14 x 14 x 32, with ReLU, and `Conv2DTranspose(1, 4, strides=2)`
  -> 28 x 28 pixel logits.

The likelihood is Bernoulli cross-entropy on the [0, 1] pixels (the grey levels
as soft targets), from logits: `sigmoid` keeps the reconstruction in [0, 1], the
gradient `sigmoid(l) - x` does not vanish on the many pixels that are exactly 0
(Fashion-MNIST's background), and the loss is in nats, on the scale of the KL
term, so the KL weight keeps its ELBO meaning. DALL-E's logit-Laplace likelihood
serves the same purpose for 8-bit colour channels. The loss is the beta-weighted
negative ELBO per code position: the cross-entropy summed over the 784 pixels
divided by the 49 positions, plus `kl_weight * KL(q || uniform)`, which the
quantizer averages over the positions. So the layer's `kl_weight` is DALL-E's
beta.

DALL-E's recipe (appendix A.2), scaled to this data:

- the temperature falls from 1 to 1/16 with a cosine schedule, here over the
  whole of training (`keras_gumbel.Annealing(variable="temperature")`; the last
  step trains at exactly 1/16);
- the KL weight rises from 0 to its final value with a cosine schedule. DALL-E
  raises beta to 6.6 over the first 5000 updates, 1/30 of the 150,000 over which
  its temperature falls; the ramp here keeps that ratio, the first 1/30 of
  training (`keras_gumbel.Annealing(variable="kl_weight")`). The final value is
  scaled by the pixels each code explains: a DALL-E code stands for
  256 * 256 * 3 / 1024 = 192 pixel values, one here for 784 / 49 = 16, so
  `--kl-weight` defaults to 6.6 * 16 / 192 = 0.55;
- Adam at a constant learning rate (DALL-E: AdamW with a decaying step size).

After training, on the test images the script reports the reconstruction error
(MSE per pixel of `decode(encode(x))`, and of the relaxed training path at the
final temperature), the size of a code grid in bits (raw: 49 * log2(512) = 441
bits; entropy-coded with the empirical code distribution of the test set,
49 * H(code usage) bits), the code perplexity `exp(H(code usage))`, the number
of dead codes (never used on the test set), the final temperature and KL weight
and the training time. It draws the test images beside their reconstructions, a
histogram of code usage and the code grids of a few images, and, on the
TensorFlow backend, exports a tokenizer SavedModel (images -> int32 codes) and a
detokenizer SavedModel (codes -> images), then checks in a fresh Python process
that imports only TensorFlow that `detokenize(tokenize(x))` equals the Keras
model's reconstruction.

Run `python examples/dvae.py --help` for the flags.
"""

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import _cli
from _cli import (
    positive_float,
    positive_int,
    print_table,
    write_between_markers,
)
from _data import DATASET_HELP, DATASETS

IMAGE_SHAPE = (28, 28, 1)
GRID = (7, 7)
POSITIONS = GRID[0] * GRID[1]
FEATURES = 64
FINAL_TEMPERATURE = 1.0 / 16.0
# DALL-E: beta reaches 6.6 after 5000 updates, the temperature 1/16 after 150,000.
DALLE_KL_WEIGHT = 6.6
KL_RAMP_FRACTION = 5000 / 150_000
# Pixel values per code: DALL-E's 256 x 256 x 3 image on 32 x 32 codes, ours.
DALLE_VALUES_PER_CODE = 256 * 256 * 3 / (32 * 32)
VALUES_PER_CODE = 28 * 28 / POSITIONS
DEFAULT_KL_WEIGHT = round(DALLE_KL_WEIGHT * VALUES_PER_CODE / DALLE_VALUES_PER_CODE, 4)
# Measured on mnist5k with the defaults: the test MSE of decode(encode(x)) was
# 0.087, 0.029 and 0.016 after 64, 160 and 320 updates, the code perplexity 6,
# 18 and 25: shorter runs leave most codes unused and blurry reconstructions.
ENOUGH_UPDATES = 320
# Test images whose reconstructions the exported models must reproduce.
EXPORT_CHECK_IMAGES = 16
EXPORT_TOLERANCE = 1e-5


def codebook_size(text):
    """argparse type: a codebook size, an integer >= 2."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text}")
    return value


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=_cli.HelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist5k",
        help=DATASET_HELP + "; 28 x 28 images only",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        help="passes over the training images",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=128, help="batch size"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-3,
        help="Adam's learning rate",
    )
    parser.add_argument(
        "--num-codes", type=codebook_size, default=512, help="codebook size"
    )
    parser.add_argument(
        "--code-dim",
        type=positive_int,
        default=64,
        help="size of each codebook vector (the decoder's input channels)",
    )
    parser.add_argument(
        "--kl-weight",
        type=non_negative_float,
        default=DEFAULT_KL_WEIGHT,
        help="final KL weight (beta), reached after the first 1/30 of training; "
        "DALL-E's 6.6 scaled by the pixel values per code, 16 here against 192",
    )
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="train on the first N training images only (default: all of them)",
    )
    parser.add_argument(
        "--test-size",
        type=positive_int,
        default=None,
        help="evaluate on the first N test images only (default: all of them)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of weights, samples and batches"
    )
    _cli.add_run_flags(parser, "dvae", "the pictures and the SavedModels")
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="do not write (and check) the tokenizer and detokenizer SavedModels",
    )
    parser.add_argument(
        "--results",
        default=None,
        help="markdown file to write the table into, between the markers of "
        "--dataset (default: none)",
    )
    return parser.parse_args(argv)


_cli.start(__name__, parse_args)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _data import load_or_exit  # noqa: E402
from keras import ops  # noqa: E402

import keras_gumbel as kg  # noqa: E402


def results_markers(dataset):
    """The markers between which `--results` writes the table of a run."""
    return (
        f"<!-- dvae --dataset {dataset}: start -->",
        f"<!-- dvae --dataset {dataset}: end -->",
    )


class CosineSchedule:
    """A cosine ramp from `start` to `end` over `steps` steps, then `end`.

    ```
    value(t) = end + (start - end) * (1 + cos(pi * min(t, steps) / steps)) / 2
    ```

    It decreases when `end < start` (the temperature) and increases when
    `end > start` (the KL weight): flat at both ends, steepest halfway. From
    step `steps` on it returns `end` exactly.
    """

    def __init__(self, start, end, steps):
        self.start = float(start)
        self.end = float(end)
        self.steps = int(steps)

    def __call__(self, step):
        if step >= self.steps:
            return self.end
        progress = max(step, 0) / self.steps
        return self.end + (self.start - self.end) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )


class DVAE(keras.Model):
    """Encoder -> `GumbelQuantizer` -> decoder; loss: beta-weighted negative ELBO
    per code position (Bernoulli cross-entropy from logits plus the quantizer's
    `kl_weight * KL(q || uniform)`)."""

    def __init__(self, num_codes, code_dim, seed, **kwargs):
        super().__init__(**kwargs)
        initializer = keras.initializers.GlorotUniform(seed=seed)

        def conv(layer, *args, **options):
            return layer(
                *args, padding="same", kernel_initializer=initializer, **options
            )

        self.encoder = keras.Sequential(
            [
                keras.Input(IMAGE_SHAPE),
                conv(keras.layers.Conv2D, 32, 4, strides=2, activation="relu"),
                conv(keras.layers.Conv2D, FEATURES, 4, strides=2, activation="relu"),
                conv(keras.layers.Conv2D, FEATURES, 3, activation="relu"),
            ],
            name="encoder",
        )
        self.quantizer = kg.GumbelQuantizer(
            num_codes,
            code_dim,
            temperature=1.0,
            kl_weight=0.0,
            seed=seed,
            name="quantizer",
        )
        self.decoder = keras.Sequential(
            [
                keras.Input((*GRID, code_dim)),
                conv(keras.layers.Conv2D, FEATURES, 3, activation="relu"),
                conv(keras.layers.Conv2DTranspose, 32, 4, strides=2, activation="relu"),
                conv(keras.layers.Conv2DTranspose, 1, 4, strides=2),
            ],
            name="decoder",
        )

    def call(self, images, training=False):
        features = self.encoder(images, training=training)
        vectors = self.quantizer(features, training=training)
        return self.decoder(vectors, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        # Bernoulli negative log-likelihood from logits: softplus(l) - x l.
        nats = ops.sum(ops.softplus(y_pred) - x * y_pred, axis=(1, 2, 3))
        reconstruction = ops.mean(nats) / POSITIONS
        # The base class adds the layers' losses: the quantizer's KL term.
        return reconstruction + super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, **kwargs
        )

    def tokenize(self, images):
        """int32 code grids `[n, 7, 7]` of images `[n, 28, 28, 1]`."""
        codes = self.quantizer.encode(self.encoder(images, training=False))
        return ops.squeeze(codes, axis=-1)

    def detokenize(self, codes):
        """Images `[n, 28, 28, 1]` in [0, 1] (pixel means) of code grids `[n, 7, 7]`."""
        vectors = self.quantizer.decode(ops.expand_dims(codes, axis=-1))
        return ops.sigmoid(self.decoder(vectors, training=False))


def schedules(args, steps):
    """The temperature and KL-weight schedules of a run of `steps` updates.

    Annealing evaluates a schedule at the optimizer's iteration count before
    each update, 0 to `steps - 1`, so the temperature reaches 1/16 at the last
    update.
    """
    temperature = CosineSchedule(1.0, FINAL_TEMPERATURE, max(1, steps - 1))
    ramp = max(1, round(KL_RAMP_FRACTION * steps))
    return temperature, CosineSchedule(0.0, args.kl_weight, ramp)


def batches(x, size=500):
    for start in range(0, len(x), size):
        yield x[start : start + size]


def evaluate(model, images):
    """Test metrics of the tokenizer on `images` `[n, 28, 28, 1]`, and the codes."""
    codes, squared, relaxed = [], 0.0, 0.0
    for batch in batches(images):
        grid = model.tokenize(batch)
        reconstruction = keras.ops.convert_to_numpy(model.detokenize(grid))
        codes.append(keras.ops.convert_to_numpy(grid))
        squared += float(np.sum((reconstruction - batch) ** 2))
        # The training path: a relaxed sample at the final temperature, drawn
        # from the quantizer's own seed generator.
        features = model.encoder(batch, training=False)
        vectors = model.quantizer(features, training=True)
        logits = model.decoder(vectors, training=False)
        sampled = keras.ops.convert_to_numpy(ops.sigmoid(logits))
        relaxed += float(np.sum((sampled - batch) ** 2))
    codes = np.concatenate(codes)
    num_codes = model.quantizer.num_codes
    usage = np.bincount(codes.ravel(), minlength=num_codes)
    probabilities = usage[usage > 0] / usage.sum()
    entropy_bits = float(-np.sum(probabilities * np.log2(probabilities)))
    pixels = images.size
    return (
        codes,
        usage,
        {
            "mse": squared / pixels,
            "relaxed_mse": relaxed / pixels,
            "raw_bits": POSITIONS * math.log2(num_codes),
            "entropy_bits": POSITIONS * entropy_bits,
            "perplexity": 2.0**entropy_bits,
            "dead_codes": int(np.sum(usage == 0)),
        },
    )


def train(args, data, verbose=1):
    """Trains the dVAE with both schedules; returns (model, history, schedules,
    steps, seconds)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Without it, TensorFlow's multithreaded CPU reductions may sum in a
        # different order from run to run, and the differences grow in training.
        tf.config.experimental.enable_op_determinism()
    images = data.x_train.reshape(-1, *IMAGE_SHAPE)
    steps = args.epochs * math.ceil(len(images) / args.batch_size)
    temperature, kl_weight = schedules(args, steps)
    model = DVAE(args.num_codes, args.code_dim, args.seed)
    model(images[:1])
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    callbacks = [
        kg.Annealing(temperature, variable="temperature", log_key="temperature"),
        kg.Annealing(kl_weight, variable="kl_weight", log_key="kl_weight"),
        kg.callbacks.CodebookLogger(),
    ]
    start = time.perf_counter()
    history = model.fit(
        images,
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return model, history, (temperature, kl_weight), steps, seconds


def save_pictures(model, images, codes, usage, metrics, history, schedule, steps, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = 10
    reconstructions = keras.ops.convert_to_numpy(model.detokenize(codes[:shown]))
    figure, axes = plt.subplots(2, shown, figsize=(shown, 2.3))
    for column in range(shown):
        for row, picture in enumerate((images[column], reconstructions[column])):
            axes[row, column].imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
    axes[0, 0].set_title("test image", loc="left", fontsize=9)
    axes[1, 0].set_title(
        f"decode(encode(x)): 49 codes, MSE {metrics['mse']:.4f}", loc="left", fontsize=9
    )
    # Not tight_layout: it would shrink the images to fit the long row titles,
    # which may run across the empty space above the neighbouring images.
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.88, hspace=0.3)
    figure.savefig(out / "reconstructions.png", dpi=100)
    plt.close(figure)

    num_codes = len(usage)
    figure, axis = plt.subplots(figsize=(7, 3.2))
    ranked = np.sort(usage)[::-1]
    axis.bar(np.arange(num_codes), ranked / usage.sum(), width=1.0, color="C0")
    axis.set_yscale("log")
    axis.set_xlim(-0.5, num_codes - 0.5)
    axis.set_xlabel("code, by rank of use on the test set")
    axis.set_ylabel("fraction of test positions")
    axis.set_title(
        f"code usage: perplexity {metrics['perplexity']:.1f} of {num_codes}, "
        f"{metrics['dead_codes']} dead codes",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(out / "code_usage.png", dpi=100)
    plt.close(figure)

    grids = 6
    figure, axes = plt.subplots(2, grids, figsize=(2 * grids, 4.2))
    for column in range(grids):
        axes[0, column].imshow(images[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        grid = codes[column]
        axes[1, column].imshow(grid, cmap="nipy_spectral", vmin=0, vmax=num_codes - 1)
        for (row, col), code in np.ndenumerate(grid):
            axes[1, column].text(
                col, row, str(code), ha="center", va="center", fontsize=6, color="white"
            )
        for axis in axes[:, column]:
            axis.axis("off")
    axes[0, 0].set_title("test image", loc="left", fontsize=9)
    axes[1, 0].set_title("its 7 x 7 code grid", loc="left", fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "code_grids.png", dpi=100)
    plt.close(figure)

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.5))
    epochs = np.arange(1, len(history.history["loss"]) + 1)
    left.plot(epochs, history.history["loss"], "o-")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (nats per code position)")
    left.set_title("beta-weighted negative ELBO", fontsize=10)
    for name, label in (
        ("code_perplexity", "codes (argmax)"),
        ("prob_perplexity", "mean probabilities"),
    ):
        middle.plot(epochs, history.history[f"quantizer/{name}"], "o-", label=label)
    middle.axhline(num_codes, color="gray", lw=0.8)
    middle.set_yscale("log")
    middle.set_xlabel("epoch")
    middle.set_ylabel("perplexity (mean over batches)")
    middle.set_title(f"codebook use in training (of {num_codes})", fontsize=10)
    middle.legend(fontsize=8)
    temperature, kl_weight = schedule
    step = np.arange(steps)
    right.plot(step, [temperature(s) for s in step], color="C0", label="temperature")
    right.set_xlabel("update")
    right.set_ylabel("temperature")
    twin = right.twinx()
    twin.plot(step, [kl_weight(s) for s in step], color="C3", label="KL weight")
    twin.set_ylabel("KL weight")
    right.legend(
        handles=right.get_lines() + twin.get_lines(), loc="center right", fontsize=8
    )
    right.set_title("the two cosine schedules", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "curves.png", dpi=100)
    plt.close(figure)


def export(model, out):
    """Writes the tokenizer and detokenizer SavedModels under `out`."""
    import tensorflow as tf

    paths = {}
    for name, function, signature in (
        ("tokenizer", model.tokenize, tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)),
        ("detokenizer", model.detokenize, tf.TensorSpec((None, *GRID), tf.int32)),
    ):
        archive = keras.export.ExportArchive()
        # The quantizer is needed both ways: its projection for the codes, its
        # codebook for the vectors.
        for part in (model.encoder, model.quantizer, model.decoder):
            archive.track(part)
        archive.add_endpoint("serve", function, input_signature=[signature])
        paths[name] = out / name
        archive.write_out(str(paths[name]), verbose=False)
    return paths


# Runs in a fresh interpreter that imports TensorFlow and NumPy only, what a
# service that serves the tokenizer needs. TensorFlow imports Keras when it is
# installed, so the program makes Keras and keras_gumbel unimportable first
# (None in `sys.modules`): the check fails if the SavedModels need either.
CHECK_PROGRAM = """
import json, sys
sys.modules["keras"] = sys.modules["keras_gumbel"] = None
import numpy as np
import tensorflow as tf
arrays = np.load(sys.argv[1])
# Keep the loaded objects: their variables die with them.
tokenizer = tf.saved_model.load(sys.argv[2])
detokenizer = tf.saved_model.load(sys.argv[3])
codes = tokenizer.serve(tf.constant(arrays["images"]))
images = detokenizer.serve(codes).numpy()
print(json.dumps({
    "max_difference": float(np.max(np.abs(images - arrays["reconstructions"]))),
    "codes_equal": int(np.sum(np.all(codes.numpy() == arrays["codes"], axis=(1, 2)))),
}))
"""


def check_export(model, paths, images, out):
    """Runs the exported models on `images` in a TensorFlow-only subprocess and
    compares them with the Keras model; returns the subprocess's findings."""
    codes = keras.ops.convert_to_numpy(model.tokenize(images))
    logits = model(images, training=False)
    reconstructions = keras.ops.convert_to_numpy(ops.sigmoid(logits))
    arrays = out / "export_check.npz"
    np.savez(arrays, images=images, codes=codes, reconstructions=reconstructions)
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK_PROGRAM,
            str(arrays),
            str(paths["tokenizer"]),
            str(paths["detokenizer"]),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    arrays.unlink()
    if completed.returncode != 0:
        raise RuntimeError(f"The export check failed:\n{completed.stderr}")
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    found["images"] = len(images)
    found["passed"] = found["max_difference"] <= EXPORT_TOLERANCE
    return found


def describe_export(check):
    if "skipped" in check:
        return f"skipped ({check['skipped']})"
    verdict = "passed" if check["passed"] else "FAILED"
    return (
        f"{verdict}: max abs difference {check['max_difference']:.2g} over "
        f"{check['images']} test images (tolerance {EXPORT_TOLERANCE:g}), codes "
        f"identical for {check['codes_equal']} of {check['images']}, in a "
        "TensorFlow-only process (keras and keras_gumbel unimportable)"
    )


def table(args, data, metrics):
    """The rows (metric, value) of the printed and the markdown table."""
    num_codes = args.num_codes
    return [
        [
            "data",
            f"{args.dataset}: {len(data.x_train)} training, {len(data.x_test)} "
            "test images",
        ],
        [
            "model",
            f"conv 28x28 -> 7x7x{FEATURES}, {num_codes} codes x {args.code_dim} "
            "dims, conv decoder",
        ],
        [
            "training",
            f"{args.epochs} epochs, {metrics['steps']} Adam updates of batch "
            f"{args.batch_size}, learning rate {args.learning_rate:g}",
        ],
        ["test MSE per pixel, decode(encode(x))", f"{metrics['mse']:.5f}"],
        [
            "test MSE per pixel, relaxed sample at the final temperature",
            f"{metrics['relaxed_mse']:.5f}",
        ],
        [
            "code grid, raw (bits per image)",
            f"{metrics['raw_bits']:.0f} = {POSITIONS} x log2({num_codes})",
        ],
        [
            "code grid, entropy-coded (bits per image)",
            f"{metrics['entropy_bits']:.1f} = {POSITIONS} x "
            f"{metrics['entropy_bits'] / POSITIONS:.3f} bits of code usage",
        ],
        [
            "code perplexity, test set",
            f"{metrics['perplexity']:.1f} of {num_codes}",
        ],
        ["dead codes, test set", f"{metrics['dead_codes']} of {num_codes}"],
        [
            "perplexity per training batch, last epoch",
            f"{metrics['batch_code_perplexity']:.1f} (codes), "
            f"{metrics['batch_prob_perplexity']:.1f} (mean probabilities)",
        ],
        ["final temperature", f"{metrics['final_temperature']:.4f}"],
        ["final KL weight", f"{metrics['final_kl_weight']:.4g}"],
        [
            "training time",
            f"{metrics['seconds']:.0f} s ({metrics['seconds'] / args.epochs:.0f} s "
            "per epoch)",
        ],
        ["export check", describe_export(metrics["export"])],
    ]


HEADERS = ["metric", "value"]


def write_results(path, args, argv, rows):
    lines = [
        f"Command: `python examples/dvae.py {' '.join(argv)}` (seed {args.seed}, "
        f"backend {keras.backend.backend()}).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]
    write_between_markers(path, "\n".join(lines), *results_markers(args.dataset))


def subsample(data, args):
    """`data` cut to --train-size and --test-size images."""
    sizes = {}
    for flag, size, images in (
        ("--train-size", args.train_size, data.x_train),
        ("--test-size", args.test_size, data.x_test),
    ):
        if size is not None and size > len(images):
            raise SystemExit(
                f"error: {flag} {size}: --dataset {args.dataset} has only "
                f"{len(images)} images there"
            )
        sizes[flag] = len(images) if size is None else size
    train, test = sizes["--train-size"], sizes["--test-size"]
    return data._replace(
        x_train=data.x_train[:train],
        y_train=data.y_train[:train],
        x_test=data.x_test[:test],
        y_test=data.y_test[:test],
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    data = load_or_exit(args.dataset)
    if data.image_shape != IMAGE_SHAPE[:2]:
        raise SystemExit(
            "error: the dVAE needs 28 x 28 images; "
            f"--dataset {args.dataset} has {data.image_shape}"
        )
    data = subsample(data, args)
    print(
        f"Data: {args.dataset}, {len(data.x_train)} training and "
        f"{len(data.x_test)} test images."
    )
    _cli.warn_if_short(
        args.epochs * math.ceil(len(data.x_train) / args.batch_size),
        ENOUGH_UPDATES,
        "on mnist5k the tokenizer's test MSE was 0.087, 0.029 and 0.016 after "
        "64, 160 and 320 updates, with 6, 18 and 25 codes in use (perplexity): "
        "the temperature falls to 1/16 over the run, and a short run anneals "
        "before the encoder spreads its images over the codebook.",
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, history, schedule, steps, seconds = train(args, data)
    images = data.x_test.reshape(-1, *IMAGE_SHAPE)
    codes, usage, metrics = evaluate(model, images)
    metrics.update(
        steps=steps,
        seconds=seconds,
        # Through `.value`: converting a Keras variable itself to NumPy warns
        # under NumPy 2 on JAX and torch.
        final_temperature=float(model.quantizer.temperature.value),
        final_kl_weight=float(model.quantizer.kl_weight.value),
        batch_code_perplexity=history.history["quantizer/code_perplexity"][-1],
        batch_prob_perplexity=history.history["quantizer/prob_perplexity"][-1],
    )
    save_pictures(model, images, codes, usage, metrics, history, schedule, steps, out)
    if args.no_export:
        metrics["export"] = {"skipped": "--no-export"}
    elif keras.backend.backend() != "tensorflow":
        print("Skipping the SavedModel export: it needs the TensorFlow backend.")
        metrics["export"] = {"skipped": f"backend {keras.backend.backend()}"}
    else:
        paths = export(model, out)
        metrics["export"] = check_export(
            model, paths, images[:EXPORT_CHECK_IMAGES], out
        )
    rows = table(args, data, metrics)
    print(f"\nTokenizer on the test images ({args.dataset}, {args.epochs} epochs):")
    print_table(rows, HEADERS)
    saved = "" if "skipped" in metrics["export"] else " and SavedModels"
    print(f"\nPictures{saved} are in {out}/")
    if args.results:
        write_results(args.results, args, argv, rows)
        print(f"Table written to {args.results}")
    if not metrics["export"].get("passed", True):
        raise SystemExit(
            "error: the exported tokenizer and detokenizer do not reproduce the "
            f"Keras model: {describe_export(metrics['export'])}"
        )
    return metrics


if __name__ == "__main__":
    main()
