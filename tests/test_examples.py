"""Smoke tests: every example runs end to end with tiny settings.

Each test imports the script's `main(argv)` and runs it for a few steps on
scikit-learn's 8x8 digits or a small synthetic set (never a download), then
checks what a user of the script relies on: the printed metrics are finite and
in range, the promised pictures (and SavedModels) are written, and a bad flag
stops with argparse's usage error naming the flag.
"""

import importlib.util
import math
import pathlib

import keras
import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    """discrete_vae.py turns on TensorFlow's deterministic ops for the process;
    tests in other files draw unseeded random numbers, which it forbids."""
    yield
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import config

        if config.is_op_determinism_enabled():
            config.disable_op_determinism()


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_discrete_vae_runs_and_writes_pictures_and_models(tmp_path):
    example = load_example("discrete_vae")
    flags = "--dataset=digits --epochs=1 --estimator=reinmax --latents=4"
    flags += " --eval-samples=1 --importance-samples=5"
    metrics = example.main([*flags.split(), f"--out={tmp_path}"])
    # ReinMax needs a temperature >= 1, so the schedule's floor is raised to 1.
    assert metrics["final_temperature"] == 1.0
    assert math.isfinite(metrics["negative_elbo"]) and metrics["negative_elbo"] > 0
    # The importance-weighted bound is tighter than the ELBO up to Monte Carlo
    # noise; with K=5 and one ELBO sample it is not guaranteed per run, so only
    # check that it is a positive finite number of nats.
    assert math.isfinite(metrics["iw_bound"]) and metrics["iw_bound"] > 0
    for picture in ("reconstructions.png", "samples.png", "curves.png"):
        assert (tmp_path / picture).stat().st_size > 0
    if keras.backend.backend() == "tensorflow":
        for part in ("encoder", "decoder"):
            assert (tmp_path / part / "saved_model.pb").exists()


def test_discrete_vae_compare_writes_table_between_markers(tmp_path, monkeypatch):
    example = load_example("discrete_vae")
    results = tmp_path / "results.md"
    results.write_text(
        "# Results\n\nintro\n\n"
        f"{example.RESULTS_START}\nold table\n{example.RESULTS_END}\n\nafter\n"
    )
    # One estimator and one seed keep the test fast; the table logic is the same.
    monkeypatch.setattr(example.kg, "ESTIMATORS", ("straight_through",))
    monkeypatch.setattr(example, "COMPARE_SEEDS", (0, 1))
    example.main(
        [
            "--compare",
            "--dataset=digits",
            "--epochs=1",
            "--latents=2",
            "--eval-samples=1",
            "--importance-samples=2",
            f"--results={results}",
        ]
    )
    text = results.read_text()
    assert "old table" not in text
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("\n\nafter\n")
    assert "| `straight_through` |" in text


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("discrete_vae", "--estimator=softmax"),
        ("discrete_vae", "--dataset=cifar"),
        ("discrete_vae", "--epochs=0"),
        ("feature_selection", "--k=-3"),
        ("attention_selection", "--estimator=gumbel_softmax"),
    ],
)
def test_bad_flag_stops_with_usage_error(name, flag, capsys):
    example = load_example(name)
    with pytest.raises(SystemExit) as error:
        example.main([flag])
    assert error.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


def test_feature_selection_runs_and_writes_pictures(tmp_path):
    example = load_example("feature_selection")
    metrics = example.main(
        ["--dataset=digits", "--k=8", "--epochs=2", f"--out={tmp_path}"]
    )
    assert 1 <= metrics["distinct"] <= 8
    assert metrics["indices"].shape == (8,)
    assert np.all((metrics["indices"] >= 0) & (metrics["indices"] < 64))
    for metric in ("cae_mse", "random_mse", "variance_mse", "pca_mse"):
        assert 0.0 < metrics[metric] < 1.0  # pixels are in [0, 1]
    for picture in ("selected_pixels.png", "reconstructions.png"):
        assert (tmp_path / picture).stat().st_size > 0


def test_feature_selection_rejects_k_not_below_pixel_count(capsys):
    example = load_example("feature_selection")
    with pytest.raises(SystemExit):
        example.main(["--dataset=digits", "--k=64"])
    assert "--k" in capsys.readouterr().err


def test_attention_selection_runs_and_writes_maps(tmp_path):
    example = load_example("attention_selection")
    flags = "--train-size=256 --test-size=64 --epochs=1 --keys=8 --min-length=3"
    flags += " --max-length=8 --k=2"
    results = example.main([*flags.split(), f"--out={tmp_path}"])
    assert set(results) == {
        ("one", "hard"),
        ("one", "soft"),
        ("topk", "hard"),
        ("topk", "soft"),
    }
    for row in results.values():
        for metric in ("selection", "mass", "answer"):
            assert 0.0 <= row[metric] <= 1.0 + 1e-6
    assert (tmp_path / "attention_maps.png").stat().st_size > 0


def test_attention_data_ground_truth_is_consistent():
    example = load_example("attention_selection")
    rng = np.random.default_rng(0)
    for k in (1, 3):
        inputs, targets = example.make_data(200, 16, 4, 16, k, rng)
        keys, positions = inputs["keys"], targets["positions"]
        # The correct positions are exactly those holding the query key.
        assert np.array_equal(positions == 1, keys == inputs["query"][:, None])
        assert np.all(positions.sum(axis=1) == k)
        expected = np.sum(positions * inputs["values"], axis=1)
        assert np.array_equal(targets["answer"], expected)
        # Padding (key 0) is never a correct position and carries no value.
        assert np.all(inputs["values"][keys == 0] == 0)
