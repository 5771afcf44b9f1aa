import collections
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import keras_gumbel as kg
from tests import testing

# Python-side calls of `Probe.call`, by layer name: in a compiled train step the
# layer's Python code only runs while tracing, so this counts traces.
TRACES = collections.Counter()

# GeometricDecay(start=4, end=0.25, steps=4) halves the temperature each step:
# 4, 2, 1, 0.5, then stays at 0.25. Exact in float32.
HALVING = kg.schedules.GeometricDecay(start=4.0, end=0.25, steps=4)


@keras.saving.register_keras_serializable(package="keras_gumbel_tests")
class Probe(kg.AnnealableLayer):
    """Outputs its temperature for every sample.

    With a zero target and a mean squared error loss, the loss of a step is the
    square of the temperature that the compiled step read.
    """

    def call(self, inputs):
        TRACES[self.name] += 1
        return inputs * 0.0 + ops.cast(self.temperature, inputs.dtype)


def probe_model(*, jit_compile=False, name="probe"):
    inputs = keras.Input((1,))
    # A trainable layer, so the optimizer steps and counts iterations.
    hidden = keras.layers.Dense(1, kernel_initializer="ones")(inputs)
    outputs = Probe(1.0, name=name)(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    return model


def probe_data(samples):
    return np.ones((samples, 1), "float32"), np.zeros((samples, 1), "float32")


def gumbel_model(*, jit_compile=False, seed=0):
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(
        4, kernel_initializer="zeros", bias_initializer="zeros", name="logits"
    )(inputs)
    outputs = kg.GumbelSoftmax(temperature=1.0, seed=seed, name="gumbel")(logits)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=max_probability,
        jit_compile=jit_compile,
    )
    return model


@keras.saving.register_keras_serializable(package="keras_gumbel_tests")
def max_probability(y_true, y_pred):
    return ops.max(y_pred, axis=-1)


class Recorder(keras.callbacks.Callback):
    """Records `logs["temperature"]` after every batch."""

    def __init__(self, key="temperature"):
        super().__init__()
        self.key = key
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(logs[self.key])


def expected(schedule, steps):
    return [float(testing.to_numpy(schedule(step))) for step in steps]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_step_reads_each_new_temperature_without_retracing(jit_compile):
    model = probe_model(jit_compile=jit_compile, name=f"probe_jit_{jit_compile}")
    probe = model.get_layer(f"probe_jit_{jit_compile}")
    traces = []

    class CountTraces(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            traces.append(TRACES[probe.name])

    annealing = kg.TemperatureAnnealing(HALVING)
    x, y = probe_data(2)
    # One step per epoch, so each epoch's loss is the square of one temperature.
    history = model.fit(
        x, y, batch_size=2, epochs=4, verbose=0, callbacks=[annealing, CountTraces()]
    )
    assert annealing.annealed_layers == [probe]
    assert history.history["temperature"] == [4.0, 2.0, 1.0, 0.5]
    np.testing.assert_allclose(history.history["loss"], [16.0, 4.0, 1.0, 0.25])
    # Traced during the first epoch only, never again after an assignment. (On
    # JAX with jit_compile=False and on torch the step is not traced: it runs
    # the Python code every step.)
    if keras.backend.backend() == "tensorflow" or (
        jit_compile and keras.backend.backend() == "jax"
    ):
        assert traces == [traces[0]] * 4
    assert float(probe.temperature) == 0.5


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gumbel_softmax_output_follows_the_temperature(jit_compile):
    model = gumbel_model(jit_compile=jit_compile)
    annealing = kg.TemperatureAnnealing(
        lambda epoch: 100.0 if epoch == 0 else 0.01, frequency="epoch"
    )
    x = np.ones((64, 4), "float32")
    # The loss is the batch mean of each sample's largest probability, with
    # logits fixed at zero over 4 categories. At temperature 100 it is below
    # 0.2915 for any float32 noise (Gumbel noise lies in [-4.5, 16.7], so
    # max <= e^0.21 / (e^0.21 + 3)). At 0.01 a row's largest probability falls
    # below 0.9 only if its top two Gumbels are closer than 0.01 ln 9 = 0.022,
    # probability ~0.022 per row (the gap is Exp(1)); the 64-row mean stays
    # above 0.9 unless ~7 rows do, a >4 sigma event (binomial mean 1.4, sd 1.2).
    history = model.fit(x, x, batch_size=64, epochs=2, verbose=0, callbacks=[annealing])
    high_temperature_loss, low_temperature_loss = history.history["loss"]
    assert history.history["temperature"] == [100.0, 0.01]
    assert high_temperature_loss < 0.2915
    assert low_temperature_loss > 0.9


def test_history_batch_logs_and_progress_bar(capsys):
    schedule = kg.schedules.ExponentialDecay(
        initial=2.0, rate=0.5, minimum=0.1, every=2
    )
    model = probe_model(name="probe_history")
    recorder = Recorder()
    x, y = probe_data(6)
    # Three steps per epoch, three epochs: iterations 0..8.
    history = model.fit(
        x,
        y,
        batch_size=2,
        epochs=3,
        verbose=2,
        callbacks=[kg.TemperatureAnnealing(schedule), recorder],
    )
    per_step = expected(schedule, range(9))
    assert recorder.values == per_step
    # History keeps the value of each epoch's last step.
    assert history.history["temperature"] == per_step[2::3]
    # Each epoch's mean loss is the mean squared temperature of its steps.
    np.testing.assert_allclose(
        history.history["loss"],
        np.mean(np.square(per_step).reshape(3, 3), axis=1),
        rtol=1e-6,
    )
    assert f"temperature: {per_step[-1]:.4f}" in capsys.readouterr().out


def test_epoch_frequency_uses_the_epoch_index_and_keras_schedules():
    # Any Keras schedule works; CosineDecay needs alpha > 0 to stay positive.
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=2.0, decay_steps=4, alpha=0.25
    )
    model = probe_model(name="probe_epoch")
    recorder = Recorder(key="tau")
    x, y = probe_data(4)
    history = model.fit(
        x,
        y,
        batch_size=2,
        initial_epoch=1,
        epochs=5,
        verbose=0,
        callbacks=[
            kg.TemperatureAnnealing(schedule, frequency="epoch", log_key="tau"),
            recorder,
        ],
    )
    per_epoch = expected(schedule, range(1, 5))
    # 2 * (0.25 + 0.75 * (1 + cos(pi * t / 4)) / 2) for t = 1..4.
    np.testing.assert_allclose(per_epoch, [1.78033, 1.25, 0.71967, 0.5], atol=1e-5)
    assert history.history["tau"] == per_epoch
    assert "temperature" not in history.history
    assert recorder.values == [value for value in per_epoch for _ in range(2)]


def test_log_key_none_logs_nothing():
    model = probe_model(name="probe_no_log")
    history = model.fit(
        *probe_data(2),
        verbose=0,
        callbacks=[kg.TemperatureAnnealing(HALVING, log_key=None)],
    )
    assert set(history.history) == {"loss"}
    assert float(model.get_layer("probe_no_log").temperature) == 4.0


def test_verbose_prints_each_change(capsys):
    schedule = kg.schedules.ExponentialDecay(
        initial=1.0, rate=0.1, minimum=0.5, every=2
    )
    model = probe_model(name="probe_verbose")
    model.fit(
        *probe_data(6),
        batch_size=1,
        verbose=0,
        callbacks=[kg.TemperatureAnnealing(schedule, verbose=1)],
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    # Steps 0..5: the value changes at steps 0 (first set), 2 and 4.
    assert lines == [
        f"Step {step}: TemperatureAnnealing setting temperature to "
        f"{float(testing.to_numpy(schedule(step))):.6g}."
        for step in (0, 2, 4)
    ]
    model.fit(
        *probe_data(2),
        epochs=2,
        verbose=0,
        callbacks=[kg.TemperatureAnnealing(HALVING, frequency="epoch", verbose=True)],
    )
    assert (
        capsys.readouterr().out.split()
        == (
            "Epoch 1: TemperatureAnnealing setting temperature to 4. "
            "Epoch 2: TemperatureAnnealing setting temperature to 2."
        ).split()
    )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorBoard event files are written with tf.summary",
)
def test_tensorboard_logs_a_temperature_scalar(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    model = probe_model(name="probe_tensorboard")
    model.fit(
        *probe_data(4),
        batch_size=2,
        epochs=2,
        verbose=0,
        callbacks=[
            kg.TemperatureAnnealing(HALVING),
            keras.callbacks.TensorBoard(tmp_path, update_freq="batch"),
        ],
    )
    events = event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()

    def scalars(tag):
        return [
            (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
            for event in events.Tensors(tag)
        ]

    assert scalars("epoch_temperature") == [(0, 2.0), (1, 0.5)]
    # TensorBoard counts batches from 1.
    assert scalars("batch_temperature") == [(1, 4.0), (2, 2.0), (3, 1.0), (4, 0.5)]


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("Interrupted on purpose.")


@pytest.mark.parametrize("frequency", ["batch", "epoch"])
def test_backup_and_restore_resumes_the_same_temperatures(tmp_path, frequency):
    schedule = kg.schedules.GeometricDecay(start=4.0, end=0.25, steps=8)
    x, y = probe_data(4)

    def train(callbacks):
        model = probe_model(name=f"probe_resume_{frequency}")
        recorder = Recorder()
        annealing = kg.TemperatureAnnealing(schedule, frequency=frequency)
        try:
            history = model.fit(
                x,
                y,
                batch_size=2,
                epochs=4,
                verbose=0,
                callbacks=[annealing, recorder, *callbacks],
            )
        except RuntimeError:
            history = None
        return recorder.values, history

    uninterrupted, full_history = train([])
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    before, _ = train([backup, Interrupt(epoch=2)])
    after, resumed_history = train([backup])
    assert len(before) == len(after) == 4
    assert before + after == uninterrupted
    assert resumed_history.history == {
        key: values[2:] for key, values in full_history.history.items()
    }
    steps = range(8) if frequency == "batch" else [0, 0, 1, 1, 2, 2, 3, 3]
    assert uninterrupted == expected(schedule, steps)


def test_resume_from_a_saved_model_with_a_rebuilt_callback(tmp_path):
    schedule = kg.schedules.ExponentialDecay(
        initial=3.0, rate=0.25, minimum=0.5, every=3
    )
    x = np.ones((8, 4), "float32")

    def annealing():
        return kg.TemperatureAnnealing(schedule, layers=["gumbel"])

    reference = Recorder()
    gumbel_model().fit(
        x, x, batch_size=4, epochs=4, verbose=0, callbacks=[annealing(), reference]
    )

    model = gumbel_model()
    first = Recorder()
    model.fit(x, x, batch_size=4, epochs=2, verbose=0, callbacks=[annealing(), first])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert float(loaded.get_layer("gumbel").temperature) == first.values[-1]

    # The callback is not part of the `.keras` file; its config rebuilds it.
    config = json.loads(json.dumps(annealing().get_config()))
    rebuilt = kg.TemperatureAnnealing.from_config(config)
    second = Recorder()
    loaded.fit(
        x,
        x,
        batch_size=4,
        initial_epoch=2,
        epochs=4,
        verbose=0,
        callbacks=[rebuilt, second],
    )
    assert rebuilt.annealed_layers == [loaded.get_layer("gumbel")]
    assert first.values + second.values == reference.values
    assert reference.values == expected(schedule, range(8))


@pytest.mark.parametrize(
    "schedule",
    [
        kg.schedules.ExponentialDecay(initial=2.0, rate=0.1, minimum=0.2, every=5),
        kg.schedules.GeometricDecay(start=8.0, end=0.5, steps=12),
        keras.optimizers.schedules.CosineDecay(2.0, decay_steps=10, alpha=0.1),
    ],
)
def test_callback_config_round_trip(schedule):
    annealing = kg.TemperatureAnnealing(
        schedule, layers=["a", "b"], frequency="epoch", verbose=1, log_key="tau"
    )
    config = annealing.get_config()
    assert config["layers"] == ["a", "b"]
    assert (config["frequency"], config["verbose"], config["log_key"]) == (
        "epoch",
        1,
        "tau",
    )
    for rebuilt in (
        kg.TemperatureAnnealing.from_config(json.loads(json.dumps(config))),
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(annealing)
        ),
    ):
        assert type(rebuilt) is kg.TemperatureAnnealing
        assert type(rebuilt.schedule) is type(schedule)
        assert rebuilt.get_config() == config
        assert expected(rebuilt.schedule, range(12)) == expected(schedule, range(12))


class Wrapper(keras.layers.Layer):
    """Holds a GumbelSoftmax as an attribute, not as a node of a model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gumbel = kg.GumbelSoftmax(name="wrapped_gumbel", seed=1)

    def call(self, inputs, training=None):
        return self.gumbel(inputs, training=training)


def nested_model():
    inner_inputs = keras.Input((3,))
    inner_outputs = kg.GumbelSoftmax(name="inner_gumbel", seed=0)(inner_inputs)
    inner = keras.Model(inner_inputs, inner_outputs, name="inner")
    inputs = keras.Input((4,))
    selected = kg.ConcreteSelect(3, name="select", seed=1)(inputs)
    hidden = Wrapper(name="wrapper")(inner(selected))
    hidden = keras.layers.Dense(3, name="dense")(hidden)
    outputs = kg.GumbelTopK(2, name="top_k", seed=2)(hidden)
    model = keras.Model(inputs, outputs, name="outer")
    model.compile(optimizer="sgd", loss="mse")
    return model


def temperatures(model):
    layers = {layer.name: layer for layer in model._flatten_layers()}
    names = ("select", "inner_gumbel", "wrapped_gumbel", "top_k")
    return {name: float(layers[name].temperature) for name in names}


def test_finds_every_annealable_layer_in_nested_models_and_sublayers():
    model = nested_model()
    annealing = kg.TemperatureAnnealing(lambda epoch: 0.25, frequency="epoch")
    model.fit(np.ones((2, 4)), np.ones((2, 3)), verbose=0, callbacks=[annealing])
    # GumbelSoftmax, GumbelTopK and ConcreteSelect, at the top level, inside a
    # nested model and held as an attribute of a custom layer.
    assert sorted(layer.name for layer in annealing.annealed_layers) == [
        "inner_gumbel",
        "select",
        "top_k",
        "wrapped_gumbel",
    ]
    assert temperatures(model) == {
        "select": 0.25,
        "inner_gumbel": 0.25,
        "wrapped_gumbel": 0.25,
        "top_k": 0.25,
    }


def run_epoch_begin(annealing, model, epoch=0):
    annealing.set_model(model)
    annealing.on_train_begin()
    annealing.on_epoch_begin(epoch)


@pytest.mark.parametrize("by", ["name", "object"])
def test_layers_selects_by_name_or_object(by):
    model = nested_model()
    top = model.get_layer("top_k")
    wrapped = model.get_layer("wrapper").gumbel
    layers = ["top_k", "wrapped_gumbel"] if by == "name" else [top, wrapped]
    annealing = kg.TemperatureAnnealing(
        lambda epoch: 0.5, layers=layers, frequency="epoch"
    )
    run_epoch_begin(annealing, model)
    assert annealing.annealed_layers == [top, wrapped]
    assert temperatures(model) == {
        "select": 10.0,
        "inner_gumbel": 1.0,
        "wrapped_gumbel": 0.5,
        "top_k": 0.5,
    }
    single = kg.TemperatureAnnealing(
        lambda epoch: 0.3, layers="inner_gumbel", frequency="epoch"
    )
    run_epoch_begin(single, model)
    assert temperatures(model)["inner_gumbel"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"schedule": 0.5}, TypeError, r"argument `schedule`.*Received: schedule=0.5"),
        (
            {"frequency": "step"},
            ValueError,
            r"argument `frequency`.*Received: frequency='step'",
        ),
        ({"verbose": 2}, ValueError, r"argument `verbose`.*Received: verbose=2"),
        ({"verbose": 1.0}, ValueError, r"argument `verbose`.*Received: verbose=1.0"),
        ({"log_key": ""}, ValueError, r"argument `log_key`.*Received: log_key=''"),
        ({"log_key": 3}, ValueError, r"argument `log_key`.*Received: log_key=3"),
        ({"layers": []}, ValueError, r"argument `layers`.*Received: layers=\[\]"),
        ({"layers": 3}, TypeError, r"argument `layers`.*Received: layers=3"),
        (
            {"layers": [keras.layers.Dense(2)]},
            TypeError,
            r"argument `layers`.*AnnealableLayer.*Received: layers=",
        ),
    ],
)
def test_rejects_bad_arguments(kwargs, error, match):
    kwargs = {"schedule": HALVING, **kwargs}
    with pytest.raises(error, match=match):
        kg.TemperatureAnnealing(**kwargs)


@pytest.mark.parametrize(
    "layers, match",
    [
        (["missing"], r"no layer named 'missing'.*Received: layers=\['missing'\]"),
        (["dense"], r"layer 'dense' is a Dense"),
        ("stranger", r"layer 'stranger' is not part of it"),
    ],
)
def test_rejects_layers_not_annealable_in_the_model(layers, match):
    if layers == "stranger":
        layers = [kg.GumbelSoftmax(name="stranger")]
    annealing = kg.TemperatureAnnealing(HALVING, layers=layers, frequency="epoch")
    with pytest.raises(ValueError, match=match):
        run_epoch_begin(annealing, nested_model())


def test_rejects_a_model_without_annealable_layers():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, name="only_dense")], name="plain"
    )
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"no annealable layer in model 'plain'"):
        model.fit(
            np.ones((2, 2)),
            np.ones((2, 1)),
            verbose=0,
            callbacks=[kg.TemperatureAnnealing(HALVING)],
        )


def test_rejects_a_trainable_temperature():
    inputs = keras.Input((3,))
    outputs = kg.GumbelSoftmax(name="learned", trainable_temperature=True)(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"'learned' has trainable_temperature=True"):
        run_epoch_begin(kg.TemperatureAnnealing(HALVING, frequency="epoch"), model)


@pytest.mark.parametrize(
    "value, error, received",
    [
        (0.0, ValueError, "temperature=0.0"),
        (-1.0, ValueError, "temperature=-1.0"),
        (float("nan"), ValueError, "temperature=nan"),
        (float("inf"), ValueError, "temperature=inf"),
        ([1.0, 2.0], TypeError, r"temperature=\[1.0, 2.0\]"),
        ("hot", TypeError, "temperature='hot'"),
    ],
)
def test_rejects_bad_schedule_values(value, error, received):
    annealing = kg.TemperatureAnnealing(lambda epoch: value, frequency="epoch")
    with pytest.raises(error, match=rf"step 3 \(the epoch index\).*{received}"):
        run_epoch_begin(annealing, probe_model(name="probe_bad_value"), epoch=3)


def test_schedule_reaching_zero_fails_at_that_step_during_fit():
    # CosineDecay's default alpha=0 decays to exactly 0 at `decay_steps`.
    schedule = keras.optimizers.schedules.CosineDecay(1.0, decay_steps=2)
    model = probe_model(name="probe_zero")
    with pytest.raises(
        ValueError,
        match=r"step 2 \(the optimizer's iteration count\).*temperature=0.0",
    ):
        model.fit(
            *probe_data(4),
            batch_size=2,
            epochs=2,
            verbose=0,
            callbacks=[kg.TemperatureAnnealing(schedule)],
        )


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    # Must happen before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import numpy as np
    from keras import ops

    import keras_gumbel as kg


    class Probe(kg.AnnealableLayer):
        def call(self, inputs):
            return inputs * 0.0 + ops.cast(self.temperature, inputs.dtype)


    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((1,))
        hidden = keras.layers.Dense(1, kernel_initializer="ones")(inputs)
        probe = Probe(1.0, name="probe")
        model = keras.Model(inputs, probe(hidden))
        model.compile(optimizer="sgd", loss="mse")
    schedule = kg.schedules.GeometricDecay(start=4.0, end=0.25, steps=4)
    history = model.fit(
        np.ones((4, 1), "float32"),
        np.zeros((4, 1), "float32"),
        batch_size=4,
        epochs=4,
        verbose=0,
        callbacks=[kg.TemperatureAnnealing(schedule)],
    )
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "history": history.history,
        "values": [float(v.numpy()) for v in probe.temperature.value.values],
        "devices": [v.device for v in probe.temperature.value.values],
    }))
    """
)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow-only"
)
def test_mirrored_strategy_updates_every_replica():
    # Logical devices must be configured before TensorFlow starts, so this runs
    # in a fresh interpreter.
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert len(set(report["devices"])) == 2
    # Each replica's last value, and each step's loss: a replica still holding
    # an old temperature would pull the averaged loss away from its square.
    assert report["values"] == [0.5, 0.5]
    assert report["history"]["temperature"] == [4.0, 2.0, 1.0, 0.5]
    np.testing.assert_allclose(report["history"]["loss"], [16.0, 4.0, 1.0, 0.25])


# `kg.Annealing`: any annealable variable, here the temperature and the L0
# weight of a HardConcreteGate.

# Hard Concrete limits (gamma, zeta) of HardConcreteGate's default.
GAMMA, ZETA = -0.1, 1.1


def gate_model(name="gate"):
    """A HardConcreteGate on zero inputs: its L0 penalty is the whole loss.

    The learning rate is 0, so `log_alpha` keeps its initial value and the loss
    of a step is `l0_weight * expected_l0` at that step's temperature.
    """
    inputs = keras.Input((3,))
    outputs = kg.HardConcreteGate(seed=0, name=name)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    return model


def gate_data(samples):
    return np.zeros((samples, 3), "float32"), np.zeros((samples, 3), "float32")


def penalty(log_alpha, temperature, l0_weight):
    """`l0_weight` times the expected L0 (Louizos et al. 2018, eq. 12), in NumPy."""
    logits = np.asarray(log_alpha, "float64") - temperature * np.log(-GAMMA / ZETA)
    return l0_weight * np.sum(1.0 / (1.0 + np.exp(-logits)))


class VariableRecorder(keras.callbacks.Callback):
    """Records the temperature and the L0 weight of one layer after every step."""

    def __init__(self, layer_name):
        super().__init__()
        self.layer_name = layer_name
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        # Reading `self.model` first syncs the JAX training state into the layer.
        layer = self.model.get_layer(self.layer_name)
        self.values.append(
            (
                float(testing.to_numpy(layer.temperature)),
                float(testing.to_numpy(layer.l0_weight)),
            )
        )


# 2 * 2**(-step / 2): a new temperature at every step, and a new L0 weight,
# starting from 0 (which "non-negative" accepts). Both exact in float32 or
# compared as float32 values.
TEMPERATURE = kg.schedules.GeometricDecay(start=2.0, end=0.25, steps=6)


def l0_schedule(step):
    return 0.25 * step


def two_annealings(frequency):
    return [
        kg.Annealing(TEMPERATURE, frequency=frequency, log_key="temperature"),
        kg.Annealing(
            l0_schedule, variable="l0_weight", frequency=frequency, log_key="l0_weight"
        ),
    ]


@pytest.mark.parametrize("frequency", ["batch", "epoch"])
def test_two_annealings_drive_temperature_and_l0_weight_in_one_fit(frequency):
    model = gate_model(name=f"gate_{frequency}")
    recorder = VariableRecorder(f"gate_{frequency}")
    # Two steps per epoch, three epochs.
    history = model.fit(
        *gate_data(4),
        batch_size=2,
        epochs=3,
        verbose=0,
        callbacks=[*two_annealings(frequency), recorder],
    )
    steps = range(6) if frequency == "batch" else [0, 0, 1, 1, 2, 2]
    temperatures = expected(TEMPERATURE, steps)
    l0_weights = [l0_schedule(step) for step in steps]
    assert recorder.values == list(zip(temperatures, l0_weights, strict=True))
    # History keeps the values of each epoch's last step, under both keys.
    assert history.history["temperature"] == temperatures[1::2]
    assert history.history["l0_weight"] == l0_weights[1::2]
    # The compiled step read both: each epoch's loss is the mean penalty of its
    # steps, which depends on the temperature and the L0 weight of the step.
    log_alpha = testing.to_numpy(model.get_layer(f"gate_{frequency}").log_alpha)
    per_step = [
        penalty(log_alpha, temperature, l0_weight)
        for temperature, l0_weight in zip(temperatures, l0_weights, strict=True)
    ]
    np.testing.assert_allclose(
        history.history["loss"], np.mean(np.reshape(per_step, (3, 2)), axis=1), 1e-5
    )


@pytest.mark.parametrize("frequency", ["batch", "epoch"])
def test_backup_and_restore_resumes_both_annealed_variables(tmp_path, frequency):
    def train(callbacks):
        model = gate_model(name=f"gate_resume_{frequency}")
        recorder = VariableRecorder(f"gate_resume_{frequency}")
        try:
            history = model.fit(
                *gate_data(4),
                batch_size=2,
                epochs=3,
                verbose=0,
                callbacks=[*two_annealings(frequency), recorder, *callbacks],
            )
        except RuntimeError:
            history = None
        return recorder.values, history

    uninterrupted, full_history = train([])
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    before, _ = train([backup, Interrupt(epoch=1)])
    after, resumed_history = train([backup])
    assert (len(before), len(after)) == (2, 4)
    assert before + after == uninterrupted
    assert resumed_history.history == {
        key: values[1:] for key, values in full_history.history.items()
    }
    # A new value of each variable at every step (batch) or epoch, so a
    # restarted or skipped count would show.
    assert len(set(uninterrupted)) == (6 if frequency == "batch" else 3)


def gated_model():
    inner_inputs = keras.Input((4,))
    inner_gate = kg.HardConcreteGate(seed=1, name="inner_gate")(inner_inputs)
    inner = keras.Model(inner_inputs, inner_gate, name="inner")
    inputs = keras.Input((4,))
    gated = kg.HardConcreteGate(seed=0, name="gate")(inputs)
    outputs = kg.GumbelSoftmax(seed=2, name="gumbel")(inner(gated))
    model = keras.Model(inputs, outputs, name="gated")
    model.compile(optimizer="sgd", loss="mse")
    return model


def gated_values(model):
    layers = {layer.name: layer for layer in model._flatten_layers()}
    return {
        "gate": float(layers["gate"].l0_weight),
        "inner_gate": float(layers["inner_gate"].l0_weight),
        "gumbel_temperature": float(layers["gumbel"].temperature),
    }


def test_annealing_finds_every_layer_with_the_variable_in_nested_models():
    model = gated_model()
    annealing = kg.Annealing(lambda epoch: 0.5, variable="l0_weight", frequency="epoch")
    run_epoch_begin(annealing, model)
    # The GumbelSoftmax has no L0 weight: it is left alone.
    assert sorted(layer.name for layer in annealing.annealed_layers) == [
        "gate",
        "inner_gate",
    ]
    assert gated_values(model) == {
        "gate": 0.5,
        "inner_gate": 0.5,
        "gumbel_temperature": 1.0,
    }
    temperature = kg.Annealing(lambda epoch: 0.25, frequency="epoch")
    run_epoch_begin(temperature, model)
    assert sorted(layer.name for layer in temperature.annealed_layers) == [
        "gate",
        "gumbel",
        "inner_gate",
    ]


@pytest.mark.parametrize("by", ["name", "object"])
def test_annealing_layers_selects_by_name_or_object(by):
    model = gated_model()
    inner_gate = model.get_layer("inner").get_layer("inner_gate")
    layers = ["inner_gate"] if by == "name" else [inner_gate]
    annealing = kg.Annealing(
        lambda epoch: 0.5, variable="l0_weight", layers=layers, frequency="epoch"
    )
    run_epoch_begin(annealing, model)
    assert annealing.annealed_layers == [inner_gate]
    assert gated_values(model) == {
        "gate": 0.0,
        "inner_gate": 0.5,
        "gumbel_temperature": 1.0,
    }


@pytest.mark.parametrize(
    "variable, error",
    [(3, TypeError), (None, TypeError), ("", ValueError)],
)
def test_annealing_rejects_a_bad_variable_argument(variable, error):
    with pytest.raises(
        error, match=rf"argument `variable`.*Received: variable={variable!r}"
    ):
        kg.Annealing(HALVING, variable=variable)


def test_annealing_rejects_a_variable_no_layer_of_the_model_has():
    annealing = kg.Annealing(HALVING, variable="kl_weight", frequency="epoch")
    with pytest.raises(
        ValueError,
        match=r"argument `variable`.*model 'gated'.*"
        r"'gate': \['temperature', 'l0_weight'\].*'gumbel': \['temperature'\].*"
        r"Received: variable='kl_weight'",
    ):
        run_epoch_begin(annealing, gated_model())


def test_annealing_rejects_a_listed_layer_without_the_variable():
    annealing = kg.Annealing(
        HALVING, variable="l0_weight", layers=["gate", "gumbel"], frequency="epoch"
    )
    with pytest.raises(
        ValueError,
        match=r"argument `layers`.*annealable variable 'l0_weight'; layer 'gumbel' "
        r"has \['temperature'\]. Received: layers=\['gate', 'gumbel'\]",
    ):
        run_epoch_begin(annealing, gated_model())


def test_a_learned_temperature_blocks_only_temperature_annealing():
    inputs = keras.Input((3,))
    gated = kg.HardConcreteGate(seed=0, name="gate")(inputs)
    outputs = kg.GumbelSoftmax(trainable_temperature=True, name="learned")(gated)
    model = keras.Model(inputs, outputs)
    l0_weight = kg.Annealing(lambda epoch: 0.5, variable="l0_weight", frequency="epoch")
    run_epoch_begin(l0_weight, model)
    assert float(model.get_layer("gate").l0_weight) == 0.5
    with pytest.raises(
        ValueError,
        match=r"'learned' has trainable_temperature=True.*so Annealing cannot also",
    ):
        run_epoch_begin(kg.Annealing(HALVING, frequency="epoch"), model)


@pytest.mark.parametrize(
    "variable, value, error, expected",
    [
        ("l0_weight", -1e-3, ValueError, "a non-negative finite"),
        ("l0_weight", float("nan"), ValueError, "a non-negative finite"),
        ("l0_weight", float("inf"), ValueError, "a non-negative finite"),
        ("temperature", 0.0, ValueError, "a positive finite"),
        ("l0_weight", [1.0, 2.0], TypeError, "a scalar float"),
    ],
)
def test_annealing_rejects_values_the_variable_does_not_take(
    variable, value, error, expected
):
    annealing = kg.Annealing(lambda epoch: value, variable=variable, frequency="epoch")
    with pytest.raises(
        error,
        match=rf"`schedule` for step 3 \(the epoch index\)\. Expected {expected} "
        rf"{variable}\. Received: {variable}={re.escape(repr(value))}$",
    ):
        run_epoch_begin(annealing, gate_model(name="gate_bad_value"), epoch=3)


def test_non_negative_accepts_zero():
    model = gate_model(name="gate_zero")
    model.get_layer("gate_zero").l0_weight.assign(1.0)
    annealing = kg.Annealing(lambda epoch: 0.0, variable="l0_weight", frequency="epoch")
    run_epoch_begin(annealing, model)
    assert float(model.get_layer("gate_zero").l0_weight) == 0.0


def test_annealing_logs_only_with_a_log_key_and_prints_the_variable(capsys):
    model = gate_model(name="gate_verbose")
    history = model.fit(
        *gate_data(3),
        batch_size=1,
        verbose=0,
        callbacks=[
            kg.Annealing(lambda step: 0.5 * step, variable="l0_weight", verbose=1)
        ],
    )
    assert set(history.history) == {"loss"}
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines == [
        "Step 0: Annealing setting l0_weight to 0.",
        "Step 1: Annealing setting l0_weight to 0.5.",
        "Step 2: Annealing setting l0_weight to 1.",
    ]


class Scaled(kg.AnnealableLayer):
    """Outputs its `scale`, a variable it declares annealable."""

    annealable_variables = {
        **kg.AnnealableLayer.annealable_variables,
        "scale": "positive",
    }

    def __init__(self, **kwargs):
        super().__init__(1.0, **kwargs)
        self.scale = self.add_weight(
            name="scale",
            shape=(),
            dtype="float32",
            initializer="ones",
            trainable=False,
            autocast=False,
        )

    def call(self, inputs):
        return inputs * 0.0 + ops.cast(self.scale, inputs.dtype)


def test_a_layer_declares_its_own_annealable_variable():
    inputs = keras.Input((1,))
    hidden = keras.layers.Dense(1, kernel_initializer="ones")(inputs)
    model = keras.Model(inputs, Scaled(name="scaled")(hidden))
    model.compile(optimizer="sgd", loss="mse")
    annealing = kg.Annealing(HALVING, variable="scale", log_key="scale")
    history = model.fit(
        *probe_data(2), batch_size=2, epochs=4, verbose=0, callbacks=[annealing]
    )
    assert history.history["scale"] == [4.0, 2.0, 1.0, 0.5]
    np.testing.assert_allclose(history.history["loss"], [16.0, 4.0, 1.0, 0.25])
    # Declared "positive": 0 is refused.
    zero = kg.Annealing(lambda epoch: 0.0, variable="scale", frequency="epoch")
    with pytest.raises(ValueError, match="Expected a positive finite scale"):
        run_epoch_begin(zero, model)


@pytest.mark.parametrize(
    "declared, match",
    [
        ({"scale": "bounded"}, r"'scale' as 'bounded'; the kinds Annealing knows"),
        ({"offset": "positive"}, r"`offset` is not a scalar variable: None"),
    ],
)
def test_annealing_refuses_a_declaration_it_cannot_honour(declared, match):
    class Declared(Scaled):
        annealable_variables = {**Scaled.annealable_variables, **declared}

    inputs = keras.Input((1,))
    model = keras.Model(inputs, Declared(name="declared")(inputs))
    annealing = kg.Annealing(HALVING, variable=next(iter(declared)), frequency="epoch")
    with pytest.raises(ValueError, match=match):
        run_epoch_begin(annealing, model)


def test_temperature_annealing_is_annealing_of_the_temperature():
    annealing = kg.TemperatureAnnealing(HALVING)
    assert isinstance(annealing, kg.Annealing)
    assert (annealing.variable, annealing.log_key) == ("temperature", "temperature")
    # Its config is what it was before `Annealing` existed: no `variable`.
    assert set(annealing.get_config()) == {
        "schedule",
        "layers",
        "frequency",
        "verbose",
        "log_key",
    }
    model = probe_model(name="probe_subclass")
    model.fit(*probe_data(2), epochs=2, verbose=0, callbacks=[annealing])
    assert annealing.temperature == annealing.value == 2.0


def test_annealing_config_round_trip():
    annealing = kg.Annealing(
        HALVING,
        variable="l0_weight",
        layers=["gate"],
        frequency="epoch",
        verbose=1,
        log_key="l0",
    )
    config = annealing.get_config()
    assert (config["variable"], config["layers"], config["log_key"]) == (
        "l0_weight",
        ["gate"],
        "l0",
    )
    for rebuilt in (
        kg.Annealing.from_config(json.loads(json.dumps(config))),
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(annealing)
        ),
    ):
        assert type(rebuilt) is kg.Annealing
        assert rebuilt.get_config() == config
        assert expected(rebuilt.schedule, range(6)) == expected(HALVING, range(6))
