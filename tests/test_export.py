"""SavedModel export and serving, stochastic endpoints, and TFLite conversion.

The exported artifacts must run without keras-gumbel, give exactly what the
Keras model gives in inference, and the stochastic paths must draw correct,
fresh samples.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import test_saving, testing

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel export and TFLite conversion need the TensorFlow backend",
)

FEATURES = 6
# Sample size of the statistical checks: every row of a batch is one
# independent draw from the same categorical distribution.
DRAWS = 4000
LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03], dtype="float32"))


def inputs(batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, FEATURES)).astype("float32")


def anneal(model, temperature=1.25):
    for layer in test_saving.gumbel_layers(model):
        layer.temperature.assign(temperature)
    return model


def sampling_model(inference):
    """Logits in, the Gumbel layers' own outputs out: a GumbelSoftmax sample
    and a GumbelTopK (k=2) subset."""
    logits = keras.Input((len(LOGITS),))
    return keras.Model(
        logits,
        [
            kg.GumbelSoftmax(inference=inference, seed=1)(logits),
            kg.GumbelTopK(2, inference=inference, seed=2)(logits),
        ],
    )


def assert_categorical(one_hot_rows, probabilities):
    """Category frequencies within 5 sigma of `probabilities`, sigma being the
    binomial standard deviation sqrt(p (1 - p) / n) of each frequency."""
    rows = testing.to_numpy(one_hot_rows)
    testing.assert_exact_one_hot(rows)
    frequencies = rows.mean(axis=0)
    sigma = np.sqrt(probabilities * (1 - probabilities) / len(rows))
    assert np.all(np.abs(frequencies - probabilities) < 5 * sigma), frequencies


def assert_exact_k_hot(rows, k):
    rows = testing.to_numpy(rows)
    assert np.all((rows == 0.0) | (rows == 1.0))
    np.testing.assert_array_equal(rows.sum(axis=-1), k)


def assert_unchanged(sampling_model):
    """Exporting a `sampling_model("argmax")` leaves it as it was: same modes,
    same seed generators, deterministic predictions."""
    layers = test_saving.gumbel_layers(sampling_model)
    assert [layer.inference for layer in layers] == ["argmax", "argmax"]
    for layer in layers:
        assert type(layer.seed_generator) is keras.random.SeedGenerator
        assert layer.seed_generator in layer._seed_generators
    category, subset = sampling_model.predict(np.tile(LOGITS, (3, 1)), verbose=0)
    np.testing.assert_array_equal(category, [[1, 0, 0, 0, 0]] * 3)
    np.testing.assert_array_equal(subset, [[1, 1, 0, 0, 0]] * 3)


def run_tflite(flatbuffer, x, interpreter=None):
    """Runs the `serving_default` signature of a TFLite model in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    if interpreter is None:
        interpreter = Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    outputs = runner(**{name: x})
    return [outputs[key] for key in sorted(outputs)]


@tensorflow_only
@pytest.mark.parametrize("kind", sorted(test_saving.MODELS))
def test_model_export_serve_matches_predict(kind, tmp_path):
    import tensorflow as tf

    model = anneal(test_saving.MODELS[kind]())
    x = inputs()
    model.export(tmp_path / "model", verbose=False)

    reloaded = tf.saved_model.load(str(tmp_path / "model"))
    served = reloaded.serve(x).numpy()
    # Same float32 graph as predict's; 1e-6 allows for a different op order.
    np.testing.assert_allclose(
        served, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(reloaded.serve(x).numpy(), served)


# Runs in a fresh interpreter in which importing keras_gumbel fails.
RELOAD_SCRIPT = textwrap.dedent(
    """
    import sys

    class BlockKerasGumbel:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "keras_gumbel":
                raise ImportError("the SavedModel must not need keras_gumbel")

    sys.meta_path.insert(0, BlockKerasGumbel())

    import keras
    import numpy as np
    import tensorflow as tf

    path = sys.argv[1]
    x = np.load(path + "/x.npy")
    expected = np.load(path + "/expected.npy")

    reloaded = tf.saved_model.load(path + "/model")
    signatures = set(reloaded.signatures)
    assert {"serve", "sample", "sample_with_seed", "serving_default"} <= signatures
    np.testing.assert_allclose(reloaded.serve(x), expected, rtol=1e-6, atol=1e-6)
    first, second = reloaded.sample(x), reloaded.sample(x)
    assert not np.array_equal(first, second), "sample repeated itself"
    seeded = reloaded.sample_with_seed(x, seed=tf.constant(7))
    np.testing.assert_array_equal(seeded, reloaded.sample_with_seed(x, seed=7))
    assert not np.array_equal(seeded, reloaded.sample_with_seed(x, seed=8))

    served = keras.layers.TFSMLayer(path + "/model")(x)
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-6)
    sampler = keras.layers.TFSMLayer(path + "/model", call_endpoint="sample")
    assert not np.array_equal(sampler(x), sampler(x)), "TFSMLayer sample repeated"

    assert "keras_gumbel" not in sys.modules
    print("reloaded without keras_gumbel")
    """
)


@tensorflow_only
def test_saved_model_serves_in_a_process_without_keras_gumbel(tmp_path):
    model = anneal(test_saving.functional_model("argmax"))
    x = inputs()
    kg.export.export_saved_model(model, tmp_path / "model")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))

    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reloaded without keras_gumbel" in result.stdout


@tensorflow_only
def test_sample_endpoints_draw_categorical_samples(tmp_path):
    import tensorflow as tf

    model = sampling_model("argmax")
    kg.export.export_saved_model(model, tmp_path / "model")
    assert_unchanged(model)
    reloaded = tf.saved_model.load(str(tmp_path / "model"))
    logits = np.tile(LOGITS, (DRAWS, 1))
    probabilities = np.exp(LOGITS) / np.exp(LOGITS).sum()

    # serve: the layers' inference mode, the most likely category and pair.
    category, subset = reloaded.serve(logits[:2])
    np.testing.assert_array_equal(category, [[1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(subset, [[1, 1, 0, 0, 0]] * 2)

    # sample: exact categorical samples, fresh on every call.
    category, subset = reloaded.sample(logits)
    assert_categorical(category, probabilities)
    assert_exact_k_hot(subset, 2)
    again, _ = reloaded.sample(logits)
    assert not np.array_equal(category, again)

    # sample_with_seed: the same seed gives the same samples, another seed
    # other samples, each a correct categorical sample.
    category, subset = reloaded.sample_with_seed(logits, seed=7)
    assert_categorical(category, probabilities)
    assert_exact_k_hot(subset, 2)
    same_category, same_subset = reloaded.sample_with_seed(logits, seed=7)
    np.testing.assert_array_equal(same_category, category)
    np.testing.assert_array_equal(same_subset, subset)
    other, _ = reloaded.sample_with_seed(logits, seed=8)
    assert not np.array_equal(other, category)


@tensorflow_only
@pytest.mark.parametrize("inference", ["argmax", "softmax"])
def test_tflite_builtin_ops_match_keras(inference, tmp_path):
    import tensorflow as tf

    model = anneal(test_saving.functional_model(inference))
    x = inputs()
    expected = model.predict(x, verbose=0)

    # The plain converter, on what model.export writes, with builtin ops only.
    model.export(tmp_path / "model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (converted,) = run_tflite(converter.convert(), x)
    # TFLite's float32 kernels round differently from TensorFlow's.
    np.testing.assert_allclose(converted, expected, rtol=1e-5, atol=1e-5)

    (converted,) = run_tflite(kg.export.to_tflite(model), x)
    np.testing.assert_allclose(converted, expected, rtol=1e-5, atol=1e-5)


@tensorflow_only
def test_tflite_sampling_layers_convert_with_builtin_ops(tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = sampling_model("sample")
    model.export(tmp_path / "model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # What to_tflite's docstring promises to get around.
    with pytest.raises(Exception, match="StatelessRandomUniform"):
        converter.convert()

    flatbuffer = kg.export.to_tflite(model)
    logits = np.tile(LOGITS, (DRAWS, 1))
    probabilities = np.exp(LOGITS) / np.exp(LOGITS).sum()
    interpreter = Interpreter(model_content=flatbuffer)
    category, subset = run_tflite(flatbuffer, logits, interpreter)
    assert_categorical(category, probabilities)
    assert_exact_k_hot(subset, 2)
    again, _ = run_tflite(flatbuffer, logits, interpreter)
    assert not np.array_equal(category, again)
    # A new interpreter replays the sequence: the op seeds are fixed.
    replay, _ = run_tflite(flatbuffer, logits)
    np.testing.assert_array_equal(replay, category)


@tensorflow_only
def test_tflite_sample_overrides_the_inference_mode():
    model = sampling_model("argmax")
    logits = np.tile(LOGITS, (DRAWS, 1))
    probabilities = np.exp(LOGITS) / np.exp(LOGITS).sum()
    category, subset = run_tflite(kg.export.to_tflite(model, sample=True), logits)
    assert_categorical(category, probabilities)
    assert_exact_k_hot(subset, 2)
    assert_unchanged(model)


@tensorflow_only
def test_invalid_arguments_name_the_argument():
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Received: model='sequential"):
        kg.export.sample_function(plain)
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        kg.export.sample_function(kg.GumbelSoftmax())
    model = sampling_model("argmax")
    with pytest.raises(TypeError, match="Received: seeded='yes'"):
        kg.export.sample_function(model, seeded="yes")
    with pytest.raises(TypeError, match="Received: sample=1"):
        kg.export.to_tflite(model, sample=1)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="checks the error on the other backends",
)
def test_export_needs_the_tensorflow_backend():
    model = sampling_model("argmax")
    if importlib.util.find_spec("tensorflow") is None:
        # tests/test_packaging.py checks this case where TensorFlow is installed.
        error, message = ImportError, r"pip install \"keras-gumbel\[export\]\""
    else:
        error, message = RuntimeError, "needs the TensorFlow backend"
    with pytest.raises(error, match=message):
        kg.export.export_saved_model(model, "unused")
