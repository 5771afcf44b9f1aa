import math
import numbers
from typing import Any

import keras
import numpy as np

from keras_gumbel import _checks, ops
from keras_gumbel._typing import Shape, TensorLike
from keras_gumbel.layers._base import AnnealableLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class HardConcreteGate(AnnealableLayer):
    """Multiplies its input by learned Hard Concrete gates: L0 pruning.

    The layer of Louizos, Welling & Kingma (2018): it learns one log-odds
    `log_alpha` per gated unit (by default each feature of the last axis; with
    `axis` whole heads or channels) and returns `inputs * gate`. Units whose
    gate closes can be pruned from the network.

    In training (`training=True`) every call draws fresh Hard Concrete gates
    (`keras_gumbel.ops.hard_concrete`): a binary Concrete sample
    `s = sigmoid((log(u) - log(1 - u) + log_alpha) / temperature)` stretched to
    `(gamma, zeta) = limits` and clamped, `min(1, max(0, s * (zeta - gamma) +
    gamma))`. A gate is exactly 0 or exactly 1 with positive probability and
    differentiable in `log_alpha` in between. With `per_example=True` each
    example draws its own gates; with `per_example=False` one draw is shared by
    the whole batch, as the paper's code does by default (cheaper, noisier
    gradients).

    In inference (`training=False`) the gate is deterministic, the paper's
    test-time estimator (eq. 13):
    `min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))`, independent
    of the temperature. `inference_gates()` returns it, `open_gates()` says
    which gates are not 0 (the units to keep).

    In every training call the layer adds `l0_weight * expected_l0()` to its
    losses, where `expected_l0() = sum P(gate != 0)` (eq. 12) is the expected
    number of open gates, the differentiable L0 penalty. `l0_weight` is a
    scalar float32 non-trainable variable, `layer.l0_weight`, so it can be
    assigned (annealed) during training; at 0 the penalty is exactly 0. The
    temperature is the variable `layer.temperature`; the paper keeps it at 2/3.
    To see the expected and the inference count of open gates in the `fit`
    logs, pass `keras_gumbel.callbacks.OpenGatesLogger()` to `fit`.

    Gates are computed in float32 under mixed precision and the output has the
    layer's compute dtype and the input's shape. A Keras mask passes through
    unchanged, as with `keras.layers.Dropout`: the gates ignore it.

    Args:
        temperature: Temperature of the binary Concrete distribution, a
            positive float. Defaults to 2/3, the paper's value.
        limits: `(gamma, zeta)`, the interval the Concrete sample is stretched
            to before clamping to `[0, 1]`, finite with `gamma < 0 < 1 < zeta`.
            Defaults to `(-0.1, 1.1)`, the paper's value.
        l0_weight: Non-negative float, the initial weight of the expected L0
            penalty. Defaults to 0.0 (no penalty).
        axis: The input axes that get their own gates, an int or a tuple of
            ints other than the batch axis 0; the other axes share them.
            Defaults to -1: one gate per feature of the last axis. For
            attention heads `[batch, heads, time, dim]`, `axis=1` gates whole
            heads; for channels-last images `[batch, height, width,
            channels]`, `axis=-1` gates whole channels. `log_alpha` has the
            sizes of these axes, in increasing order of axis.
        per_example: If True (default), each example draws its own gates in
            training; if False, one draw per call is shared by the batch.
        droprate_init: Initial drop rate, in `(0, 1)`: `log_alpha` starts from
            a normal distribution with mean
            `log(1 - droprate_init) - log(droprate_init)` and standard
            deviation 0.01, as in the paper's code. Defaults to 0.5 (mean 0,
            where the inference gate is 0.5 and `P(gate != 0)` is about 0.83
            at the default temperature and limits).
        seed: Optional int in `[0, 2**31 - 1]`. Makes the initial `log_alpha`
            and the sequence of gates reproducible; every call still draws new
            gates.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: A floating-point tensor of rank >= 2 whose first axis is the
            batch.
        training: Python bool; whether to draw random gates (True) or apply
            the deterministic inference gates.
        mask: Optional mask, also propagated from an upstream layer. It does
            not change the output and is passed on unchanged.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> layer = keras_gumbel.HardConcreteGate(l0_weight=1e-2, seed=0)
    >>> x = np.ones((4, 3), dtype="float32")
    >>> gated = keras.ops.convert_to_numpy(layer(x, training=True))
    >>> bool(np.all((gated >= 0.0) & (gated <= 1.0)))  # random gates
    True
    >>> len(layer.losses)                              # the L0 penalty
    1
    >>> inference = keras.ops.convert_to_numpy(layer(x))
    >>> bool(np.all(inference == layer.inference_gates()))
    True
    >>> layer.open_gates().tolist()                    # units to keep
    [True, True, True]

    Reference:
        - [Louizos, Welling & Kingma, 2018. Learning Sparse Neural Networks
          through L0 Regularization](https://arxiv.org/abs/1712.01312),
          section 3 and eq. 9-13; initialisation from the authors' code,
          https://github.com/AMLab-Amsterdam/L0_regularization
    """

    learns_temperature = False
    annealable_variables = {
        **AnnealableLayer.annealable_variables,
        "l0_weight": "non-negative",
    }

    def __init__(
        self,
        temperature: float = 2 / 3,
        *,
        limits: tuple[float, float] = (-0.1, 1.1),
        l0_weight: float = 0.0,
        axis: int | tuple[int, ...] = -1,
        per_example: bool = True,
        droprate_init: float = 0.5,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(temperature, seed=seed, **kwargs)
        self.limits = _checks.check_limits(limits)
        self.initial_l0_weight = _checks.check_non_negative(l0_weight, "l0_weight")
        self.axis = _check_axes(axis)
        self.per_example = _checks.check_bool(per_example, "per_example")
        self.droprate_init = _check_droprate_init(droprate_init)
        self.supports_masking = True
        self.l0_weight = self.add_weight(
            name="l0_weight",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.initial_l0_weight),
            trainable=False,
            autocast=False,
        )

    def build(self, input_shape: Shape) -> None:
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(
                "Invalid input received by `HardConcreteGate`. Expected a tensor "
                "of rank >= 2 whose first axis is the batch. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        axes = sorted(_resolve_axes(self.axis, rank))
        sizes = [input_shape[axis] for axis in axes]
        if any(size is None for size in sizes):
            raise ValueError(
                "Invalid input received by `HardConcreteGate`. The sizes of the "
                f"gated axes {tuple(axes)} must be known. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        # The shape of the gates that broadcasts against the input: the gated
        # axes keep their size, the batch and the shared axes are 1.
        self._gate_shape = tuple(
            input_shape[i] if i in axes else 1 for i in range(rank)
        )
        mean = math.log(1 - self.droprate_init) - math.log(self.droprate_init)
        # Louizos et al.'s code draws `qz_loga` from N(log(1 - d) - log(d),
        # 1e-2): sigmoid(mean) = 1 - d, and the small spread breaks ties
        # between units without favouring any.
        self.log_alpha = self.add_weight(
            name="log_alpha",
            shape=tuple(sizes),
            initializer=keras.initializers.RandomNormal(
                mean=mean, stddev=1e-2, seed=self.seed
            ),
            trainable=True,
            dtype="float32",
            autocast=False,
        )

    # The mask is the input's (Keras's `compute_mask` passes it on); the gates
    # ignore it, as `Dropout` does.
    def _outputs(self, inputs, training, mask):
        if not keras.backend.is_float_dtype(inputs.dtype):
            raise TypeError(
                "Invalid dtype received for argument `inputs`. Expected a "
                "floating-point tensor. Received: "
                f"inputs.dtype={keras.backend.standardize_dtype(inputs.dtype)}"
            )
        if training:
            self.add_loss(self.l0_weight * self.expected_l0())
            gates = self._sampled_gates(keras.ops.shape(inputs)[0])
        else:
            gates = keras.ops.reshape(self._inference_gates(), self._gate_shape)
        return inputs * keras.ops.cast(gates, inputs.dtype)

    def _sampled_gates(self, batch_size):
        log_alpha = keras.ops.reshape(self.log_alpha, self._gate_shape)
        if self.per_example:
            log_alpha = keras.ops.broadcast_to(
                log_alpha, (batch_size, *self._gate_shape[1:])
            )
        return ops.hard_concrete(
            log_alpha, self.temperature, limits=self.limits, seed=self.active_seed
        )

    def _inference_gates(self):
        gamma, zeta = self.limits
        stretched = keras.ops.sigmoid(self.log_alpha) * (zeta - gamma) + gamma
        return keras.ops.clip(stretched, 0.0, 1.0)

    def expected_l0(self) -> TensorLike:
        """The expected number of open gates, `sum P(gate != 0)` (eq. 12).

        A differentiable float32 scalar tensor at the current temperature: the
        penalty the layer adds, times `l0_weight`, to its losses in training.
        """
        self._check_built("expected_l0")
        return keras.ops.sum(
            ops.hard_concrete_l0(self.log_alpha, self.temperature, limits=self.limits)
        )

    def gate_probabilities(self) -> np.ndarray:
        """`P(gate != 0)` of each training gate, a float32 NumPy array.

        `sigmoid(log_alpha - temperature * log(-gamma / zeta))` (eq. 12), of the
        shape of `log_alpha`; it sums to `expected_l0()`.
        """
        self._check_built("gate_probabilities")
        return keras.ops.convert_to_numpy(
            ops.hard_concrete_l0(self.log_alpha, self.temperature, limits=self.limits)
        )

    def inference_gates(self) -> np.ndarray:
        """The deterministic gates of inference, a float32 NumPy array.

        `min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))` (eq. 13),
        of the shape of `log_alpha`. A pruned network keeps the units where it
        is not 0 and scales them by it (fold it into the next layer's weights).
        """
        self._check_built("inference_gates")
        return keras.ops.convert_to_numpy(self._inference_gates())

    def open_gates(self) -> np.ndarray:
        """Which gates are not 0 in inference: the units to keep, a bool array.

        Of the shape of `log_alpha`; True where `inference_gates() > 0`, that
        is where `log_alpha > log(-gamma / zeta)` (with the default limits,
        `log(1 / 11)`, about -2.40).
        """
        return self.inference_gates() > 0

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"HardConcreteGate has no gates yet: call it on an input first "
                f"(or build it) before `{method}()`, so that it knows how many "
                "units it gates."
            )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "limits": self.limits,
            "l0_weight": self.initial_l0_weight,
            "axis": self.axis,
            "per_example": self.per_example,
            "droprate_init": self.droprate_init,
        }


def _check_droprate_init(droprate_init):
    expected = "a float strictly between 0 and 1"
    if not _checks.is_real(droprate_init):
        raise TypeError(_checks.invalid("droprate_init", expected, droprate_init))
    if not 0 < droprate_init < 1:
        raise ValueError(_checks.invalid("droprate_init", expected, droprate_init))
    return float(droprate_init)


def _check_axes(axis):
    expected = "an integer or a non-empty tuple of distinct integers"
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return int(axis)
    if (
        not isinstance(axis, (tuple, list))
        or not axis
        or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis
        )
    ):
        raise TypeError(_checks.invalid("axis", expected, axis))
    if len(set(axis)) != len(axis):
        raise ValueError(_checks.invalid("axis", expected, axis))
    return tuple(int(a) for a in axis)


def _resolve_axes(axis, rank):
    axes = (axis,) if isinstance(axis, int) else axis
    resolved = []
    for value in axes:
        if not -rank <= value < rank or value % rank == 0:
            raise ValueError(
                _checks.invalid(
                    "axis",
                    f"axes in [1, {rank - 1}] or [{-rank + 1}, -1] for a rank-{rank} "
                    "input (axis 0 is the batch, which cannot be gated)",
                    axis,
                )
            )
        resolved.append(value % rank)
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            _checks.invalid("axis", f"distinct axes of a rank-{rank} input", axis)
        )
    return resolved
