import os

# Before TensorFlow is first imported, which reads it once.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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

        # Outside `jax.jit` XLA compiles every primitive again for each new
        # shape, and the tests run the library eagerly on hundreds of shapes,
        # so compilation dominates their time. Skipping XLA's expensive LLVM
        # passes makes each compilation faster without changing results beyond
        # float32 rounding (fast-math stays off).
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
