"""A small parameter-constraint checker (sklearn's own is private and changes between releases).

Each estimator declares ``_parameter_constraints = {name: [constraint, ...]}``; a value is
valid when it satisfies any constraint in its list. Constraints: :class:`Interval`,
:class:`Options`, a type (``bool``, ``str``, ``list`` ...), ``None``, ``"random_state"``,
``"boolean"``, ``"callable"``, ``"array-like"``.
"""

from numbers import Integral, Real

import numpy as np

__all__ = ["Interval", "Options", "validate_params"]


class Interval:
    """Numbers of ``kind`` (``Integral`` or ``Real``) in ``[left, right]`` (``None`` = open).

    ``closed`` is one of ``"both"``, ``"left"``, ``"right"``, ``"neither"``.
    """

    def __init__(self, kind, left, right, closed="both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value):
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if isinstance(value, float) and np.isnan(value):
            return False
        left_ok = self.left is None or (value >= self.left if self.closed in ("both", "left") else value > self.left)
        right_ok = self.right is None or (value <= self.right if self.closed in ("both", "right") else value < self.right)
        return left_ok and right_ok

    def __str__(self):
        kind = "an int" if self.kind is Integral else "a float"
        lo = "-inf" if self.left is None else self.left
        hi = "inf" if self.right is None else self.right
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        return f"{kind} in the range {lb}{lo}, {hi}{rb}"


class Options:
    """One of a fixed set of values (strings are listed in the error message)."""

    def __init__(self, values):
        self.values = tuple(values)

    def is_satisfied_by(self, value):
        return isinstance(value, str) and value in self.values if all(isinstance(v, str) for v in self.values) \
            else value in self.values

    def __str__(self):
        return "one of " + ", ".join(repr(v) for v in sorted(self.values, key=str))


def _satisfies(constraint, value):
    if constraint is None:
        return value is None
    if isinstance(constraint, (Interval, Options)):
        return constraint.is_satisfied_by(value)
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if constraint == "random_state":
        return value is None or isinstance(value, np.random.RandomState) or (
            isinstance(value, Integral) and not isinstance(value, bool) and 0 <= value < 2**32)
    if constraint == "callable":
        return callable(value)
    if constraint == "array-like":
        return hasattr(value, "__len__") or hasattr(value, "__array__")
    if isinstance(constraint, type):
        return isinstance(value, constraint) and not (constraint is not bool and isinstance(value, bool))
    raise TypeError(f"unknown constraint {constraint!r}")


def _describe(constraint):
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    if constraint == "random_state":
        return "an int in [0, 2**32), a numpy RandomState or None"
    if constraint == "boolean":
        return "a bool"
    return str(constraint) if not isinstance(constraint, str) else constraint


def validate_params(estimator):
    """Check every parameter of ``estimator`` against ``estimator._parameter_constraints``.

    Raises
    ------
    ValueError
        Naming the parameter, the allowed values and the value received; ``TypeError``
        when the value has a wrong type for every constraint that is a type.
    """
    params = estimator.get_params(deep=False)
    for name, constraints in getattr(estimator, "_parameter_constraints", {}).items():
        if name not in params:
            continue
        value = params[name]
        if any(_satisfies(c, value) for c in constraints):
            continue
        allowed = " or ".join(_describe(c) for c in constraints)
        raise ValueError(
            f"The {name!r} parameter of {type(estimator).__name__} must be {allowed}. Got {value!r} instead."
        )
