"""Export models with Gumbel layers: SavedModel endpoints and TFLite.

A model with Gumbel layers exports like any Keras model: `model.export(path)`
writes a SavedModel whose `serve` endpoint runs the layers' inference mode
(deterministic for `inference="argmax"` and `"softmax"`). This module adds what a
plain export cannot do:

- `sample_function(model)` and `sample_function(model, seeded=True)` build
  functions for `keras.export.ExportArchive.add_endpoint` that run the model with
  every Gumbel layer drawing an exact one-hot categorical sample: fresh on every
  call (from the layers' seed variables, which the SavedModel keeps and
  advances), or from a `seed` input (stateless: the same seed gives the same
  sample, and concurrent calls share no state).
- `export_saved_model(model, filepath)` writes a SavedModel with the endpoints
  `serve`, `sample` and `sample_with_seed`.
- `to_tflite(model)` converts to a TFLite flatbuffer made of builtin ops only,
  also for layers that sample at inference. TFLite has no kernel for the
  stateless random ops that the layers use on TensorFlow, so the conversion
  traces the layers with TensorFlow's stateful `RandomUniform` op instead, which
  TFLite runs as its builtin `RANDOM_UNIFORM`.

Everything here needs TensorFlow (`pip install "keras-gumbel[export]"`) and the
TensorFlow backend. The exported artifacts need neither Keras nor keras-gumbel
to run.
"""

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras

from keras_gumbel import _backend, _checks
from keras_gumbel._backend.tensorflow import StatefulOpSeed
from keras_gumbel.layers import AnnealableLayer, annealable_layers

__all__ = ["sample_function", "export_saved_model", "to_tflite", "StatefulOpSeed"]


def _check_tensorflow(name):
    backend = _backend.name()
    if backend != "tensorflow":
        # Keras runs on TensorFlow only where it is installed, so only here can
        # it be missing.
        _checks.require_tensorflow(f"`keras_gumbel.export.{name}`", "export")
        raise RuntimeError(
            f"`keras_gumbel.export.{name}` builds TensorFlow graphs and needs the "
            f"TensorFlow backend. Received: backend={backend!r}. Save the model "
            "with `model.save()` and export it from a process started with "
            "KERAS_BACKEND=tensorflow."
        )


def _gumbel_layers(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid value received for argument `model`. Expected a `keras.Model`. "
            f"Received: model={model!r}"
        )
    if not model.built:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a built model "
            "(give it an `Input` or call it once). "
            f"Received: model={model.name!r}, which is not built"
        )
    return annealable_layers(model)


def _input_signature(model, input_signature):
    if input_signature is not None:
        return list(input_signature)
    from keras.src.export.export_utils import get_input_signature

    return list(get_input_signature(model))


class _InputSeed(keras.random.SeedGenerator):
    """Seeds a layer's k-th draw with `[seed, stream * 2**16 + k]`.

    Stands in for a layer's `SeedGenerator` while a function is traced, so that
    its draws depend on the function's `seed` input only.
    """

    def __init__(self, seed, stream):
        self.seed = keras.ops.cast(seed, "int32")
        self.stream = stream
        self.draws = 0

    def next(self, ordered=True):
        self.draws += 1
        counter = keras.ops.convert_to_tensor(
            self.stream * 2**16 + self.draws, dtype="int32"
        )
        return keras.ops.stack([self.seed, counter])


@contextlib.contextmanager
def _overridden(
    layers: Sequence[AnnealableLayer],
    *,
    sample: bool,
    seed_for: Callable[[int], keras.random.SeedGenerator | None],
) -> Iterator[None]:
    """Traces `layers` sampling at inference and/or drawing from stand-in seeds.

    `seed_for(stream)` gives the seed that layer number `stream` draws from, or
    None to keep its own generator. A function traced inside this context keeps
    the sampling behaviour for good; the layers are unchanged on exit.
    """
    with contextlib.ExitStack() as stack:
        for stream, layer in enumerate(layers):
            inference = "sample" if sample and _samples(layer) else None
            stack.enter_context(
                layer.override(inference=inference, seed=seed_for(stream))
            )
        yield


def _samples(layer: AnnealableLayer) -> bool:
    """Whether `layer` can draw samples in inference (`inference="sample"`)."""
    return "sample" in layer.inference_modes


def sample_function(model: keras.Model, *, seeded: bool = False) -> Callable:
    """Builds a function that runs `model` with its Gumbel layers sampling.

    The function calls `model(inputs, training=False)`, so dropout, batch
    normalization and other layers behave as in inference, but every layer of
    keras-gumbel draws an exact one-hot sample from its categorical distribution
    (`GumbelSoftmax` and `GumbelTopK` as with `inference="sample"`;
    `ConcreteSelect` keeps its learned selection). Pass it to
    `keras.export.ExportArchive.add_endpoint` to export a stochastic endpoint
    beside the deterministic `serve`.

    With `seeded=False` the function takes `inputs` and draws from the layers'
    own seed generators: every call gives fresh samples, and in a SavedModel the
    generators' state variables are saved and advance on every call. With
    `seeded=True` it takes `(inputs, seed)`, a scalar integer tensor, and is
    stateless: the same seed gives the same samples, different seeds give
    independent ones, and concurrent calls share no state.

    Args:
        model: A built `keras.Model` containing keras-gumbel layers.
        seeded: Whether the function takes a `seed` input. Defaults to False.

    Returns:
        A Python function `fn(inputs)` or `fn(inputs, seed)`.

    Example:

    ```python
    import keras
    import tensorflow as tf
    import keras_gumbel

    inputs = keras.Input((4,))
    outputs = keras_gumbel.GumbelSoftmax(seed=0)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    spec = keras.InputSpec(shape=(None, 4), dtype="float32")

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda x: model(x, training=False), input_signature=[spec]
    )
    archive.add_endpoint(
        "sample", keras_gumbel.export.sample_function(model), input_signature=[spec]
    )
    archive.add_endpoint(
        "sample_with_seed",
        keras_gumbel.export.sample_function(model, seeded=True),
        input_signature=[spec, tf.TensorSpec((), tf.int32, name="seed")],
    )
    archive.write_out("/tmp/model")
    ```
    """
    _check_tensorflow("sample_function")
    layers = [layer for layer in _gumbel_layers(model) if _samples(layer)]
    if not layers:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a model with "
            "at least one layer that samples (`keras_gumbel.GumbelSoftmax` or "
            "`keras_gumbel.GumbelTopK`). "
            f"Received: model={model.name!r} with none"
        )
    if not isinstance(seeded, bool):
        raise TypeError(
            "Invalid value received for argument `seeded`. Expected a bool. "
            f"Received: seeded={seeded!r}"
        )

    if seeded:

        def sample_with_seed(inputs, seed):
            with _overridden(
                layers, sample=True, seed_for=lambda stream: _InputSeed(seed, stream)
            ):
                return model(inputs, training=False)

        return sample_with_seed

    def sample(inputs):
        with _overridden(layers, sample=True, seed_for=lambda stream: None):
            return model(inputs, training=False)

    return sample


def export_saved_model(
    model: keras.Model,
    filepath: str,
    input_signature: Sequence[Any] | None = None,
    *,
    verbose: bool = False,
) -> None:
    """Writes a SavedModel with a deterministic and two stochastic endpoints.

    Endpoints (all also SavedModel signatures, for TF Serving):

    - `serve(inputs)`: `model(inputs, training=False)`, the layers' inference
      mode, exactly what `model.export(filepath)` writes and the default of
      `keras.layers.TFSMLayer`;
    - `sample(inputs)`: every keras-gumbel layer draws a fresh one-hot sample on
      every call (see `sample_function`);
    - `sample_with_seed(inputs, seed)`: the same from a scalar int32 `seed`;
      the same seed gives the same output.

    The SavedModel runs with TensorFlow alone (`tf.saved_model.load(filepath)`,
    `keras.layers.TFSMLayer(filepath, call_endpoint="sample")`, TF Serving); it
    does not import keras-gumbel. The model needs at least one layer that
    samples (`GumbelSoftmax` or `GumbelTopK`); for other models, `model.export`
    writes the `serve` endpoint alone.

    Args:
        model: A built `keras.Model` containing keras-gumbel layers.
        filepath: Directory to write the SavedModel to.
        input_signature: Optional list of `keras.InputSpec` or `tf.TensorSpec`
            describing the positional inputs of `model`, as for
            `model.export`. By default it is read from the model.
        verbose: Whether to print the endpoints. Defaults to False.

    Example:

    ```python
    keras_gumbel.export.export_saved_model(model, "/tmp/model")
    reloaded = tf.saved_model.load("/tmp/model")
    reloaded.serve(x)                      # deterministic
    reloaded.sample(x)                     # fresh samples on every call
    reloaded.sample_with_seed(x, seed=7)   # reproducible per seed
    ```
    """
    _check_tensorflow("export_saved_model")
    import tensorflow as tf

    _gumbel_layers(model)
    signature = _input_signature(model, input_signature)
    seed_spec = tf.TensorSpec(shape=(), dtype=tf.int32, name="seed")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda inputs: model(inputs, training=False), signature
    )
    archive.add_endpoint("sample", sample_function(model), signature)
    archive.add_endpoint(
        "sample_with_seed",
        sample_function(model, seeded=True),
        [*signature, seed_spec],
    )
    archive.write_out(filepath, verbose=verbose)


def _op_seed(layer):
    # The generator's first state entry is the layer's int `seed`, or the random
    # seed Keras drew for `seed=None`; TensorFlow op seeds are int64 attributes.
    state = keras.ops.convert_to_numpy(layer.seed_generator.state)
    return int(state[0]) % 2**31


def to_tflite(
    model: keras.Model,
    input_signature: Sequence[Any] | None = None,
    *,
    sample: bool = False,
) -> bytes:
    """Converts `model` to a TFLite flatbuffer built from builtin ops only.

    The converted model computes `model(inputs, training=False)` with the
    current weights and temperatures (the temperature becomes a constant).
    Layers with `inference="argmax"` or `"softmax"` give exactly what Keras
    gives. Layers that sample (`inference="sample"`, or all of them with
    `sample=True`) draw with TFLite's builtin `RANDOM_UNIFORM` kernel: every
    invocation of an interpreter gives fresh samples, and a new interpreter
    repeats the sequence of the first (the op seeds are fixed at conversion,
    from each layer's seed generator).

    Plain `tf.lite.TFLiteConverter` conversion of a model that samples at
    inference fails with "'tf.StatelessRandomUniformV2' op is neither a custom
    op nor a flex op"; this function is the way to convert such models.

    Args:
        model: A built `keras.Model`.
        input_signature: Optional list of `keras.InputSpec` or `tf.TensorSpec`,
            as for `model.export`. By default it is read from the model.
        sample: If True, every keras-gumbel layer draws a one-hot sample, as in
            the `sample` endpoint of `export_saved_model`. Defaults to False.

    Returns:
        The TFLite model as `bytes`, with one signature, `serving_default`.

    Example:

    ```python
    flatbuffer = keras_gumbel.export.to_tflite(model)
    with open("model.tflite", "wb") as f:
        f.write(flatbuffer)

    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    # One keyword argument per input, named after the model's `keras.Input`,
    # e.g. `runner(features=x)` for `keras.Input((4,), name="features")`.
    (name,) = runner.get_input_details()
    outputs = runner(**{name: x})   # {"output_0": ...}
    ```
    """
    _check_tensorflow("to_tflite")
    import tensorflow as tf

    if not isinstance(sample, bool):
        raise TypeError(
            "Invalid value received for argument `sample`. Expected a bool. "
            f"Received: sample={sample!r}"
        )
    layers = _gumbel_layers(model)
    signature = _input_signature(model, input_signature)
    op_seeds = [_op_seed(layer) for layer in layers]

    def serve(inputs):
        with _overridden(
            layers,
            sample=sample,
            seed_for=lambda stream: StatefulOpSeed(op_seeds[stream], stream),
        ):
            return model(inputs, training=False)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, signature)
    with tempfile.TemporaryDirectory() as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
