from typing import Any

import keras

from keras_gumbel import _checks, ops
from keras_gumbel._typing import Shape
from keras_gumbel.layers._base import AnnealableLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GumbelTopK(AnnealableLayer):
    """Draws k-subsets without replacement (Gumbel-top-k) from logits.

    In training (`training=True`) every call draws fresh Gumbel noise `g` from the
    layer's own `keras.random.SeedGenerator`. The relaxed output is the relaxed
    top-k of Xie & Ermon (2019) on `logits + g`: `k` successive softmaxes at the
    layer's temperature, each shrinking the weight of what the previous ones
    took, summed; it sums to `k` along `axis`. With `hard=True` the output is the
    k-hot of the `k` largest `logits + g`, an exact sample of `k` categories
    without replacement, with the straight-through gradient of the relaxed
    output. In inference the output depends on `inference`: `"argmax"` returns
    the deterministic k-hot of the `k` largest logits, `"softmax"` the relaxed
    top-k of the logits without noise, and `"sample"` a hard random sample.

    The temperature is a scalar float32 variable, `layer.temperature`, annealed
    by `keras_gumbel.TemperatureAnnealing`. Low temperatures make the relaxed
    output nearly k-hot; at moderate temperatures a single element of the
    relaxed output can exceed 1 (see `keras_gumbel.ops.gumbel_top_k`).

    Noise and softmaxes are computed in float32 even under a `mixed_float16` or
    `mixed_bfloat16` policy; the output has the layer's compute dtype and the
    input's shape.

    Args:
        k: Number of categories to choose, a positive integer no larger than
            the size of `axis`.
        temperature: Initial temperature, a positive float. Defaults to 1.0.
        hard: If True, training outputs are exact k-hot samples.
        axis: The axis of the categories to choose from. Defaults to -1.
        inference: The output for `training=False`: `"argmax"` (default, the
            k-hot of the `k` largest logits), `"softmax"` (the relaxed top-k
            without noise) or `"sample"` (a random k-hot subset).
        seed: Optional int in `[0, 2**31 - 1]`. The same int gives the same
            sequence of subsets; each call still draws a new one.
        **kwargs: Keyword arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        inputs: Logits of rank >= 1 with at least `k` categories along `axis`.
        training: Python bool; True draws a subset, False gives `inference`.
        mask: Optional boolean mask, also propagated from an upstream layer.
            A category mask (the rank of `inputs`) removes the False entries
            from the choice, with exactly 0 output and 0 gradient; a row with
            fewer than `k` allowed categories chooses all of them. A row mask
            (one rank less, e.g. padded timesteps) makes masked rows all zeros.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> layer = keras_gumbel.GumbelTopK(k=2, hard=True, seed=0)
    >>> logits = np.log(np.array([[0.5, 0.1, 0.3, 0.1]], dtype="float32"))
    >>> subset = layer(logits, training=True)   # a random 2-hot row
    >>> float(keras.ops.sum(subset))
    2.0
    >>> np.asarray(layer(logits)).tolist()       # inference: the 2 largest
    [[1.0, 0.0, 1.0, 0.0]]

    Reference:
        - [Xie & Ermon, 2019. Reparameterizable Subset Sampling via Continuous
          Relaxations](https://arxiv.org/abs/1901.10517)
        - [Kool et al., 2019. Stochastic Beams and Where to Find Them: The
          Gumbel-Top-k Trick for Sampling Sequences Without Replacement](
          https://arxiv.org/abs/1903.06059)
    """

    learns_temperature = False
    inference_modes = ("argmax", "softmax", "sample")
    autocast_inputs = False

    def __init__(
        self,
        k: int,
        temperature: float = 1.0,
        *,
        hard: bool = False,
        axis: int = -1,
        inference: str = "argmax",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(temperature, seed=seed, inference=inference, **kwargs)
        self.k = _checks.check_positive_int(k, "k")
        _checks.check_bool(hard, "hard")
        self.hard = hard
        self.axis = _checks.check_axis(axis, None)
        self.supports_masking = True

    def build(self, input_shape: Shape) -> None:
        axis = _checks.check_axis(self.axis, len(input_shape))
        _checks.check_positive_int(self.k, "k", 1, input_shape[axis])

    def _outputs(self, inputs, training, mask):
        inference = self.active_inference
        if training or inference == "sample":
            return ops.gumbel_top_k(
                inputs,
                self.k,
                self.temperature,
                hard=self.hard or not training,
                axis=self.axis,
                mask=mask,
                seed=self.active_seed,
            )
        if inference == "argmax":
            return ops.top_k_hot(inputs, self.k, axis=self.axis, mask=mask)
        return ops.relaxed_top_k(
            inputs, self.k, self.temperature, axis=self.axis, mask=mask
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "k": self.k,
            "hard": self.hard,
            "axis": self.axis,
        }
