"""Shared test helpers: every layer test calls these rather than re-inventing them.

`run_layer_test` checks what every layer of the package promises (saving,
symbolic, eager and compiled calls, training, mixed precision, masking); the
other helpers are the references and assertions the test files share.
"""

import json
import tempfile

import keras
import numpy as np
import pytest

# The "float64" and "int64" dtype parameters: JAX makes 32-bit arrays when asked
# for 64-bit ones unless x64 is enabled, so on JAX these cases run with
# `jax.enable_x64(True)` for the duration of the test (tests/conftest.py); the
# `jax_x64` mark does nothing on the other backends.
FLOAT64 = pytest.param("float64", marks=pytest.mark.jax_x64)
INT64 = pytest.param("int64", marks=pytest.mark.jax_x64)

# `jit_compile=True` means XLA on TensorFlow and JAX, but torch.compile on
# PyTorch, which Keras does not use by default (`fit` runs eagerly there) and
# which takes minutes to compile even a small model on a CPU.
CAN_JIT_COMPILE = keras.backend.backend() != "torch"
JIT_COMPILE = pytest.param(
    True,
    marks=pytest.mark.skipif(
        not CAN_JIT_COMPILE,
        reason="jit_compile=True is torch.compile on PyTorch: minutes of "
        "compilation per model on CPU; fit runs eagerly there by default",
    ),
)

# Random examples per Hypothesis property test. Outside `jax.jit` JAX compiles
# every primitive again for each new shape, which makes each example slow, so
# JAX draws half as many; the tests' explicit examples run on every backend.
PROPERTY_EXAMPLES = 15 if keras.backend.backend() == "jax" else 30


def backend():
    return keras.backend.backend()


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def softmax(logits, axis=-1):
    """Softmax in float64 NumPy: the reference the library is checked against."""
    logits = np.asarray(logits, dtype="float64")
    exp = np.exp(logits - np.max(logits, axis=axis, keepdims=True))
    return exp / np.sum(exp, axis=axis, keepdims=True)


def assert_error(error_type, function, name, shown):
    """`function()` raises `error_type` naming `name` and showing `shown`."""
    with pytest.raises(error_type) as info:
        function()
    message = str(info.value)
    assert f"`{name}`" in message, message
    assert shown in message, message


def assert_config_round_trip(layer):
    """`from_config(get_config())` rebuilds an identical config, and the config is
    exactly the constructor arguments plus the base layer's."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    return clone


def _as_json(config):
    return json.loads(json.dumps(config))


def assert_model_save_load(model, x, path, *, same_inference_output=True):
    """Saves `model` to a `.keras` file and loads it back; checks config, every
    variable (temperature included) and, by default, inference outputs."""
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Compared as JSON, the form they are saved in: a reloaded functional model
    # reports its layers' build shapes as lists where the original has tuples.
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())
    for original, restored in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(original), to_numpy(restored))
    if same_inference_output:
        np.testing.assert_array_equal(
            to_numpy(model(x, training=False)), to_numpy(loaded(x, training=False))
        )
    return loaded


def assert_mixed_precision(make_layer, x, policy):
    """Under `policy` the layer computes, keeps the compute dtype, stays finite."""
    keras.config.set_dtype_policy(policy)
    try:
        layer = make_layer()
        for training in (True, False):
            y = layer(x, training=training)
            assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype
            assert np.all(np.isfinite(to_numpy(y).astype("float32")))
        assert keras.backend.standardize_dtype(layer.temperature.dtype) == "float32"
    finally:
        keras.config.set_dtype_policy("float32")
    return layer


def run_layer_test(
    layer_class,
    init_kwargs,
    input_data,
    *,
    expected_output_shape=None,
    supports_masking=False,
    mask=None,
    mask_passes_through=False,
    tmp_path=None,
):
    """Checks what every layer of the package promises, on the current backend.

    `layer_class(**init_kwargs)` is called on the float32 `input_data`, whose
    first axis is the batch. Checked: the config and `.keras` round trips; the
    symbolic call and `compute_output_shape` give `expected_output_shape`
    (default: the input's shape); eager calls in training and inference give
    finite outputs of that shape in the compute dtype, and compiled inference
    (`predict`, also with XLA where `CAN_JIT_COMPILE`) gives the eager values;
    one `fit` step gives a finite loss and trains every trainable weight; the
    layer runs under "mixed_float16" and "mixed_bfloat16"; and, when
    `supports_masking`, categories where `mask` (default: a random mask of the
    input's shape) is False come out exactly 0. A layer that, like `Dropout`,
    leaves masked entries to the layers after it says `mask_passes_through`:
    then its outputs do not depend on `mask` (default: a random mask of the
    input's shape without the last axis) and `compute_mask` returns it as is.
    """
    x = np.asarray(input_data, dtype="float32")
    expected_output_shape = tuple(expected_output_shape or x.shape)

    def make_layer():
        return layer_class(**init_kwargs)

    assert_config_round_trip(make_layer())
    with tempfile.TemporaryDirectory() as directory:
        path = f"{tmp_path or directory}/{layer_class.__name__}.keras"
        _check_save_load(make_layer(), x, path)
    _check_symbolic_call(make_layer(), x, expected_output_shape)
    _check_eager_calls(make_layer(), x, expected_output_shape)
    _check_compiled_call(make_layer(), x)
    _check_training_step(make_layer(), x)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        _check_mixed_precision(make_layer, x, policy)
    assert make_layer().supports_masking == supports_masking
    if supports_masking and mask_passes_through:
        _check_mask_passes_through(make_layer(), x, mask)
    elif supports_masking:
        _check_masking(make_layer(), x, mask)


def _model_around(layer, x):
    """Dense -> layer: a small model in which the layer's input can learn."""
    inputs = keras.Input(x.shape[1:])
    # No bias: along a category axis other than the last, a bias of the last
    # axis shifts all categories equally, which a softmax ignores.
    dense = keras.layers.Dense(
        x.shape[-1],
        use_bias=False,
        kernel_initializer=keras.initializers.GlorotUniform(seed=0),
    )
    return keras.Model(inputs, layer(dense(inputs)))


def _check_save_load(layer, x, path):
    model = _model_around(layer, x)
    # Annealing assigns the temperature during training: the file must keep
    # that value, not the constructor's.
    layer.temperature.assign(2 * layer.initial_temperature)
    assert_model_save_load(model, x, path)


def _check_symbolic_call(layer, x, expected_shape):
    outputs = layer(keras.Input(x.shape[1:]))
    assert tuple(outputs.shape) == (None, *expected_shape[1:])
    assert keras.backend.standardize_dtype(outputs.dtype) == layer.compute_dtype
    assert tuple(layer.compute_output_shape(x.shape)) == expected_shape


def _check_eager_calls(layer, x, expected_shape):
    for training in (True, False):
        y = layer(x, training=training)
        assert tuple(y.shape) == expected_shape
        assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype
        assert np.all(np.isfinite(to_numpy(y)))


def _check_compiled_call(layer, x):
    sampling = getattr(layer, "inference", None) == "sample"
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    for jit_compile in (False, True) if CAN_JIT_COMPILE else (False,):
        model.compile(jit_compile=jit_compile)
        # The same generator state on both sides (a copy: on PyTorch the NumPy
        # view shares memory), so a layer that samples in inference draws the
        # same noise eagerly and compiled.
        state = to_numpy(layer.seed_generator.state).copy()
        eager = to_numpy(model(x, training=False))
        layer.seed_generator.state.assign(state)
        compiled = model.predict(x, batch_size=len(x), verbose=0)
        assert compiled.shape == eager.shape and np.all(np.isfinite(compiled))
        # TensorFlow's stateless random ops pick another algorithm under XLA
        # (Keras leaves `alg` at "auto_select"), so the same state gives other
        # noise there.
        if sampling and jit_compile and backend() == "tensorflow":
            continue
        # XLA fuses and reorders float32 arithmetic: a few ulps apart.
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def _check_training_step(layer, x):
    model = _model_around(layer, x)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    y = np.random.default_rng(0).random((len(x), *model.output_shape[1:]))
    # Copies: on PyTorch the NumPy view shares memory with the variable.
    before = [to_numpy(weight).copy() for weight in model.trainable_weights]
    loss = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss[0])
    for weight, value in zip(model.trainable_weights, before, strict=True):
        assert not np.array_equal(to_numpy(weight), value), weight.path


def _check_mixed_precision(make_layer, x, policy):
    layer = assert_mixed_precision(make_layer, x, policy)
    # Mixed policies compute in half precision but keep float32 variables.
    for weight in layer.weights:
        assert keras.backend.standardize_dtype(weight.dtype) == "float32"


def _check_masking(layer, x, mask):
    if mask is None:
        mask = np.random.default_rng(0).random(x.shape) < 0.6
    for training in (True, False):
        y = to_numpy(layer(x, training=training, mask=mask))
        assert np.all(y[~mask] == 0.0)


def _check_mask_passes_through(layer, x, mask):
    if mask is None:
        mask = np.random.default_rng(0).random(x.shape[:-1]) < 0.6
    layer(x)  # builds it
    for training in (True, False):
        # The same generator state for both calls, so a training call draws
        # the same noise with and without the mask (a copy: on PyTorch the
        # NumPy view shares memory).
        state = to_numpy(layer.seed_generator.state).copy()
        masked = to_numpy(layer(x, training=training, mask=mask))
        layer.seed_generator.state.assign(state)
        np.testing.assert_array_equal(masked, to_numpy(layer(x, training=training)))
    np.testing.assert_array_equal(to_numpy(layer.compute_mask(x, mask)), mask)


def gradient(function, x, compile=True):
    """Gradient of `sum(function(x))`-style scalar `function` w.r.t. `x`, on any
    backend. `function` maps a tensor to a scalar tensor. On JAX it runs under
    `jax.jit` unless `compile=False`, which a function that advances a seed
    generator (a layer called in training) needs."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return tape.gradient(value, x).numpy()
    if name == "jax":
        import jax

        # Compiled as one program: run eagerly, JAX compiles every operation
        # of the backward pass on its own, which makes the large-sample
        # gradient tests several times slower.
        grad = jax.grad(function)
        return np.asarray(
            (jax.jit(grad) if compile else grad)(keras.ops.convert_to_tensor(x))
        )
    if name == "torch":
        import torch

        x = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        function(x).backward()
        grad = x.grad.detach().cpu()
        # NumPy has no bfloat16; widen like `to_numpy` callers expect.
        return (grad.float() if grad.dtype == torch.bfloat16 else grad).numpy()
    raise NotImplementedError(name)


def compiled_and_eager(function, *args):
    """`function(*args)` compiled by XLA (TensorFlow, JAX) and run eagerly, as
    two tuples of NumPy values."""
    if backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(function, jit_compile=True)
    else:
        import jax

        compiled = jax.jit(function)

    def as_numpy(values):
        return tuple(to_numpy(value) for value in values)

    return as_numpy(compiled(*args)), as_numpy(function(*args))


def variable_gradient(function, variable):
    """Gradient of the scalar `function()` w.r.t. the Keras `variable` (e.g. a
    layer's temperature), on any backend, as a NumPy value."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = function()
        return np.asarray(tape.gradient(value, variable.value))
    if name == "jax":
        import jax

        def stateless(value):
            # JAX differentiates functions of arrays: the variable reads
            # `value` inside the scope instead of its own state. The scope
            # collects `add_loss` losses, as `fit`'s does, so `function` may
            # return a layer's `losses`.
            with keras.StatelessScope(
                state_mapping=[(variable, value)], collect_losses=True
            ):
                return function()

        return np.asarray(jax.grad(stateless)(variable.value))
    if name == "torch":
        parameter = variable.value
        parameter.grad = None
        function().backward()
        return parameter.grad.detach().cpu().numpy()
    raise NotImplementedError(name)


def assert_exact_one_hot(y, axis=-1):
    """Every element is exactly 0.0 or 1.0 and each row along `axis` has one 1.0."""
    y = to_numpy(y).astype("float64")
    assert np.all((y == 0.0) | (y == 1.0)), "hard sample has non-binary entries"
    np.testing.assert_array_equal(np.sum(y, axis=axis), 1.0)


def _sortable_keys(values):
    """uint64 keys that sort like the float32 `values`, with the low bit free."""
    values = np.asarray(values, dtype="float32") + np.float32(0.0)  # -0.0 -> 0.0
    bits = values.view(np.uint32)
    # Flip negative numbers entirely and set the sign bit of positive ones, so
    # unsigned order is numeric order.
    bits = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(2**31))
    return bits.astype(np.uint64) << np.uint64(1)


def ks_2samp_columns(a, b):
    """Two-sample Kolmogorov-Smirnov distance and p-value for every column.

    `a` is `[n_a, ...]` and `b` is `[n_b, ...]`, float32 or narrower; column `j`
    of `a` is compared with column `j` of `b`. The distance is the one
    `scipy.stats.ks_2samp` computes (ties included: the empirical CDFs are
    compared after the last copy of a tied value), from one pooled sort of all
    columns instead of one scipy call per column. The p-value is scipy's
    asymptotic one (`method="asymp"`):
    `scipy.stats.kstwo.sf(D, round(n_a n_b / (n_a + n_b)))`.
    """
    from scipy import stats

    for values in (a, b):
        if np.asarray(values).dtype.itemsize > 4:
            raise TypeError("ks_2samp_columns compares float32 samples")
    n_a, n_b = np.shape(a)[0], np.shape(b)[0]
    # The low bit of each key says which sample the value came from (a sorts
    # before b among equal values, which the tie handling makes irrelevant).
    keys = np.concatenate(
        [
            _sortable_keys(a).reshape(n_a, -1),
            _sortable_keys(b).reshape(n_b, -1) | np.uint64(1),
        ],
        axis=0,
    )
    keys.sort(axis=0)
    from_b = (keys & np.uint64(1)).astype(bool)
    # n_a n_b (F_a - F_b), in exact integer arithmetic.
    scaled_difference = np.cumsum(np.where(from_b, -n_a, n_b), axis=0)
    values = keys >> np.uint64(1)
    end_of_tie = np.ones(keys.shape, dtype=bool)
    end_of_tie[:-1] = values[1:] != values[:-1]
    distance = np.max(np.abs(scaled_difference) * end_of_tie, axis=0) / (n_a * n_b)
    effective_n = np.round(n_a * n_b / (n_a + n_b))
    return distance, stats.kstwo.sf(distance, effective_n)


def chi_square_pvalue(samples, probabilities, axis=-1):
    """Chi-square goodness-of-fit p-value of one-hot `samples` against
    `probabilities` along `axis`. Categories of probability 0 must never occur
    and are left out of the statistic (they would divide by zero)."""
    from scipy import stats

    counts = np.sum(
        np.moveaxis(to_numpy(samples).astype("float64"), axis, -1).reshape(
            -1, np.shape(probabilities)[-1]
        ),
        axis=0,
    )
    probabilities = np.asarray(probabilities, dtype="float64")
    allowed = probabilities > 0
    assert np.all(counts[~allowed] == 0), "a zero-probability category occurred"
    expected = counts.sum() * probabilities[allowed] / probabilities[allowed].sum()
    return stats.chisquare(counts[allowed], expected).pvalue
