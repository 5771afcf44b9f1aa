"""The benchmarks run as docs/performance.md, docs/backends.md and
docs/estimators.md say.

Nothing is timed here: each script runs at a tiny size, in its own process (it
sets environment variables before importing TensorFlow), on the backend of this
test process, and the test checks that it prints every row and line the docs
quote. A crash in a script would otherwise go unseen until someone reruns
the numbers.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import pytest

import keras_gumbel as kg

# The scripts time keras-gumbel against TensorFlow and TFP on every backend.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="benchmarks/ import TensorFlow and TFP (the test extra); CI runs "
    "these on JAX in its TensorFlow environment (.ci/run, bench-jax)",
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_benchmark(script, *args):
    """The standard output of `benchmarks/<script>` run with `args`."""
    environment = dict(
        os.environ,
        KERAS_BACKEND=keras.backend.backend(),
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def run_sampling_benchmark(*args):
    return run_benchmark("sampling.py", *args)


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
    output = run_benchmark("binary.py", "--quick")
    lines = {line.split()[0]: line for line in output.splitlines() if line}
    for estimator in kg.ESTIMATORS:
        assert lines[estimator].rstrip().endswith(("ok", "MISSED"))
    if keras.backend.backend() == "tensorflow":
        assert "relaxed binary / tfp RelaxedBernoulli" in output


def table_rows(output):
    """Markdown table rows as lists of stripped cells, header rows left out."""
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def test_estimator_cost_benchmark_prints_every_estimator_with_its_goal():
    # One tiny shape, K in {2, 3}, 2 rounds: every row and verdict the cost
    # table in docs/estimators.md has.
    output = run_benchmark(
        "estimator_cost.py", "--shapes", "6,3", "--draws", "2,3", "--rounds", "2"
    )
    assert "### `[6, 3]`" in output
    rows = {cells[0]: cells for cells in table_rows(output)}
    expected = [name for name in kg.ESTIMATORS if name != "gumbel_rao"]
    expected += ["gumbel_rao K=2", "gumbel_rao K=3", "straight_through t_f=2"]
    assert set(expected) <= set(rows)
    for name in expected:
        time_goal, memory_goal = rows[name][3], rows[name][6]
        if name.startswith("gumbel_rao"):
            assert memory_goal.endswith(("met", "MISSED")), rows[name]
        elif name != "gumbel_softmax":
            assert time_goal.endswith(("met", "MISSED")), rows[name]
        assert float(rows[name][4]) >= 0.0  # peak memory in MB


def test_training_benchmark_prints_every_model_with_its_goals():
    # All four models at a reduced size, in one setting of the backend (the
    # graph, not XLA, on TensorFlow), 2 rounds of a few steps.
    setting = {"tensorflow": "TF graph", "jax": "JAX jit"}.get(
        keras.backend.backend(), "PyTorch eager"
    )
    output = run_benchmark("training.py", "--quick", "--settings", setting)
    rows = table_rows(output)
    header = rows[0]
    samplers = ["ours", "snippet", "none"]
    samplers += {"tensorflow": ["tfp"], "torch": ["torch"]}.get(
        keras.backend.backend(), []
    )
    assert {f"{kind} ms" for kind in samplers} <= set(header)
    models = {cells[0] for cells in rows[1:]}
    assert models == {"vae", "binary_vae", "selector", "quantizer"}
    for cells in rows[1:]:
        assert cells[1] == setting
        assert cells[-3].endswith(("met", "MISSED")), cells  # vs the best peer
        assert cells[-2].endswith(("met", "MISSED", "n/a")), cells  # vs snippet
        assert cells[-1].endswith("]"), cells  # the sampler's share


def test_op_counts_benchmark_counts_every_sampler():
    # One round of short timings; the counts do not depend on them.
    output = run_benchmark("op_counts.py", "--rounds", "1", "--seconds", "0.001")
    rows = table_rows(output)
    native = {"tensorflow": ["tfp"], "torch": ["torch"]}.get(
        keras.backend.backend(), []
    )
    layers = {(cells[0], cells[1]): cells for cells in rows if cells[0][0] in "cb"}
    for family in ("categorical [100, 20, 10]", "binary [100, 200]"):
        for kind in ["ours", "snippet", *native]:
            count = layers[(family, kind)][2]
            # "42", or on JAX "24 kernels, 451 instructions".
            assert int(count.split()[0]) > 0, layers[(family, kind)]
    assert "What ours runs beyond" in output
    if keras.backend.backend() == "torch":
        names = {cells[0] for cells in rows}
        estimators = [name for name in kg.ESTIMATORS if name != "gumbel_rao"]
        assert set(estimators) <= names
        assert {"vae", "binary_vae", "selector", "quantizer"} <= names
