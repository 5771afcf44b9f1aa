"""Type aliases of the public signatures.

Keras tensors have no common static type across backends, so a tensor argument
is `TensorLike`: a backend tensor, a Keras variable, a NumPy array or a nested
list of numbers.
"""

from typing import Any

import keras

__all__ = ["SeedLike", "Shape", "TensorLike"]

TensorLike = Any
Shape = tuple[int | None, ...] | list[int | None]
SeedLike = int | keras.random.SeedGenerator | None
