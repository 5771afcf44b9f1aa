"""What every temperature-carrying layer of the package shares.

`TemperatureAnnealing` recognises an annealable layer by this base class: it owns
a scalar float32 variable named `temperature` and a `SeedGenerator`.
"""

import keras

from keras_gumbel import _checks

_SEED_STATE_KEY = "seed_generator_state"


@keras.saving.register_keras_serializable(package="keras_gumbel")
class MinimumTemperature(keras.constraints.Constraint):
    """Keeps a trainable temperature at or above `minimum` (strictly positive)."""

    def __init__(self, minimum=1e-2):
        self.minimum = _checks.check_temperature(minimum, "minimum")

    def __call__(self, w):
        return keras.ops.maximum(w, keras.ops.cast(self.minimum, w.dtype))

    def get_config(self):
        return {"minimum": self.minimum}


class AnnealableLayer(keras.layers.Layer):
    """Base class: a layer with a temperature variable and a seed generator.

    The temperature is a scalar float32 variable named `temperature`,
    non-trainable unless `trainable_temperature=True` (then constrained to stay at
    or above 0.01). A compiled train step reads the variable, so assigning it
    (`layer.temperature.assign(0.5)`, or `keras_gumbel.TemperatureAnnealing`) takes
    effect on the next step without retracing, and it is saved with the weights.
    """

    # Subclasses whose temperature is only ever annealed from outside set this
    # to False: they refuse `trainable_temperature` and leave it out of the config.
    learns_temperature = True

    def __init__(
        self, temperature, *, trainable_temperature=False, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
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

    def compute_output_shape(self, input_shape):
        # A sample has the shape of its logits; ConcreteSelect, which mixes
        # features into `units` outputs, overrides this. Keras's own
        # `compute_mask` passes a mask on unchanged, as these layers want.
        return input_shape

    def save_own_variables(self, store):
        super().save_own_variables(store)
        # Keras saves a layer's weights but not its seed generators, so a reloaded
        # layer would replay the samples it already drew; saving the state lets
        # training resume with the samples the original would have drawn next.
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = [key for key in store.keys() if key != _SEED_STATE_KEY]
        super().load_own_variables({key: store[key] for key in keys})
        # Files written before the state was saved restart the sequence.
        if _SEED_STATE_KEY in store:
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.initial_temperature, "seed": self.seed})
        if self.learns_temperature:
            config["trainable_temperature"] = self.trainable_temperature
        return config
