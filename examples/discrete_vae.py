"""Discrete VAE with Gumbel-Softmax latents (Jang et al. 2017).

A variational autoencoder on binarized digits whose latent code is discrete, in one
of the two families of Table 1 of the paper (`--latent`):

- `categorical` (default): 30 categorical variables with 10 classes each, drawn by
  `keras_gumbel.GumbelSoftmax`, with the analytic KL divergence to the uniform prior,
  `keras_gumbel.ops.categorical_kl_uniform`;
- `bernoulli`: 200 Bernoulli variables, drawn by `keras_gumbel.GumbelSigmoid`, with
  the analytic KL divergence to the `Bernoulli(1/2)` prior,
  `keras_gumbel.ops.bernoulli_kl`.

The encoder (784-512-256-logits) outputs the logits of the posterior `q(z | x)`,
the sampler draws the code (relaxed for `--estimator gumbel_softmax`, an exact
sample with a surrogate gradient for the hard estimators), and the decoder
(256-512-784) outputs Bernoulli pixel logits. The loss is the negative ELBO: the
Bernoulli reconstruction error plus the analytic KL divergence. The temperature is
annealed with `keras_gumbel.TemperatureAnnealing` and
`keras_gumbel.schedules.ExponentialDecay`, `tau = max(floor, exp(-r t))` as in the
paper, with `r` chosen so that the floor is reached after 80% of training.

Held-out metrics, computed as the paper does with hard (discrete) samples:

- the negative ELBO, `E_q[-log p(x | z)] + KL(q(z | x) || p(z))`, in nats;
- the importance-weighted bound of Burda et al. (2016) with K samples from the
  posterior, `-log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`, a tighter upper
  bound on `-log p(x)`.

Run `python examples/discrete_vae.py --help` for the flags. `--compare` trains every
estimator with three seeds and writes a results table, one per `--latent` family.
"""

import argparse
import json
import math
import os
import pathlib
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

COMPARE_SEEDS = (0, 1, 2)
LATENTS = ("categorical", "bernoulli")
# 200 Bernoulli variables as in Jang et al. (section 4.2); 30 x 10 categorical as
# in the authors' notebook `Categorical VAE.ipynb` (section 4.2 says 20 x 10).
DEFAULT_LATENTS = {"categorical": 30, "bernoulli": 200}
DEFAULT_CLASSES = 10


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=_cli.HelpFormatter
    )
    parser.add_argument(
        "--latent",
        choices=LATENTS,
        default="categorical",
        help="the latent code: categorical (--latents one-hot variables of "
        "--classes classes, uniform prior) or bernoulli (--latents binary "
        "variables, Bernoulli(1/2) prior)",
    )
    parser.add_argument(
        "--estimator",
        choices=_cli.ESTIMATORS,
        default="gumbel_softmax",
        help="gradient estimator: gumbel_softmax trains on relaxed codes, the "
        "others on exact (hard) codes",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist5k",
        help=DATASET_HELP,
    )
    parser.add_argument(
        "--binarization",
        choices=("fixed", "dynamic"),
        default="fixed",
        help="fixed: one Bernoulli(pixel) draw of every image, made once; "
        "dynamic: a fresh draw of every training batch (the held-out images "
        "keep the fixed draw)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=50,
        help="passes over the training images",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=100, help="batch size"
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="Adam's step size"
    )
    parser.add_argument(
        "--schedule",
        choices=("fit", "jang"),
        default="fit",
        help="temperature schedule. fit: exponential decay from --temperature "
        "to --min-temperature over the first 80%% of training, in 50 steps, "
        "whatever the run's length; "
        "jang: Jang et al.'s max(--min-temperature, exp(-1e-4 t)) updated every "
        "500 updates t, which reaches 0.5 after 7000 updates",
    )
    # SUPPRESS: the defaults depend on --latent, and --classes must not be
    # given with --latent bernoulli; both are filled in below.
    parser.add_argument(
        "--latents",
        type=positive_int,
        default=argparse.SUPPRESS,
        help="number of latent variables (default: "
        + ", ".join(f"{n} {latent}" for latent, n in DEFAULT_LATENTS.items())
        + ")",
    )
    parser.add_argument(
        "--classes",
        type=positive_int,
        default=argparse.SUPPRESS,
        help="number of classes of each categorical latent variable "
        f"(default: {DEFAULT_CLASSES}; --latent categorical only)",
    )
    parser.add_argument(
        "--temperature", type=positive_float, default=1.0, help="initial temperature"
    )
    parser.add_argument(
        "--min-temperature",
        type=positive_float,
        default=0.5,
        help="temperature floor (raised to the estimator's minimum)",
    )
    parser.add_argument(
        "--eval-samples",
        type=positive_int,
        default=10,
        help="hard codes per held-out image for the negative ELBO",
    )
    parser.add_argument(
        "--importance-samples",
        type=positive_int,
        default=100,
        help="K of the importance-weighted bound",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of weights, samples and batches"
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="--compare: train seeds 0 .. N-1 of each estimator "
        "(default: seeds 0, 1, 2)",
    )
    _cli.add_run_flags(parser, "discrete_vae", "pictures and exported models")
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="do not write the encoder and decoder SavedModels",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="train every estimator (or --estimators) with seeds 0, 1, 2 (or "
        "--seeds), write a table to --results and the learning curves to --out; "
        "each finished run is kept under --out/runs/ and reused by a later "
        "--compare with the same settings, so an interrupted comparison resumes, "
        "and processes on one machine started with the same --out share the "
        "runs between them",
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=_cli.ESTIMATORS,
        default=list(_cli.ESTIMATORS),
        metavar="ESTIMATOR",
        help="--compare: the estimators to train and tabulate",
    )
    parser.add_argument(
        "--results",
        default="docs/results.md",
        help="markdown file that --compare writes its table into, between "
        "markers of its own for each --latent",
    )
    args = parser.parse_args(argv)
    if not hasattr(args, "latents"):
        args.latents = DEFAULT_LATENTS[args.latent]
    if args.latent == "bernoulli":
        if hasattr(args, "classes"):
            parser.error("argument --classes: only for --latent categorical")
        args.classes = None
    elif not hasattr(args, "classes"):
        args.classes = DEFAULT_CLASSES
    elif args.classes < 2:
        parser.error(f"argument --classes: expected at least 2, got {args.classes}")
    args.command_line = argv
    return args


_cli.start(__name__, parse_args)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _data import load_or_exit  # noqa: E402
from keras import ops  # noqa: E402

import keras_gumbel as kg  # noqa: E402


def results_markers(latent, dataset="mnist5k"):
    """The markers between which `--compare` writes the table of `latent` on
    `dataset`."""
    flags = "--compare" if latent == "categorical" else f"--compare --latent {latent}"
    if dataset != "mnist5k":
        flags += f" --dataset {dataset}"
    return (
        f"<!-- discrete_vae {flags}: start -->",
        f"<!-- discrete_vae {flags}: end -->",
    )


RESULTS_START, RESULTS_END = results_markers("categorical")


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_sigmoid(logits):
    return -np.logaddexp(0.0, -logits)


class Categorical:
    """`latents` categorical variables of `classes` classes, uniform prior.

    The NumPy methods take the posterior as log-probabilities of shape
    `[..., latents, classes]` and codes as one-hot arrays of that shape.
    """

    prior_name = "uniform"

    def __init__(self, latents, classes):
        self.latents = latents
        self.classes = classes
        self.code_shape = (latents, classes)
        self.description = f"{latents}x{classes} categorical"
        self.log_prior = -latents * math.log(classes)

    def encoder_head(self):
        return [
            keras.layers.Dense(self.latents * self.classes),
            keras.layers.Reshape(self.code_shape),
        ]

    def sampler(self, **kwargs):
        return kg.GumbelSoftmax(name="gumbel_softmax", **kwargs)

    def kl(self, logits):
        """`KL(q(z | x) || p(z))` per image, with Keras ops (the training loss)."""
        return ops.sum(kg.ops.categorical_kl_uniform(logits), axis=-1)

    def posterior(self, logits):
        return log_softmax(logits)

    def sample(self, log_probs, rng, samples):
        """`samples` hard codes per row by Gumbel-Max: `[samples, n, L, C]`."""
        shape = (samples,) + log_probs.shape
        uniforms = rng.uniform(np.finfo("float32").tiny, 1.0, shape)
        index = np.argmax(log_probs - np.log(-np.log(uniforms)), axis=-1)
        return np.eye(self.classes, dtype="float32")[index]

    def log_q(self, codes, log_probs):
        return np.sum(codes * log_probs, axis=(-1, -2))

    def prior_sample(self, rng, count):
        index = rng.integers(0, self.classes, size=(count, self.latents))
        return np.eye(self.classes, dtype="float32")[index]


class Bernoulli:
    """`latents` Bernoulli variables, prior `Bernoulli(1/2)` for each.

    The NumPy methods take the posterior as the log-probabilities of `z = 1`
    and `z = 0`, shape `[..., latents, 2]`, and codes as 0/1 arrays of shape
    `[..., latents]`.
    """

    prior_name = "Bernoulli(1/2)"

    def __init__(self, latents):
        self.latents = latents
        self.code_shape = (latents,)
        self.description = f"{latents} Bernoulli"
        self.log_prior = -latents * math.log(2.0)

    def encoder_head(self):
        return [keras.layers.Dense(self.latents)]

    def sampler(self, **kwargs):
        return kg.GumbelSigmoid(name="gumbel_sigmoid", **kwargs)

    def kl(self, logits):
        """`KL(q(z | x) || p(z))` per image, with Keras ops (the training loss)."""
        return ops.sum(kg.ops.bernoulli_kl(logits), axis=-1)

    def posterior(self, logits):
        # log sigmoid(-l) = log(1 - sigmoid(l)), without cancellation for l >> 0.
        return np.stack([log_sigmoid(logits), log_sigmoid(-logits)], axis=-1)

    def sample(self, log_probs, rng, samples):
        """`samples` hard codes per row, `z = [u < q(z = 1)]`: `[samples, n, L]`."""
        uniforms = rng.uniform(size=(samples,) + log_probs.shape[:-1])
        return (uniforms < np.exp(log_probs[..., 0])).astype("float32")

    def log_q(self, codes, log_probs):
        terms = codes * log_probs[..., 0] + (1.0 - codes) * log_probs[..., 1]
        return np.sum(terms, axis=-1)

    def prior_sample(self, rng, count):
        return rng.integers(0, 2, size=(count, self.latents)).astype("float32")


def latent_family(args):
    """The `--latent` family, sized by `--latents` (and `--classes`)."""
    if args.latent == "bernoulli":
        return Bernoulli(args.latents)
    return Categorical(args.latents, args.classes)


class DiscreteVAE(keras.Model):
    """Encoder -> discrete code from `sampler` -> decoder; loss: negative ELBO."""

    def __init__(self, pixels, family, sampler, dynamic_seed=None, **kwargs):
        super().__init__(**kwargs)
        self.family = family
        # Dynamic binarization: a fresh Bernoulli(pixel) draw of every
        # training batch from the grey levels, with its own seed stream.
        self.binarizer = (
            None if dynamic_seed is None else keras.random.SeedGenerator(dynamic_seed)
        )
        self.encoder = keras.Sequential(
            [
                keras.Input((pixels,)),
                keras.layers.Dense(512, activation="relu"),
                keras.layers.Dense(256, activation="relu"),
                *family.encoder_head(),
            ],
            name="encoder",
        )
        self.sampler = sampler
        self.decoder = keras.Sequential(
            [
                keras.Input(family.code_shape),
                keras.layers.Flatten(),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(512, activation="relu"),
                keras.layers.Dense(pixels),
            ],
            name="decoder",
        )

    def call(self, x, training=False):
        if training and self.binarizer is not None:
            uniform = keras.random.uniform(ops.shape(x), seed=self.binarizer)
            x = ops.cast(uniform < x, x.dtype)
        logits = self.encoder(x, training=training)
        code = self.sampler(logits, training=training)
        return {
            "pixel_logits": self.decoder(code, training=training),
            "logits": logits,
            "targets": x,
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        pixel_logits, x = y_pred["pixel_logits"], y_pred["targets"]
        # Bernoulli negative log-likelihood from logits: softplus(l) - x l.
        reconstruction = ops.sum(ops.softplus(pixel_logits) - x * pixel_logits, axis=-1)
        return ops.mean(reconstruction + self.family.kl(y_pred["logits"]))


def analytic_kl(family, posterior):
    """`KL(q(z | x) || p(z))` per row, in NumPy, from `family.posterior(logits)`.

    Both families hold log-probabilities on the last axis of the posterior and
    have a uniform prior, so the KL is the negative entropy minus `log p(z)`.
    """
    return np.sum(np.exp(posterior) * posterior, axis=(-1, -2)) - family.log_prior


def bernoulli_log_likelihood(pixel_logits, x):
    """log p(x | z) summed over pixels, from logits; NumPy, numerically stable."""
    return -np.sum(np.logaddexp(0.0, pixel_logits) - x * pixel_logits, axis=-1)


def held_out_bounds(
    family,
    logits,
    x,
    decode,
    *,
    samples=1,
    importance_samples=100,
    seed=0,
    batch=100,
    log_likelihood=None,
):
    """Negative ELBO and importance-weighted bound from posterior `logits`.

    `decode` maps a batch of hard codes to pixel logits. Both bounds use hard
    codes drawn from the posterior `family.posterior(logits)`, as Jang et al.
    evaluate. The negative ELBO averages `samples` codes per image; the
    importance-weighted bound uses `importance_samples` codes per image
    (0 skips it). In nats per image. `log_likelihood(codes, x)`, if given,
    replaces decoding and `bernoulli_log_likelihood`: `log p(x | z)` `[K, n]`
    of `K * n` codes (K per image, image-minor) and the `n` images `x`.
    """
    if log_likelihood is None:

        def log_likelihood(codes, images):
            pixel_logits = np.asarray(decode(codes)).reshape(-1, *images.shape)
            return bernoulli_log_likelihood(pixel_logits, images[None])

    rng = np.random.default_rng(seed)
    posterior = family.posterior(logits)
    kl = analytic_kl(family, posterior)

    codes = family.sample(posterior, rng, samples)
    likelihood = np.concatenate(
        [
            np.asarray(
                log_likelihood(codes[:, rows].reshape(-1, *codes.shape[2:]), x[rows])
            )
            for rows in (slice(i, i + batch) for i in range(0, len(x), batch))
        ],
        axis=1,
    )
    negative_elbo = float(np.mean(-likelihood.mean(axis=0) + kl))
    if not importance_samples:
        return negative_elbo, None

    bounds = []
    for start in range(0, len(x), batch):
        rows = slice(start, start + batch)
        codes = family.sample(posterior[rows], rng, importance_samples)
        flat = codes.reshape((-1,) + codes.shape[2:])
        log_weights = (
            np.asarray(log_likelihood(flat, x[rows]), "float64")
            + family.log_prior
            - family.log_q(codes, posterior[rows][None])
        )
        top = log_weights.max(axis=0)
        log_mean = top + np.log(np.mean(np.exp(log_weights - top), axis=0))
        bounds.append(-log_mean)
    return negative_elbo, float(np.mean(np.concatenate(bounds)))


class LogLikelihood(keras.Model):
    """`log p(x | z)` `[K, n]` of `K * n` codes and `n` images, in the backend.

    The evaluation's bulk: with K = 1000 the 10,000 test images need 10
    million decoder passes, and keeping their pixel logits out of NumPy makes
    the bound several times faster.
    """

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.decoder = decoder

    def call(self, inputs):
        codes, x = inputs
        logits = self.decoder(codes, training=False)
        logits = ops.reshape(logits, (-1, ops.shape(x)[0], ops.shape(x)[1]))
        return -ops.sum(ops.softplus(logits) - x[None] * logits, axis=-1)


def evaluate(model, x, *, samples=1, importance_samples=100, seed=0):
    """`held_out_bounds` of `model` on the images `x`."""
    scorer = LogLikelihood(model.decoder)
    # About 10,000 decoder rows per call, whatever K.
    batch = max(1, 10_000 // max(samples, importance_samples))
    return held_out_bounds(
        model.family,
        model.encoder.predict(x, batch_size=500, verbose=0),
        x,
        model.decoder.predict_on_batch,
        samples=samples,
        importance_samples=importance_samples,
        seed=seed,
        batch=batch,
        log_likelihood=lambda codes, images: keras.ops.convert_to_numpy(
            scorer.predict_on_batch([codes, images])
        ),
    )


class HeldOutELBO(keras.callbacks.Callback):
    """Records the held-out negative ELBO (hard codes, one sample) every epoch.

    With `bound_images`, also the importance-weighted bound with
    `TRACKED_IMPORTANCE_SAMPLES` codes on the first `bound_images` held-out
    images, the paper's measure at a cost small enough for every epoch: the
    ranking of the estimators is read from it (see `stable_since`).
    """

    def __init__(self, x, seed, bound_images=0):
        super().__init__()
        self.x = x
        self.seed = seed
        self.bound_images = bound_images
        self.values = []
        self.bounds = []

    def on_epoch_end(self, epoch, logs=None):
        value, _ = evaluate(
            self.model, self.x, importance_samples=0, seed=self.seed + epoch
        )
        self.values.append(value)
        if self.bound_images:
            _, bound = evaluate(
                self.model,
                self.x[: self.bound_images],
                importance_samples=TRACKED_IMPORTANCE_SAMPLES,
                seed=self.seed + epoch,
            )
            self.bounds.append(bound)


# K of the bound that --compare tracks every epoch, and on how many images.
TRACKED_IMPORTANCE_SAMPLES = 100
TRACKED_IMAGES = 2000


def stable_since(curves):
    """The first epoch (1-based) from which the ranking of the estimators by
    their seed-mean `curves` (`{estimator: [runs][epochs]}`, lower is better)
    is the final ranking at every epoch."""
    means = np.array([np.mean(runs, axis=0) for runs in curves.values()])
    orders = np.argsort(means, axis=0, kind="stable")
    changed = np.flatnonzero(np.any(orders != orders[:, -1:], axis=0))
    return 1 if changed.size == 0 else int(changed[-1]) + 2


# Jang et al. (2017, section 4.2): tau = max(0.5, exp(-r t)), updated every N
# steps, r in {1e-5, 1e-4} and N in {500, 1000}; the faster pair.
JANG_RATE = 1e-4
JANG_EVERY = 500


def temperature_schedule(args, steps):
    """The `--schedule` of a run of `steps` updates.

    `fit`: ExponentialDecay from `--temperature` to the floor after 80% of
    `steps`, updated 50 times. `jang`: Jang et al.'s `max(floor, initial *
    exp(-1e-4 t))` updated every 500 steps, whatever the run's length. The
    floor is `--min-temperature`, raised to the estimator's smallest supported
    temperature (1.0 for ReinMax).
    """
    minimum = kg.estimators.get(args.estimator).min_temperature or 0.0
    floor = max(args.min_temperature, minimum)
    initial = max(args.temperature, floor)
    if args.schedule == "jang":
        return kg.schedules.ExponentialDecay(
            initial=initial, rate=JANG_RATE, minimum=floor, every=JANG_EVERY
        )
    every = max(1, steps // 50)
    rate = math.log(initial / floor) / max(1, int(0.8 * steps))
    return kg.schedules.ExponentialDecay(
        initial=initial, rate=rate, minimum=floor, every=every
    )


def train(args, data, seed, verbose, bound_images=0):
    """Trains one VAE; returns (model, history, held-out curves, metrics).

    The held-out curves are the `HeldOutELBO` callback: `.values` per epoch,
    and `.bounds` when `bound_images` > 0.
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Without it, TensorFlow's multithreaded CPU reductions may sum in a
        # different order from run to run, and the differences grow in training.
        tf.config.experimental.enable_op_determinism()
    x_train, x_test = data
    hard = kg.estimators.get(args.estimator).hard
    schedule = temperature_schedule(
        args, args.epochs * math.ceil(len(x_train) / args.batch_size)
    )
    family = latent_family(args)
    sampler = family.sampler(
        temperature=float(schedule(0)), hard=hard, estimator=args.estimator, seed=seed
    )
    dynamic_seed = seed + 10_000 if args.binarization == "dynamic" else None
    model = DiscreteVAE(x_train.shape[1], family, sampler, dynamic_seed)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    held_out = HeldOutELBO(x_test, seed, bound_images)
    start = time.perf_counter()
    history = model.fit(
        x_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=[kg.TemperatureAnnealing(schedule), held_out],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    negative_elbo, iw_bound = evaluate(
        model,
        x_test,
        samples=args.eval_samples,
        importance_samples=args.importance_samples,
        seed=seed,
    )
    metrics = {
        "negative_elbo": negative_elbo,
        "iw_bound": iw_bound,
        "train_loss": history.history["loss"][-1],
        "final_temperature": float(sampler.temperature.numpy()),
        "seconds": seconds,
    }
    return model, history, held_out, metrics


def save_pictures(model, history, held_out, x_test, out, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = int(round(math.sqrt(x_test.shape[1])))
    codes = model.sampler(model.encoder(x_test[:10]), training=False)
    means = keras.ops.convert_to_numpy(ops.sigmoid(model.decoder(codes)))
    figure, axes = plt.subplots(2, 10, figsize=(10, 2.3))
    for column in range(10):
        for row, image in enumerate((x_test[column], means[column])):
            axes[row, column].imshow(image.reshape(side, side), cmap="gray")
            axes[row, column].axis("off")
    axes[0, 0].set_title("held-out input (binarized)", loc="left", fontsize=9)
    axes[1, 0].set_title("reconstruction (argmax code)", loc="left", fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "reconstructions.png", dpi=100)
    plt.close(figure)

    codes = model.family.prior_sample(np.random.default_rng(seed), 100)
    means = keras.ops.convert_to_numpy(ops.sigmoid(model.decoder(codes)))
    grid = means.reshape(10, 10, side, side).transpose(0, 2, 1, 3)
    figure = plt.figure(figsize=(5, 5))
    plt.imshow(grid.reshape(10 * side, 10 * side), cmap="gray")
    plt.axis("off")
    plt.title(
        f"decoded codes drawn from the {model.family.prior_name} prior (pixel means)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(out / "samples.png", dpi=100)
    plt.close(figure)

    epochs = np.arange(1, len(held_out) + 1)
    figure, loss_axis = plt.subplots(figsize=(6, 3.5))
    loss_axis.plot(epochs, history.history["loss"], label="training loss")
    loss_axis.plot(epochs, held_out, label="held-out negative ELBO (hard)")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("nats per image")
    temperature_axis = loss_axis.twinx()
    temperature_axis.plot(
        epochs, history.history["temperature"], color="gray", linestyle="--"
    )
    temperature_axis.set_ylabel("temperature (dashed)")
    loss_axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(out / "curves.png", dpi=100)
    plt.close(figure)


def export(model, out):
    """SavedModels: encoder (pixels -> posterior logits), decoder (code -> logits)."""
    if keras.backend.backend() != "tensorflow":
        print("Skipping the SavedModel export: it needs the TensorFlow backend.")
        return
    model.encoder.export(str(out / "encoder"), verbose=False)
    model.decoder.export(str(out / "decoder"), verbose=False)


def compare(args, data):
    seeds = COMPARE_SEEDS if args.seeds is None else tuple(range(args.seeds))
    bound_images = min(TRACKED_IMAGES, len(data[1]))
    out = pathlib.Path(args.out)
    pending = [(estimator, seed) for estimator in args.estimators for seed in seeds]
    finished = {}
    # Runs another process is training are left for later; when only those
    # remain, wait for their records (or train a run whose process died).
    while pending:
        deferred = []
        for estimator, seed in pending:
            run_args = argparse.Namespace(**{**vars(args), "estimator": estimator})
            path = run_record_path(out, run_args, seed)
            run = read_run_record(path, run_args, seed)
            if run is not None:
                print(
                    f"--compare: estimator={estimator} seed={seed}: "
                    f"the finished run in {path}",
                    flush=True,
                )
            elif claim_run(path):
                print(f"--compare: estimator={estimator} seed={seed}", flush=True)
                try:
                    _, _, held_out, metrics = train(
                        run_args, data, seed, verbose=2, bound_images=bound_images
                    )
                    run = {
                        **metrics,
                        "held_out_elbo": [float(v) for v in held_out.values],
                        "tracked_bound": [float(v) for v in held_out.bounds],
                    }
                    write_run_record(path, run_args, seed, run)
                finally:
                    path.with_suffix(".claim").unlink(missing_ok=True)
            else:
                deferred.append((estimator, seed))
                continue
            print(
                f"  negative ELBO {run['negative_elbo']:.2f}, IW bound "
                f"{run['iw_bound']:.2f}, {run['seconds']:.0f} s",
                flush=True,
            )
            finished[(estimator, seed)] = run
        if deferred and len(deferred) == len(pending):
            names = ", ".join(f"{e} seed {s}" for e, s in deferred)
            print(f"--compare: waiting for other processes to finish {names}")
            time.sleep(CLAIM_POLL_SECONDS)
        pending = deferred
    results, curves, bounds = {}, {}, {}
    for estimator in args.estimators:
        for seed in seeds:
            run = finished[(estimator, seed)]
            results.setdefault(estimator, []).append(run)
            curves.setdefault(estimator, []).append(run["held_out_elbo"])
            bounds.setdefault(estimator, []).append(run["tracked_bound"])

    def mean_std(values):
        return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"

    headers = [
        "estimator",
        "final temperature",
        "negative ELBO (nats)",
        f"IW bound, K={args.importance_samples} (nats)",
        "train time per run (s)",
    ]
    rows = []
    for estimator, runs in results.items():
        rows.append(
            [
                f"`{estimator}`",
                f"{runs[0]['final_temperature']:.2f}",
                mean_std([r["negative_elbo"] for r in runs]),
                mean_std([r["iw_bound"] for r in runs]),
                f"{np.mean([r['seconds'] for r in runs]):.0f}",
            ]
        )
    print_table(rows, headers)
    command = (
        "python examples/discrete_vae.py --compare "
        + " ".join(sys.argv[1:] if args.command_line is None else args.command_line)
        .replace("--compare", "")
        .strip()
    )
    table = [
        f"Command: `{command.strip()}` (seeds {', '.join(map(str, seeds))}; "
        f"{args.epochs} epochs, dataset `{args.dataset}` "
        f"({args.binarization} binarization), {args.schedule} schedule, "
        f"{latent_family(args).description} latents; mean ± standard deviation "
        "over the seeds; held-out data, hard codes).",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    since = stable_since(bounds)
    ranking = (
        f"Ranking by the K={TRACKED_IMPORTANCE_SAMPLES} bound on the first "
        f"{bound_images} held-out images, seed means, tracked every epoch: "
        f"the final one (best first: {', '.join(final_ranking(bounds))}) since "
        f"epoch {since} of {args.epochs}."
    )
    print(ranking)
    table += ["", ranking]
    write_results(
        pathlib.Path(args.results),
        "\n".join(table),
        *results_markers(args.latent, args.dataset),
    )
    out.mkdir(parents=True, exist_ok=True)
    # Everything the table and the figure come from, to study without rerunning.
    record = {
        "command": command,
        "seeds": list(seeds),
        "tracked_bound": {
            "importance_samples": TRACKED_IMPORTANCE_SAMPLES,
            "images": bound_images,
        },
        "runs": results,
    }
    record_path = out / f"compare_{args.latent}.json"
    record_path.write_text(json.dumps(record, indent=1))
    print(f"Wrote every run's metrics and curves to {record_path}")
    save_compare_curves(
        {
            "held-out negative ELBO, hard codes": curves,
            f"IW bound, K={TRACKED_IMPORTANCE_SAMPLES}, {bound_images} images": bounds,
        },
        args,
        out / f"compare_{args.latent}_curves.png",
    )


# The flags that change what a run trains or measures; a record made with other
# values of any of them is not reused.
RUN_SETTINGS = (
    "latent",
    "latents",
    "classes",
    "dataset",
    "binarization",
    "epochs",
    "batch_size",
    "learning_rate",
    "schedule",
    "temperature",
    "min_temperature",
    "eval_samples",
    "importance_samples",
    "estimator",
)


def run_settings(args, seed):
    """What a `--compare` run depends on: its flags, seed, backend and the
    tracked bound's size."""
    return {
        **{name: getattr(args, name) for name in RUN_SETTINGS},
        "seed": seed,
        "backend": keras.backend.backend(),
        "tracked_importance_samples": TRACKED_IMPORTANCE_SAMPLES,
        "tracked_images": TRACKED_IMAGES,
    }


def run_record_path(out, args, seed):
    name = f"{args.latent}-{args.dataset}-{args.estimator}-seed{seed}.json"
    return pathlib.Path(out) / "runs" / name


def read_run_record(path, args, seed):
    """The metrics and curves of a finished run with these settings, or None
    (no record, or one made with other settings, which is then retrained)."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("settings") != run_settings(args, seed):
        print(f"--compare: {path} was made with other settings; retraining.")
        return None
    return record["run"]


CLAIM_POLL_SECONDS = 30


def claim_run(path):
    """Whether this process may train the run recorded at `path`: True once it
    holds the run's claim file, False while a live process on this machine
    holds it. A claim left by a process that died is taken over."""
    claim = path.with_suffix(".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            holder = int(claim.read_text())
        except (ValueError, FileNotFoundError):
            return False  # being written, or just released: look again later
        if process_alive(holder):
            return False
        claim.unlink(missing_ok=True)
        return claim_run(path)
    with os.fdopen(descriptor, "w") as file:
        file.write(str(os.getpid()))
    return True


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def write_run_record(path, args, seed, run):
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then renamed: a run stopped while
    # writing leaves no half record that a later --compare would trust.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"settings": run_settings(args, seed), "run": run}))
    partial.replace(path)


def final_ranking(curves):
    """The estimators from best to worst by their seed-mean final value."""
    return sorted(curves, key=lambda estimator: np.mean(curves[estimator], axis=0)[-1])


def save_compare_curves(panels, args, path):
    """One panel per measure (`{title: {estimator: [runs][epochs]}}`), one line
    per estimator (seed mean) and the band between the seeds' lowest and
    highest values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4))
    for axis, (title, curves) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        for estimator, runs in curves.items():
            runs = np.asarray(runs)
            epochs = np.arange(1, runs.shape[1] + 1)
            (line,) = axis.plot(epochs, runs.mean(axis=0), label=estimator)
            axis.fill_between(
                epochs,
                runs.min(axis=0),
                runs.max(axis=0),
                color=line.get_color(),
                alpha=0.2,
            )
        final = np.concatenate([np.asarray(runs)[:, -1] for runs in curves.values()])
        first = np.concatenate([np.asarray(runs)[:, 0] for runs in curves.values()])
        # The late epochs are what tells the estimators apart: zoom on them.
        axis.set_ylim(final.min() - 2, min(first.max(), final.max() + 25))
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"held-out {title} (nats)", fontsize=9)
        axis.legend(fontsize=8)
    figure.suptitle(
        f"{latent_family(args).description} VAE, {args.dataset}, "
        f"{len(next(iter(curves.values())))} seeds (band: min to max)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"Wrote the learning curves to {path}")


def write_results(path, table, start, end):
    """Puts `table` between the markers `start` and `end` in `path`."""
    write_between_markers(path, table, start, end)
    print(f"Wrote the comparison table to {path}")


def warn_if_short(args, updates):
    """Warns when Jang et al.'s schedule cannot reach its floor in `updates`.

    `--schedule fit` reaches the floor after 80% of any run by construction.
    """
    if args.schedule != "jang":
        return
    schedule = temperature_schedule(args, updates)
    floor = float(schedule.minimum)
    # The schedule holds each value for JANG_EVERY updates.
    decay = math.log(float(schedule.initial) / floor) / JANG_RATE
    needed = math.ceil(decay / JANG_EVERY) * JANG_EVERY
    _cli.warn_if_short(
        updates,
        needed,
        f"Jang et al.'s schedule max({floor:g}, exp(-{JANG_RATE:g} t)), updated "
        f"every {JANG_EVERY} updates, reaches its floor {floor:g} only after that "
        "many, and a shorter run never trains at the temperature it evaluates "
        "with hard codes.",
    )


def main(argv=None):
    args = parse_args(argv)
    loaded = load_or_exit(
        args.dataset, binarized=True if args.binarization == "fixed" else "dynamic"
    )
    data = loaded.x_train, loaded.x_test
    print(
        f"Data: {args.dataset}, {len(data[0])} training and {len(data[1])} held-out "
        f"images of {data[0].shape[1]} pixels, {args.binarization} binarization."
    )
    warn_if_short(args, args.epochs * math.ceil(len(data[0]) / args.batch_size))
    if args.compare:
        compare(args, data)
        return None
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, history, held_out, metrics = train(args, data, args.seed, verbose=1)
    save_pictures(model, history, held_out.values, data[1], out, args.seed)
    if not args.no_export:
        export(model, out)
    print()
    print_table(
        [
            ["latent code", latent_family(args).description],
            ["estimator", args.estimator],
            ["final temperature", f"{metrics['final_temperature']:.3f}"],
            ["training loss, last epoch (nats)", f"{metrics['train_loss']:.2f}"],
            [
                "held-out negative ELBO, hard codes (nats)",
                f"{metrics['negative_elbo']:.2f}",
            ],
            [
                f"held-out IW bound, K={args.importance_samples} (nats)",
                f"{metrics['iw_bound']:.2f}",
            ],
            ["training time (s)", f"{metrics['seconds']:.0f}"],
        ],
        ["metric", "value"],
    )
    print(f"\nPictures and SavedModels are in {out}/")
    return metrics


if __name__ == "__main__":
    main()
