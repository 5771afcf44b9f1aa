"""`.keras` round trips of models that contain every layer of the package.

A user saves mid-training (annealed temperature, optimizer state, seed
generators) and expects the reloaded model to predict the same and to continue
training exactly where the original would have.
"""

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

FEATURES = 6
# The temperature the layers were annealed to before saving; at least 1.0, the
# smallest temperature the "reinmax" estimator supports.
ANNEALED = 1.25


def every_layer(inference="softmax"):
    """One of each layer of the package: GumbelSoftmax with every estimator,
    GumbelTopK, ConcreteSelect, GumbelSigmoid, HardConcreteGate and
    GumbelQuantizer. The default inference mode, "softmax",
    depends on the temperature, so a lost temperature changes predictions."""
    layers = [
        kg.GumbelSoftmax(
            2.0,
            estimator=name,
            hard=kg.estimators.get(name).hard,
            inference=inference,
            seed=index,
            name=f"gumbel_softmax_{name}",
        )
        for index, name in enumerate(kg.ESTIMATORS)
    ]
    layers.append(kg.GumbelTopK(2, 2.0, inference=inference, seed=20))
    layers.append(kg.ConcreteSelect(4, seed=21))
    # The binary family: "sigmoid" is GumbelSigmoid's temperature-dependent
    # inference, as "softmax" is GumbelSoftmax's.
    binary = "sigmoid" if inference == "softmax" else inference
    layers.append(kg.GumbelSigmoid(2.0, inference=binary, seed=22))
    layers.append(kg.HardConcreteGate(l0_weight=0.1, seed=23))
    layers.append(
        kg.GumbelQuantizer(8, 3, groups=2, kl_weight=0.1, inference=inference, seed=24)
    )
    return layers


def gumbel_layers(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, kg.AnnealableLayer)
    ]


@keras.saving.register_keras_serializable(package="keras_gumbel_tests")
class Chain(keras.Model):
    """A subclassed model: (Dense -> Gumbel layer) for each layer, then Dense."""

    def __init__(self, gumbel, **kwargs):
        super().__init__(**kwargs)
        self.gumbel = [
            keras.saving.deserialize_keras_object(layer)
            if isinstance(layer, dict)
            else layer
            for layer in gumbel
        ]
        self.dense = [keras.layers.Dense(FEATURES) for _ in self.gumbel]
        self.head = keras.layers.Dense(2)

    def call(self, inputs, training=None):
        x = inputs
        for dense, gumbel in zip(self.dense, self.gumbel, strict=True):
            x = gumbel(dense(x), training=training)
        return self.head(x)

    def get_config(self):
        config = super().get_config()
        config["gumbel"] = [
            keras.saving.serialize_keras_object(layer) for layer in self.gumbel
        ]
        return config


def sequential_model(inference="softmax"):
    stack = [keras.Input((FEATURES,))]
    for layer in every_layer(inference):
        stack += [keras.layers.Dense(FEATURES), layer]
    return keras.Sequential([*stack, keras.layers.Dense(2)])


def functional_model(inference="softmax"):
    inputs = keras.Input((FEATURES,))
    logits = keras.layers.Dense(FEATURES)(inputs)
    branches = [layer(logits) for layer in every_layer(inference)]
    outputs = keras.layers.Dense(2)(keras.layers.Concatenate()(branches))
    return keras.Model(inputs, outputs)


def subclassed_model(inference="softmax"):
    model = Chain(every_layer(inference))
    model(np.zeros((1, FEATURES), "float32"))
    return model


MODELS = {
    "sequential": sequential_model,
    "functional": functional_model,
    "subclassed": subclassed_model,
}
# The functional model trains with the compiled train step, where the seed states
# advance inside a traced function; the others train eagerly, which is faster
# for models this small.
RUN_EAGERLY = {"sequential": True, "functional": False, "subclassed": True}


def data(seed=0, batch=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, FEATURES)).astype("float32")
    y = rng.normal(size=(batch, 2)).astype("float32")
    return x, y


def train_step(model, x, y):
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_keras_round_trip_resumes_training(kind, tmp_path):
    model = MODELS[kind]()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=RUN_EAGERLY[kind]
    )
    x, y = data()
    train_step(model, x, y)
    train_step(model, x, y)
    layers = gumbel_layers(model)
    assert len(layers) == len(kg.ESTIMATORS) + 5
    for layer in layers:
        layer.temperature.assign(ANNEALED)
    gate, quantizer = layers[-2:]
    gate.l0_weight.assign(0.03)  # annealed as well
    quantizer.kl_weight.assign(0.04)

    loaded = testing.assert_model_save_load(model, x, tmp_path / "model.keras")

    loaded_layers = gumbel_layers(loaded)
    assert [type(layer) for layer in loaded_layers] == [type(la) for la in layers]
    for original, restored in zip(layers, loaded_layers, strict=True):
        assert float(restored.temperature) == ANNEALED
        if isinstance(restored, kg.HardConcreteGate):
            assert float(restored.l0_weight) == pytest.approx(0.03)
            np.testing.assert_array_equal(
                restored.inference_gates(), original.inference_gates()
            )
        if isinstance(restored, kg.GumbelQuantizer):
            assert float(restored.kl_weight) == pytest.approx(0.04)
            np.testing.assert_array_equal(
                testing.to_numpy(restored.codebook), testing.to_numpy(original.codebook)
            )
        # The seed generators continue where the original stands, rather than
        # restarting from the int seed and replaying the samples already drawn.
        np.testing.assert_array_equal(
            testing.to_numpy(restored.seed_generator.state),
            testing.to_numpy(original.seed_generator.state),
        )
        assert testing.to_numpy(original.seed_generator.state)[1] > 0
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for original, restored in zip(
        model.optimizer.variables, loaded.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(
            testing.to_numpy(original), testing.to_numpy(restored)
        )

    # The next training sample is the one the original would have drawn next.
    logits = np.linspace(-1.0, 1.0, 8 * FEATURES, dtype="float32").reshape(8, -1)
    for original, restored in zip(layers, loaded_layers, strict=True):
        np.testing.assert_array_equal(
            testing.to_numpy(original(logits, training=True)),
            testing.to_numpy(restored(logits, training=True)),
        )

    # Resumed training takes exactly the step the original takes: same noise,
    # same optimizer moments, same weights afterwards.
    x_next, y_next = data(seed=1)
    train_step(model, x_next, y_next)
    train_step(loaded, x_next, y_next)
    assert int(loaded.optimizer.iterations) == 3
    for original, restored in zip(model.variables, loaded.variables, strict=True):
        np.testing.assert_allclose(
            testing.to_numpy(original), testing.to_numpy(restored), rtol=1e-6, atol=1e-7
        )


def test_weights_file_keeps_the_seed_state(tmp_path):
    model = functional_model()
    x, _ = data()
    model(x, training=True)
    model.save_weights(tmp_path / "model.weights.h5")
    clone = functional_model()
    clone.load_weights(tmp_path / "model.weights.h5")
    for original, restored in zip(
        gumbel_layers(model), gumbel_layers(clone), strict=True
    ):
        np.testing.assert_array_equal(
            testing.to_numpy(original.seed_generator.state),
            testing.to_numpy(restored.seed_generator.state),
        )


def test_weights_saved_without_seed_state_still_load():
    # Files written before the seed state was saved hold only the weights; the
    # layer loads them and keeps its generator's initial state.
    layer = kg.GumbelSoftmax(seed=3)
    layer.build((None, 4))
    layer(np.zeros((2, 4), "float32"), training=True)
    layer.load_own_variables({"0": np.array(0.5, "float32")})
    assert float(layer.temperature) == 0.5
    np.testing.assert_array_equal(testing.to_numpy(layer.seed_generator.state), [3, 1])
