"""The sampling benchmark runs as docs/performance.md and docs/backends.md say.

Nothing is timed here: the script runs at a tiny shape, in its own process (it
sets environment variables before importing TensorFlow), on the backend of this
test process, and the test checks that it prints every row and line the docs
quote. A crash in the script would otherwise go unseen until someone reruns
the numbers.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import pytest

# The scripts time keras-gumbel against TensorFlow and TFP on every backend.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="benchmarks/ import TensorFlow and TFP (the test extra); CI runs "
    "these on JAX in its TensorFlow environment (.ci/run, bench-jax)",
)

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "sampling.py"


def run_sampling_benchmark(*args):
    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def rows(output):
    """The table's row names: what comes before the first run of two spaces."""
    return {line.split("  ")[0].strip() for line in output.splitlines()}


def test_sampling_benchmark_prints_every_candidate_and_target():
    # 10 repeats: enough rounds for the paired ratios' percentiles.
    output = run_sampling_benchmark(
        "--shape", "64,32", "--repeats", "10", "--warmup", "1", "--no-torch"
    )
    assert "shape (64, 32) float32" in output
    if keras.backend.backend() == "tensorflow":
        names = ["ours layer", "ours layer hard", "ours ops", "tfp", "keras uniform"]
        names += ["floor", "gumbel floor"]
        assert set(names) <= rows(output)
        targets = [line for line in output.splitlines() if "(target <=" in line]
        assert len(targets) == 8
        for line in targets:
            assert line.rstrip().endswith(("met", "MISSED"))
        # Paired ratios come with their interquartile range in graph mode.
        assert any("fwd+bwd: ours / tfp" in line and "[" in line for line in targets)
        assert "fwd+bwd: gumbel floor / tfp" in output
    else:
        names = ["ours ops", "ours ops hard", "keras uniform", "floor"]
        names += ["draw: ours", "draw: keras uniform"]
        names.append(
            "jax.random.gumbel"
            if keras.backend.backend() == "jax"
            else "torch gumbel_softmax"
        )
        assert set(names) <= rows(output)


def test_binary_benchmark_prints_every_estimator_against_two_categories():
    script = SCRIPT.parent / "binary.py"
    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    import keras_gumbel as kg

    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line}
    for estimator in kg.ESTIMATORS:
        assert lines[estimator].rstrip().endswith(("ok", "MISSED"))
    if keras.backend.backend() == "tensorflow":
        assert "relaxed binary / tfp RelaxedBernoulli" in result.stdout
