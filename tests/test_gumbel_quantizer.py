"""GumbelQuantizer: a learned codebook sampled with Gumbel-Softmax."""

import math

import keras
import numpy as np
import pytest

import keras_gumbel as kg
from tests import testing

X = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
# [batch, height, width, features]: a feature map, one code per position.
GRID = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype("float32")


def built(num_codes=4, code_dim=3, groups=2, features=5, **kwargs):
    layer = kg.GumbelQuantizer(num_codes, code_dim, groups=groups, **kwargs)
    layer.build((None, features))
    return layer


def numpy_logits(layer, x):
    kernel, bias = testing.to_numpy(layer.kernel), testing.to_numpy(layer.bias)
    flat = np.asarray(x, "float64") @ kernel + bias
    return flat.reshape(*flat.shape[:-1], layer.groups, layer.num_codes)


@pytest.mark.parametrize(
    "init_kwargs, x, output_shape",
    [
        ({"num_codes": 8, "code_dim": 3}, X, (6, 3)),
        (
            {"num_codes": 4, "code_dim": 2, "groups": 3, "hard": True, "seed": 1},
            X,
            (6, 6),
        ),
        (
            {"num_codes": 6, "code_dim": 5, "groups": 2, "kl_weight": 0.1, "seed": 2},
            GRID,
            (2, 3, 3, 10),
        ),
    ],
    ids=["one_group", "hard_three_groups", "grid_with_kl"],
)
def test_layer_contract(init_kwargs, x, output_shape, tmp_path):
    testing.run_layer_test(
        kg.GumbelQuantizer,
        init_kwargs,
        x,
        expected_output_shape=output_shape,
        supports_masking=True,
        mask_passes_through=True,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("estimator", kg.ESTIMATORS)
def test_every_estimator_outputs_one_codebook_vector_per_group(estimator):
    hard = kg.estimators.get(estimator).hard
    layer = built(estimator=estimator, hard=hard, temperature=1.0, seed=0)
    y = testing.to_numpy(layer(X, training=True)).reshape(6, 2, 3)
    codebook = testing.to_numpy(layer.codebook)  # [groups, codes, dim]
    for group in range(2):
        distances = np.abs(y[:, group, None, :] - codebook[group][None]).max(-1)
        if hard:
            # An exact one-hot sample picks a codebook row exactly.
            assert np.all(distances.min(axis=1) == 0.0)
        else:
            # A relaxed sample mixes the rows: inside their convex hull,
            # within the rows' range per dimension.
            rows = codebook[group]
            assert np.all(y[:, group] <= rows.max(0) + 1e-6)
            assert np.all(y[:, group] >= rows.min(0) - 1e-6)


def test_hard_training_codes_follow_softmax_of_the_logits():
    """200,000 positions with fixed logits: the frequency of each sampled code
    is the softmax probability, chi-square p > 1e-3."""
    layer = kg.GumbelQuantizer(3, 3, hard=True, seed=0)
    layer.build((None, 2))
    layer.kernel.assign(np.array([[1.0, 0.0, -1.0], [0.0, 0.5, 0.0]], "float32"))
    layer.codebook.assign(np.eye(3, dtype="float32")[None])  # code c -> e_c
    x = np.tile(np.array([[0.5, 1.0]], "float32"), (200_000, 1))
    y = testing.to_numpy(layer(x, training=True))
    probabilities = testing.softmax(numpy_logits(layer, x[:1])[0, 0])
    assert testing.chi_square_pvalue(y, probabilities) > 1e-3


def test_encode_decode_and_inference_agree_exactly():
    layer = built(num_codes=5, code_dim=3, groups=2, seed=3)
    x = np.random.default_rng(2).normal(size=(7, 5)).astype("float32")
    codes = testing.to_numpy(layer.encode(x))
    assert codes.dtype == np.int32 and codes.shape == (7, 2)
    np.testing.assert_array_equal(codes, numpy_logits(layer, x).argmax(-1))
    decoded = testing.to_numpy(layer.decode(codes))
    codebook = testing.to_numpy(layer.codebook)
    expected = np.concatenate([codebook[g][codes[:, g]] for g in range(2)], axis=-1)
    np.testing.assert_array_equal(decoded, expected)
    # inference="argmax" is decode(encode(x)), bit for bit, also compiled.
    np.testing.assert_array_equal(testing.to_numpy(layer(x)), decoded)
    model = keras.Sequential([keras.Input((5,)), layer])
    np.testing.assert_array_equal(model.predict(x, verbose=0), decoded)


def test_decode_takes_codes_of_any_leading_shape():
    layer = built(num_codes=4, code_dim=2, groups=3, seed=0)
    codes = np.random.default_rng(0).integers(0, 4, size=(2, 7, 7, 3))
    decoded = testing.to_numpy(layer.decode(codes))
    assert decoded.shape == (2, 7, 7, 6)
    codebook = testing.to_numpy(layer.codebook)
    np.testing.assert_array_equal(decoded[1, 2, 3, 2:4], codebook[1, codes[1, 2, 3, 1]])


def test_softmax_inference_mixes_with_tempered_probabilities():
    layer = built(inference="softmax", temperature=0.7, seed=1)
    weights = testing.softmax(numpy_logits(layer, X) / 0.7)  # [6, groups, codes]
    codebook = testing.to_numpy(layer.codebook).astype("float64")
    expected = np.einsum("bgc,gcd->bgd", weights, codebook).reshape(6, -1)
    np.testing.assert_allclose(
        testing.to_numpy(layer(X)), expected, rtol=1e-5, atol=1e-6
    )


def test_mixture_keeps_positions_and_groups_apart_on_a_feature_map():
    # Each position's group g mixes group g's codebook with its own weights,
    # whatever the leading axes (the mixture flattens and restores them).
    layer = kg.GumbelQuantizer(4, 3, groups=2, inference="softmax", seed=0)
    layer.build((None, 3, 3, 4))
    weights = testing.softmax(numpy_logits(layer, GRID))  # [2, 3, 3, groups, codes]
    codebook = testing.to_numpy(layer.codebook).astype("float64")
    expected = np.einsum("bhwgc,gcd->bhwgd", weights, codebook).reshape(2, 3, 3, 6)
    np.testing.assert_allclose(
        testing.to_numpy(layer(GRID)), expected, rtol=1e-5, atol=1e-6
    )


def test_kl_term_is_the_mean_over_positions_of_the_summed_group_kls():
    layer = built(num_codes=4, groups=2, kl_weight=0.25, seed=0)
    layer(X, training=True)
    [loss] = layer.losses
    logits = numpy_logits(layer, X)
    q = testing.softmax(logits)
    kl = np.sum(q * np.log(q * 4), axis=-1)  # KL(q || uniform), [6, groups]
    expected = 0.25 * kl.sum(axis=-1).mean()
    assert float(testing.to_numpy(loss)) == pytest.approx(expected, rel=1e-5)
    # Masked positions do not count.
    mask = np.array([True, False, True, True, False, True])
    layer(X, training=True, mask=mask)
    [loss] = layer.losses
    expected = 0.25 * kl.sum(axis=-1)[mask].mean()
    assert float(testing.to_numpy(loss)) == pytest.approx(expected, rel=1e-5)


def test_no_kl_term_in_inference_and_zero_weight_gives_zero():
    layer = built(seed=0)
    layer(X)
    assert layer.losses == []
    layer(X, training=True)
    assert float(testing.to_numpy(layer.losses[0])) == 0.0


def entropy_perplexity(distribution):
    p = distribution[distribution > 0]
    return math.exp(-np.sum(p * np.log(p)))


def test_perplexities_of_the_batch_match_hand_computed_values():
    layer = built(num_codes=4, groups=2, seed=5)
    x = np.random.default_rng(3).normal(size=(40, 5)).astype("float32") * 3
    layer(x, training=True)
    logits = numpy_logits(layer, x)
    codes = logits.argmax(-1)
    code = sum(
        entropy_perplexity(np.bincount(codes[:, g], minlength=4) / 40) for g in range(2)
    )
    average = testing.softmax(logits).mean(axis=0)
    prob = sum(entropy_perplexity(average[g]) for g in range(2))
    assert float(testing.to_numpy(layer.code_perplexity)) == pytest.approx(
        code, rel=1e-5
    )
    assert float(testing.to_numpy(layer.prob_perplexity)) == pytest.approx(
        prob, rel=1e-5
    )
    # One code used by every position: perplexity 1 per group, the minimum.
    layer.kernel.assign(np.zeros((5, 8), "float32"))
    layer.bias.assign(np.array([9, 0, 0, 0, 0, 0, 9, 0], "float32"))
    layer(x, training=True)
    assert float(testing.to_numpy(layer.code_perplexity)) == pytest.approx(2.0)
    np.testing.assert_array_equal(layer.code_usage(x), [[40, 0, 0, 0], [0, 0, 40, 0]])


def test_masked_positions_leave_the_perplexities_out():
    layer = built(num_codes=4, groups=1, seed=0)
    layer.kernel.assign(np.zeros((5, 4), "float32"))
    layer.bias.assign(np.array([5, 0, 0, 0], "float32"))
    x = np.zeros((4, 5), "float32")
    x_other = x.copy()
    layer(x, training=True, mask=np.array([True, True, False, False]))
    first = float(testing.to_numpy(layer.code_perplexity))
    assert first == pytest.approx(1.0)
    # Changing only masked positions changes nothing.
    x_other[2:] = 100.0
    layer(x_other, training=True, mask=np.array([True, True, False, False]))
    assert float(testing.to_numpy(layer.code_perplexity)) == pytest.approx(first)


def test_codebook_and_projection_learn_through_the_sample():
    layer = kg.GumbelQuantizer(4, 2, groups=2, seed=0)
    x = keras.ops.convert_to_tensor(X)
    before = [testing.to_numpy(v) for v in (layer(x, training=True), layer.kernel)]
    grads = testing.variable_gradient(
        lambda: keras.ops.sum(layer(x, training=True) ** 2), layer.kernel
    )
    assert np.all(np.isfinite(grads)) and np.any(grads != 0)
    grads = testing.variable_gradient(
        lambda: keras.ops.sum(layer(x, training=True) ** 2), layer.codebook
    )
    assert np.all(np.isfinite(grads)) and np.any(grads != 0)
    assert before[0].shape == (6, 4)


@pytest.mark.parametrize(
    "kwargs, error, shown",
    [
        ({"num_codes": 1}, ValueError, "num_codes=1"),
        ({"num_codes": 4.0}, TypeError, "num_codes=4.0"),
        ({"code_dim": 0}, ValueError, "code_dim=0"),
        ({"groups": True}, TypeError, "groups=True"),
        ({"kl_weight": -0.1}, ValueError, "kl_weight=-0.1"),
        ({"kl_weight": float("nan")}, ValueError, "kl_weight=nan"),
        ({"inference": "sigmoid"}, ValueError, "inference='sigmoid'"),
        ({"estimator": "softmax"}, ValueError, "softmax"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, shown):
    arguments = {"num_codes": 4, "code_dim": 2, **kwargs}
    name = next(iter(kwargs))
    testing.assert_error(error, lambda: kg.GumbelQuantizer(**arguments), name, shown)


def test_decode_rejects_float_codes_and_wrong_group_count():
    layer = built(groups=2)
    with pytest.raises(TypeError, match="codes.dtype=float32"):
        layer.decode(np.zeros((3, 2), "float32"))
    with pytest.raises(ValueError, match=r"codes.shape=\(3, 3\)"):
        layer.decode(np.zeros((3, 3), "int32"))


def test_methods_before_build_say_what_to_do():
    layer = kg.GumbelQuantizer(4, 2)
    with pytest.raises(ValueError, match="call it on an input first"):
        layer.encode(X)


def test_config_round_trip_keeps_every_argument():
    layer = kg.GumbelQuantizer(
        16,
        4,
        groups=2,
        temperature=2.0,
        hard=True,
        estimator="reinmax",
        kl_weight=0.5,
        inference="sample",
        seed=4,
    )
    config = layer.get_config()
    assert {k: config[k] for k in ("num_codes", "code_dim", "groups", "kl_weight")} == {
        "num_codes": 16,
        "code_dim": 4,
        "groups": 2,
        "kl_weight": 0.5,
    }
    clone = kg.GumbelQuantizer.from_config(config)
    assert (clone.hard, clone.inference, clone.seed) == (True, "sample", 4)
    assert clone.min_temperature == 1.0  # ReinMax's


SERVE_SCRIPT = """
import sys

import numpy as np
import tensorflow as tf

folder = sys.argv[1]
tokenizer = tf.saved_model.load(folder + "/tokenizer")
detokenizer = tf.saved_model.load(folder + "/detokenizer")
x = np.load(folder + "/x.npy")
codes = tokenizer.serve(x).numpy()
np.testing.assert_array_equal(codes, np.load(folder + "/codes.npy"))
expected = np.load(folder + "/expected.npy")
np.testing.assert_allclose(detokenizer.serve(codes).numpy(), expected, atol=1e-6)
assert "keras_gumbel" not in sys.modules
print("served without keras_gumbel")
"""


def tokenizer_parts():
    """Image-like features -> Dense encoder -> quantizer -> Dense decoder."""
    encoder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    quantizer = kg.GumbelQuantizer(6, 3, groups=2, seed=0)
    decoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    autoencoder = keras.Sequential([encoder, quantizer, decoder])
    autoencoder.build((None, 5))
    return encoder, quantizer, decoder, autoencoder


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel export and TFLite conversion need the TensorFlow backend",
)
def test_tokenizer_and_detokenizer_serve_without_the_package(tmp_path):
    import os
    import subprocess
    import sys

    import tensorflow as tf

    from tests import test_export

    encoder, quantizer, decoder, autoencoder = tokenizer_parts()
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    tokenizer = keras.export.ExportArchive()
    tokenizer.track(autoencoder)
    tokenizer.add_endpoint(
        "serve",
        lambda images: quantizer.encode(encoder(images)),
        input_signature=[tf.TensorSpec((None, 5), tf.float32)],
    )
    tokenizer.write_out(str(tmp_path / "tokenizer"), verbose=False)
    detokenizer = keras.export.ExportArchive()
    detokenizer.track(autoencoder)
    detokenizer.add_endpoint(
        "serve",
        lambda codes: decoder(quantizer.decode(codes)),
        input_signature=[tf.TensorSpec((None, 2), tf.int32)],
    )
    detokenizer.write_out(str(tmp_path / "detokenizer"), verbose=False)
    codes = testing.to_numpy(quantizer.encode(encoder(x)))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "codes.npy", codes)
    # The autoencoder's inference output is what the two endpoints compose to.
    np.save(tmp_path / "expected.npy", autoencoder.predict(x, verbose=0))
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(tmp_path)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served without keras_gumbel" in result.stdout

    # TFLite, builtin ops only: the tokenizer gives the same codes.
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "tokenizer"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (tflite_codes,) = test_export.run_tflite(converter.convert(), x)
    np.testing.assert_array_equal(tflite_codes, codes)
    # And the whole autoencoder converts with kg.export.to_tflite.
    (reconstruction,) = test_export.run_tflite(kg.export.to_tflite(autoencoder), x)
    np.testing.assert_allclose(
        reconstruction, autoencoder.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def frozen_model(quantizer):
    """A model around `quantizer` whose weights never move (SGD at rate 0)."""
    model = keras.Sequential([keras.Input((5,)), quantizer, keras.layers.Dense(5)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def test_codebook_logger_writes_the_epoch_mean_of_the_batch_perplexities():
    quantizer = kg.GumbelQuantizer(4, 2, groups=2, seed=3, name="codes")
    model = frozen_model(quantizer)
    x = np.random.default_rng(4).normal(size=(48, 5)).astype("float32") * 3
    history = model.fit(
        x,
        x,
        batch_size=16,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[kg.callbacks.CodebookLogger()],
    )
    # The weights stay fixed, so each batch's perplexities follow from its logits.
    code, prob = [], []
    for batch in np.split(x, 3):
        logits = numpy_logits(quantizer, batch)
        codes = logits.argmax(-1)
        code.append(
            sum(
                entropy_perplexity(np.bincount(codes[:, g], minlength=4) / 16)
                for g in range(2)
            )
        )
        average = testing.softmax(logits).mean(axis=0)
        prob.append(sum(entropy_perplexity(average[g]) for g in range(2)))
    for epoch in range(2):
        assert history.history["codes/code_perplexity"][epoch] == pytest.approx(
            np.mean(code), rel=1e-5
        )
        assert history.history["codes/prob_perplexity"][epoch] == pytest.approx(
            np.mean(prob), rel=1e-5
        )


def test_codebook_logger_needs_a_quantizer():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="found no `keras_gumbel.GumbelQuantizer`"):
        model.fit(
            X, X[:, :5], epochs=1, verbose=0, callbacks=[kg.callbacks.CodebookLogger()]
        )


def test_temperature_and_kl_weight_annealed_in_one_fit():
    quantizer = kg.GumbelQuantizer(4, 2, kl_weight=0.0, seed=0, name="codes")
    model = frozen_model(quantizer)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model  # noqa: B018 (on JAX, syncs the variables' values)
            seen.append(
                (
                    float(testing.to_numpy(quantizer.temperature)),
                    float(testing.to_numpy(quantizer.kl_weight)),
                )
            )

    temperature = kg.TemperatureAnnealing(lambda step: 1.0 / (1 + step))
    kl_weight = kg.Annealing(
        lambda step: 0.5 * step, variable="kl_weight", log_key="kl_weight"
    )
    history = model.fit(
        X,
        X,
        batch_size=2,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[temperature, kl_weight, Probe()],
    )
    assert seen == [(1.0, 0.0), (0.5, 0.5), (pytest.approx(1 / 3), 1.0)]
    assert history.history["kl_weight"] == [1.0]
    assert history.history["temperature"] == [pytest.approx(1 / 3)]


def test_resumed_training_anneals_and_learns_exactly_as_uninterrupted(tmp_path):
    """Temperature and KL weight annealed per step; interrupted after epoch 1
    and resumed with BackupAndRestore, the run gets the same values, the same
    losses and the same codebook as one that never stopped."""
    from tests.test_callbacks import Interrupt

    x = np.random.default_rng(5).normal(size=(8, 5)).astype("float32")

    def train(callbacks):
        keras.utils.set_random_seed(0)
        quantizer = kg.GumbelQuantizer(4, 2, groups=2, seed=0, name="codes")
        model = keras.Sequential([keras.Input((5,)), quantizer, keras.layers.Dense(5)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        seen = []

        class Probe(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                self.model  # noqa: B018 (on JAX, syncs the variables' values)
                seen.append(
                    (
                        float(testing.to_numpy(quantizer.temperature)),
                        float(testing.to_numpy(quantizer.kl_weight)),
                    )
                )

        annealing = [
            kg.TemperatureAnnealing(lambda step: 2.0 / (1 + step)),
            kg.Annealing(lambda step: 0.1 * step, variable="kl_weight", log_key="kl"),
        ]
        try:
            history = model.fit(
                x,
                x,
                batch_size=4,
                epochs=3,
                shuffle=False,
                verbose=0,
                callbacks=[*annealing, Probe(), *callbacks],
            )
        except RuntimeError:
            history = None
        return seen, history, testing.to_numpy(quantizer.codebook)

    uninterrupted, full, codebook = train([])
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    before, _, _ = train([backup, Interrupt(epoch=1)])
    after, resumed, resumed_codebook = train([backup])
    assert before + after == uninterrupted
    assert len(set(uninterrupted)) == 6  # a new pair of values every step
    for key in ("loss", "temperature", "kl"):
        np.testing.assert_allclose(
            resumed.history[key], full.history[key][1:], rtol=1e-6
        )
    np.testing.assert_allclose(resumed_codebook, codebook, rtol=1e-6, atol=1e-7)
