"""Whole train steps of the examples' models, with keras-gumbel and without it.

Users feel the train step, not the sampler alone. Each model below is built
several ways in one process, identical but for the layer that samples:

- `ours`: the keras-gumbel layer (`GumbelSoftmax`, `GumbelSigmoid`,
  `ConcreteSelect`, `GumbelQuantizer`);
- `tfp` (TensorFlow): `tfp.distributions.RelaxedOneHotCategorical` or
  `RelaxedBernoulli(temperature, logits).sample()` inside a layer;
- `snippet`: the common `keras.random.uniform` Gumbel snippet,
  `softmax((logits - log(-log(u + eps) + eps)) / t)` (for Bernoulli latents
  `sigmoid((logits + log(u + eps) - log(1 - u + eps)) / t)`);
- `torch` (PyTorch): `torch.nn.functional.gumbel_softmax(logits, tau)`, or
  `torch.distributions.RelaxedBernoulli(t, logits).rsample()`;
- `none`: the sampler replaced by the identity on its logits, to measure what
  the rest of the step costs: the sampler's share of the step is
  `1 - none / ours`.

Every sampler keeps its temperature in a non-trainable variable, as annealing
needs, and samples relaxed values, as the examples train by default. The
models mirror the examples (built here, so that the benchmark does not move
when an example does), with their batch sizes:

- `vae`: the discrete VAE, 784-512-256-(20 x 10 categorical)-256-512-784,
  negative ELBO with the analytic KL, batch 100 (examples/discrete_vae.py);
- `binary_vae`: the same with 200 Bernoulli latents (`--latent bernoulli`);
- `selector`: the concrete autoencoder, a selector of 50 of 784 features
  (temperature 10) and a 320-320-784 decoder, MSE, batch 256
  (examples/feature_selection.py);
- `quantizer`: the dVAE tokenizer, a conv encoder 28x28 -> 7x7x64, a
  quantizer of 512 codes of size 64 at each of the 49 positions, a conv
  decoder, batch 128 (examples/dvae.py).

A step is `model.train_on_batch` (forward, loss, backward, Adam update) on
random data of the model's shape. On TensorFlow each model runs with
`jit_compile` False and True, on JAX under `jax.jit` (Keras's default), on
PyTorch eagerly (Keras's default). Candidates run round-robin in one process
(`benchmarks/_timing.py`); every ratio is the median of per-round ratios with
its interquartile range.

Goals (issue 17): ours no slower than the best peer (ratio <= 1.0 within the
spread: the 25th percentile at most 1.0), and, where the sampler takes more
than 10% of the step, ours at most 1 / 1.5 of the snippet's time.

Usage:
    python benchmarks/training.py                    # TensorFlow
    KERAS_BACKEND=jax python benchmarks/training.py
    KERAS_BACKEND=torch python benchmarks/training.py
    python benchmarks/training.py --models vae --rounds 5
    python benchmarks/training.py --quick            # a smoke run
"""

import argparse
import os

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
from keras import ops  # noqa: E402

import keras_gumbel as kg  # noqa: E402

EPS = 1e-20  # the snippet's epsilon
MODELS = ("vae", "binary_vae", "selector", "quantizer")

PEER_GOAL = 1.0
SNIPPET_GOAL = 1 / 1.5
SHARE_THRESHOLD = 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"Comma-separated, of {', '.join(MODELS)}. Default: all.",
    )
    parser.add_argument("--rounds", type=int, default=15, help="Default: 15.")
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.3,
        help="Seconds of train steps per timing (steps are timed in batches "
        "that last about this long). Default: 0.3.",
    )
    parser.add_argument(
        "--settings",
        default=None,
        help="Comma-separated settings of the backend that runs ("
        + "; ".join(f"{b}: {', '.join(names)}" for b, names in SETTINGS.items())
        + "). Default: all of them.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A smoke run: small batches and widths, 2 rounds.",
    )
    args = parser.parse_args(argv)
    args.models = args.models.split(",")
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from {MODELS}")
    available = settings()
    args.settings = (
        list(available) if args.settings is None else args.settings.split(",")
    )
    if not set(args.settings) <= set(available):
        parser.error(
            f"--settings: {args.settings}; {keras.backend.backend()} runs "
            f"{list(available)}"
        )
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds and --seconds must be positive")
    args.scale = 8 if args.quick else 1
    if args.quick:
        args.rounds, args.seconds = 2, 0.01
    return args


def peers():
    """The samplers to compare on this backend, ours first."""
    backend = keras.backend.backend()
    native = {"tensorflow": ["tfp"], "torch": ["torch"]}.get(backend, [])
    return ["ours", *native, "snippet", "none"]


# Samplers written as users write them without keras-gumbel.


class PeerSampler(keras.layers.Layer):
    """A relaxed one-hot (or, `binary`, relaxed Bernoulli) sample of logits."""

    def __init__(self, kind, temperature=1.0, binary=False, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.binary = binary
        self.temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(temperature),
            trainable=False,
            name="temperature",
        )
        self.generator = keras.random.SeedGenerator(0)

    def call(self, logits, training=None):
        temperature = ops.cast(self.temperature, logits.dtype)
        if self.kind == "none":
            return logits
        if self.kind == "snippet":
            uniform = keras.random.uniform(ops.shape(logits), seed=self.generator)
            if self.binary:
                noise = ops.log(uniform + EPS) - ops.log(1.0 - uniform + EPS)
                return ops.sigmoid((logits + noise) / temperature)
            gumbel = -ops.log(-ops.log(uniform + EPS) + EPS)
            return ops.softmax((logits + gumbel) / temperature, axis=-1)
        if self.kind == "tfp":
            import tensorflow_probability as tfp

            if self.binary:
                return tfp.distributions.RelaxedBernoulli(
                    temperature, logits=logits
                ).sample()
            return tfp.distributions.RelaxedOneHotCategorical(
                temperature, logits=logits
            ).sample()
        import torch

        if self.binary:
            return torch.distributions.RelaxedBernoulli(
                temperature, logits=logits
            ).rsample()
        return torch.nn.functional.gumbel_softmax(logits, tau=temperature)


def sampler(kind, temperature=1.0, binary=False):
    if kind == "ours":
        layer = kg.GumbelSigmoid if binary else kg.GumbelSoftmax
        return layer(temperature, seed=0)
    return PeerSampler(kind, temperature, binary)


class PeerSelector(keras.layers.Layer):
    """A concrete selector: `inputs @ sample(logits)^T` in training."""

    def __init__(self, units, kind, temperature, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.sampler = PeerSampler(kind, temperature)

    def build(self, input_shape):
        self.logits = self.add_weight(
            shape=(self.units, input_shape[-1]),
            initializer=keras.initializers.GlorotUniform(seed=0),
            name="logits",
        )

    def call(self, inputs, training=None):
        weights = self.sampler(self.logits)
        return ops.matmul(inputs, ops.transpose(weights))


class PeerQuantizer(keras.layers.Layer):
    """Logits over the codes, a relaxed sample, the mixture of code vectors."""

    def __init__(self, num_codes, code_dim, kind, **kwargs):
        super().__init__(**kwargs)
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.sampler = PeerSampler(kind)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.num_codes),
            initializer=keras.initializers.GlorotUniform(seed=0),
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.num_codes,), initializer="zeros", name="bias"
        )
        self.codebook = self.add_weight(
            shape=(self.num_codes, self.code_dim),
            initializer=keras.initializers.RandomNormal(seed=1),
            name="codebook",
        )

    def call(self, inputs, training=None):
        logits = ops.matmul(inputs, self.kernel) + self.bias
        return ops.matmul(self.sampler(logits), self.codebook)


# The models.


class VAE(keras.Model):
    """Encoder -> latent sample -> decoder; loss: negative ELBO, analytic KL."""

    def __init__(self, kind, binary, scale, **kwargs):
        super().__init__(**kwargs)
        self.binary = binary
        self.code_shape = (200 // scale,) if binary else (20 // scale, 10)
        head = [keras.layers.Dense(int(np.prod(self.code_shape)))]
        if not binary:
            head.append(keras.layers.Reshape(self.code_shape))
        self.encoder = keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(512 // scale, activation="relu"),
                keras.layers.Dense(256 // scale, activation="relu"),
                *head,
            ]
        )
        self.sampler = sampler(kind, binary=binary)
        self.decoder = keras.Sequential(
            [
                keras.Input(self.code_shape),
                keras.layers.Flatten(),
                keras.layers.Dense(256 // scale, activation="relu"),
                keras.layers.Dense(512 // scale, activation="relu"),
                keras.layers.Dense(784),
            ]
        )

    def call(self, x, training=False):
        logits = self.encoder(x, training=training)
        code = self.sampler(logits, training=training)
        return {"pixels": self.decoder(code, training=training), "logits": logits}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        pixels, logits = y_pred["pixels"], y_pred["logits"]
        reconstruction = ops.sum(ops.softplus(pixels) - x * pixels, axis=-1)
        if self.binary:
            # KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)).
            p = ops.sigmoid(logits)
            kl = p * ops.log_sigmoid(logits) + (1 - p) * ops.log_sigmoid(-logits)
            kl = ops.sum(kl + np.log(2.0), axis=-1)
        else:
            # KL(Categorical(softmax(l)) || uniform).
            log_q = ops.log_softmax(logits, axis=-1)
            kl = ops.sum(ops.exp(log_q) * (log_q + np.log(10.0)), axis=(-1, -2))
        return ops.mean(reconstruction + kl)


def selector_model(kind, scale):
    units = 50 // scale
    if kind == "ours":
        selector = kg.ConcreteSelect(units, temperature=10.0, seed=0)
    else:
        selector = PeerSelector(units, kind, 10.0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            selector,
            keras.layers.Dense(320 // scale),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dropout(0.1, seed=0),
            keras.layers.Dense(320 // scale),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dropout(0.1, seed=0),
            keras.layers.Dense(784, activation="sigmoid"),
        ]
    )


class Tokenizer(keras.Model):
    """dVAE: conv encoder -> quantizer at every position -> conv decoder."""

    def __init__(self, kind, scale, **kwargs):
        super().__init__(**kwargs)
        features, codes = 64 // scale, 512 // scale

        def conv(layer, *args, **options):
            return layer(*args, padding="same", activation="relu", **options)

        self.encoder = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                conv(keras.layers.Conv2D, 32 // scale, 4, strides=2),
                conv(keras.layers.Conv2D, features, 4, strides=2),
                conv(keras.layers.Conv2D, features, 3),
            ]
        )
        if kind == "ours":
            self.quantizer = kg.GumbelQuantizer(codes, features, seed=0)
        else:
            self.quantizer = PeerQuantizer(codes, features, kind)
        self.decoder = keras.Sequential(
            [
                keras.Input((7, 7, features)),
                conv(keras.layers.Conv2D, features, 3),
                conv(keras.layers.Conv2DTranspose, 32 // scale, 4, strides=2),
                keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same"),
            ]
        )

    def call(self, images, training=False):
        vectors = self.quantizer(self.encoder(images, training=training))
        return self.decoder(vectors, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        nats = ops.sum(ops.softplus(y_pred) - x * y_pred, axis=(1, 2, 3))
        total = ops.mean(nats) / 49.0
        # The layers' losses: our quantizer's KL term (weight 0, as the
        # example starts).
        for loss in self.losses:
            total = total + loss
        return total


def build(name, kind, scale):
    """(model, x, y) for one model and sampler kind."""
    rng = np.random.default_rng(0)
    if name in ("vae", "binary_vae"):
        model = VAE(kind, binary=name == "binary_vae", scale=scale)
        x = rng.uniform(size=(100 // scale, 784)).astype("float32")
        return model, x, None
    if name == "selector":
        x = rng.uniform(size=(256 // scale, 784)).astype("float32")
        return selector_model(kind, scale), x, x
    x = rng.uniform(size=(128 // scale, 28, 28, 1)).astype("float32")
    return Tokenizer(kind, scale), x, None


SETTINGS = {
    "tensorflow": {"TF graph": False, "TF XLA": True},
    "jax": {"JAX jit": True},
    "torch": {"PyTorch eager": False},
}


def settings():
    """Setting name -> `jit_compile`, for the backend that runs."""
    return SETTINGS[keras.backend.backend()]


def runner(name, kind, jit_compile, scale):
    model, x, y = build(name, kind, scale)
    loss = "mse" if name == "selector" else None
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit_compile
    )
    x = ops.convert_to_tensor(x)
    y = None if y is None else ops.convert_to_tensor(y)
    return lambda: model.train_on_batch(x, y)


def report(name, setting, kinds, times):
    cells = {kind: times[(name, setting, kind)] for kind in kinds}
    ours = cells["ours"]
    peers_ = [kind for kind in kinds if kind not in ("ours", "none")]
    best = min(peers_, key=lambda kind: median(cells[kind]))
    versus_best = paired_ratio(ours, cells[best])
    versus_snippet = paired_ratio(ours, cells["snippet"])
    share = paired_ratio(cells["none"], ours)
    share = (1 - share[0], 1 - share[2], 1 - share[1])
    peer_met = versus_best[1] <= PEER_GOAL
    if share[0] > SHARE_THRESHOLD:
        snippet_met = "met" if versus_snippet[1] <= SNIPPET_GOAL else "MISSED"
    else:
        snippet_met = "n/a"
    milliseconds = " | ".join(f"{1e3 * median(cells[kind]):.2f}" for kind in kinds)
    print(
        f"| {name} | {setting} | {milliseconds} | {format_ratio(versus_best)} "
        f"({best}) {'met' if peer_met else 'MISSED'} | "
        f"{format_ratio(versus_snippet)} {snippet_met} | "
        f"{share[0]:.0%} [{share[1]:.0%}-{share[2]:.0%}] |"
    )


def main(argv=None):
    args = parse_args(argv)
    versions = setup()
    kinds = peers()
    runs = {}
    for name in args.models:
        for setting in args.settings:
            jit_compile = settings()[setting]
            for kind in kinds:
                progress(f"building {name}, {setting}, {kind}")
                runs[(name, setting, kind)] = runner(
                    name, kind, jit_compile, args.scale
                )
    times = interleaved(runs, args.rounds, warmup=3, seconds=args.seconds)
    print(
        f"## Train steps on {keras.backend.backend()}\n\n{versions}; median ms "
        f"per step over {args.rounds} interleaved rounds; ratios: median of "
        "per-round ratios [interquartile range]; sampler share: 1 - none / ours.\n"
    )
    header = " | ".join(f"{kind} ms" for kind in kinds)
    print(
        f"| model | setting | {header} | ours / best peer (goal <= {PEER_GOAL}) | "
        f"ours / snippet (goal <= {SNIPPET_GOAL:.2f} if share > "
        f"{SHARE_THRESHOLD:.0%}) | sampler share |"
    )
    print("|---|---|" + "---|" * (len(kinds) + 3))
    for name in args.models:
        for setting in args.settings:
            report(name, setting, kinds, times)
    progress("done")


if __name__ == "__main__":
    main()
