from typing import Any

import keras

from keras_gumbel import estimators, ops
from keras_gumbel.layers._base import EstimatorLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GumbelSigmoid(EstimatorLayer):
    """Draws binary Concrete (relaxed Bernoulli) samples from log-odds.

    The binary twin of `GumbelSoftmax`: every element of the input is an
    independent yes/no choice with log-odds `logits`. In training
    (`training=True`) every call draws fresh logistic noise `L` from the
    layer's own `keras.random.SeedGenerator` and returns the relaxed sample
    `sigmoid((logits + L) / temperature)`, or with `hard=True` the exact
    Bernoulli sample `logits + L > 0` (every element 0.0 or 1.0) whose gradient
    comes from `estimator`. In inference the output depends on `inference`:
    `"argmax"` returns 1 where `logits > 0` (the most likely value),
    `"sigmoid"` returns `sigmoid(logits / temperature)` and `"sample"` a hard
    random sample.

    Each estimator is the binary form of its categorical one: the same
    samples in distribution and the same expected gradients as
    `GumbelSoftmax` on the two categories `(logits, 0)`, at about half the cost.
    The temperature is a scalar float32 variable, `layer.temperature`,
    annealed by `keras_gumbel.TemperatureAnnealing`. Noise and sigmoid are
    computed in float32 under mixed precision; the output has the layer's
    compute dtype and the input's shape.

    Args:
        temperature: Initial temperature, a positive float. Defaults to 1.0.
        hard: If True, training outputs are exact samples in {0, 1}.
        estimator: Gradient estimator, one of `keras_gumbel.ESTIMATORS`, or a
            configured one such as `keras_gumbel.estimators.GumbelRao(draws=32)`.
            None means `"straight_through"` when `hard=True`, else
            `"gumbel_softmax"` (the relaxed sample). `"reinmax"` needs a
            temperature >= 1.
        inference: What the layer returns when `training=False`: `"argmax"`
            (default), `"sigmoid"` or `"sample"`.
        trainable_temperature: If True, the temperature is learned (kept at or
            above 0.01). Defaults to False.
        seed: Optional int in `[0, 2**31 - 1]`. Makes the sequence of samples
            reproducible; every call still draws new noise.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Log-odds, any shape. `+inf` is always 1, `-inf` always 0.
        training: Python bool; whether to sample (True) or use the inference mode.
        mask: Optional boolean mask broadcastable to `inputs`, also propagated
            from an upstream layer: False entries are always 0, with 0 gradient.

    Example:

    >>> import numpy as np
    >>> import keras_gumbel
    >>> layer = keras_gumbel.GumbelSigmoid(hard=True, seed=0)
    >>> logits = np.array([[-1.0, 0.5, 3.0]], dtype="float32")
    >>> sample = np.asarray(layer(logits, training=True))  # random 0/1 entries
    >>> set(sample.ravel().tolist()) <= {0.0, 1.0}
    True
    >>> np.asarray(layer(logits)).tolist()                 # inference: logits > 0
    [[0.0, 1.0, 1.0]]

    Reference:
        - [Maddison et al., 2017. The Concrete Distribution](
          https://arxiv.org/abs/1611.00712), section 3.3
        - [Jang et al., 2017. Categorical Reparameterization with
          Gumbel-Softmax](https://arxiv.org/abs/1611.01144)
    """

    inference_modes = ("argmax", "sigmoid", "sample")
    autocast_inputs = False

    def __init__(
        self,
        temperature: float = 1.0,
        *,
        hard: bool = False,
        estimator: estimators.EstimatorLike = None,
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
        self.supports_masking = True

    def _outputs(self, inputs, training, mask):
        if training:
            return ops.gumbel_sigmoid(
                inputs,
                self.temperature,
                hard=self.hard,
                estimator=self.estimator,
                mask=mask,
                seed=self.active_seed,
            )
        inference = self.active_inference
        if inference == "argmax":
            return ops.bernoulli_mode(inputs, mask=mask)
        if inference == "sigmoid":
            return ops.tempered_sigmoid(inputs, self.temperature, mask=mask)
        return ops.gumbel_sigmoid(
            inputs, self.temperature, hard=True, mask=mask, seed=self.active_seed
        )
