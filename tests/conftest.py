import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Test modules import the shared helpers as `testing` (pytest puts this folder
# on sys.path) or as `tests.testing`, which needs the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_policy():
    """Tests that set a mixed-precision policy must not leak it to others."""
    yield
    keras.config.set_dtype_policy("float32")
