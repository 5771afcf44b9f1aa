"""Callbacks for `fit`: temperature annealing and logging the open gates."""

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_gumbel import _checks
from keras_gumbel.layers import AnnealableLayer, HardConcreteGate, model_layers

__all__ = [
    "OpenGatesLogger",
    "TemperatureAnnealing",
]

FREQUENCIES = ("batch", "epoch")
_STEP_MEANING = {
    "batch": "the optimizer's iteration count",
    "epoch": "the epoch index",
}

_logger = logging.getLogger("keras_gumbel")


def _print(message):
    # Like Keras's own callbacks: stdout in interactive sessions, logging otherwise.
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    else:
        _logger.info(message.strip())


def _check_not_trainable(layer):
    if layer.trainable_temperature:
        raise ValueError(
            f"Layer {layer.name!r} has trainable_temperature=True: its "
            "temperature is learned by the optimizer, so TemperatureAnnealing "
            "cannot also set it. Create the layer with trainable_temperature=False, "
            "or leave it out with `layers=`."
        )


def _check_layers(layers):
    if layers is None:
        return None
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(
            _checks.invalid("layers", "None or a list of layers or layer names", layers)
        ) from None
    if not layers:
        raise ValueError(
            _checks.invalid(
                "layers",
                "None (every annealable layer) or a non-empty list of layers or "
                "layer names",
                layers,
            )
        )
    for layer in layers:
        if isinstance(layer, str):
            continue
        if not isinstance(layer, AnnealableLayer):
            raise TypeError(
                _checks.invalid(
                    "layers",
                    "layer names or instances of `keras_gumbel.AnnealableLayer` "
                    f"(such as `keras_gumbel.GumbelSoftmax`); got {layer!r}",
                    layers,
                )
            )
    return layers


@keras.saving.register_keras_serializable(package="keras_gumbel")
class TemperatureAnnealing(keras.callbacks.Callback):
    """Sets the temperature of Gumbel layers from a schedule during training.

    Before every training step (`frequency="batch"`) or epoch (`"epoch"`) the
    callback evaluates `schedule(step)` and assigns the result to the
    `temperature` variable of every annealable layer of the model, that is every
    `keras_gumbel.AnnealableLayer` (`keras_gumbel.GumbelSoftmax`,
    `keras_gumbel.GumbelTopK`, `keras_gumbel.ConcreteSelect`), nested models
    included, or only to those listed in `layers`. The compiled train step reads
    the variable, so the new value takes effect at once, without retracing, with
    `jit_compile=True` and on every replica of a `tf.distribute` strategy.

    The step is the optimizer's iteration counter (`model.optimizer.iterations`)
    for `frequency="batch"` and the epoch index for `"epoch"`. Both are restored
    when training resumes through `keras.callbacks.BackupAndRestore` or from a
    saved model with `initial_epoch`, so a resumed run gets exactly the
    temperatures of an uninterrupted one. With `steps_per_execution=N` the
    batch-level value is updated every `N` steps.

    The value in use is written into `logs[log_key]` at the end of every batch
    and epoch, so it appears in the progress bar, in `History.history[log_key]`
    (the last value of each epoch) and in `keras.callbacks.TensorBoard` as
    `epoch_temperature` (and `batch_temperature` with `update_freq="batch"`).
    Callbacks see `logs` in list order, so put `TemperatureAnnealing` before
    `TensorBoard` in the `callbacks` list.

    Args:
        schedule: Maps the step (a Python int) to a positive temperature: one of
            `keras_gumbel.schedules`, any
            `keras.optimizers.schedules.LearningRateSchedule` (for example
            `CosineDecay` with `alpha > 0`), or a plain callable.
        layers: Optional list of annealable layers of the model, or of their
            names. None (default) anneals every annealable layer.
        frequency: `"batch"` (default) to update before every step from the
            optimizer's iteration counter, `"epoch"` to update before every
            epoch from the epoch index.
        verbose: 0 (quiet, default) or 1 (print a message each time the
            temperature changes).
        log_key: Key under which the temperature is written into `logs`, or
            None to not log it. Defaults to `"temperature"`.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> inputs = keras.Input((4,))
    >>> logits = keras.layers.Dense(3)(inputs)
    >>> outputs = keras_gumbel.GumbelSoftmax(temperature=2.0, seed=0)(logits)
    >>> model = keras.Model(inputs, outputs)
    >>> model.compile(optimizer="adam", loss="categorical_crossentropy")
    >>> annealing = keras_gumbel.TemperatureAnnealing(
    ...     keras_gumbel.schedules.GeometricDecay(start=2.0, end=0.5, steps=4)
    ... )
    >>> x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    >>> y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    >>> history = model.fit(
    ...     x, y, batch_size=4, epochs=2, callbacks=[annealing], verbose=0
    ... )
    >>> [round(t, 4) for t in history.history["temperature"]]  # steps 1 and 3
    [1.4142, 0.7071]

    Reference:
        - [Jang et al., 2017. Categorical Reparameterization with
          Gumbel-Softmax](https://arxiv.org/abs/1611.01144)
        - [Abid et al., 2019. Concrete Autoencoders for Differentiable
          Feature Selection and Reconstruction](https://arxiv.org/abs/1901.09346)
    """

    def __init__(
        self,
        schedule: Callable[[int], Any],
        *,
        layers: Sequence[str | AnnealableLayer] | str | AnnealableLayer | None = None,
        frequency: str = "batch",
        verbose: int = 0,
        log_key: str | None = "temperature",
    ) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                _checks.invalid(
                    "schedule",
                    "a callable mapping the step to a temperature, such as a "
                    "`keras_gumbel.schedules` or `keras.optimizers.schedules` "
                    "object",
                    schedule,
                )
            )
        if verbose not in (0, 1) or isinstance(verbose, float):
            raise ValueError(_checks.invalid("verbose", "0 or 1", verbose))
        if log_key is not None and (not isinstance(log_key, str) or not log_key):
            raise ValueError(
                _checks.invalid("log_key", "a non-empty string or None", log_key)
            )
        self.schedule = schedule
        self.layers = _check_layers(layers)
        self.frequency = _checks.check_choice(frequency, "frequency", FREQUENCIES)
        self.verbose = int(verbose)
        self.log_key = log_key
        self.annealed_layers: list[AnnealableLayer] = []
        self.temperature: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.annealed_layers = self._find_layers(self.model)
        self.temperature = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.frequency == "epoch":
            self._anneal(epoch, f"Epoch {epoch + 1}")

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.frequency == "batch":
            # On JAX, reading `self.model` also syncs the training state, so the
            # next step sees the assignment below.
            optimizer = self.model.optimizer
            # Through a copy: `int()` rejects a tf.distribute MirroredVariable, and
            # converting the variable itself to numpy warns under NumPy 2.
            step = int(keras.ops.convert_to_numpy(keras.ops.copy(optimizer.iterations)))
            self._anneal(step, f"Step {step}")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._log(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._log(logs)

    def _log(self, logs):
        if self.log_key is not None and logs is not None:
            if self.temperature is not None:
                logs[self.log_key] = self.temperature

    def _anneal(self, step, when):
        temperature = self._evaluate(step)
        if temperature == self.temperature:
            return
        for layer in self.annealed_layers:
            if temperature < layer.min_temperature:
                raise ValueError(
                    f"Invalid value returned by `schedule` for step {step} "
                    f"({_STEP_MEANING[self.frequency]}). Layer {layer.name!r} "
                    f"needs a temperature >= {layer.min_temperature} (its "
                    f"estimator's minimum). Received: temperature={temperature!r}"
                )
        for layer in self.annealed_layers:
            layer.temperature.assign(temperature)
        self.temperature = temperature
        if self.verbose:
            _print(
                f"\n{when}: TemperatureAnnealing setting temperature to "
                f"{temperature:.6g}."
            )

    def _evaluate(self, step):
        value = self.schedule(step)
        array = np.asarray(keras.ops.convert_to_numpy(value))
        if array.size != 1 or array.dtype.kind not in "fiu":
            raise TypeError(
                f"Invalid value returned by `schedule` for step {step} "
                f"({_STEP_MEANING[self.frequency]}). Expected a scalar float "
                f"temperature. Received: temperature={value!r}"
            )
        temperature = float(array.reshape(()))
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(
                f"Invalid value returned by `schedule` for step {step} "
                f"({_STEP_MEANING[self.frequency]}). Expected a positive finite "
                f"temperature. Received: temperature={temperature!r}"
            )
        return temperature

    def _find_layers(self, model):
        every_layer = [model, *model_layers(model)]
        annealable = [
            layer for layer in every_layer if isinstance(layer, AnnealableLayer)
        ]
        if self.layers is None:
            if not annealable:
                raise ValueError(
                    f"TemperatureAnnealing found no annealable layer in model "
                    f"{model.name!r}. It anneals instances of "
                    "`keras_gumbel.AnnealableLayer` such as "
                    "`keras_gumbel.GumbelSoftmax`; the model's layers are "
                    f"{[layer.name for layer in every_layer]}."
                )
            selected = annealable
        else:
            selected = [
                layer
                for entry in self.layers
                for layer in self._resolve(entry, model, every_layer, annealable)
            ]
        unique = list({id(layer): layer for layer in selected}.values())
        for layer in unique:
            _check_not_trainable(layer)
        return unique

    def _resolve(self, entry, model, every_layer, annealable):
        """The layers of `model` that one entry of `layers=` names."""
        if not isinstance(entry, str):
            if not any(entry is layer for layer in annealable):
                raise ValueError(
                    _checks.invalid(
                        "layers",
                        f"layers of model {model.name!r}; layer "
                        f"{entry.name!r} is not part of it",
                        self.layers,
                    )
                )
            return [entry]
        matches = [layer for layer in every_layer if layer.name == entry]
        if not matches:
            raise ValueError(
                _checks.invalid(
                    "layers",
                    f"names of layers of model {model.name!r}; there is no layer "
                    f"named {entry!r}. Annealable layers: "
                    f"{[layer.name for layer in annealable]}",
                    self.layers,
                )
            )
        for layer in matches:
            if not isinstance(layer, AnnealableLayer):
                raise ValueError(
                    _checks.invalid(
                        "layers",
                        "annealable layers (instances of "
                        f"`keras_gumbel.AnnealableLayer`); layer {entry!r} is a "
                        f"{type(layer).__name__}",
                        self.layers,
                    )
                )
        return matches

    def get_config(self) -> dict:
        layers = self.layers
        if layers is not None:
            layers = [
                layer if isinstance(layer, str) else layer.name for layer in layers
            ]
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "layers": layers,
            "frequency": self.frequency,
            "verbose": self.verbose,
            "log_key": self.log_key,
        }

    @classmethod
    def from_config(cls, config: dict) -> "TemperatureAnnealing":
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_gumbel")
class OpenGatesLogger(keras.callbacks.Callback):
    """Writes the open gates of every `HardConcreteGate` into the epoch logs.

    At the end of every epoch, for each `keras_gumbel.HardConcreteGate` of the
    model (nested models included), it writes two values into `logs`:
    `"<layer name>/expected_open_gates"`, the expected number of open training
    gates (`layer.expected_l0()`, the quantity the L0 penalty weighs), and
    `"<layer name>/open_gates"`, the number of gates that are not 0 in
    inference (`layer.open_gates().sum()`, the units a pruned network keeps).
    They appear in `History.history`, in the progress bar and, when this
    callback comes before it in the `callbacks` list, in
    `keras.callbacks.TensorBoard`.

    A callback rather than a metric of the layer: on the JAX backend, Keras's
    `fit` (3.15) does not carry the state of a metric that a layer updates in
    `call` through its stateless train step (keras-team/keras#21639), so a
    layer metric breaks `fit` there. At the end of an epoch the layers hold
    their trained values on every backend, and reading them costs nothing.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> inputs = keras.Input((3,))
    >>> gated = keras_gumbel.HardConcreteGate(l0_weight=0.1, seed=0, name="gate")
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(gated(inputs)))
    >>> model.compile(optimizer="adam", loss="mse")
    >>> history = model.fit(
    ...     np.ones((8, 3)), np.ones((8, 1)), epochs=2, verbose=0,
    ...     callbacks=[keras_gumbel.callbacks.OpenGatesLogger()],
    ... )
    >>> history.history["gate/open_gates"]
    [3, 3]
    """

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[HardConcreteGate] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        layers = [self.model, *model_layers(self.model)]
        self.gates = list(
            {
                id(layer): layer
                for layer in layers
                if isinstance(layer, HardConcreteGate)
            }.values()
        )
        if not self.gates:
            raise ValueError(
                f"OpenGatesLogger found no `keras_gumbel.HardConcreteGate` in "
                f"model {self.model.name!r}; the model's layers are "
                f"{[layer.name for layer in layers[1:]]}."
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for layer in self.gates:
            expected = keras.ops.convert_to_numpy(layer.expected_l0())
            logs[f"{layer.name}/expected_open_gates"] = float(expected)
            logs[f"{layer.name}/open_gates"] = int(np.sum(layer.open_gates()))

    def get_config(self) -> dict:
        return {}
