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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "jax_x64: on JAX, run the test with 64-bit types enabled "
        "(`jax.enable_x64(True)`), as float64 and int64 need",
    )
    if keras.backend.backend() == "jax":
        import jax

        # Outside `jax.jit` every JAX primitive is compiled by XLA on its first
        # use with each new shape, and the tests call the library eagerly on
        # hundreds of shapes: at full LLVM optimisation those compilations were
        # most of the JAX run time (1,166 of them in test_gumbel_top_k.py, 70% of
        # its time). Without the expensive LLVM passes each compiles about 1.7
        # times faster (that file: 114 s of CPU time down to 75 s). Fast-math
        # stays off: eager results of sampling, top-k and their gradients came
        # out bitwise identical, jitted ones equal to float32 rounding (largest
        # difference 9e-8).
        jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True)
def _jax_x64(request):
    """Enables JAX's 64-bit types for tests marked `jax_x64` (see testing.FLOAT64)."""
    if (
        keras.backend.backend() != "jax"
        or request.node.get_closest_marker("jax_x64") is None
    ):
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield
