from typing import Any

import keras
import numpy as np

from keras_gumbel import _checks, _numerics, estimators, ops
from keras_gumbel._typing import Shape, TensorLike
from keras_gumbel.layers._base import EstimatorLayer


@keras.saving.register_keras_serializable(package="keras_gumbel")
class GumbelQuantizer(EstimatorLayer):
    """Quantizes features to codes of a learned codebook with Gumbel-Softmax.

    The codebook layer of discrete VAEs and tokenizers (DALL-E's dVAE, VQGAN's
    `GumbelQuantize`, wav2vec 2.0's `GumbelVectorQuantizer`). For input
    features `x` of shape `[..., features]` it computes code logits with a
    learned projection, `logits = x W + b`, of shape `[..., groups, num_codes]`,
    draws per group a Gumbel-Softmax sample `y` over the codes, and returns the
    sampled mixture of that group's codebook vectors, `sum_c y_c e[group, c]`,
    the groups concatenated: `[..., groups * code_dim]`.

    In training (`training=True`) the sample is relaxed (`hard=False`) or an
    exact one-hot code with the estimator's surrogate gradient (`hard=True`,
    any estimator of `keras_gumbel.ESTIMATORS`), so the output is one
    codebook vector per group. In inference (`training=False`):
    `inference="argmax"` returns `decode(encode(x))`, the vectors of the most
    likely codes (deterministic); `"softmax"` the mixture with weights
    `softmax(logits / temperature)`; `"sample"` the vectors of exact sampled
    codes.

    `encode(x)` returns the int32 codes `argmax(logits)`, `[..., groups]`: the
    tokens. `decode(codes)` returns their codebook vectors,
    `[..., groups * code_dim]`. Both work eagerly and inside traced
    functions, so a tokenizer and a detokenizer export as SavedModel
    endpoints (see the Codebooks guide).

    In every training call the layer adds `kl_weight * KL(q || uniform)` to
    its losses: the KL divergence of `q = softmax(logits)` from the uniform
    distribution over the codes, summed over the groups and averaged over the
    positions (every axis but the last; masked positions excluded). It also
    stores two perplexities of the batch, summed over the groups as fairseq
    does (at most `groups * num_codes`): `code_perplexity`, of the codes that
    `encode` gives, and `prob_perplexity`, of the average `q` (wav2vec 2.0's
    diversity measure). `keras_gumbel.callbacks.CodebookLogger` writes them
    into the `fit` logs.

    `temperature` and `kl_weight` are scalar float32 non-trainable variables,
    both annealable: `keras_gumbel.Annealing(schedule, variable="kl_weight")`
    raises the weight from 0 over training as DALL-E does. The projection and
    the codebook are float32 variables; under mixed precision the sampling
    runs in float32 and the output has the layer's compute dtype. A Keras
    mask over the positions passes through.

    Args:
        num_codes: Codebook size per group, an int >= 2.
        code_dim: Size of each codebook vector, an int >= 1.
        groups: Number of independent codebooks (and codes per position), an
            int >= 1. Defaults to 1.
        temperature: Initial temperature, a positive float. Defaults to 1.0.
        hard: If True, training samples are exact one-hot codes with the
            estimator's gradient. Defaults to False.
        estimator: A name in `keras_gumbel.ESTIMATORS`, an estimator object, or
            None: `"straight_through"` when `hard`, else `"gumbel_softmax"`.
        kl_weight: Non-negative float, the initial weight of the KL term.
            Defaults to 0.0 (no KL term).
        inference: `"argmax"` (default), `"softmax"` or `"sample"`.
        seed: Optional int in `[0, 2**31 - 1]`: makes the initial weights and
            the sequence of samples reproducible.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: A floating-point tensor `[..., features]` of rank >= 2.
        training: Python bool; whether to draw samples.
        mask: Optional boolean mask over the positions, of the inputs' shape
            without the last axis, also propagated from an upstream layer.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> import keras_gumbel
    >>> quantizer = keras_gumbel.GumbelQuantizer(
    ...     num_codes=8, code_dim=4, groups=2, kl_weight=1e-2, seed=0
    ... )
    >>> x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    >>> tuple(quantizer(x, training=True).shape)    # 2 groups x 4 dims
    (3, 8)
    >>> codes = keras.ops.convert_to_numpy(quantizer.encode(x))
    >>> codes.shape, codes.dtype.name                # one code per group
    ((3, 2), 'int32')
    >>> decoded = keras.ops.convert_to_numpy(quantizer.decode(codes))
    >>> bool(np.all(decoded == keras.ops.convert_to_numpy(quantizer(x))))
    True

    Reference:
        - [Ramesh et al., 2021. Zero-Shot Text-to-Image Generation](
          https://arxiv.org/abs/2102.12092), section 2.1 (the dVAE)
        - [Baevski et al., 2020. wav2vec 2.0](https://arxiv.org/abs/2006.11477),
          section 2 and eq. 4 (Gumbel-Softmax quantization, diversity loss)
        - [Jang et al., 2017. Categorical Reparameterization with
          Gumbel-Softmax](https://arxiv.org/abs/1611.01144)
    """

    inference_modes = ("argmax", "softmax", "sample")
    # The features are cast to float32 here, and the output to the compute
    # dtype by the base class.
    autocast_inputs = False
    annealable_variables = {
        **EstimatorLayer.annealable_variables,
        "kl_weight": "non-negative",
    }

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        *,
        groups: int = 1,
        temperature: float = 1.0,
        hard: bool = False,
        estimator: estimators.EstimatorLike = None,
        kl_weight: float = 0.0,
        inference: str = "argmax",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            temperature,
            hard=hard,
            estimator=estimator,
            seed=seed,
            inference=inference,
            **kwargs,
        )
        self.num_codes = _checks.check_count(num_codes, "num_codes", 2)
        self.code_dim = _checks.check_count(code_dim, "code_dim", 1)
        self.groups = _checks.check_count(groups, "groups", 1)
        self.initial_kl_weight = _checks.check_non_negative(kl_weight, "kl_weight")
        self.supports_masking = True
        self.kl_weight = self._scalar("kl_weight", self.initial_kl_weight)
        self.code_perplexity = self._scalar("code_perplexity", 0.0)
        self.prob_perplexity = self._scalar("prob_perplexity", 0.0)

    def _scalar(self, name, value):
        return self.add_weight(
            name=name,
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(value),
            trainable=False,
            autocast=False,
        )

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "Invalid input received by `GumbelQuantizer`. Expected a tensor "
                "of rank >= 2 whose last axis (the features) has a known size. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        features = input_shape[-1]
        seed = self.seed
        self.kernel = self.add_weight(
            name="kernel",
            shape=(features, self.groups * self.num_codes),
            initializer=keras.initializers.GlorotUniform(seed=seed),
            dtype="float32",
            autocast=False,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.groups * self.num_codes,),
            initializer="zeros",
            dtype="float32",
            autocast=False,
        )
        # Unit-variance codes: the mixture's scale does not depend on
        # num_codes, as with an embedding table.
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.groups, self.num_codes, self.code_dim),
            initializer=keras.initializers.RandomNormal(
                stddev=1.0, seed=None if seed is None else seed + 1
            ),
            dtype="float32",
            autocast=False,
        )

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.groups * self.code_dim)

    def logits(self, inputs: TensorLike) -> TensorLike:
        """The float32 code logits of `inputs`, `[..., groups, num_codes]`."""
        self._check_built("logits")
        inputs = keras.ops.convert_to_tensor(inputs)
        if not keras.backend.is_float_dtype(inputs.dtype):
            raise TypeError(
                "Invalid dtype received for argument `inputs`. Expected a "
                "floating-point tensor. Received: "
                f"inputs.dtype={keras.backend.standardize_dtype(inputs.dtype)}"
            )
        flat = keras.ops.matmul(keras.ops.cast(inputs, "float32"), self.kernel)
        flat = flat + self.bias
        return keras.ops.reshape(
            flat, (*keras.ops.shape(flat)[:-1], self.groups, self.num_codes)
        )

    def encode(self, inputs: TensorLike) -> TensorLike:
        """The most likely code of each group, int32 `[..., groups]`."""
        # The package's argmax: TensorFlow's own op, which TFLite converts
        # (Keras's masks the sign bit with an op TFLite lacks).
        return keras.ops.cast(_numerics.argmax(self.logits(inputs)), "int32")

    def decode(self, codes: TensorLike) -> TensorLike:
        """The codebook vectors of int `codes` `[..., groups]`, concatenated:
        `[..., groups * code_dim]`, float32."""
        self._check_built("decode")
        codes = keras.ops.convert_to_tensor(codes)
        if "int" not in keras.backend.standardize_dtype(codes.dtype):
            raise TypeError(
                "Invalid dtype received for argument `codes`. Expected integer "
                "codes. Received: "
                f"codes.dtype={keras.backend.standardize_dtype(codes.dtype)}"
            )
        if codes.shape[-1] is not None and codes.shape[-1] != self.groups:
            raise ValueError(
                "Invalid shape received for argument `codes`. Expected one code "
                f"per group, a last axis of size {self.groups}. Received: "
                f"codes.shape={tuple(codes.shape)}"
            )
        # Each group indexes its own table: offset the codes into the
        # flattened [groups * num_codes, code_dim] codebook.
        offsets = keras.ops.arange(self.groups, dtype="int32") * self.num_codes
        flat = keras.ops.reshape(
            self.codebook, (self.groups * self.num_codes, self.code_dim)
        )
        vectors = keras.ops.take(flat, keras.ops.cast(codes, "int32") + offsets, axis=0)
        return keras.ops.reshape(
            vectors, (*keras.ops.shape(codes)[:-1], self.groups * self.code_dim)
        )

    def _mix(self, weights):
        # One batched matmul per group over all positions: TensorFlow runs the
        # equivalent einsum "...gc,gcd->...gd" about 100 times slower on CPU.
        positions = keras.ops.shape(weights)[:-2]
        flat = keras.ops.reshape(weights, (-1, self.groups, self.num_codes))
        mixed = keras.ops.matmul(keras.ops.transpose(flat, (1, 0, 2)), self.codebook)
        return keras.ops.reshape(
            keras.ops.transpose(mixed, (1, 0, 2)),
            (*positions, self.groups * self.code_dim),
        )

    def _outputs(self, inputs, training, mask):
        logits = self.logits(inputs)
        if training:
            self._track(logits, mask)
            sample = ops.gumbel_softmax(
                logits,
                self.temperature,
                hard=self.hard,
                estimator=self.estimator,
                seed=self.active_seed,
            )
            return self._mix(sample)
        inference = self.active_inference
        if inference == "argmax":
            codes = keras.ops.cast(_numerics.argmax(logits), "int32")
            return self.decode(codes)
        if inference == "softmax":
            return self._mix(ops.tempered_softmax(logits, self.temperature))
        return self._mix(
            ops.gumbel_softmax(
                logits, self.temperature, hard=True, seed=self.active_seed
            )
        )

    def _track(self, logits, mask):
        """Adds the KL term and stores the batch's perplexities."""
        weights = _position_weights(logits, mask)
        count = keras.ops.maximum(keras.ops.sum(weights), 1.0)
        kl = keras.ops.sum(ops.categorical_kl_uniform(logits), axis=-1)
        self.add_loss(self.kl_weight * keras.ops.sum(kl * weights[..., 0]) / count)
        # Perplexities carry no gradient: they are measurements.
        logits = keras.ops.stop_gradient(logits)
        flat_weights = keras.ops.reshape(weights, (-1, 1, 1))
        flat = keras.ops.reshape(logits, (-1, self.groups, self.num_codes))
        probabilities = keras.ops.softmax(flat, axis=-1)
        codes = keras.ops.one_hot(_numerics.argmax(flat), self.num_codes)
        self.code_perplexity.assign(
            _perplexity(keras.ops.sum(codes * flat_weights, axis=0) / count)
        )
        self.prob_perplexity.assign(
            _perplexity(keras.ops.sum(probabilities * flat_weights, axis=0) / count)
        )

    def code_usage(self, inputs: TensorLike) -> np.ndarray:
        """How often `encode(inputs)` picks each code, an int64 NumPy array
        `[groups, num_codes]` (0 marks a dead code)."""
        codes = keras.ops.convert_to_numpy(self.encode(inputs)).reshape(-1, self.groups)
        return np.stack(
            [
                np.bincount(codes[:, g], minlength=self.num_codes)
                for g in range(self.groups)
            ]
        )

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"GumbelQuantizer has no codebook yet: call it on an input first "
                f"(or build it) before `{method}()`, so that it knows the size of "
                "the features it projects."
            )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_codes": self.num_codes,
            "code_dim": self.code_dim,
            "groups": self.groups,
            "kl_weight": self.initial_kl_weight,
        }


def _position_weights(logits, mask):
    """1.0 for each position that counts, `[..., 1]` beside the groups axis."""
    positions = keras.ops.shape(logits)[:-2]
    if mask is None:
        return keras.ops.ones((*positions, 1), dtype="float32")
    mask = keras.ops.cast(keras.ops.convert_to_tensor(mask), "float32")
    return keras.ops.broadcast_to(keras.ops.expand_dims(mask, -1), (*positions, 1))


def _perplexity(distribution):
    """`sum_g exp(H(p_g))` for a `[groups, num_codes]` distribution; empty
    codes contribute 0 to the entropy."""
    safe = keras.ops.where(
        distribution > 0, distribution, keras.ops.ones_like(distribution)
    )
    entropy = -keras.ops.sum(distribution * keras.ops.log(safe), axis=-1)
    return keras.ops.sum(keras.ops.exp(entropy))
