"""What must hold on every backend (run once per `KERAS_BACKEND`).

- A `.keras` file saved on one backend loads on the others with the same
  inference outputs, temperature and seed-generator state.
- A temperature assigned between epochs (by `TemperatureAnnealing`) reaches the
  backend's compiled train step: JAX keeps its own copy of the training state,
  and TensorFlow and JAX compile the step with XLA.
- Seeds reproduce, and every call (eager or compiled) draws fresh noise.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import _backend_worker, testing

BACKENDS = ("tensorflow", "jax", "torch")
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_backend_worker.py")
# Generous, far above a worker's run time, as the machine may be shared.
TIMEOUT = 300


def _partner_backend():
    """The next installed backend after this one, cyclically.

    Each backend's test process exchanges files with its partner in both
    directions, so the three runs cover every pair once (tensorflow <-> jax,
    jax <-> torch, torch <-> tensorflow) with one subprocess each.
    """
    this = BACKENDS.index(keras.backend.backend())
    for offset in range(1, len(BACKENDS)):
        name = BACKENDS[(this + offset) % len(BACKENDS)]
        if importlib.util.find_spec(_MODULES[name]) is not None:
            return name
    return None


def _check_loaded(report, saved_on):
    where = f"saved on {saved_on}, loaded on {report['backend']}"
    # Softmax outputs: the same float32 math up to rounding (a few ulps).
    assert report["max_abs_difference"][0] < 1e-6, where
    # One-hot outputs (argmax, top-k) and the selected features are exact.
    assert all(report["exact"]), where
    np.testing.assert_allclose(
        report["temperature"], _backend_worker.ASSIGNED_TEMPERATURE, rtol=1e-7
    )
    assert report["seed_states_restored"], where
    assert report["samples_finite"] and report["soft_rows_sum_to_one"], where


def test_keras_file_saved_here_loads_on_another_backend_and_back(tmp_path):
    partner = _partner_backend()
    if partner is None:
        pytest.skip("no other Keras backend is installed")
    saved = _backend_worker.save(str(tmp_path))
    directory = tmp_path / partner
    directory.mkdir()
    env = dict(os.environ, KERAS_BACKEND=partner, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(
        [sys.executable, WORKER, saved, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert process.returncode == 0, (
        f"{partner} worker failed:\n{process.stderr[-4000:]}"
    )
    line = [x for x in process.stdout.splitlines() if x.startswith("RESULT ")][-1]
    report = json.loads(line[len("RESULT ") :])
    assert report["backend"] == partner
    _check_loaded(report, saved_on=keras.backend.backend())
    # ... and the file the partner saved loads here.
    _check_loaded(_backend_worker.load_and_compare(report["saved"]), saved_on=partner)


class _Probe(keras.layers.Layer):
    """Stores, inside the train step, the sample its input layer drew."""

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.sample = self.add_weight(
            shape=shape, initializer="zeros", trainable=False, name="sample"
        )

    def call(self, sample, training=None):
        if training:
            self.sample.assign(sample)
        return sample


def _temperature_from_samples(samples):
    """Estimates the temperature of relaxed samples drawn from equal logits.

    With `y = softmax((logits + g) / tau)`, `log y_0 - log y_1 = (logits_0 -
    logits_1 + g_0 - g_1) / tau`; across rows with the same logits the spread
    comes from `g_0 - g_1`, a standard logistic variable with standard deviation
    `pi / sqrt(3)`, so `tau = (pi / sqrt(3)) / std(log y_0 - log y_1)`.
    """
    log_ratio = np.log(samples[:, 0]) - np.log(samples[:, 1])
    return (math.pi / math.sqrt(3.0)) / np.std(log_ratio)


# The keyword that makes the backend compile its train step (torch: eager by
# default; `jit_compile=True` there means torch.compile, which Keras does not use
# by default and which needs a C++ toolchain).
_JIT = {"tensorflow": True, "jax": True, "torch": False}


def test_temperature_assigned_between_epochs_reaches_the_compiled_step():
    rows = 4096
    temperatures = [2.0, 0.5, 1.0]
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(4)(inputs)
    gumbel = kg.GumbelSoftmax(temperature=5.0, seed=0)
    probe = _Probe((rows, 4))
    model = keras.Model(inputs, probe(gumbel(logits)))
    model.compile(
        optimizer="sgd",
        loss="categorical_crossentropy",
        jit_compile=_JIT[keras.backend.backend()],
    )
    estimates = []

    class Estimate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # On JAX, reading `self.model` first syncs the trainer's state back.
            sample = testing.to_numpy(self.model.layers[-1].sample.value)
            estimates.append(_temperature_from_samples(sample))

    annealing = kg.TemperatureAnnealing(
        lambda epoch: temperatures[epoch], frequency="epoch"
    )
    # Every row the same: equal logits, so only the noise and the temperature
    # shape the samples. One step per epoch.
    x = np.ones((rows, 3), dtype="float32")
    y = np.eye(4, dtype="float32")[np.zeros(rows, dtype=int)]
    history = model.fit(
        x,
        y,
        batch_size=rows,
        epochs=len(temperatures),
        shuffle=False,
        verbose=0,
        callbacks=[annealing, Estimate()],
    )
    np.testing.assert_allclose(history.history["temperature"], temperatures)
    np.testing.assert_allclose(
        testing.to_numpy(gumbel.temperature.value), temperatures[-1]
    )
    # The standard deviation of n = 4096 logistic draws (kurtosis 4.2) has
    # relative standard error sqrt((4.2 - 1) / (4 n)) = 1.4%; allow 4 sigma.
    # A step that kept the initial 5.0, or any earlier value, is off by >= 50%.
    tolerance = 4 * math.sqrt(3.2 / (4 * rows))
    np.testing.assert_allclose(estimates, temperatures, rtol=tolerance)


def _draw(layer, logits):
    return testing.to_numpy(layer(logits, training=True))


def test_seeded_layers_reproduce_and_every_call_draws_fresh_noise():
    logits = np.log(np.full((64, 5), 0.2, dtype="float32"))
    first = kg.GumbelSoftmax(seed=11)
    second = kg.GumbelSoftmax(seed=11)
    first_draws = [_draw(first, logits) for _ in range(3)]
    second_draws = [_draw(second, logits) for _ in range(3)]
    for a, b in zip(first_draws, second_draws, strict=True):
        np.testing.assert_array_equal(a, b)
    # Continuous samples: two equal draws of 64 x 5 floats mean reused noise.
    assert not np.array_equal(first_draws[0], first_draws[1])
    assert not np.array_equal(first_draws[1], first_draws[2])
    other_seed = _draw(kg.GumbelSoftmax(seed=12), logits)
    assert not np.array_equal(first_draws[0], other_seed)


def test_functional_seeds_on_this_backend():
    logits = np.zeros((64, 5), dtype="float32")
    sample = kg.ops.gumbel_softmax
    np.testing.assert_array_equal(
        testing.to_numpy(sample(logits, seed=3)),
        testing.to_numpy(sample(logits, seed=3)),
    )
    assert not np.array_equal(
        testing.to_numpy(sample(logits, seed=3)),
        testing.to_numpy(sample(logits, seed=4)),
    )
    # No seed: Keras's global generator, fresh on every call.
    assert not np.array_equal(
        testing.to_numpy(sample(logits)), testing.to_numpy(sample(logits))
    )
    generator = keras.random.SeedGenerator(5)
    assert not np.array_equal(
        testing.to_numpy(sample(logits, seed=generator)),
        testing.to_numpy(sample(logits, seed=generator)),
    )


def test_compiled_predict_draws_fresh_noise_and_reproduces_from_the_seed():
    def make():
        inputs = keras.Input((5,))
        outputs = kg.GumbelSoftmax(inference="sample", seed=21)(inputs)
        return keras.Model(inputs, outputs)

    logits = np.zeros((256, 5), dtype="float32")
    model = make()
    first = model.predict(logits, batch_size=256, verbose=0)
    second = model.predict(logits, batch_size=256, verbose=0)
    # 256 uniform one-hot rows over 5 categories: equal by chance with
    # probability 5**-256, so equality means the compiled step reused the state.
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(
        make().predict(logits, batch_size=256, verbose=0), first
    )


def test_layers_with_neighbouring_seeds_draw_unrelated_noise():
    # Keras's torch backend seeds a generator with `seed + counter`, under which
    # seed 12's first draw was seed 11's second (keras_gumbel.random mixes the
    # two words instead). No draw of one layer may repeat a draw of the other.
    logits = np.zeros((64, 5), dtype="float32")
    first = kg.GumbelSoftmax(seed=11)
    second = kg.GumbelSoftmax(seed=12)
    first_draws = [_draw(first, logits) for _ in range(3)]
    second_draws = [_draw(second, logits) for _ in range(3)]
    for a in first_draws:
        for b in second_draws:
            assert not np.array_equal(a, b)
