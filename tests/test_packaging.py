"""What installing the package promises: TensorFlow is optional, and missing it
gives an error that names the extra to install.

The no-TensorFlow cases run in a subprocess in which an import hook refuses
TensorFlow, as a machine without it does (CI also runs the JAX suite in an
environment that has no TensorFlow at all, see .ci/run).
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Wraps the finder that searches sys.path so that it does not see TensorFlow
# (or TFP, which imports it): `import tensorflow` then fails and
# `importlib.util.find_spec("tensorflow")` is None, as where it is not installed.
NO_TENSORFLOW = """
import importlib.machinery
import sys

HIDDEN = ("tensorflow", "tensorflow_probability")


class WithoutTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()


sys.meta_path = [
    WithoutTensorFlow() if finder is importlib.machinery.PathFinder else finder
    for finder in sys.meta_path
]
"""


def run_without_tensorflow(code, backend):
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_runtime_dependencies_are_keras_and_numpy():
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    names = {
        requirement.split(">")[0].split("=")[0].split("<")[0].strip()
        for requirement in project["dependencies"]
    }
    assert names == {"keras", "numpy"}
    extras = project["optional-dependencies"]
    for extra in ("tensorflow", "export", "tensorboard"):
        assert any(r.startswith("tensorflow>=") for r in extras[extra]), extra
    assert "ai-edge-litert" in extras["export"]  # runs the converted models
    # The backend-agnostic suite's tools install without TensorFlow.
    assert not any("tensorflow" in r for r in extras["test-core"])


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="runs on the backends that work without TensorFlow (JAX, PyTorch)",
)
def test_works_without_tensorflow_and_export_names_the_extra():
    stdout = run_without_tensorflow(
        """
        import keras
        import numpy as np
        import pytest

        import keras_gumbel as kg

        inputs = keras.Input((3,))
        model = keras.Model(inputs, kg.GumbelSoftmax(hard=True, seed=0)(inputs))
        sample = model(np.zeros((2, 3), "float32"), training=True)
        assert keras.ops.convert_to_numpy(sample).sum() == 2  # one-hot rows

        calls = {
            "export_saved_model": lambda: kg.export.export_saved_model(model, "x"),
            "to_tflite": lambda: kg.export.to_tflite(model),
            "sample_function": lambda: kg.export.sample_function(model),
        }
        for name, call in calls.items():
            with pytest.raises(ImportError) as error:
                call()
            message = str(error.value)
            assert f"`keras_gumbel.export.{name}` needs TensorFlow" in message
            assert 'pip install "keras-gumbel[export]"' in message
            assert error.value.name == "tensorflow"
        # TFLite's stand-in seed, given to a draw on another backend.
        with pytest.raises(ImportError, match=r"keras-gumbel\\[tensorflow\\]"):
            kg.random.uniform((2,), seed=kg.random.StatefulOpSeed(1, 0))
        assert not any(name.startswith("tensorflow") for name in sys.modules)
        print("ok")
        """,
        keras.backend.backend(),
    )
    assert stdout.strip().endswith("ok")


def test_tensorflow_backend_without_tensorflow_says_what_to_do():
    stdout = run_without_tensorflow(
        """
        try:
            import keras_gumbel  # noqa: F401
        except ImportError as error:
            print(error)
        """,
        "tensorflow",
    )
    assert "Keras is set to its TensorFlow backend" in stdout
    assert 'pip install "keras-gumbel[tensorflow]"' in stdout
    assert "KERAS_BACKEND=jax" in stdout


def install_block(path):
    text = path.read_text()
    start, end = "<!-- install: start -->", "<!-- install: end -->"
    assert text.count(start) == text.count(end) == 1, path.name
    # The README links to docs/backends.md, the page itself to backends.md.
    return text.split(start)[1].split(end)[0].replace("](docs/", "](")


def test_readme_and_backends_page_give_the_same_install_instructions():
    readme = install_block(ROOT / "README.md")
    assert readme == install_block(ROOT / "docs" / "backends.md")
    for extra in ("tensorflow", "jax", "torch", "export", "tensorboard"):
        assert f'pip install -e ".[{extra}]"' in readme
