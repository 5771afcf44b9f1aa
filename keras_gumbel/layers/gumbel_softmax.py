from typing import Any

import keras

from keras_gumbel import _checks, estimators, ops
from keras_gumbel._typing import Shape
from keras_gumbel.layers._base import EstimatorLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GumbelSoftmax(EstimatorLayer):
    """Draws Gumbel-Softmax (Concrete) samples from logits.

    In training (`training=True`) every call draws fresh Gumbel noise `g` from the
    layer's own `keras.random.SeedGenerator` and returns the relaxed sample
    `softmax((logits + g) / temperature)`, or with `hard=True` the exact one-hot
    sample `one_hot(argmax(logits + g))` whose gradient comes from `estimator`.
    In inference the output depends on `inference`: `"argmax"` returns the
    deterministic `one_hot(argmax(logits))`, `"softmax"` returns
    `softmax(logits / temperature)` and `"sample"` returns a hard random sample.

    The temperature is a scalar float32 variable, `layer.temperature`. Assigning
    it takes effect on the next step of a compiled train step without retracing,
    and `keras_gumbel.TemperatureAnnealing` anneals it during `fit`. Low
    temperatures give nearly one-hot samples (low bias) and high-variance
    gradients; high temperatures the reverse.

    Noise and softmax are computed in float32 even under a `mixed_float16` or
    `mixed_bfloat16` policy; the output has the layer's compute dtype and the
    input's shape.

    Args:
        temperature: Initial temperature, a positive float. Defaults to 1.0.
        hard: If True, training outputs are exact one-hot samples.
        estimator: Gradient estimator, one of `keras_gumbel.ESTIMATORS`, or a
            configured one such as `keras_gumbel.estimators.GumbelRao(draws=32)`.
            None means `"straight_through"` when `hard=True`, else
            `"gumbel_softmax"`. Hard estimators (`"straight_through"`,
            `"reinmax"`, `"gumbel_rao"`, `"gst"`) always give one-hot samples.
            `"reinmax"` needs a temperature >= 1; the initial temperature is
            checked, an annealed one must be kept >= 1 by the schedule.
        axis: The category axis. Defaults to -1.
        inference: What the layer returns when `training=False`: `"argmax"`
            (default), `"softmax"` or `"sample"`.
        trainable_temperature: If True, the temperature is learned (kept at or
            above 0.01). Defaults to False.
        seed: Optional int in `[0, 2**31 - 1]`. Makes the sequence of samples
            reproducible; every call still draws new noise.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Logits (unnormalised log-probabilities), any rank >= 1.
        training: Python bool; whether to sample (True) or use the inference mode.
        mask: Optional boolean mask, also propagated from an upstream layer.
            With the rank of `inputs` it marks categories: False entries are
            never chosen and get exactly 0 output and 0 gradient. With one rank
            less it marks rows (e.g. padded timesteps), which come out all zeros.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> layer = keras_gumbel.GumbelSoftmax(temperature=0.5, hard=True, seed=0)
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1]], dtype="float32"))
    >>> sample = layer(logits, training=True)   # a random one-hot row
    >>> float(keras.ops.sum(sample))
    1.0
    >>> np.asarray(layer(logits)).tolist()       # inference: argmax
    [[1.0, 0.0, 0.0]]

    Reference:
        - [Jang et al., 2017. Categorical Reparameterization with
          Gumbel-Softmax](https://arxiv.org/abs/1611.01144)
        - [Maddison et al., 2017. The Concrete Distribution](
          https://arxiv.org/abs/1611.00712)
    """

    inference_modes = ("argmax", "softmax", "sample")
    autocast_inputs = False

    def __init__(
        self,
        temperature: float = 1.0,
        *,
        hard: bool = False,
        estimator: estimators.EstimatorLike = None,
        axis: int = -1,
        inference: str = "argmax",
        trainable_temperature: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            temperature,
            hard=hard,
            estimator=estimator,
            trainable_temperature=trainable_temperature,
            seed=seed,
            inference=inference,
            **kwargs,
        )
        self.axis = _checks.check_axis(axis, None)
        self.supports_masking = True

    def build(self, input_shape: Shape) -> None:
        _checks.check_axis(self.axis, len(input_shape))

    def _outputs(self, inputs, training, mask):
        if training:
            return ops.gumbel_softmax(
                inputs,
                self.temperature,
                hard=self.hard,
                estimator=self.estimator,
                axis=self.axis,
                mask=mask,
                seed=self.active_seed,
            )
        inference = self.active_inference
        if inference == "argmax":
            return ops.argmax_one_hot(inputs, axis=self.axis, mask=mask)
        if inference == "softmax":
            return ops.tempered_softmax(
                inputs, self.temperature, axis=self.axis, mask=mask
            )
        return ops.gumbel_softmax(
            inputs,
            self.temperature,
            hard=True,
            axis=self.axis,
            mask=mask,
            seed=self.active_seed,
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "axis": self.axis,
        }
