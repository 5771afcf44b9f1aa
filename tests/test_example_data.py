"""The examples' shared data module, `examples/_data.py`.

The full Fashion-MNIST comes from Debian's package `dataset-fashion-mnist`; the
test that reads it skips, naming the package, where it is not installed.
"""

import gzip
import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def data():
    spec = importlib.util.spec_from_file_location("_data", EXAMPLES / "_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_reads_shape_and_bytes(data, tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), array)


def test_read_idx_rejects_a_truncated_file(data, tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((5, 2)))
    raw = gzip.open(tmp_path / "a.gz").read()
    with gzip.open(tmp_path / "b.gz", "wb") as file:
        file.write(raw[:-1])
    with pytest.raises(ValueError, match=r"header says \(5, 2\), file holds 9"):
        data.read_idx(tmp_path / "b.gz")


def test_fashion_mnist_from_any_folder_with_the_four_files(data, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 28, 28))
    test = rng.integers(0, 256, size=(4, 28, 28))
    for (images, labels), (x, y) in zip(
        data.FASHION_MNIST_FILES.values(),
        ((train, np.arange(6) % 10), (test, np.arange(4))),
        strict=True,
    ):
        write_idx(tmp_path / images, x)
        write_idx(tmp_path / labels, y)
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path / "absent", tmp_path))
    loaded = data.load("fashion_mnist")
    # The files' own split and order; pixels scaled to [0, 1].
    np.testing.assert_allclose(loaded.x_train * 255, train.reshape(6, 784), atol=1e-4)
    np.testing.assert_allclose(loaded.x_test * 255, test.reshape(4, 784), atol=1e-4)
    assert loaded.y_test.tolist() == [0, 1, 2, 3]
    assert loaded.image_shape == (28, 28)
    binary = data.load("fashion_mnist", binarized=True)
    assert set(np.unique(binary.x_train)) <= {0.0, 1.0}


def test_missing_fashion_mnist_names_the_package(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path,))
    message = "apt-get install dataset-fashion-mnist"
    with pytest.raises(FileNotFoundError, match=message):
        data.load("fashion_mnist")
    # A command line gets the message, not a traceback.
    with pytest.raises(SystemExit) as error:
        data.load_or_exit("fashion_mnist")
    assert "--dataset fashion_mnist" in str(error.value.code)
    assert str(tmp_path) in str(error.value.code)


def test_unknown_dataset_is_named(data):
    with pytest.raises(ValueError, match="got 'cifar'"):
        data.load("cifar")


def test_splits_do_not_depend_on_anything_but_the_name(data):
    first, second = data.load("digits"), data.load("digits")
    assert np.array_equal(first.x_train, second.x_train)
    assert len(first.x_test) == 1797 // 5
    # Images and labels stay paired through the shuffle.
    from sklearn.datasets import load_digits

    digits = load_digits()
    row = np.flatnonzero((digits.data / 16.0 == first.x_test[0]).all(axis=1))
    assert digits.target[row[0]] == first.y_test[0]


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_dynamic_binarization_keeps_the_fixed_test_set_and_split(data, name):
    grey, fixed = data.load(name), data.load(name, binarized=True)
    dynamic = data.load(name, binarized="dynamic")
    # Training images keep their grey levels, in the split of the fixed draw;
    # the held-out images are the fixed draw's, so the two compare directly.
    np.testing.assert_array_equal(dynamic.x_test, fixed.x_test)
    np.testing.assert_array_equal(dynamic.y_train, fixed.y_train)
    np.testing.assert_array_equal(dynamic.y_test, fixed.y_test)
    assert not np.isin(dynamic.x_train, (0.0, 1.0)).all()
    assert sorted(map(bytes, dynamic.x_train)) != sorted(map(bytes, fixed.x_train))
    # Every training image of the dynamic split is one of the grey images.
    known = set(map(bytes, np.concatenate([grey.x_train, grey.x_test])))
    assert all(bytes(row) in known for row in dynamic.x_train)
    assert data.load(name, binarized="fixed").x_train.tobytes() == (
        fixed.x_train.tobytes()
    )


def test_unknown_binarization_is_named(data):
    with pytest.raises(ValueError, match="`binarized`.*got 'sometimes'"):
        data.load("digits", binarized="sometimes")


def test_full_fashion_mnist(data):
    if data.fashion_mnist_dir() is None:
        pytest.skip("full Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
    loaded = data.load("fashion_mnist")
    assert loaded.x_train.shape == (60000, 784) and loaded.x_test.shape == (10000, 784)
    assert loaded.x_train.dtype == np.float32
    assert 0.0 <= loaded.x_train.min() and loaded.x_train.max() == 1.0
    # Fashion-MNIST is balanced: 6000 and 1000 images of each of the 10 classes.
    assert np.bincount(loaded.y_train).tolist() == [6000] * 10
    assert np.bincount(loaded.y_test).tolist() == [1000] * 10
