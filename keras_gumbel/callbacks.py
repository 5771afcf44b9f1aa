"""Callbacks for `fit`: annealing layer variables and logging the open gates."""

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_gumbel import _checks
from keras_gumbel.layers import (
    AnnealableLayer,
    GumbelQuantizer,
    HardConcreteGate,
    model_layers,
)

__all__ = [
    "CodebookLogger",
    "Annealing",
    "OpenGatesLogger",
    "TemperatureAnnealing",
]

FREQUENCIES = ("batch", "epoch")
_STEP_MEANING = {
    "batch": "the optimizer's iteration count",
    "epoch": "the epoch index",
}
# The kinds of value a layer's `annealable_variables` may declare, strictest
# first: one value goes to every annealed layer, so it must satisfy the
# strictest kind among them, and that kind is what an error says was expected.
_KINDS = {
    "positive": ("a positive finite", lambda value: value > 0),
    "non-negative": ("a non-negative finite", lambda value: value >= 0),
}

_logger = logging.getLogger("keras_gumbel")


def _print(message):
    # Like Keras's own callbacks: stdout in interactive sessions, logging otherwise.
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    else:
        _logger.info(message.strip())


def _check_not_trainable(layer, callback):
    if layer.trainable_temperature:
        raise ValueError(
            f"Layer {layer.name!r} has trainable_temperature=True: its "
            f"temperature is learned by the optimizer, so {callback} "
            "cannot also set it. Create the layer with trainable_temperature=False, "
            "or leave it out with `layers=`."
        )


def _check_variable(variable):
    expected = "the name of an annealable variable, such as 'temperature'"
    if not isinstance(variable, str):
        raise TypeError(_checks.invalid("variable", expected, variable))
    if not variable:
        raise ValueError(_checks.invalid("variable", expected, variable))
    return variable


def _declared(layers):
    """What an error shows of the layers: each one's annealable variables."""
    return {layer.name: list(layer.annealable_variables) for layer in layers}


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
class Annealing(keras.callbacks.Callback):
    """Sets a scalar variable of annealable layers from a schedule in training.

    Before every training step (`frequency="batch"`) or epoch (`"epoch"`) the
    callback evaluates `schedule(step)` and assigns the result to the variable
    named `variable` of every annealable layer of the model that has one,
    nested models included, or only to those listed in `layers`. A layer
    declares which of its variables may be annealed, and what values they
    accept, in its class attribute `annealable_variables`: every
    `keras_gumbel.AnnealableLayer` has `"temperature"` (positive), and
    `keras_gumbel.HardConcreteGate` also `"l0_weight"` (non-negative). The
    compiled train step reads the variable, so the new value takes effect at
    once, without retracing, with `jit_compile=True` and on every replica of a
    `tf.distribute` strategy. Anneal several variables with one callback each,
    in the same `fit`.

    The step is the optimizer's iteration counter (`model.optimizer.iterations`)
    for `frequency="batch"` and the epoch index for `"epoch"`. Both are restored
    when training resumes through `keras.callbacks.BackupAndRestore` or from a
    saved model with `initial_epoch`, so a resumed run gets exactly the values
    of an uninterrupted one. With `steps_per_execution=N` the batch-level value
    is updated every `N` steps.

    Training stops with a `ValueError` naming the step as soon as the schedule
    returns a value the layers do not accept: a `"positive"` variable takes a
    finite value > 0 (a temperature also at least the layer's
    `min_temperature`), a `"non-negative"` one a finite value >= 0. A
    temperature learned by the optimizer (`trainable_temperature=True`) cannot
    be annealed.

    With a `log_key`, the value in use is written into `logs[log_key]` at the
    end of every batch and epoch, so it appears in the progress bar, in
    `History.history[log_key]` (the last value of each epoch) and in
    `keras.callbacks.TensorBoard` as `epoch_<log_key>` (and `batch_<log_key>`
    with `update_freq="batch"`); put the callback before `TensorBoard` in the
    `callbacks` list. `keras_gumbel.TemperatureAnnealing` is this callback for
    `variable="temperature"`, logged as `"temperature"`.

    Args:
        schedule: Maps the step (a Python int) to the value of the variable:
            one of `keras_gumbel.schedules`, any
            `keras.optimizers.schedules.LearningRateSchedule`, or a plain
            callable.
        variable: The name of the variable to set, one of the layers'
            `annealable_variables`, for example `"l0_weight"`. Defaults to
            `"temperature"`.
        layers: Optional list of annealable layers of the model, or of their
            names, each with the annealable variable `variable`. None
            (default) anneals every layer of the model that has it.
        frequency: `"batch"` (default) to update before every step from the
            optimizer's iteration counter, `"epoch"` to update before every
            epoch from the epoch index.
        verbose: 0 (quiet, default) or 1 (print a message each time the value
            changes).
        log_key: Key under which the value is written into `logs`, or None
            (default) to not log it.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> inputs = keras.Input((4,))
    >>> gated = keras_gumbel.HardConcreteGate(seed=0)(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(gated))
    >>> model.compile(optimizer="adam", loss="mse")
    >>> temperature = keras_gumbel.Annealing(
    ...     keras_gumbel.schedules.GeometricDecay(start=1.0, end=0.25, steps=4),
    ...     log_key="temperature",
    ... )
    >>> l0_weight = keras_gumbel.Annealing(
    ...     lambda step: 0.01 * step, variable="l0_weight", log_key="l0_weight"
    ... )
    >>> x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    >>> history = model.fit(
    ...     x, x.sum(axis=1), batch_size=4, epochs=2, verbose=0,
    ...     callbacks=[temperature, l0_weight],
    ... )
    >>> [round(t, 4) for t in history.history["temperature"]]  # steps 1 and 3
    [0.7071, 0.3536]
    >>> history.history["l0_weight"]
    [0.01, 0.03]
    """

    def __init__(
        self,
        schedule: Callable[[int], Any],
        *,
        variable: str = "temperature",
        layers: Sequence[str | AnnealableLayer] | str | AnnealableLayer | None = None,
        frequency: str = "batch",
        verbose: int = 0,
        log_key: str | None = None,
    ) -> None:
        super().__init__()
        variable = _check_variable(variable)
        if not callable(schedule):
            raise TypeError(
                _checks.invalid(
                    "schedule",
                    f"a callable mapping the step to a {variable}, such as a "
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
        self.variable = variable
        self.layers = _check_layers(layers)
        self.frequency = _checks.check_choice(frequency, "frequency", FREQUENCIES)
        self.verbose = int(verbose)
        self.log_key = log_key
        self.annealed_layers: list[AnnealableLayer] = []
        self.value: float | None = None
        # The strictest kind of value among the annealed layers' declarations.
        self._kind = "positive"

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.annealed_layers = self._find_layers(self.model)
        kinds = {
            layer.annealable_variables[self.variable] for layer in self.annealed_layers
        }
        self._kind = next(kind for kind in _KINDS if kind in kinds)
        self.value = None

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
            if self.value is not None:
                logs[self.log_key] = self.value

    def _anneal(self, step, when):
        value = self._evaluate(step)
        if value == self.value:
            return
        if self.variable == "temperature":
            for layer in self.annealed_layers:
                if value < layer.min_temperature:
                    raise ValueError(
                        f"Invalid value returned by `schedule` for step {step} "
                        f"({_STEP_MEANING[self.frequency]}). Layer {layer.name!r} "
                        f"needs a temperature >= {layer.min_temperature} (its "
                        f"estimator's minimum). Received: temperature={value!r}"
                    )
        for layer in self.annealed_layers:
            getattr(layer, self.variable).assign(value)
        self.value = value
        if self.verbose:
            _print(
                f"\n{when}: {type(self).__name__} setting {self.variable} to "
                f"{value:.6g}."
            )

    def _evaluate(self, step):
        name = self.variable
        raw = self.schedule(step)
        array = np.asarray(keras.ops.convert_to_numpy(raw))
        if array.size != 1 or array.dtype.kind not in "fiu":
            raise TypeError(
                f"Invalid value returned by `schedule` for step {step} "
                f"({_STEP_MEANING[self.frequency]}). Expected a scalar float "
                f"{name}. Received: {name}={raw!r}"
            )
        value = float(array.reshape(()))
        expected, accepts = _KINDS[self._kind]
        if not math.isfinite(value) or not accepts(value):
            raise ValueError(
                f"Invalid value returned by `schedule` for step {step} "
                f"({_STEP_MEANING[self.frequency]}). Expected {expected} "
                f"{name}. Received: {name}={value!r}"
            )
        return value

    def _find_layers(self, model):
        every_layer = [model, *model_layers(model)]
        annealable = [
            layer for layer in every_layer if isinstance(layer, AnnealableLayer)
        ]
        if self.layers is None:
            if not annealable:
                raise ValueError(
                    f"{type(self).__name__} found no annealable layer in model "
                    f"{model.name!r}. It anneals instances of "
                    "`keras_gumbel.AnnealableLayer` such as "
                    "`keras_gumbel.GumbelSoftmax`; the model's layers are "
                    f"{[layer.name for layer in every_layer]}."
                )
            selected = [
                layer
                for layer in annealable
                if self.variable in layer.annealable_variables
            ]
            if not selected:
                raise ValueError(
                    _checks.invalid(
                        "variable",
                        "an annealable variable of the layers of model "
                        f"{model.name!r}; their annealable variables are "
                        f"{_declared(annealable)}",
                        self.variable,
                    )
                )
        else:
            selected = [
                layer
                for entry in self.layers
                for layer in self._resolve(entry, model, every_layer, annealable)
            ]
            for layer in selected:
                if self.variable not in layer.annealable_variables:
                    raise ValueError(
                        _checks.invalid(
                            "layers",
                            f"layers with the annealable variable "
                            f"{self.variable!r}; layer {layer.name!r} has "
                            f"{list(layer.annealable_variables)}",
                            self.layers,
                        )
                    )
        unique = list({id(layer): layer for layer in selected}.values())
        for layer in unique:
            self._check_layer(layer)
        return unique

    def _check_layer(self, layer):
        """Refuses a layer whose declaration the callback cannot honour."""
        if self.variable == "temperature":
            _check_not_trainable(layer, type(self).__name__)
        kind = layer.annealable_variables[self.variable]
        if kind not in _KINDS:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) declares its "
                f"annealable variable {self.variable!r} as {kind!r}; the kinds "
                f"{type(self).__name__} knows are {tuple(_KINDS)}."
            )
        target = getattr(layer, self.variable, None)
        if not isinstance(target, keras.Variable) or tuple(target.shape) != ():
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) declares "
                f"{self.variable!r} annealable, but its attribute "
                f"`{self.variable}` is not a scalar variable: {target!r}."
            )

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
            "variable": self.variable,
            "layers": layers,
            "frequency": self.frequency,
            "verbose": self.verbose,
            "log_key": self.log_key,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Annealing":
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_gumbel")
class TemperatureAnnealing(Annealing):
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
        super().__init__(
            schedule,
            variable="temperature",
            layers=layers,
            frequency=frequency,
            verbose=verbose,
            log_key=log_key,
        )

    @property
    def temperature(self) -> float | None:
        """The temperature the callback set last; None until it sets one."""
        return self.value

    def get_config(self) -> dict:
        config = super().get_config()
        # The class fixes the variable, and its constructor takes no `variable`.
        del config["variable"]
        return config


def _layers_of_type(model, layer_type, callback):
    """Every layer of `model` (nested models included) that is a `layer_type`,
    once each; a logger with nothing to log says so."""
    layers = [model, *model_layers(model)]
    found = list(
        {id(layer): layer for layer in layers if isinstance(layer, layer_type)}.values()
    )
    if not found:
        raise ValueError(
            f"{type(callback).__name__} found no `keras_gumbel."
            f"{layer_type.__name__}` in model {model.name!r}; the model's layers "
            f"are {[layer.name for layer in layers[1:]]}."
        )
    return found


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
        self.gates = _layers_of_type(self.model, HardConcreteGate, self)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for layer in self.gates:
            expected = keras.ops.convert_to_numpy(layer.expected_l0())
            logs[f"{layer.name}/expected_open_gates"] = float(expected)
            logs[f"{layer.name}/open_gates"] = int(np.sum(layer.open_gates()))

    def get_config(self) -> dict:
        return {}


@keras.saving.register_keras_serializable(package="keras_gumbel")
class CodebookLogger(keras.callbacks.Callback):
    """Writes the code perplexities of every `GumbelQuantizer` into the logs.

    For each `keras_gumbel.GumbelQuantizer` of the model (nested models
    included) it writes `"<layer name>/code_perplexity"` and
    `"<layer name>/prob_perplexity"` into the logs at the end of every batch
    (the running mean over the epoch's batches so far, which the progress bar
    shows) and of every epoch (the mean over the epoch's batches, which
    `History.history` and `keras.callbacks.TensorBoard` get when this callback
    comes before it in the `callbacks` list).

    The layer stores the perplexities of each training batch in its variables
    `code_perplexity` and `prob_perplexity` (see its docstring); this callback
    reads them after each step. A callback rather than a metric of the layer:
    on the JAX backend, Keras's `fit` (3.15) does not carry the state of a
    metric that a layer updates in `call` (keras-team/keras#21639). With
    `steps_per_execution=N` only every N-th batch is seen.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> quantizer = keras_gumbel.GumbelQuantizer(8, 2, seed=0, name="codes")
    >>> model = keras.Sequential([keras.Input((3,)), quantizer, keras.layers.Dense(3)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    >>> history = model.fit(
    ...     x, x, batch_size=8, epochs=2, verbose=0,
    ...     callbacks=[keras_gumbel.callbacks.CodebookLogger()],
    ... )
    >>> perplexity = history.history["codes/code_perplexity"]
    >>> len(perplexity), all(1.0 <= p <= 8.0 for p in perplexity)
    (2, True)
    """

    def __init__(self) -> None:
        super().__init__()
        self.quantizers: list[GumbelQuantizer] = []
        self._sums: dict[str, float] = {}
        self._batches = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.quantizers = _layers_of_type(self.model, GumbelQuantizer, self)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._sums = {}
        self._batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Reading `self.model` syncs the JAX training state into the variables.
        self.model  # noqa: B018
        self._batches += 1
        for layer in self.quantizers:
            for name in ("code_perplexity", "prob_perplexity"):
                key = f"{layer.name}/{name}"
                value = float(keras.ops.convert_to_numpy(getattr(layer, name)))
                self._sums[key] = self._sums.get(key, 0.0) + value
        self._write(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._write(logs)

    def _write(self, logs):
        if logs is None or not self._batches:
            return
        for key, total in self._sums.items():
            logs[key] = total / self._batches

    def get_config(self) -> dict:
        return {}
