"""The layout rules of docs/architecture.md, checked on the package's source.

Every module has a floor; a module imports only modules on lower floors (a
package's `__init__` may hand on names of its own modules), no private name of
one module is used by another, the backend is asked in `_backend` alone, and
the code blocks of the architecture page run.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_gumbel"

# Lowest first; docs/architecture.md draws the same order.
FLOORS = {
    "keras_gumbel._typing": 0,
    "keras_gumbel._checks": 0,
    "keras_gumbel._backend.portable": 0,
    "keras_gumbel._backend.tensorflow": 1,
    "keras_gumbel._backend.torch": 1,
    "keras_gumbel._backend.jax": 1,
    "keras_gumbel._backend": 2,
    "keras_gumbel._numerics": 3,
    "keras_gumbel.random": 4,
    "keras_gumbel.schedules": 4,
    "keras_gumbel.estimators": 5,
    "keras_gumbel.ops": 6,
    "keras_gumbel.layers._base": 7,
    "keras_gumbel.layers.concrete_select": 8,
    "keras_gumbel.layers.gumbel_quantizer": 8,
    "keras_gumbel.layers.gumbel_sigmoid": 8,
    "keras_gumbel.layers.gumbel_softmax": 8,
    "keras_gumbel.layers.gumbel_top_k": 8,
    "keras_gumbel.layers.hard_concrete_gate": 8,
    "keras_gumbel.layers": 9,
    "keras_gumbel.callbacks": 10,
    "keras_gumbel.export": 10,
    "keras_gumbel": 11,
}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_imports(tree):
    """`(module, name)` for every `keras_gumbel` import; name is None for modules."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_gumbel"):
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "keras_gumbel"
        ):
            for alias in node.names:
                yield node.module, alias.name


def test_every_module_has_a_floor():
    assert set(sources()) == set(FLOORS)


@pytest.mark.parametrize("module", sorted(FLOORS))
def test_modules_import_only_lower_floors(module):
    tree = ast.parse(sources()[module].read_text())
    for target, name in package_imports(tree):
        imported = f"{target}.{name}" if f"{target}.{name}" in FLOORS else target
        assert FLOORS[imported] < FLOORS[module], (
            f"{module} (floor {FLOORS[module]}) imports {imported} "
            f"(floor {FLOORS[imported]})"
        )


@pytest.mark.parametrize("module", sorted(FLOORS))
def test_no_private_name_crosses_a_module_boundary(module):
    tree = ast.parse(sources()[module].read_text())
    for target, name in package_imports(tree):
        if name is not None and f"{target}.{name}" not in FLOORS:
            assert not name.startswith("_"), f"{module} imports {target}.{name}"
    # `alias._name` on an imported package module.
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "keras_gumbel"
        for alias in node.names
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            assert not node.attr.startswith("_"), (
                f"{module} uses {node.value.id}.{node.attr}"
            )


def test_ops_names_one_module_in_each_file():
    # In layers, `ops` is keras_gumbel.ops and Keras's is spelled `keras.ops`;
    # below the layers, where keras_gumbel.ops is never imported, it is Keras's.
    for module, path in sources().items():
        text = path.read_text()
        ours = "from keras_gumbel import" in text and re.search(
            r"from keras_gumbel import [^\n]*\bops\b", text
        )
        theirs = "from keras import ops" in text
        assert not (ours and theirs), module
        if module.startswith("keras_gumbel.layers."):
            assert not theirs, module
        assert not re.search(r"\bimport ops as\b|\bas kops\b", text), module


def test_only_the_backend_package_asks_which_backend_runs():
    for module, path in sources().items():
        text = path.read_text()
        if not module.startswith("keras_gumbel._backend"):
            assert "keras.backend.backend()" not in text, module
        assert "object.__setattr__" not in text, module


def architecture_page_code():
    page = (ROOT / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    # A block whose first line names a file (`# keras_gumbel/_backend/jax.py`)
    # shows part of that file, not code to run.
    return [block for block in blocks if not re.match(r"# [\w/.]+\.py\n", block)]


def test_the_architecture_page_examples_run(tmp_path):
    script = tmp_path / "architecture_examples.py"
    script.write_text("\n".join(architecture_page_code()))
    # A fresh process: the examples register an estimator, which must not leak
    # into the registry the other tests see.
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
