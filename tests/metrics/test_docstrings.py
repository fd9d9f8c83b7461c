"""Every public name of sklearn_disentangle.metrics has a numpydoc docstring whose
Examples section runs as a doctest."""

import doctest
import importlib
import inspect

import pytest

import sklearn_disentangle.metrics as metrics

MODULES = [
    "sklearn_disentangle.metrics._discretize",
    "sklearn_disentangle.metrics._evaluate",
    "sklearn_disentangle.metrics.mig",
    "sklearn_disentangle.metrics.sap",
    "sklearn_disentangle.metrics.dci",
    "sklearn_disentangle.metrics.factor_vae",
    "sklearn_disentangle.metrics.beta_vae",
    "sklearn_disentangle.metrics.mfvm",
    "sklearn_disentangle.metrics.scorers",
]


@pytest.mark.parametrize("name", metrics.__all__)
def test_public_name_has_numpydoc_sections(name):
    obj = getattr(metrics, name)
    if not callable(obj):  # the DLIB_DEFAULTS / FAST_DEFAULTS preset tables
        assert isinstance(obj, dict) and name in inspect.getdoc(metrics.evaluate)
        return
    doc = inspect.getdoc(obj) or ""
    assert "Examples\n--------" in doc, f"{name} has no Examples section"
    if inspect.isfunction(obj):
        assert "Returns\n-------" in doc, f"{name} has no Returns section"
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "params", "kwargs")]
    for p in params:
        assert p in doc, f"{name}: parameter {p!r} is not documented"


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module}"
