from typing import Any

import keras
import numpy as np

from keras_gumbel import _checks, _numerics, ops
from keras_gumbel._typing import Shape, TensorLike
from keras_gumbel.layers._base import AnnealableLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class ConcreteSelect(AnnealableLayer):
    """Learns which `units` input features to keep (the concrete selector).

    The selector layer of a concrete autoencoder (Abid et al. 2019). It owns a
    trainable `logits` weight of shape `[units, features]`: row `i` is the
    categorical distribution of selector `i` over the input features. In
    training (`training=True`) each selector draws a relaxed one-hot sample
    `softmax((logits_i + g_i) / temperature)` (Gumbel-Softmax, one noise draw per
    batch, as in the paper) and outputs the features mixed by it,
    `inputs @ sample^T`. In inference (`training=False`) selector `i` picks its
    most likely feature `argmax(logits_i)` and the layer gathers those features
    exactly, so `outputs[:, i] == inputs[:, selected_indices()[i]]`.

    The temperature is a scalar float32 variable, `layer.temperature`. Abid et
    al. anneal it geometrically from 10 to 0.01 over training,
    `T(t) = T0 (TB / T0)^(t / T)`; `keras_gumbel.TemperatureAnnealing` with
    `keras_gumbel.schedules.GeometricDecay` does that during `fit`.

    Two selectors can settle on the same feature, wasting a slot (Strypsteen &
    Bertrand 2021 report it for the original method). Two options counter it:

    - `unique=True` makes the selectors choose without replacement. In training,
      selector `i` draws its relaxed sample among the features that the hard
      (Gumbel-Max) samples of selectors `0..i-1` left free, so a feature taken
      by an earlier selector gives a later one no gradient, and each selector
      learns a different feature. In inference, selector `i` takes its most
      likely feature among those selectors `0..i-1` left free, so
      `selected_indices()` never repeats a feature.
    - `duplicate_penalty` adds `duplicate_penalty * overlap()` to the layer's
      losses, where `overlap() = sum_j max(0, sum_i p_ij - 1)` and
      `p_i = softmax(logits_i)`: the selection probability of a feature summed
      over selectors, beyond 1 (the regulariser of Strypsteen & Bertrand 2021
      with its threshold at the final value 1). It is zero when the selectors
      are sure of distinct features, so it does not bias a duplicate-free
      solution; it lowers overlap but, unlike `unique=True`, does not rule
      duplicates out.

    Args:
        units: Number of features to select, a positive integer.
        temperature: Initial temperature, a positive float. Defaults to 10.0,
            the starting temperature of Abid et al.
        duplicate_penalty: Non-negative float, the weight of the penalty on
            overlapping selection probabilities. Defaults to 0.0 (off).
        unique: If True, the selectors choose distinct features, in training
            and inference (requires `units <= features`). Defaults to False.
        seed: Optional int in `[0, 2**31 - 1]`. Makes the sequence of samples
            reproducible.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: A rank-2 tensor `[batch, features]`.
        training: Python bool; whether to mix features by relaxed samples
            (True) or gather the selected features (False).

    Example:

    >>> import numpy as np
    >>> import keras_gumbel
    >>> layer = keras_gumbel.ConcreteSelect(2, seed=0)
    >>> x = np.arange(10, dtype="float32").reshape(2, 5)
    >>> tuple(layer(x, training=True).shape)  # relaxed mixtures of features
    (2, 2)
    >>> indices = layer.selected_indices()
    >>> bool(np.all(np.asarray(layer(x)) == x[:, indices]))
    True

    Reference:
        - [Abid, Balin & Zou, 2019. Concrete Autoencoders: Differentiable
          Feature Selection and Reconstruction](https://arxiv.org/abs/1901.09346)
        - [Strypsteen & Bertrand, 2021. End-to-end learnable EEG channel
          selection for deep neural networks with Gumbel-softmax](
          https://arxiv.org/abs/2102.09050)
    """

    learns_temperature = False

    def __init__(
        self,
        units: int,
        temperature: float = 10.0,
        *,
        duplicate_penalty: float = 0.0,
        unique: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(temperature, seed=seed, **kwargs)
        self.units = _checks.check_positive_int(units, "units")
        if isinstance(duplicate_penalty, bool) or not isinstance(
            duplicate_penalty, (int, float)
        ):
            raise TypeError(
                "Invalid value received for argument `duplicate_penalty`. "
                "Expected a non-negative float. "
                f"Received: duplicate_penalty={duplicate_penalty!r}"
            )
        if not np.isfinite(duplicate_penalty) or duplicate_penalty < 0:
            raise ValueError(
                "Invalid value received for argument `duplicate_penalty`. "
                "Expected a non-negative float. "
                f"Received: duplicate_penalty={duplicate_penalty!r}"
            )
        if not isinstance(unique, bool):
            raise TypeError(
                "Invalid value received for argument `unique`. Expected a bool. "
                f"Received: unique={unique!r}"
            )
        self.duplicate_penalty = float(duplicate_penalty)
        self.unique = unique

    def build(self, input_shape: Shape) -> None:
        _check_rank(input_shape)
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "Invalid input received by `ConcreteSelect`. The number of "
                "features (last axis) must be known. "
                f"Received: input_shape={input_shape}"
            )
        if self.unique and self.units > features:
            raise ValueError(
                "Invalid value received for argument `units`. With unique=True, "
                f"expected an integer in [1, {features}] (the number of input "
                f"features). Received: units={self.units}"
            )
        # Abid et al.'s code initialises the selector logits with Glorot normal:
        # small, random values, so every selector starts near uniform and the
        # selectors differ from the first step.
        self.logits = self.add_weight(
            name="logits",
            shape=(self.units, features),
            initializer=keras.initializers.GlorotNormal(seed=self.seed),
            trainable=True,
            autocast=False,
        )

    # No `mask` argument, unlike the base class: the inputs are features, not
    # categories, and Keras passes a mask only to a `call` that names one.
    def call(  # type: ignore[override]
        self, inputs: TensorLike, training: bool | None = None
    ) -> TensorLike:
        _check_rank(inputs.shape)
        if self.duplicate_penalty > 0:
            self.add_loss(self.duplicate_penalty * self.overlap())
        if training:
            sample = self._relaxed_selection()
            return keras.ops.matmul(
                inputs, keras.ops.transpose(keras.ops.cast(sample, inputs.dtype))
            )
        return keras.ops.take(inputs, self._indices(), axis=1)

    def overlap(self) -> TensorLike:
        """Selection probability beyond 1 per feature, summed over features.

        `sum_j max(0, sum_i p_ij - 1)` with `p_i = softmax(logits_i)`: 0 when the
        selectors are sure of distinct features, `m - 1` for a feature that `m`
        selectors are sure of. The layer adds `duplicate_penalty` times this to
        its losses.
        """
        probs = keras.ops.softmax(self.logits, axis=-1)
        return keras.ops.sum(keras.ops.relu(keras.ops.sum(probs, axis=0) - 1.0))

    def _relaxed_selection(self):
        if not self.unique:
            return ops.gumbel_softmax(
                self.logits, self.temperature, seed=self.active_seed
            )
        temperature = keras.ops.cast(self.temperature, self.logits.dtype)
        noise = ops.sample_gumbel(
            self.logits.shape, self.logits.dtype, seed=self.active_seed
        )
        # Selector i draws among the features the hard samples of selectors
        # 0..i-1 left free: Gumbel-Max sampling without replacement across
        # selectors, so a taken feature gives a later selector no gradient.
        free = keras.ops.ones((self.logits.shape[-1],), dtype="bool")
        rows = []
        for i in range(self.units):
            scores = _numerics.masked_scores(self.logits[i], noise[i], free)
            rows.append(_numerics.scaled_softmax(scores, temperature))
            free = free & ~keras.ops.cast(_numerics.one_hot_max(scores), "bool")
        return keras.ops.stack(rows)

    def _indices(self):
        if not self.unique:
            return keras.ops.argmax(self.logits, axis=-1)
        free = keras.ops.ones((self.logits.shape[-1],), dtype="bool")
        indices = []
        for i in range(self.units):
            scores = _numerics.masked_scores(self.logits[i], None, free)
            indices.append(keras.ops.argmax(scores))
            free = free & ~keras.ops.cast(_numerics.one_hot_max(scores), "bool")
        return keras.ops.stack(indices)

    def selected_indices(self) -> np.ndarray:
        """The feature index each selector picks in inference, shape `[units]`.

        Returns:
            An int64 NumPy array: `argmax` of each selector's logits, or with
            `unique=True` the distinct greedy assignment.
        """
        if not self.built:
            raise ValueError(
                "ConcreteSelect has no selection yet: call it on an input first "
                "(or build it) so that it knows the number of features."
            )
        return keras.ops.convert_to_numpy(self._indices()).astype("int64")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "duplicate_penalty": self.duplicate_penalty,
            "unique": self.unique,
        }


def _check_rank(shape):
    if len(shape) != 2:
        raise ValueError(
            "Invalid input received by `ConcreteSelect`. Expected a rank-2 tensor "
            f"[batch, features]. Received: inputs.shape={tuple(shape)}"
        )
