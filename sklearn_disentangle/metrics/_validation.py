"""Input validation shared by the disentanglement metrics.

Every metric takes the ground-truth factors first and the codes second, as NumPy arrays
or pandas DataFrames of shape ``(n_samples, n_factors)`` and ``(n_samples, n_codes)``.
The checks here raise :class:`ValueError` / :class:`TypeError` messages that name the
problem *and* the fix.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

__all__ = ["check_factors_codes", "check_int", "check_fraction"]


def _as_2d_array(x, name):
    if sp.issparse(x):
        raise TypeError(
            f"{name} must be a dense array or DataFrame, got a sparse matrix; "
            f"convert it with {name}.toarray()."
        )
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas DataFrame / Series
        x = x.to_numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to a NumPy array: {exc}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(
            f"{name} must hold numbers, got dtype {arr.dtype}; encode categorical "
            "factors as integer indices (e.g. sklearn.preprocessing.OrdinalEncoder)."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}.")
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_{'factors' if name.startswith('factor') else 'codes'}), "
            f"got a 1-D array of shape {arr.shape}; use {name}.reshape(-1, 1) for a single column."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_columns), got {arr.ndim}-D shape "
            f"{arr.shape}; encode images with estimator.transform first, or flatten extra axes."
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {arr.shape}); at least one is needed.")
    return arr


def _check_finite(arr, name):
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(arr[row, col]) else "infinity"
            raise ValueError(
                f"{name} contains NaN or infinity ({int(bad.sum())} value(s); first: {kind} at "
                f"row {row}, column {col}); drop or impute those rows before scoring."
            )


def check_factors_codes(
    factors,
    codes,
    *,
    factors_name="factors",
    codes_name="codes",
    min_codes=1,
    min_samples=2,
    check_distinct=True,
):
    """Validate a (factors, codes) pair and return them as arrays.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Ground-truth factors (discrete class indices or real values).
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Latent codes.
    factors_name, codes_name : str
        Names used in error messages.
    min_codes : int, default=1
        Minimum number of code columns the metric needs.
    min_samples : int, default=2
        Minimum number of rows.
    check_distinct : bool, default=True
        Require at least two distinct values in every factor column.

    Returns
    -------
    factors : ndarray of shape (n_samples, n_factors)
        Integer factors are returned as int64, real ones as float64.
    codes : ndarray of shape (n_samples, n_codes)
        float32 codes keep their dtype (the reference discretises float32 codes in
        float32); every other dtype is converted to float64.
    """
    factors = _as_2d_array(factors, factors_name)
    codes = _as_2d_array(codes, codes_name)
    if factors.shape[0] != codes.shape[0]:
        raise ValueError(
            f"{factors_name} and {codes_name} must have the same number of rows (one per "
            f"sample), got {factors.shape[0]} and {codes.shape[0]}; pass the factors of exactly "
            "the samples that were encoded."
        )
    n = codes.shape[0]
    if n < min_samples:
        raise ValueError(f"at least {min_samples} samples are needed, got {n}.")
    if codes.shape[1] < min_codes:
        raise ValueError(
            f"{codes_name} has {codes.shape[1]} column(s) but this metric needs at least "
            f"{min_codes} code dimensions (it compares the best and second-best code)."
        )
    _check_finite(factors, factors_name)
    _check_finite(codes, codes_name)
    if np.issubdtype(factors.dtype, np.integer) or np.issubdtype(factors.dtype, np.bool_):
        factors = factors.astype(np.int64)
    else:
        factors = factors.astype(np.float64)
    if codes.dtype != np.float32:
        codes = codes.astype(np.float64)
    if check_distinct:
        srt = np.sort(factors, axis=0)
        n_distinct = 1 + np.count_nonzero(np.diff(srt, axis=0), axis=0)
        const = np.flatnonzero(n_distinct < 2)
        if const.size:
            j = int(const[0])
            raise ValueError(
                f"{factors_name} column {j} has a single distinct value ({srt[0, j]!r}); every "
                "factor needs at least 2 distinct values to be scored. Drop constant factor "
                "columns or score on more samples."
            )
    return factors, codes


def check_int(value, name, *, low=1):
    """Check that ``value`` is an int >= ``low`` and return it."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def check_fraction(value, name):
    """Check that ``value`` is a real number strictly between 0 and 1."""
    if not isinstance(value, Real) or isinstance(value, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a float strictly between 0 and 1, got {value!r}.")
    return float(value)


def encode_labels(factors):
    """Label-encode every factor column to 0..n_values-1.

    Returns
    -------
    labels : ndarray of shape (n_samples, n_factors), dtype int64
    n_values : ndarray of shape (n_factors,), dtype int64
    """
    factors = np.asarray(factors)
    labels = np.empty(factors.shape, dtype=np.int64)
    n_values = np.empty(factors.shape[1], dtype=np.int64)
    for j in range(factors.shape[1]):
        uniq, inv = np.unique(factors[:, j], return_inverse=True)
        labels[:, j] = inv.reshape(-1)
        n_values[j] = uniq.size
    return labels, n_values


def split_train_test(n_samples, train_fraction):
    """Number of training rows as disentanglement_lib's ``split_train_test``: ceil(n * p)."""
    n_train = int(np.ceil(n_samples * train_fraction))
    return n_train
