import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_policy():
    """Tests that set a mixed-precision policy must not leak it to others."""
    yield
    keras.config.set_dtype_policy("float32")
