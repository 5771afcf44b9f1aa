"""What every temperature-carrying layer of the package shares.

`Annealing` and `TemperatureAnnealing` recognise an annealable layer by this base
class: it owns a scalar float32 variable named `temperature` (and declares any
other annealable variables) and a `SeedGenerator`.
`annealable_layers` finds them in a model, for the callbacks and for export.
"""

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import keras

from keras_gumbel import _checks, estimators
from keras_gumbel._typing import Shape, TensorLike

_SEED_STATE_KEY = "seed_generator_state"


@keras.saving.register_keras_serializable(package="keras_gumbel")
class MinimumTemperature(keras.constraints.Constraint):
    """Keeps a trainable temperature at or above `minimum` (strictly positive)."""

    def __init__(self, minimum: float = 1e-2) -> None:
        self.minimum = _checks.check_temperature(minimum, "minimum")

    def __call__(self, w: TensorLike) -> TensorLike:
        return keras.ops.maximum(w, keras.ops.cast(self.minimum, w.dtype))

    def get_config(self) -> dict:
        return {"minimum": self.minimum}


class AnnealableLayer(keras.layers.Layer):
    """Base class: a layer with a temperature variable and a seed generator.

    The temperature is a scalar float32 variable named `temperature`,
    non-trainable unless `trainable_temperature=True` (then constrained to stay at
    or above 0.01). A compiled train step reads the variable, so assigning it
    (`layer.temperature.assign(0.5)`, or `keras_gumbel.TemperatureAnnealing`) takes
    effect on the next step without retracing, and it is saved with the weights.

    A subclass whose inference can vary lists the values of its `inference`
    argument in `inference_modes` (the first is the usual default); the base
    class validates the argument, stores it and puts it in the config.
    `override` switches the mode and the seed for a traced function, which is
    how `keras_gumbel.export` builds its sampling endpoints.

    `annealable_variables` names the scalar variables that
    `keras_gumbel.Annealing` may assign from a schedule, each the attribute
    that holds it, with the values it accepts: `"positive"` (finite, > 0) or
    `"non-negative"` (finite, >= 0). Here it is `{"temperature": "positive"}`;
    a subclass with another such variable extends it, as
    `keras_gumbel.HardConcreteGate` does with `"l0_weight"`.

    Args:
        temperature: Initial temperature, a positive float.
        trainable_temperature: If True, the optimizer learns the temperature.
            Subclasses with `learns_temperature = False` refuse it.
        seed: Optional int in `[0, 2**31 - 1]` for the layer's
            `keras.random.SeedGenerator`.
        inference: One of `inference_modes`; None for a layer without any.
        **kwargs: Keyword arguments of `keras.layers.Layer`.
    """

    # Subclasses whose temperature is only ever annealed from outside set this
    # to False: they refuse `trainable_temperature` and leave it out of the config.
    learns_temperature: ClassVar[bool] = True
    # The values the subclass's `inference` argument takes; empty for a layer
    # whose inference is fixed. `"sample"` among them means the layer can draw
    # samples in inference, which export's sampling endpoints rely on.
    inference_modes: ClassVar[tuple[str, ...]] = ()
    # Whether Keras casts float inputs to the compute dtype before `call`. A
    # layer whose inputs are logits says no: a float16 cast turns float32
    # logits beyond 65504 into infinities before the layer can compute in
    # float32, so it casts its output to the compute dtype itself.
    autocast_inputs: ClassVar[bool] = True
    # The variables `Annealing` may set, by attribute name, and the kind of
    # value each accepts. Subclasses extend the dict rather than replace it, so
    # the temperature stays annealable.
    annealable_variables: ClassVar[dict[str, str]] = {"temperature": "positive"}

    def __init__(
        self,
        temperature: float,
        *,
        trainable_temperature: bool = False,
        seed: int | None = None,
        inference: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("autocast", self.autocast_inputs)
        super().__init__(**kwargs)
        self._override = _Override()
        if self.inference_modes:
            self.inference = _checks.check_choice(
                inference, "inference", self.inference_modes
            )
        elif inference is not None:
            raise ValueError(
                f"Invalid value received for argument `inference`. "
                f"{type(self).__name__} has a fixed inference behaviour. "
                f"Received: inference={inference!r}"
            )
        temperature = _checks.check_temperature(temperature)
        if not self.learns_temperature and trainable_temperature is not False:
            raise ValueError(
                "Invalid value received for argument `trainable_temperature`. "
                f"{type(self).__name__} does not learn its temperature; anneal it "
                "with `keras_gumbel.TemperatureAnnealing`. Received: "
                f"trainable_temperature={trainable_temperature!r}"
            )
        _checks.check_bool(trainable_temperature, "trainable_temperature")
        self.initial_temperature = temperature
        self.trainable_temperature = trainable_temperature
        self.seed = _checks.check_seed(seed)
        if isinstance(self.seed, keras.random.SeedGenerator):
            raise TypeError(
                "Invalid value received for argument `seed`. Expected None or an "
                "integer (the layer owns its SeedGenerator). "
                f"Received: seed={seed!r}"
            )
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(temperature),
            trainable=trainable_temperature,
            autocast=False,
            constraint=MinimumTemperature() if trainable_temperature else None,
        )

    def call(
        self,
        inputs: TensorLike,
        training: bool | None = None,
        mask: TensorLike | None = None,
    ) -> TensorLike:
        if not self.autocast_inputs:
            inputs = _widened(inputs, self.compute_dtype)
        outputs = self._outputs(inputs, training, mask)
        if self.autocast_inputs:
            return outputs
        return keras.ops.cast(outputs, self.compute_dtype)

    def _outputs(self, inputs, training, mask):
        # What a subclass computes; `call` casts it to the compute dtype when
        # Keras did not cast the inputs. A subclass may override `call` instead.
        raise NotImplementedError(f"{type(self).__name__} defines no outputs")

    @contextlib.contextmanager
    def override(
        self,
        *,
        inference: str | None = None,
        seed: keras.random.SeedGenerator | None = None,
    ) -> Iterator[None]:
        """Calls inside the context use another inference mode or seed.

        The hook that `keras_gumbel.export` traces sampling endpoints with:
        inside the context, `training=False` calls behave as with `inference`
        (for example `"sample"`), and every draw comes from `seed`, a stand-in
        generator that is not state of the layer, so it is neither tracked nor
        saved. A function traced inside the context keeps that behaviour; the
        layer itself is unchanged on exit, also after an error.

        Args:
            inference: One of the layer's `inference_modes`, or None to keep
                the layer's own.
            seed: A `keras.random.SeedGenerator` to draw from, or None to keep
                the layer's own generator.

        Example:

        >>> import numpy as np
        >>> import keras_gumbel
        >>> layer = keras_gumbel.GumbelSoftmax(seed=0)
        >>> logits = np.zeros((1000, 2), "float32")
        >>> with layer.override(inference="sample"):
        ...     sample = np.asarray(layer(logits))
        >>> bool(0.4 < sample[:, 0].mean() < 0.6)  # random one-hot rows
        True
        >>> np.asarray(layer(logits[:1])).tolist()  # argmax again
        [[1.0, 0.0]]
        """
        if inference is not None:
            _checks.check_choice(inference, "inference", self.inference_modes)
        if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
            raise TypeError(
                _checks.invalid("seed", "None or a `keras.random.SeedGenerator`", seed)
            )
        previous = self._override
        self._override = _Override(
            inference or previous.inference, seed or previous.seed
        )
        try:
            yield
        finally:
            self._override = previous

    @property
    def active_inference(self) -> str | None:
        """The inference mode calls use now: `inference`, unless overridden."""
        return self._override.inference or getattr(self, "inference", None)

    @property
    def min_temperature(self) -> float:
        """The smallest temperature the layer's method supports.

        0 here (any positive temperature); a layer whose estimator needs more
        (ReinMax: 1) says so, and `TemperatureAnnealing` refuses to anneal it
        below. A temperature variable assigned below it makes the layer's
        output NaN (docs/numerics.md).
        """
        return 0.0

    @property
    def active_seed(self) -> keras.random.SeedGenerator:
        """The generator draws come from now: `seed_generator`, unless overridden."""
        return self._override.seed or self.seed_generator

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        # A sample has the shape of its logits; ConcreteSelect, which mixes
        # features into `units` outputs, overrides this. Keras's own
        # `compute_mask` passes a mask on unchanged, as these layers want.
        return input_shape

    def save_own_variables(self, store: dict) -> None:
        super().save_own_variables(store)
        # Keras saves a layer's weights but not its seed generators, so a reloaded
        # layer would replay the samples it already drew; saving the state lets
        # training resume with the samples the original would have drawn next.
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store: dict) -> None:
        keys = [key for key in store.keys() if key != _SEED_STATE_KEY]
        super().load_own_variables({key: store[key] for key in keys})
        # Files written before the state was saved restart the sequence.
        if _SEED_STATE_KEY in store:
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"temperature": self.initial_temperature, "seed": self.seed})
        if self.learns_temperature:
            config["trainable_temperature"] = self.trainable_temperature
        if self.inference_modes:
            config["inference"] = self.inference
        return config


class EstimatorLayer(AnnealableLayer):
    """An annealable layer whose training sample is relaxed or hard, with a
    gradient estimator: what GumbelSoftmax and GumbelSigmoid share."""

    def __init__(
        self,
        temperature: float,
        *,
        hard: bool,
        estimator: estimators.EstimatorLike,
        **kwargs: Any,
    ) -> None:
        super().__init__(temperature, **kwargs)
        _checks.check_bool(hard, "hard")
        # Resolving it checks the pair (and the temperature) now, not at the
        # first call.
        estimators.get(estimator, hard, temperature)
        self.hard = hard
        self.estimator = estimators.deserialize(estimator)

    @property
    def min_temperature(self) -> float:
        return estimators.get(self.estimator, self.hard).min_temperature or 0.0

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hard": self.hard,
            "estimator": estimators.serialize(self.estimator),
        }


def _widened(inputs, compute_dtype):
    """Float inputs narrower than the compute dtype, cast up to it.

    The ops return the dtype of their logits, so float16 logits under a
    float32 policy would round the float32 result through float16.
    """
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if dtype in ("float16", "bfloat16") and compute_dtype in ("float32", "float64"):
        return keras.ops.cast(inputs, compute_dtype)
    return inputs


@dataclasses.dataclass(frozen=True)
class _Override:
    # A plain value, not a list or a generator: Keras's attribute tracking
    # leaves it alone, so a stand-in seed never becomes state of the layer.
    inference: str | None = None
    seed: keras.random.SeedGenerator | None = None


def model_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside `model`, nested models and sublayers included, once each.

    Keras has no public walk over nested sublayers (`model.layers` lists the
    top level only), so this is the one place that uses its private one.
    """
    return list(model._flatten_layers(include_self=False, recursive=True))


def annealable_layers(model: keras.Model) -> list[AnnealableLayer]:
    """The `AnnealableLayer`s inside `model`, in the order Keras tracks them.

    Example:

    >>> import keras
    >>> import keras_gumbel
    >>> inputs = keras.Input((4,))
    >>> outputs = keras_gumbel.GumbelSoftmax(name="choice")(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> [layer.name for layer in keras_gumbel.layers.annealable_layers(model)]
    ['choice']
    """
    return [
        layer for layer in model_layers(model) if isinstance(layer, AnnealableLayer)
    ]
