"""Temperature schedules from the Gumbel-Softmax and Concrete autoencoder papers.

Each schedule is a pure function of the step count (an optimizer iteration or
an epoch index) that returns a positive float32 temperature. They subclass
`keras.optimizers.schedules.LearningRateSchedule`, so they serialize through
`keras.saving` like Keras's own schedules, and any Keras schedule (for example
`keras.optimizers.schedules.CosineDecay` with `alpha > 0`) can drive
`keras_gumbel.TemperatureAnnealing` just as well.
"""

import math
import numbers

import keras
from keras import ops

from keras_gumbel import _checks
from keras_gumbel._typing import TensorLike

__all__ = [
    "ExponentialDecay",
    "GeometricDecay",
]


def _check_rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(_checks.invalid("rate", "a non-negative float", rate))
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(_checks.invalid("rate", "a non-negative finite float", rate))
    return float(rate)


@keras.saving.register_keras_serializable(package="keras_gumbel")
class ExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Stepwise exponential decay with a floor (Jang et al., 2017).

    The temperature at step `t` is

    ```
    tau(t) = max(minimum, initial * exp(-rate * every * floor(t / every)))
    ```

    so it stays constant for `every` steps, then drops to what `exp(-rate * t)`
    has reached, and never goes below `minimum`. Jang et al. anneal with
    `rate` in {1e-5, 1e-4}, `every` in {500, 1000} and `minimum=0.5`.

    Args:
        initial: Temperature at step 0, a positive float. Defaults to 1.0.
        rate: Decay rate per step, a non-negative float. Defaults to 3e-5.
        minimum: The floor, a positive float no larger than `initial`.
            Defaults to 0.5.
        every: Number of steps between two updates, a positive integer.
            Defaults to 1000.

    Example:

    >>> import keras_gumbel
    >>> schedule = keras_gumbel.schedules.ExponentialDecay(
    ...     initial=1.0, rate=1e-4, minimum=0.5, every=500
    ... )
    >>> round(float(schedule(499)), 6)
    1.0
    >>> round(float(schedule(500)), 6)  # exp(-0.05)
    0.951229
    >>> float(schedule(100_000))
    0.5

    Reference:
        - [Jang et al., 2017. Categorical Reparameterization with
          Gumbel-Softmax](https://arxiv.org/abs/1611.01144)
    """

    def __init__(
        self,
        initial: float = 1.0,
        rate: float = 3e-5,
        minimum: float = 0.5,
        every: int = 1000,
    ) -> None:
        self.initial = _checks.check_temperature(initial, "initial")
        self.rate = _check_rate(rate)
        self.minimum = _checks.check_temperature(minimum, "minimum")
        if self.minimum > self.initial:
            raise ValueError(
                "Invalid value received for argument `minimum`. Expected a "
                f"float no larger than `initial`={self.initial}. "
                f"Received: minimum={minimum!r}"
            )
        self.every = _checks.check_positive_int(every, "every")

    def __call__(self, step: TensorLike) -> TensorLike:
        step = ops.cast(step, "float32")
        updates = ops.floor(step / self.every)
        decayed = self.initial * ops.exp(-self.rate * self.every * updates)
        return ops.maximum(decayed, self.minimum)

    def get_config(self) -> dict:
        return {
            "initial": self.initial,
            "rate": self.rate,
            "minimum": self.minimum,
            "every": self.every,
        }


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GeometricDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Geometric interpolation from `start` to `end` (Abid et al., 2019).

    The temperature at step `t` is

    ```
    tau(t) = start * (end / start) ** (min(t, steps) / steps)
    ```

    that is, it falls by the same factor every step, from `start` at step 0 to
    `end` at step `steps`, and stays at `end` afterwards. Concrete autoencoders
    use `start=10`, `end=0.01` and `steps` = the number of training epochs.

    Args:
        start: Temperature at step 0, a positive float. Defaults to 10.0.
        end: Temperature at step `steps` and after, a positive float.
            Defaults to 0.01.
        steps: Number of steps from `start` to `end`, a positive integer.
            Required.

    Example:

    >>> import keras_gumbel
    >>> schedule = keras_gumbel.schedules.GeometricDecay(
    ...     start=10.0, end=0.01, steps=1000
    ... )
    >>> round(float(schedule(0)), 6)
    10.0
    >>> round(float(schedule(500)), 6)  # 10 * 0.001 ** 0.5
    0.316228
    >>> round(float(schedule(5000)), 6)
    0.01

    Reference:
        - [Abid et al., 2019. Concrete Autoencoders for Differentiable
          Feature Selection and Reconstruction](https://arxiv.org/abs/1901.09346)
    """

    # `steps` has no sensible default, but a keyword default keeps the
    # positional order (start, end, steps) of the paper's formula.
    def __init__(
        self, start: float = 10.0, end: float = 0.01, steps: int | None = None
    ) -> None:
        self.start = _checks.check_temperature(start, "start")
        self.end = _checks.check_temperature(end, "end")
        if steps is None:
            raise ValueError(
                "Invalid value received for argument `steps`. Expected a "
                "positive integer (the number of steps from `start` to `end`). "
                "Received: steps=None"
            )
        self.steps = _checks.check_positive_int(steps, "steps")

    def __call__(self, step: TensorLike) -> TensorLike:
        progress = ops.clip(ops.cast(step, "float32"), 0.0, self.steps) / self.steps
        ratio = ops.convert_to_tensor(self.end / self.start, "float32")
        return self.start * ops.power(ratio, progress)

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "steps": self.steps}
