"""Make e2cnn 0.2.3 (its last release) work on current NumPy, at runtime.

e2cnn is unmaintained and uses three NumPy names that newer NumPy removed; building the
first steerable convolution then fails:

- ``np.float`` (removed in NumPy 1.24) in ``e2cnn.group.groups.o2group``: the induced
  representations of O(2), exactly what O2VAE's encoder uses;
- ``np.array(x, copy=False)`` (an error in NumPy 2 when a copy is needed) in
  ``e2cnn.kernels.utils``;
- ``ndarray.tostring()`` (removed in NumPy 2.3) in four ``__hash__`` methods of
  ``e2cnn.kernels.irreps_basis``.

:func:`apply` fixes all three without touching NumPy itself or e2cnn's files: the two
modules get a module-level ``np`` proxy (``float`` is Python's ``float``, as ``np.float``
always was, and ``array(..., copy=False)`` means ``asarray``, NumPy 1's meaning), and the
four ``__hash__`` methods are replaced by ones hashing ``tobytes()``, which returns the same
bytes ``tostring()`` did. It is applied lazily (only when O2VAE builds an e2cnn encoder,
so ``import sklearn_disentangle`` never imports e2cnn) and is idempotent.
"""

import importlib
import threading
import warnings
from contextlib import contextmanager

import numpy as np

__all__ = ["apply", "is_applied", "import_e2cnn", "quiet_build"]

_LOCK = threading.Lock()
_APPLIED = False

#: ``irreps_basis`` classes whose ``__hash__`` calls ``tostring()``.
_HASHED_CLASSES = (
    "R2FlipsSolution",
    "R2ContinuousRotationsSolution",
    "R2FlipsDiscreteRotationsSolution",
    "R2FlipsContinuousRotationsSolution",
)


class _NumpyProxy:
    """Stands in for ``numpy`` inside one e2cnn module; forwards every other name."""

    float = float

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def array(obj, *args, copy=True, **kwargs):
        if copy is False:
            return np.asarray(obj, *args, **kwargs)
        return np.array(obj, *args, copy=copy, **kwargs)

    def __repr__(self):
        return f"<numpy proxy for e2cnn (numpy {np.__version__})>"


def _as_bytes(value):
    return value.tobytes() if isinstance(value, np.ndarray) else value


def _irrep_basis_hash(self):
    # Same recipe as e2cnn's own (sum of the hashes of the irreps and of mu's and
    # gamma's raw bytes), with ``tobytes`` for the removed ``tostring``.
    return (hash(self.in_irrep) + hash(self.out_irrep) + hash(_as_bytes(np.asarray(self.mu)))
            + hash(_as_bytes(self.gamma)))


def is_applied():
    """Whether :func:`apply` has run in this process.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae import _e2cnn_compat
    >>> isinstance(_e2cnn_compat.is_applied(), bool)
    True
    """
    return _APPLIED


def apply():
    """Patch the installed e2cnn for the running NumPy (idempotent; thread-safe).

    Raises
    ------
    ImportError
        If e2cnn is not installed, with the install command.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae import _e2cnn_compat
    >>> _e2cnn_compat.apply()
    >>> _e2cnn_compat.is_applied()
    True
    """
    global _APPLIED
    with _LOCK:
        if _APPLIED:
            return
        try:
            kernel_utils = importlib.import_module("e2cnn.kernels.utils")
            o2group = importlib.import_module("e2cnn.group.groups.o2group")
            irreps_basis = importlib.import_module("e2cnn.kernels.irreps_basis")
        except ImportError as exc:
            raise ImportError(
                "O2VAE(encoder='e2cnn') needs the e2cnn library: pip install e2cnn "
                "(or use encoder='d4' or 'cnn', which need only torch)."
            ) from exc
        proxy = _NumpyProxy()
        for module in (kernel_utils, o2group):
            module.np = proxy
        for name in _HASHED_CLASSES:
            getattr(irreps_basis, name).__hash__ = _irrep_basis_hash
        _APPLIED = True


def import_e2cnn():
    """Apply the compatibility layer and return the ``e2cnn`` package.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae._e2cnn_compat import import_e2cnn
    >>> import_e2cnn().__name__
    'e2cnn'
    """
    apply()
    return importlib.import_module("e2cnn")


#: torch deprecation messages that e2cnn 0.2.3 triggers while *building* a convolution
#: (uint8 mask indexing, ``meshgrid`` without ``indexing``); harmless, and not emitted in
#: forward or backward passes.
_BUILD_WARNINGS = (
    r"indexing with dtype torch\.uint8 is now deprecated",
    r"torch\.meshgrid: in an upcoming release",
)


@contextmanager
def quiet_build():
    """Silence the two torch deprecation warnings e2cnn emits while building layers.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae._e2cnn_compat import quiet_build
    >>> with quiet_build():
    ...     pass
    """
    with warnings.catch_warnings():
        for message in _BUILD_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield
