"""Saves and loads `.keras` files of keras-gumbel layers on one backend.

`tests/test_backends.py` imports `save` and `load_and_compare` for its own
backend and runs this file as a subprocess for the others (the backend is fixed
when Keras is imported):

    KERAS_BACKEND=jax python tests/_backend_worker.py <file.keras> <out_dir>

loads `<file.keras>` (saved on another backend), compares its inference outputs
with the ones stored beside it, then saves its own model into `<out_dir>`. The
last line of stdout is `RESULT <json>`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_gumbel  # noqa: E402

FEATURES = 6
CATEGORIES = 5
# Assigned before saving, different from the constructor's 0.7, so a loaded file
# that falls back to the config value gives different softmax outputs.
ASSIGNED_TEMPERATURE = 0.35


def inputs():
    return np.random.default_rng(0).normal(size=(8, FEATURES)).astype("float32")


def build():
    """A model with every layer of the package in a deterministic inference mode."""
    features = keras.Input((FEATURES,))
    logits = keras.layers.Dense(CATEGORIES, name="logits")(features)
    outputs = [
        keras_gumbel.GumbelSoftmax(
            temperature=0.7, inference="softmax", seed=1, name="soft"
        )(logits),
        keras_gumbel.GumbelSoftmax(hard=True, seed=2, name="hard")(logits),
        keras_gumbel.GumbelTopK(2, seed=3, name="top_k")(logits),
        keras_gumbel.ConcreteSelect(3, seed=4, name="select")(features),
    ]
    model = keras.Model(features, outputs)
    rng = np.random.default_rng(1)
    dense = model.get_layer("logits")
    dense.set_weights(
        [
            rng.normal(size=(FEATURES, CATEGORIES)).astype("float32"),
            rng.normal(size=(CATEGORIES,)).astype("float32"),
        ]
    )
    model.get_layer("soft").temperature.assign(ASSIGNED_TEMPERATURE)
    # Advance every seed generator, so the saved state is not the initial one.
    model(inputs(), training=True)
    return model


def _outputs(model):
    return [keras.ops.convert_to_numpy(y) for y in model(inputs(), training=False)]


def _seed_states(model):
    return {
        layer.name: keras.ops.convert_to_numpy(layer.seed_generator.state)
        .astype("int64")
        .tolist()
        for layer in model.layers
        if isinstance(layer, keras_gumbel.AnnealableLayer)
    }


def save(directory):
    """Saves the model, its inference outputs and its seed states; returns the path."""
    model = build()
    path = os.path.join(directory, f"model_{keras.backend.backend()}.keras")
    model.save(path)
    np.savez(path + ".npz", *_outputs(model))
    with open(path + ".json", "w") as file:
        json.dump(_seed_states(model), file)
    return path


def load_and_compare(path):
    """Loads a file saved on any backend and reports how it differs."""
    model = keras.saving.load_model(path)
    expected = np.load(path + ".npz")
    expected = [expected[f"arr_{i}"] for i in range(len(expected.files))]
    with open(path + ".json") as file:
        expected_states = json.load(file)
    states = _seed_states(model)
    outputs = _outputs(model)
    # Training mode must work on the loaded seed state (its dtype is the saving
    # backend's) and give valid samples.
    samples = [keras.ops.convert_to_numpy(y) for y in model(inputs(), training=True)]
    return {
        "backend": keras.backend.backend(),
        "max_abs_difference": [
            float(np.max(np.abs(got - want)))
            for got, want in zip(outputs, expected, strict=True)
        ],
        "exact": [
            bool(np.array_equal(got, want))
            for got, want in zip(outputs[1:], expected[1:], strict=True)
        ],
        "temperature": float(
            keras.ops.convert_to_numpy(model.get_layer("soft").temperature)
        ),
        "seed_states_restored": states == expected_states,
        "samples_finite": all(bool(np.all(np.isfinite(s))) for s in samples),
        "soft_rows_sum_to_one": bool(
            np.allclose(samples[0].sum(axis=-1), 1.0, rtol=1e-5)
        ),
    }


if __name__ == "__main__":
    report = load_and_compare(sys.argv[1])
    report["saved"] = save(sys.argv[2])
    print("RESULT " + json.dumps(report), flush=True)
