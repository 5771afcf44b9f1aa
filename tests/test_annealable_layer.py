"""`keras_gumbel.AnnealableLayer`: the override hook export traces with, and
`annealable_layers`, the one walk over a model that callbacks and export share."""

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

LOGITS = np.zeros((2000, 2), "float32")


def layer_state(layer):
    return (
        [variable.path for variable in layer.variables],
        len(layer._seed_generators),
        layer.inference,
    )


def test_override_samples_in_inference_and_restores_the_layer():
    layer = kg.GumbelSoftmax(seed=0)
    layer(LOGITS[:1])
    before = layer_state(layer)
    with layer.override(inference="sample"):
        sample = testing.to_numpy(layer(LOGITS))
    testing.assert_exact_one_hot(sample)
    # 2000 fair coin flips: the mean is within 5 sigma (sigma = 0.011) of 1/2.
    assert abs(sample[:, 0].mean() - 0.5) < 5 * 0.5 / np.sqrt(len(LOGITS))
    np.testing.assert_array_equal(testing.to_numpy(layer(LOGITS[:1])), [[1.0, 0.0]])
    assert layer_state(layer) == before


def test_override_seed_draws_from_the_stand_in_and_is_never_state():
    layer = kg.GumbelSoftmax(seed=0)
    layer(LOGITS[:1])
    own_state = testing.to_numpy(layer.seed_generator.state).copy()
    before = layer_state(layer)

    def draw(seed):
        with layer.override(inference="sample", seed=keras.random.SeedGenerator(seed)):
            return testing.to_numpy(layer(LOGITS[:64]))

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))
    # The layer's own generator did not advance, and nothing new is tracked.
    np.testing.assert_array_equal(
        testing.to_numpy(layer.seed_generator.state), own_state
    )
    assert layer_state(layer) == before
    assert layer.active_seed is layer.seed_generator


def test_override_restores_after_an_error():
    layer = kg.GumbelTopK(k=1, seed=0)
    with pytest.raises(RuntimeError, match="inside"):
        with layer.override(inference="softmax", seed=keras.random.SeedGenerator(1)):
            assert layer.active_inference == "softmax"
            raise RuntimeError("inside")
    assert layer.active_inference == "argmax"
    assert layer.active_seed is layer.seed_generator


def test_override_checks_its_arguments():
    layer = kg.GumbelSoftmax()
    with pytest.raises(ValueError, match="`inference`.*Received: inference='mode'"):
        with layer.override(inference="mode"):
            pass
    with pytest.raises(TypeError, match="`seed`.*Received: seed=3"):
        with layer.override(seed=3):
            pass
    # ConcreteSelect's inference is fixed: it has no modes to switch to.
    with pytest.raises(ValueError, match="`inference`"):
        with kg.ConcreteSelect(2).override(inference="sample"):
            pass


def test_inference_modes_name_the_layers_that_sample():
    assert "sample" in kg.GumbelSoftmax.inference_modes
    assert "sample" in kg.GumbelTopK.inference_modes
    assert kg.ConcreteSelect.inference_modes == ()


class Wrapper(keras.layers.Layer):
    """A custom layer that owns a Gumbel layer: only the deep walk finds it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = kg.GumbelSoftmax(name="inner")

    def call(self, inputs):
        return self.inner(inputs)


def test_annealable_layers_finds_nested_layers_once_each():
    inner_model = keras.Sequential(
        [keras.Input((3,)), kg.GumbelTopK(k=1, name="top")], name="inner_model"
    )
    shared = kg.GumbelSoftmax(name="shared")
    inputs = keras.Input((3,))
    outputs = shared(Wrapper()(inner_model(shared(inputs))))
    model = keras.Model(inputs, outputs)
    names = [layer.name for layer in kg.layers.annealable_layers(model)]
    assert sorted(names) == ["inner", "shared", "top"]
