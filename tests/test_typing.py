"""The package ships `py.typed`: every public signature carries annotations.

mypy (run by CI, configured in pyproject.toml) checks that the annotations are
consistent; this test checks that none is missing, which mypy only reports for
partly annotated functions.
"""

import inspect

import pytest

import keras_gumbel as kg

PUBLIC_MODULES = (
    kg,
    kg.callbacks,
    kg.estimators,
    kg.export,
    kg.layers,
    kg.ops,
    kg.random,
    kg.schedules,
)


def public_callables():
    seen = set()
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if id(value) in seen or inspect.ismodule(value) or not callable(value):
                continue
            seen.add(id(value))
            if not inspect.isclass(value):
                yield f"{module.__name__}.{name}", value
                continue
            for attribute, member in vars(value).items():
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                public = attribute == "__init__" or not attribute.startswith("_")
                if public and inspect.isfunction(member):
                    yield f"{module.__name__}.{name}.{attribute}", member


@pytest.mark.parametrize("name, function", list(public_callables()))
def test_public_signature_is_annotated(name, function):
    signature = inspect.signature(function)
    missing = [
        parameter
        for parameter, value in signature.parameters.items()
        if parameter not in ("self", "cls")
        and value.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{name}: parameters without annotation: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, (
        f"{name}: no return annotation"
    )
