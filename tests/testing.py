"""Shared test helpers: every layer test calls these rather than re-inventing them."""

import keras
import numpy as np


def backend():
    return keras.backend.backend()


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


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


def assert_model_save_load(model, x, path, *, same_inference_output=True):
    """Saves `model` to a `.keras` file and loads it back; checks config, every
    variable (temperature included) and, by default, inference outputs."""
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
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


def gradient(function, x):
    """Gradient of `sum(function(x))`-style scalar `function` w.r.t. `x`, on any
    backend. `function` maps a tensor to a scalar tensor."""
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

        return np.asarray(
            jax.grad(lambda v: function(v))(keras.ops.convert_to_tensor(x))
        )
    if name == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        function(x).backward()
        return x.grad.detach().cpu().numpy()
    raise NotImplementedError(name)
