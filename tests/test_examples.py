"""Smoke tests: every example runs end to end with tiny settings.

Each test imports the script's `main(argv)` and runs it for a few steps on
scikit-learn's 8x8 digits or a small synthetic set (never a download), then
checks what a user of the script relies on: the printed metrics are finite and
in range, the promised pictures (and SavedModels) are written, and a bad flag
stops with argparse's usage error naming the flag.
"""

import argparse
import importlib.util
import itertools
import json
import math
import os
import pathlib
import subprocess
import sys
import types

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


def _printed_table(command, env=None):
    """The rows of the table a command prints, without its timing row."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    table = lines[
        next(i for i, line in enumerate(lines) if line.startswith("metric")) :
    ]
    return [line for line in table if "|" in line and "time (s)" not in line]


def test_discrete_vae_same_command_prints_the_same_table(tmp_path):
    """Two processes running the same command print the same table, to the
    last digit (a newcomer's rerun once printed 138.61 nats where the README
    said 137.29)."""
    flags = "--dataset=digits --epochs=2 --latents=4 --eval-samples=2"
    flags += " --importance-samples=5 --no-export"
    tables = [
        _printed_table(
            [
                sys.executable,
                str(EXAMPLES / "discrete_vae.py"),
                *flags.split(),
                f"--out={tmp_path / str(run)}",
            ]
        )
        for run in range(2)
    ]
    assert any("negative ELBO" in row for row in tables[0])
    assert tables[0] == tables[1]


def test_discrete_vae_jang_schedule_is_the_papers(discrete_vae):
    args = discrete_vae.parse_args(["--schedule=jang"])
    schedule = discrete_vae.temperature_schedule(args, 10)  # any run length
    # max(0.5, exp(-1e-4 t)), held for 500 updates at a time.
    assert float(schedule(0)) == float(schedule(499)) == 1.0
    assert float(schedule(500)) == pytest.approx(math.exp(-0.05), rel=1e-6)
    assert float(schedule(6999)) == pytest.approx(math.exp(-0.65), rel=1e-6)
    assert float(schedule(7000)) == float(schedule(10**6)) == 0.5
    reinmax = discrete_vae.parse_args(["--schedule=jang", "--estimator=reinmax"])
    assert float(discrete_vae.temperature_schedule(reinmax, 10)(10**6)) == 1.0


def test_discrete_vae_dynamic_binarization_draws_each_batch_afresh(discrete_vae):
    args = discrete_vae.parse_args(["--latents=2"])
    family = discrete_vae.latent_family(args)
    model = discrete_vae.DiscreteVAE(
        64, family, family.sampler(temperature=1.0, seed=0), dynamic_seed=5
    )
    grey = np.full((200, 64), 0.3, "float32")
    first = keras.ops.convert_to_numpy(model(grey, training=True)["targets"])
    second = keras.ops.convert_to_numpy(model(grey, training=True)["targets"])
    assert set(np.unique(first)) == {0.0, 1.0}
    # 12,800 Bernoulli(0.3) pixels: mean within 5 sigma (sigma = 0.004).
    assert abs(first.mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / first.size)
    assert not np.array_equal(first, second)
    # Outside training the images are used as they are.
    held_out = keras.ops.convert_to_numpy(model(grey, training=False)["targets"])
    np.testing.assert_array_equal(held_out, grey)


def test_discrete_vae_dynamic_run_and_compare_curves(tmp_path, monkeypatch, capsys):
    example = load_example("discrete_vae")
    flags = "--compare --dataset=digits --epochs=2 --latents=2 --seeds=2"
    flags += " --estimators gumbel_softmax gst"
    flags += " --binarization=dynamic --schedule=jang --importance-samples=2"
    results = tmp_path / "results.md"
    example.main([*flags.split(), f"--results={results}", f"--out={tmp_path}"])
    text = results.read_text()
    assert "(seeds 0, 1; 2 epochs, dataset `digits` (dynamic binarization)" in text
    assert "jang schedule" in text and "| `gst` |" in text
    assert (tmp_path / "compare_categorical_curves.png").stat().st_size > 0
    # The record behind the table: every run's metrics and per-epoch curves.
    record = json.loads((tmp_path / "compare_categorical.json").read_text())
    assert record["seeds"] == [0, 1]
    for runs in record["runs"].values():
        assert len(runs) == 2
        for run in runs:
            assert len(run["held_out_elbo"]) == len(run["tracked_bound"]) == 2
    ranking = example.final_ranking(
        {
            name: [r["tracked_bound"] for r in runs]
            for name, runs in record["runs"].items()
        }
    )
    assert f"(best first: {ranking[0]}, {ranking[1]}) since epoch" in text


def test_discrete_vae_stable_since_finds_the_last_change_of_ranking():
    example = load_example("discrete_vae")
    # Seed means per epoch: a 10 12 11 10, b 11 11 12 12: a leads from epoch 3 on.
    curves = {"a": [[10, 12, 11, 10]], "b": [[12, 10, 13, 12], [10, 12, 11, 12]]}
    assert example.stable_since(curves) == 3
    assert example.final_ranking(curves) == ["a", "b"]
    # The same ranking throughout: stable from the first epoch.
    assert example.stable_since({"a": [[1, 1]], "b": [[2, 2]]}) == 1
    # A change at the last epoch: stable only from it.
    assert example.stable_since({"a": [[1, 3]], "b": [[2, 2]]}) == 2


# gumbel_rao and gst differ from straight_through only in the gradient, which the
# library's own tests check; reinmax also raises the temperature floor to 1.
@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through", "reinmax"])
def test_discrete_vae_bernoulli_runs_and_writes_pictures(estimator, tmp_path, capsys):
    example = load_example("discrete_vae")
    flags = f"--latent=bernoulli --dataset=digits --epochs=1 --estimator={estimator}"
    flags += " --eval-samples=1 --importance-samples=5"
    # One estimator is enough to check the SavedModels of the 200-bit code.
    export = estimator == "gumbel_softmax"
    if not export:
        flags += " --no-export"
    metrics = example.main([*flags.split(), f"--out={tmp_path}"])
    floor = example.kg.estimators.get(estimator).min_temperature or 0.5
    assert metrics["final_temperature"] == pytest.approx(floor)
    for metric in ("negative_elbo", "iw_bound", "train_loss"):
        assert math.isfinite(metrics[metric]) and metrics[metric] > 0
    printed = " ".join(capsys.readouterr().out.split())  # the table, unpadded
    # --latents defaults to the paper's 200 Bernoulli variables.
    assert "latent code | 200 Bernoulli" in printed
    elbo = f"held-out negative ELBO, hard codes (nats) | {metrics['negative_elbo']:.2f}"
    assert elbo in printed
    assert f"held-out IW bound, K=5 (nats) | {metrics['iw_bound']:.2f}" in printed
    for picture in ("reconstructions.png", "samples.png", "curves.png"):
        assert (tmp_path / picture).stat().st_size > 0
    if export and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        decoder = tf.saved_model.load(str(tmp_path / "decoder"))
        assert tuple(decoder.serve(tf.zeros((2, 200))).shape) == (2, 64)
        assert (tmp_path / "encoder" / "saved_model.pb").exists()


def results_file(example, path, dataset="digits"):
    """A results page holding an old table of each `--latent` family on
    `dataset`, and one on another dataset, which must stay."""
    blocks = {
        "mnist5k": "{}\nmnist5k table\n{}".format(
            *example.results_markers("categorical", "mnist5k")
        )
    }
    for latent in example.LATENTS:
        start, end = example.results_markers(latent, dataset)
        blocks[latent] = f"{start}\nold {latent} table\n{end}"
    path.write_text(
        "# Results\n\nintro\n\n"
        + "\n\nbetween\n\n".join(blocks.values())
        + "\n\nafter\n"
    )
    return blocks


def test_discrete_vae_compare_writes_table_between_markers(tmp_path, monkeypatch):
    example = load_example("discrete_vae")
    results = tmp_path / "results.md"
    blocks = results_file(example, results)
    # One estimator and two seeds keep the test fast; the table logic is the same.
    monkeypatch.setattr(example, "COMPARE_SEEDS", (0, 1))
    example.main(
        [
            "--compare",
            "--estimators=straight_through",
            "--dataset=digits",
            "--epochs=1",
            "--latents=2",
            "--eval-samples=1",
            "--importance-samples=2",
            f"--results={results}",
            f"--out={tmp_path}",
        ]
    )
    text = results.read_text()
    assert "old categorical table" not in text
    assert blocks["bernoulli"] in text  # the other family's table is kept
    assert blocks["mnist5k"] in text  # and the other dataset's
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("\n\nafter\n")
    assert "| `straight_through` |" in text
    assert "2x10 categorical latents" in text


def test_discrete_vae_bernoulli_compare_writes_its_own_table(tmp_path, monkeypatch):
    example = load_example("discrete_vae")
    results = tmp_path / "results.md"
    blocks = results_file(example, results)
    runs = []

    def train(args, data, seed, verbose, bound_images):
        # Training itself is tested above; here only the table matters.
        runs.append((args.latent, args.latents, args.estimator, seed))
        metrics = {"negative_elbo": 110.0 + seed, "iw_bound": 100.0 + 2 * seed}
        curves = types.SimpleNamespace(values=[120.0, 110.0], bounds=[115.0, 100.0])
        return None, None, curves, {**metrics, "final_temperature": 0.5, "seconds": 3}

    monkeypatch.setattr(example, "train", train)
    flags = "--compare --latent bernoulli --dataset=digits --importance-samples=7"
    example.main([*flags.split(), f"--results={results}", f"--out={tmp_path}"])
    assert runs == [
        ("bernoulli", 200, estimator, seed)
        for estimator in example.kg.ESTIMATORS
        for seed in example.COMPARE_SEEDS
    ]
    text = results.read_text()
    assert "old bernoulli table" not in text
    assert blocks["categorical"] in text
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("\n\nafter\n")
    start, end = example.results_markers("bernoulli", "digits")
    table = text.split(start)[1].split(end)[0]
    assert table.startswith(
        "\nCommand: `python examples/discrete_vae.py --compare --latent bernoulli "
        "--dataset=digits --importance-samples=7 --results="
    )
    assert "200 Bernoulli latents" in table
    assert "| IW bound, K=7 (nats) |" in table
    # Seeds 0, 1, 2: mean 111 and 102, sample standard deviations 1 and 2.
    for estimator in example.kg.ESTIMATORS:
        assert f"| `{estimator}` | 0.50 | 111.0 ± 1.0 | 102.0 ± 2.0 | 3 |" in table


def test_discrete_vae_compare_resumes_from_finished_runs(tmp_path, monkeypatch):
    example = load_example("discrete_vae")
    trained = []

    def train(args, data, seed, verbose, bound_images):
        trained.append((args.estimator, seed, args.epochs))
        metrics = {"negative_elbo": 110.0 + seed, "iw_bound": 100.0 + seed}
        curves = types.SimpleNamespace(values=[120.0, 110.0], bounds=[115.0, 100.0])
        return None, None, curves, {**metrics, "final_temperature": 0.5, "seconds": 3}

    monkeypatch.setattr(example, "train", train)
    results = tmp_path / "results.md"
    results_file(example, results)
    flags = ["--compare", "--dataset=digits", "--seeds=2", f"--out={tmp_path}"]
    flags.append(f"--results={results}")
    # Two processes sharing the work: each trains its own estimators.
    example.main([*flags, "--estimators", "gumbel_softmax"])
    example.main([*flags, "--estimators", "gst"])
    assert trained == [("gumbel_softmax", 0, 50), ("gumbel_softmax", 1, 50)] + [
        ("gst", 0, 50),
        ("gst", 1, 50),
    ]
    # The whole comparison then trains nothing it has, and tabulates all four.
    trained.clear()
    example.main([*flags, "--estimators", "gumbel_softmax", "gst"])
    assert trained == []
    text = results.read_text()
    for estimator in ("gumbel_softmax", "gst"):
        assert f"| `{estimator}` | 0.50 | 110.5 ± 0.7 | 100.5 ± 0.7 | 3 |" in text
    # Other settings are another run: a record of 50 epochs is not one of 2.
    example.main([*flags, "--estimators", "gst", "--epochs=2"])
    assert trained == [("gst", 0, 2), ("gst", 1, 2)]
    # Records are written under a temporary name, then renamed: none is left.
    assert not list((tmp_path / "runs").glob("*.partial"))


def test_discrete_vae_compare_shares_runs_between_processes(tmp_path, monkeypatch):
    example = load_example("discrete_vae")
    trained = []

    def train(args, data, seed, verbose, bound_images):
        trained.append((args.estimator, seed))
        metrics = {"negative_elbo": 110.0 + seed, "iw_bound": 100.0 + seed}
        curves = types.SimpleNamespace(values=[120.0, 110.0], bounds=[115.0, 100.0])
        return None, None, curves, {**metrics, "final_temperature": 0.5, "seconds": 3}

    monkeypatch.setattr(example, "train", train)
    args = example.parse_args(["--compare", "--dataset=digits", f"--out={tmp_path}"])
    run_args = argparse.Namespace(**{**vars(args), "estimator": "gst"})
    busy = example.run_record_path(tmp_path, run_args, 0)
    died = example.run_record_path(tmp_path, run_args, 1)
    busy.parent.mkdir(parents=True)
    # gst seed 0 is being trained by a live process; gst seed 1 was claimed by
    # one that died.
    with subprocess.Popen([sys.executable, "-c", "pass"]) as finished_process:
        finished_process.wait()
    died.with_suffix(".claim").write_text(str(finished_process.pid))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy.with_suffix(".claim").write_text(str(live.pid))

    def other_process_finishes(seconds):
        # While this process waits, the live one writes its record and exits.
        assert trained == [("gst", 1)]
        example.write_run_record(
            busy,
            run_args,
            0,
            {
                "negative_elbo": 105.0,
                "iw_bound": 95.0,
                "final_temperature": 0.5,
                "seconds": 3,
                "held_out_elbo": [120.0, 110.0],
                "tracked_bound": [115.0, 100.0],
            },
        )
        busy.with_suffix(".claim").unlink()
        live.kill()
        live.wait()

    monkeypatch.setattr(example.time, "sleep", other_process_finishes)
    results = tmp_path / "results.md"
    results_file(example, results)
    flags = ["--compare", "--dataset=digits", "--seeds=2", "--estimators=gst"]
    example.main([*flags, f"--out={tmp_path}", f"--results={results}"])
    # The dead process's run was taken over, the live one's was waited for.
    assert trained == [("gst", 1)]
    assert "| `gst` | 0.50 | 108.0 ± 4.2 | 98.0 ± 4.2 | 3 |" in results.read_text()
    assert not list((tmp_path / "runs").glob("*.claim"))


@pytest.fixture(scope="module")
def discrete_vae():
    return load_example("discrete_vae")


@pytest.fixture(params=["bernoulli", "categorical"])
def small_family(request, discrete_vae):
    """3 Bernoulli latents (8 codes) or 2 categorical latents of 3 classes (9)."""
    if request.param == "bernoulli":
        return discrete_vae.Bernoulli(3)
    return discrete_vae.Categorical(2, 3)


def all_codes(family):
    """Every code of a small latent family, in the decoder's layout."""
    if len(family.code_shape) == 1:  # Bernoulli: 0/1 vectors
        values = itertools.product((0.0, 1.0), repeat=family.latents)
        return np.array(list(values), dtype="float32")
    values = itertools.product(range(family.classes), repeat=family.latents)
    return np.eye(family.classes, dtype="float32")[np.array(list(values))]


def pixel_log_likelihood(pixel_logits, x):
    """log p(x_i | z) per pixel, written out independently of the example."""
    return x * pixel_logits - np.log1p(np.exp(pixel_logits))


def per_latent_decoder(family):
    """Pixel i's logit depends on latent i only, so p(z | x) factorizes."""
    rng = np.random.default_rng(7)
    if len(family.code_shape) == 1:
        weight, bias = rng.normal(size=(2, family.latents)) * 2.0
        return lambda codes: codes * weight + bias
    table = rng.normal(size=(family.latents, family.classes)) * 2.0
    return lambda codes: np.sum(codes * table, axis=-1)


def exact_terms(family, logits, x, decode):
    """log q(z | x), log p(x | z) and log p(z) = -L log C for every code z."""
    codes = all_codes(family)
    log_q = family.log_q(codes, family.posterior(logits)[None])
    log_likelihood = np.sum(pixel_log_likelihood(decode(codes), x), axis=-1)
    log_prior = -family.latents * math.log(2 if len(family.code_shape) == 1 else 3)
    return log_q, log_likelihood, log_prior


def test_discrete_vae_posterior_log_q_is_normalized(small_family):
    logits = np.random.default_rng(0).normal(size=small_family.code_shape) * 3.0
    codes = all_codes(small_family)
    log_q = small_family.log_q(codes, small_family.posterior(logits)[None])
    assert np.logaddexp.reduce(log_q) == pytest.approx(0.0, abs=1e-12)
    if len(small_family.code_shape) == 1:
        # Bernoulli: prod_i sigmoid(l_i)^z_i (1 - sigmoid(l_i))^(1 - z_i).
        p = 1.0 / (1.0 + np.exp(-logits))
        direct = np.prod(np.where(codes == 1.0, p, 1.0 - p), axis=-1)
        np.testing.assert_allclose(np.exp(log_q), direct, rtol=1e-12)


def test_discrete_vae_iw_bound_is_exact_at_the_true_posterior(
    small_family, discrete_vae
):
    """With q(z | x) = p(z | x) every importance weight is p(x), for any K."""
    family = small_family
    decode = per_latent_decoder(family)
    x = np.array([1.0, 0.0, 1.0][: family.latents])
    # The prior is uniform, so the true posterior's logits are the per-latent
    # log-likelihoods (for Bernoulli log-odds: their difference at z = 1, 0).
    if len(family.code_shape) == 1:
        ones, zeros = np.ones(family.latents), np.zeros(family.latents)
        logits = pixel_log_likelihood(decode(ones), x)
        logits -= pixel_log_likelihood(decode(zeros), x)
    else:
        # Row c of the codes: every latent set to class c.
        every_class = np.eye(family.classes)[:, None, :]
        codes = every_class.repeat(family.latents, axis=1)
        logits = pixel_log_likelihood(decode(codes), x).T
    _, log_likelihood, log_prior = exact_terms(family, logits, x, decode)
    negative_log_evidence = -np.logaddexp.reduce(log_likelihood + log_prior)
    rows = 20
    for importance_samples in (1, 7):
        _, iw_bound = discrete_vae.held_out_bounds(
            family,
            np.repeat(logits[None], rows, axis=0),
            np.repeat(x[None], rows, axis=0),
            decode,
            importance_samples=importance_samples,
        )
        assert iw_bound == pytest.approx(negative_log_evidence, rel=1e-9)


def test_discrete_vae_bounds_match_exact_enumeration(small_family, discrete_vae):
    """Any posterior: E[negative ELBO estimate] = E[IW bound, K=1] = -ELBO."""
    family = small_family
    decode = per_latent_decoder(family)
    x = np.array([1.0, 0.0, 1.0][: family.latents])
    logits = np.random.default_rng(1).normal(size=family.code_shape).astype("float32")
    log_q, log_likelihood, log_prior = exact_terms(family, logits, x, decode)
    q = np.exp(log_q)
    kl = np.sum(q * (log_q - log_prior))
    negative_elbo = np.sum(q * -log_likelihood) + kl
    # The analytic KL of the evaluation (NumPy) and of the training loss (Keras).
    posterior = family.posterior(logits)
    assert discrete_vae.analytic_kl(family, posterior) == pytest.approx(kl)
    training_kl = keras.ops.convert_to_numpy(family.kl(logits[None]))
    assert float(training_kl[0]) == pytest.approx(kl, rel=1e-5)

    rows = 4000
    estimate, iw_bound = discrete_vae.held_out_bounds(
        family,
        np.repeat(logits[None], rows, axis=0),
        np.repeat(x[None], rows, axis=0),
        decode,
        samples=1,
        importance_samples=1,
        seed=3,
    )
    # Each is the mean of `rows` independent one-code estimates: allow 5 sigma,
    # the sigma of one estimate computed exactly from the enumeration.
    log_weights = log_likelihood + log_prior - log_q
    for value, per_code in ((estimate, -log_likelihood), (iw_bound, -log_weights)):
        sigma = math.sqrt(np.sum(q * (per_code - np.sum(q * per_code)) ** 2) / rows)
        assert abs(value - negative_elbo) < 5 * sigma


def test_discrete_vae_classes_is_only_for_categorical(capsys):
    example = load_example("discrete_vae")
    with pytest.raises(SystemExit) as error:
        example.main(["--latent=bernoulli", "--classes=4"])
    assert error.value.code == 2
    assert "--classes" in capsys.readouterr().err


def test_discrete_vae_help_lists_both_latent_families(capsys):
    example = load_example("discrete_vae")
    with pytest.raises(SystemExit) as error:
        example.main(["--help"])
    assert error.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "--latent {categorical,bernoulli}" in printed
    assert "(default: 30 categorical, 200 bernoulli)" in printed


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("discrete_vae", "--estimator=softmax"),
        ("discrete_vae", "--dataset=cifar"),
        ("discrete_vae", "--epochs=0"),
        ("discrete_vae", "--latent=gaussian"),
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


@pytest.fixture(scope="module")
def l0_pruning():
    return load_example("l0_pruning")


def closed_some_gates(model, rng):
    """Random log_alpha: about a third of each gate layer closed (log_alpha below
    log(1/11), where the inference gate is 0), the rest open at various values."""
    for layer in model.layers:
        if hasattr(layer, "log_alpha"):
            values = rng.uniform(-6.0, 4.0, size=tuple(layer.log_alpha.shape))
            values.flat[0] = 3.0  # never a whole layer closed
            layer.log_alpha.assign(values.astype("float32"))


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_l0_pruned_network_computes_what_the_gated_one_does(l0_pruning, model):
    """The smaller network, gates folded into its weights, gives the gated
    network's inference logits: what a user deploys after L0 training."""
    arch = l0_pruning.Architecture(model, (28, 28))
    gated = arch.build(gates=[0.0, 0.0, 0.0], seed=0)
    rng = np.random.default_rng(0)
    closed_some_gates(gated, rng)
    # Random biases too, so that folding the gate into them is checked.
    for index in range(arch.depth):
        layer = gated.get_layer(f"weighted_{index}")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(size=bias.shape).astype("float32")])
    gates = [gated.get_layer(f"gate_{i}") for i in range(3)]
    keep = [g.open_gates() for g in gates]
    assert all(0 < k.sum() < len(k) for k in keep)
    pruned = arch.prune(
        arch.weighted(gated), keep, [g.inference_gates() for g in gates]
    )
    x = rng.uniform(size=(16, 784)).astype("float32")
    expected = gated.predict(arch.inputs(x), verbose=0)
    got = pruned.predict(arch.inputs(x, keep), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    sizes = tuple(int(k.sum()) for k in keep)
    assert pruned.count_params() == arch.count_weights(sizes)


def test_l0_magnitude_pruning_keeps_the_largest_outgoing_norms(l0_pruning):
    arch = l0_pruning.Architecture("convnet", (28, 28))
    weights = arch.weighted(arch.build(seed=0))
    # Channel c of the second convolution feeds rows c, c + 32, ... of the
    # dense kernel (a flattened 4 x 4 x 32 map); give channel 5 the largest norm
    # there, then 9.
    dense = weights[2][0]
    dense[:] = 0.01
    dense[5::32] = 1.0
    dense[9::32] = 0.5
    keep = arch.magnitude_keep(weights, (16, 2, 128))
    assert np.flatnonzero(keep[1]).tolist() == [5, 9]
    assert keep[0].all() and keep[2].all()


def test_l0_pruning_runs_and_prints_its_table(l0_pruning, tmp_path, capsys):
    results = tmp_path / "results.md"
    start, end = l0_pruning.results_markers("mlp", "digits")
    results.write_text(f"before\n{start}\nold\n{end}\nafter\n")
    # Under Adam a log_alpha moves by about the learning rate per step, so
    # closing gates in 3 epochs of 15 steps takes a large one.
    flags = "--dataset=digits --epochs=3 --lambdas=0.01,0.1 --finetune-epochs=1"
    flags += " --learning-rate=0.1"
    rows = l0_pruning.main(
        [*flags.split(), f"--out={tmp_path}", f"--results={results}"]
    )
    printed = " ".join(capsys.readouterr().out.split())
    assert "dense, no pruning | | 64-300-100 | 100.0% | 100.0%" in printed
    gated = [r for r in rows if r["method"].startswith("L0")]
    assert [r["lambda"] for r in gated] == [0.01, 0.1]
    for row in gated:
        # The pruned network reproduces the gated one (float32 round-off).
        assert row["logit_difference"] < 1e-4
        # Magnitude pruning is compared at exactly the same sizes.
        same = [r for r in rows if r["lambda"] == row["lambda"]]
        assert {r["sizes"] for r in same} == {row["sizes"]}
        assert len(same) == 3  # L0, magnitude before and after fine-tuning
        assert 0.0 <= row["accuracy"] <= 1.0
    assert gated[1]["weights"] < gated[0]["weights"] <= 1.0
    assert (tmp_path / "l0_pruning.png").stat().st_size > 0
    text = results.read_text()
    assert text.startswith(f"before\n{start}\nCommand: `python examples/l0_pruning.py")
    assert "old" not in text and text.endswith(f"{end}\nafter\n")
    assert "| L0 (HardConcreteGate), pruned | 0.1 |" in text


@pytest.mark.parametrize(
    "flag", ["--lambdas=0.1,-1", "--lambdas=x", "--finetune-epochs=-1", "--model=rnn"]
)
def test_l0_pruning_bad_flag_stops_with_usage_error(l0_pruning, flag, capsys):
    with pytest.raises(SystemExit) as error:
        l0_pruning.main([flag])
    assert error.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


def test_l0_pruning_convnet_needs_28_by_28_images(l0_pruning):
    with pytest.raises(SystemExit, match="28 x 28"):
        l0_pruning.main(["--model=convnet", "--dataset=digits"])


def test_l0_pruning_warns_when_gates_cannot_close_in_time(
    l0_pruning, monkeypatch, tmp_path, capsys
):
    # From log_alpha = log(0.8 / 0.2) to log(1 / 11), one learning rate per step.
    expected = math.ceil((math.log(4.0) + math.log(11.0)) / 1e-3)
    assert l0_pruning.steps_to_close(1e-3) == expected == 3785

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the warning comes before training

    monkeypatch.setattr(l0_pruning, "run", stop)
    with pytest.raises(KeyboardInterrupt):
        l0_pruning.main(["--dataset=digits", "--epochs=5", f"--out={tmp_path}"])
    warned = " ".join(capsys.readouterr().err.split())
    assert "Warning: this run has 75 training updates, fewer than the 3785" in warned
    assert "Adam moves log_alpha by about the learning rate per step" in warned


@pytest.fixture(scope="module")
def dvae():
    return load_example("dvae")


def test_dvae_cosine_schedule_ramps_the_kl_weight(dvae):
    schedule = dvae.CosineSchedule(0.0, 0.55, 20)
    assert schedule(0) == 0.0
    # (1 - cos(pi t / 20)) / 2 of the way: a quarter at t = 5, half at t = 10.
    assert schedule(5) == pytest.approx(0.55 * (1 - math.sqrt(0.5)) / 2, rel=1e-12)
    assert schedule(10) == pytest.approx(0.275, rel=1e-12)
    # The ramp's end and everything after it: exactly the final value.
    assert schedule(20) == schedule(21) == schedule(10**6) == 0.55
    values = [schedule(step) for step in range(22)]
    assert values == sorted(values)


def test_dvae_schedules_end_where_the_recipe_says(dvae):
    args = dvae.parse_args(["--kl-weight=2"])
    temperature, kl_weight = dvae.schedules(args, 300)
    # Annealing reads the schedule at iterations 0 .. 299: the temperature
    # falls from 1 and the last update trains at exactly 1/16.
    assert temperature(0) == 1.0
    assert 1 / 16 < temperature(298) < temperature(0)
    assert temperature(299) == 1 / 16
    # The KL weight ramps over the first 1/30 of training (DALL-E's 5000 of
    # 150,000 updates): 10 of 300.
    assert kl_weight(0) == 0.0
    assert 0.0 < kl_weight(9) < 2.0
    assert kl_weight(10) == kl_weight(299) == 2.0


def test_dvae_default_kl_weight_is_dalle_beta_per_pixel_value(dvae):
    # DALL-E: 6.6 for 256 * 256 * 3 values on 32 * 32 codes (192 per code);
    # here 28 * 28 pixels on 7 * 7 codes (16 per code).
    assert dvae.DEFAULT_KL_WEIGHT == pytest.approx(6.6 * 16 / 192)


def test_dvae_runs_and_writes_pictures_table_and_tokenizer(dvae, tmp_path, capsys):
    results = tmp_path / "results.md"
    start, end = dvae.results_markers("mnist5k")
    results.write_text(f"before\n{start}\nold\n{end}\nafter\n")
    flags = "--dataset=mnist5k --train-size=512 --test-size=256 --epochs=1"
    flags += " --batch-size=64 --num-codes=16 --code-dim=8"
    metrics = dvae.main([*flags.split(), f"--out={tmp_path}", f"--results={results}"])
    assert 0 <= metrics["dead_codes"] <= 16
    assert 1.0 <= metrics["perplexity"] <= 16.0
    for name in ("mse", "relaxed_mse"):
        assert 0.0 < metrics[name] < 1.0  # pixels are in [0, 1]
    assert metrics["raw_bits"] == 49 * 4  # 49 codes of log2(16) bits
    assert 0.0 <= metrics["entropy_bits"] <= metrics["raw_bits"] + 1e-9
    # Both measure the same code distribution: 2 ** (bits per position).
    bits_per_code = metrics["entropy_bits"] / 49
    assert metrics["perplexity"] == pytest.approx(2.0**bits_per_code)
    for name in ("batch_code_perplexity", "batch_prob_perplexity"):
        assert 1.0 <= metrics[name] <= 16.0 + 1e-4
    # 8 updates: the temperature schedule ends at 1/16 (exact in float32) on
    # the last one, the KL weight reached --kl-weight (a float32 variable).
    assert metrics["final_temperature"] == 1 / 16
    assert metrics["final_kl_weight"] == pytest.approx(dvae.DEFAULT_KL_WEIGHT, 1e-7)
    for picture in ("reconstructions", "code_usage", "code_grids", "curves"):
        assert (tmp_path / f"{picture}.png").stat().st_size > 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"dead codes, test set | {metrics['dead_codes']} of 16" in printed
    assert "code grid, raw (bits per image) | 196 = 49 x log2(16)" in printed
    assert "final temperature | 0.0625" in printed
    if keras.backend.backend() == "tensorflow":
        check = metrics["export"]
        assert check["passed"] and check["max_difference"] <= 1e-5
        assert check["codes_equal"] == check["images"] == 16
        for part in ("tokenizer", "detokenizer"):
            assert (tmp_path / part / "saved_model.pb").exists()
        assert "export check | passed: max abs difference" in printed
    else:
        assert metrics["export"] == {"skipped": f"backend {keras.backend.backend()}"}
        assert "export check | skipped (backend" in printed
    text = results.read_text()
    assert text.startswith(f"before\n{start}\nCommand: `python examples/dvae.py ")
    assert "old" not in text and text.endswith(f"{end}\nafter\n")
    assert f"| dead codes, test set | {metrics['dead_codes']} of 16 |" in text


@pytest.mark.parametrize(
    "flag",
    [
        "--num-codes=1",
        "--kl-weight=-1",
        "--kl-weight=nan",
        "--dataset=cifar",
        "--epochs=0",
        "--train-size=0",
        "--code-dim=0",
    ],
)
def test_dvae_bad_flag_stops_with_usage_error(dvae, flag, capsys):
    with pytest.raises(SystemExit) as error:
        dvae.main([flag])
    assert error.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset=digits"], "28 x 28"),
        (["--train-size=5000"], "--train-size 5000: --dataset mnist5k has only 4000"),
    ],
)
def test_dvae_refuses_data_it_cannot_use(dvae, flags, message):
    with pytest.raises(SystemExit, match=message):
        dvae.main(flags)


def test_dvae_help_shows_every_default(dvae, capsys):
    with pytest.raises(SystemExit) as error:
        dvae.main(["--help"])
    assert error.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    for flag, default in [
        ("--dataset", "mnist5k"),
        ("--epochs", "20"),
        ("--batch-size", "128"),
        ("--learning-rate", "0.001"),
        ("--num-codes", "512"),
        ("--code-dim", "64"),
        ("--kl-weight", "0.55"),
        ("--seed", "0"),
        ("--out", "runs/dvae"),
        ("--no-export", "False"),
    ]:
        help_text = printed.split(flag, 2)[-1]
        assert help_text.split("(default: ", 1)[1].startswith(f"{default})"), flag


def synthetic_fashion(example):
    """10,500 random 28 x 28 "images" with labels, in the loader's format."""
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(10_500, 784)).astype("float32")
    labels = rng.integers(0, 10, size=10_500)
    # The examples import their shared module as `_data`, from examples/.
    data_module = sys.modules["_data"]
    return data_module.Data(
        images[:10_000], labels[:10_000], images[10_000:], labels[10_000:], (28, 28)
    )


def test_feature_selection_abid_split_is_fixed_and_disjoint():
    example = load_example("feature_selection")
    data = synthetic_fashion(example)
    (x_train, _), (x_val, _), (x_test, _) = example.abid_split(data)
    assert (len(x_train), len(x_val), len(x_test)) == (5400, 600, 4000)
    rows = np.concatenate([x_train, x_val, x_test])
    assert len(np.unique(rows, axis=0)) == 10_000  # no image used twice
    again = example.abid_split(data)
    assert np.array_equal(again[2][0], x_test)


def test_feature_selection_abid_protocol_scores_every_seed(
    tmp_path, monkeypatch, capsys
):
    example = load_example("feature_selection")
    monkeypatch.setattr(
        example, "load_or_exit", lambda name: synthetic_fashion(example)
    )
    results = tmp_path / "results.md"
    flags = "--protocol=abid --dataset=fashion_mnist --k=8 --epochs=1 --seeds=0,1"
    scores = example.main([*flags.split(), f"--results={results}"])
    assert set(scores) == {
        "concrete autoencoder",
        "8 random pixels",
        "8 highest-variance pixels",
        "PCA",
    }
    for values in scores.values():
        assert len(values) == 2  # one (MSE, accuracy) per seed
        for mse, accuracy in values:
            assert 0.0 < mse < 1.0 and 0.0 <= accuracy <= 1.0
    printed = " ".join(capsys.readouterr().out.split())
    # The paper's MNIST-Fashion rows stand beside ours.
    assert "| 0.041 | 0.677" in printed and "| 0.012 | 0.825" in printed
    start, end = example.ABID_MARKERS
    text = results.read_text()
    assert start in text and end in text and "| PCA |" in text


def test_feature_selection_abid_protocol_needs_the_full_data(capsys):
    example = load_example("feature_selection")
    with pytest.raises(SystemExit) as error:
        example.main(["--protocol=abid", "--dataset=mnist5k"])
    assert error.value.code == 2
    assert "--protocol" in capsys.readouterr().err


SCRIPTS = (
    "attention_selection",
    "discrete_vae",
    "dvae",
    "feature_selection",
    "l0_pruning",
)

# Run as `python examples/<name>.py --help` is, then report whether Keras (and
# so TensorFlow) was imported to print the help.
HELP_PROBE = """
import runpy
import sys

sys.path.insert(0, sys.argv[1])
script = sys.argv[2]
sys.argv = [script, "--help"]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exit:
    print("exit status", exit.code)
print("keras imported:", "keras" in sys.modules)
"""


def without_tensorflow_quieting():
    """The environment minus conftest's TF_CPP_MIN_LOG_LEVEL: the scripts
    must quiet TensorFlow themselves."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def help_texts(printed):
    """`--help` output's help text of each flag, keyed by the flag."""
    texts, flag = {}, None
    for line in printed.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            texts[flag] = line
        elif flag is not None:
            texts[flag] += line
    return {flag: " ".join(text.split()) for flag, text in texts.items()}


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_every_flag_with_its_default_without_importing_keras(name):
    result = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, str(EXAMPLES), str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=without_tensorflow_quieting(),
    )
    assert result.stderr == ""  # no TensorFlow log line, no warning
    assert "exit status 0" in result.stdout
    # Parsed before Keras is imported: the help needs no backend start-up.
    assert "keras imported: False" in result.stdout
    texts = help_texts(result.stdout)
    assert "--out" in texts and "--verbose" in texts and "--seed" in texts
    for flag, text in texts.items():
        if flag != "-h":
            assert "(default: " in text, f"{name} {flag}: {text}"


def parsed(example, argv):
    args = example.parse_args(argv)
    return args[1] if isinstance(args, tuple) else args  # feature_selection's


@pytest.mark.parametrize("name", SCRIPTS)
def test_outputs_go_under_the_ignored_runs_folder(name):
    example = load_example(name)
    out = pathlib.Path(parsed(example, []).out)
    assert out == pathlib.Path("runs") / name
    root = EXAMPLES.parent
    if not (root / ".git").exists():
        pytest.skip("git check-ignore needs a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(out / "curves.png")], cwd=root
    )
    assert ignored.returncode == 0, f"{out} is not git-ignored"


def test_the_parsers_estimators_are_the_packages():
    import keras_gumbel as kg

    cli = load_example("_cli")
    assert cli.ESTIMATORS == kg.ESTIMATORS
    hard = tuple(e for e in kg.ESTIMATORS if kg.estimators.get(e).hard)
    assert cli.HARD_ESTIMATORS == hard


def stop_before_training(*args, **kwargs):
    raise KeyboardInterrupt  # the warning comes before training


def test_feature_selection_warns_when_selectors_cannot_converge(
    monkeypatch, tmp_path, capsys
):
    example = load_example("feature_selection")
    # log(0.998 / 0.002 * 783) = 12.876, at most 2 * 0.01 per update.
    assert example.updates_to_converge(784, 1e-2) == 644
    # The default run, 100 epochs of 16 updates on mnist5k, is long enough.
    assert example.updates_to_converge(784, 1e-2) <= 100 * math.ceil(4000 / 256)
    monkeypatch.setattr(example, "train_selector", stop_before_training)
    with pytest.raises(KeyboardInterrupt):
        example.main(["--dataset=digits", "--k=4", "--epochs=10", f"--out={tmp_path}"])
    warned = " ".join(capsys.readouterr().err.split())
    # 1438 training images of 64 pixels: 6 updates per epoch; log(499 * 63) / 0.02.
    assert "Warning: this run has 60 training updates, fewer than the 518" in warned
    assert "Abid et al.'s convergence test" in warned


@pytest.mark.parametrize(
    ("flags", "warns"),
    [
        ("--schedule=jang", True),
        ("--schedule=jang --estimator=reinmax", False),  # starts at its floor, 1
        ("--schedule=fit", False),  # reaches its floor in any run
    ],
)
def test_discrete_vae_warns_when_jangs_schedule_cannot_reach_its_floor(
    flags, warns, monkeypatch, tmp_path, capsys
):
    example = load_example("discrete_vae")
    monkeypatch.setattr(example, "train", stop_before_training)
    with pytest.raises(KeyboardInterrupt):
        example.main([*flags.split(), "--dataset=digits", f"--out={tmp_path}"])
    warned = " ".join(capsys.readouterr().err.split())
    # 50 epochs of ceil(1438 / 100) = 15 updates; exp(-1e-4 t) reaches 0.5 at
    # t = 6931, and the schedule moves every 500 updates.
    expected = "Warning: this run has 750 training updates, fewer than the 7000"
    assert (expected in warned) == warns


def test_attention_selection_warns_below_the_measured_length(
    monkeypatch, tmp_path, capsys
):
    example = load_example("attention_selection")
    monkeypatch.setattr(example, "train_variant", stop_before_training)
    with pytest.raises(KeyboardInterrupt):
        example.main(["--epochs=2", "--train-size=1000", f"--out={tmp_path}"])
    warned = " ".join(capsys.readouterr().err.split())
    assert "Warning: this run has 16 training updates, fewer than the 785" in warned
    # The defaults (5 epochs of 157 updates) are long enough.
    assert example.ENOUGH_UPDATES <= 5 * math.ceil(20000 / 128)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow's start-up logs exist only where it is the backend",
)
def test_a_run_prints_no_tensorflow_log_lines(tmp_path):
    flags = "--train-size=64 --test-size=16 --epochs=1 --keys=4 --min-length=2"
    flags += " --max-length=4 --k=1 --batch-size=32"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "attention_selection.py"),
            *flags.split(),
            f"--out={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=without_tensorflow_quieting(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Attention maps are in" in result.stdout
    # Only the short-run warning; none of TensorFlow's C++ or Python logs.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("Warning: this run has") for line in lines), lines


def test_dvae_warns_below_the_measured_length(dvae, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(dvae, "train", stop_before_training)
    with pytest.raises(KeyboardInterrupt):
        dvae.main(["--epochs=3", "--train-size=1000", f"--out={tmp_path}"])
    warned = " ".join(capsys.readouterr().err.split())
    # 3 epochs of ceil(1000 / 128) = 8 updates.
    assert "Warning: this run has 24 training updates, fewer than the 320" in warned
    # The default run, 20 epochs of 32 updates on mnist5k, is long enough.
    assert dvae.ENOUGH_UPDATES <= 20 * math.ceil(4000 / 128)
