"""Histogram discretisation, discrete mutual information and entropy (vectorised).

These are the building blocks of MIG (and of any metric on discretised codes). They
reproduce disentanglement_lib's ``utils.histogram_discretize``,
``utils.discrete_mutual_info`` and ``utils.discrete_entropy`` (Locatello et al., 2019),
which loop over code dimensions and call :func:`numpy.histogram`, :func:`numpy.digitize`
and :func:`sklearn.metrics.mutual_info_score` once per (code, factor) pair. Here the bin
edges of all code dimensions come from one :func:`numpy.linspace` call, and all
contingency tables of one factor from one :func:`numpy.bincount`.
"""

import numpy as np

from ._validation import _as_2d_array, _check_finite, check_int

__all__ = ["histogram_discretize", "discrete_mutual_info", "discrete_entropy"]

_EPS64 = np.finfo(np.float64).eps


def _histogram_edges(codes, n_bins):
    """Bin edges of every column, exactly as ``np.histogram(column, n_bins)[1]``.

    Returns an array of shape (n_codes, n_bins + 1) in the dtype numpy would use.
    """
    lo = codes.min(axis=0)
    hi = codes.max(axis=0)
    const = lo == hi
    # numpy widens an empty range by +-0.5 (in the array's own dtype).
    lo = np.where(const, lo - 0.5, lo).astype(codes.dtype, copy=False)
    hi = np.where(const, hi + 0.5, hi).astype(codes.dtype, copy=False)
    # np.linspace with array endpoints performs the same element-wise operations as the
    # scalar call inside np.histogram, so the edges are bit-identical.
    edges = np.linspace(lo, hi, n_bins + 1, endpoint=True, dtype=codes.dtype, axis=1)
    bad = np.flatnonzero(np.any(edges[:, :-1] >= edges[:, 1:], axis=1))
    if bad.size:
        d = int(bad[0])
        raise ValueError(
            f"code dimension {d} spans too small a range ([{lo[d]!r}, {hi[d]!r}] in "
            f"{codes.dtype}) to make {n_bins} finite-sized bins (numpy.histogram, used by "
            "the reference, raises here too); cast the codes to float64 or use fewer bins."
        )
    return edges


def histogram_discretize(codes, n_bins=20):
    """Discretise every code dimension into ``n_bins`` equal-width bins.

    Per code dimension (column), the edges are ``np.histogram(column, n_bins)`` edges
    (``n_bins + 1`` equally spaced values from the column minimum to its maximum) and the
    bin index is ``np.digitize(column, edges[:-1])``, as disentanglement_lib's
    ``histogram_discretize``: values run from 1 (the minimum) to ``n_bins`` (the maximum),
    a value exactly on an interior edge goes to the upper bin, and a constant column
    (range widened by +-0.5, as numpy does) gets a single code.

    Parameters
    ----------
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Continuous codes. float32 input is binned in float32 (as numpy bins a float32
        array); every other dtype in float64.
    n_bins : int, default=20
        Number of bins per code dimension (20 in every configuration of the reference
        study).

    Returns
    -------
    discrete : ndarray of shape (n_samples, n_codes), dtype int64
        Bin index of each value, in ``1 .. n_bins``.

    References
    ----------
    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import histogram_discretize
    >>> histogram_discretize(np.array([[0.0], [0.5], [1.0], [0.26]]), n_bins=4).ravel()
    array([1, 3, 4, 2])
    """
    n_bins = check_int(n_bins, "n_bins", low=1)
    codes = _as_2d_array(codes, "codes")
    _check_finite(codes, "codes")
    if codes.dtype not in (np.float32, np.float64):
        codes = codes.astype(np.float64)
    if codes.shape[0] == 0:
        return np.zeros(codes.shape, dtype=np.int64)
    edges = _histogram_edges(codes, n_bins)
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        # np.digitize(x, bins) == np.searchsorted(bins, x, side="right") for increasing bins
        out[:, d] = np.searchsorted(edges[d, :-1], codes[:, d], side="right")
    return out


def _labels(column):
    """Map one column of labels to 0..n_values-1 (fast path for small integer ranges)."""
    if np.issubdtype(column.dtype, np.integer) and column.size:
        lo, hi = int(column.min()), int(column.max())
        if hi - lo < 4 * column.size + 64:
            return (column - lo).astype(np.int64), hi - lo + 1
    uniq, inv = np.unique(column, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), uniq.size


def _mi_from_joint(joint, n):
    """Plug-in MI (nats) from joint counts of shape (..., n_x, n_y), as sklearn computes it."""
    joint = joint.astype(np.float64)
    px = joint.sum(axis=-1, keepdims=True)
    py = joint.sum(axis=-2, keepdims=True)
    nz = joint > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_joint = np.log(np.where(nz, joint, 1.0))
        log_outer = np.log(np.where(nz, px * py, 1.0))
        p = joint / n
        logn = np.log(n)
        terms = p * (log_joint - logn) + p * (-log_outer + logn + logn)
    terms = np.where(nz & (np.abs(terms) >= _EPS64), terms, 0.0)
    mi = terms.sum(axis=(-2, -1))
    # sklearn returns exactly 0 when either variable takes a single value
    single = (np.count_nonzero(px[..., 0] > 0, axis=-1) <= 1) | (
        np.count_nonzero(py[..., 0, :] > 0, axis=-1) <= 1
    )
    return np.clip(np.where(single, 0.0, mi), 0.0, None)


def discrete_mutual_info(factors, discrete_codes):
    """Mutual information between every discrete code and every factor, in nats.

    ``m[i, j] = sklearn.metrics.mutual_info_score(factors[:, j], discrete_codes[:, i])``,
    the layout of disentanglement_lib's ``discrete_mutual_info`` (codes x factors), but
    computed with one :func:`numpy.bincount` per factor for all code dimensions at once.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors (any values; each distinct value is a class).
    discrete_codes : array-like or DataFrame of shape (n_samples, n_codes)
        Discrete codes, e.g. from :func:`histogram_discretize`.

    Returns
    -------
    mi : ndarray of shape (n_codes, n_factors)
        Plug-in mutual information estimates (natural logarithm).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import discrete_mutual_info
    >>> y = np.array([[0], [0], [1], [1]])
    >>> c = np.array([[0, 5], [0, 5], [1, 5], [1, 6]])
    >>> np.round(discrete_mutual_info(y, c), 4)  # log(2) and 0.2158
    array([[0.6931],
           [0.2158]])
    """
    factors = _as_2d_array(factors, "factors")
    codes = _as_2d_array(discrete_codes, "discrete_codes")
    if factors.shape[0] != codes.shape[0]:
        raise ValueError(
            "factors and discrete_codes must have the same number of rows, got "
            f"{factors.shape[0]} and {codes.shape[0]}."
        )
    _check_finite(factors, "factors")
    _check_finite(codes, "discrete_codes")
    n, n_codes = codes.shape
    code_labels = np.empty(codes.shape, dtype=np.int64)
    code_sizes = np.empty(n_codes, dtype=np.int64)
    for i in range(n_codes):
        code_labels[:, i], code_sizes[i] = _labels(codes[:, i])
    n_c = int(code_sizes.max()) if n_codes else 1
    mi = np.zeros((n_codes, factors.shape[1]))
    if n == 0:
        return mi
    offsets = (np.arange(n_codes, dtype=np.int64) * n_c)[None, :]
    for j in range(factors.shape[1]):
        y, n_y = _labels(factors[:, j])
        # one bincount for the (n_y x n_c) contingency tables of all code dimensions
        index = (y[:, None] * (n_codes * n_c) + offsets + code_labels).ravel()
        joint = np.bincount(index, minlength=n_y * n_codes * n_c)
        joint = joint.reshape(n_y, n_codes, n_c).transpose(1, 0, 2)  # (codes, y, c)
        mi[:, j] = _mi_from_joint(joint, n)
    return mi


def discrete_entropy(factors):
    """Entropy of every factor column in nats (plug-in estimate).

    Equal to ``sklearn.metrics.mutual_info_score(y, y)`` per column, as
    disentanglement_lib's ``discrete_entropy``.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete values; each distinct value is a class.

    Returns
    -------
    entropy : ndarray of shape (n_factors,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import discrete_entropy
    >>> np.round(discrete_entropy(np.array([[0, 1], [1, 1], [2, 1], [3, 2]])), 4)
    array([1.3863, 0.5623])
    """
    factors = _as_2d_array(factors, "factors")
    _check_finite(factors, "factors")
    n = factors.shape[0]
    h = np.zeros(factors.shape[1])
    for j in range(factors.shape[1]):
        y, n_y = _labels(factors[:, j])
        counts = np.bincount(y, minlength=n_y)
        counts = counts[counts > 0].astype(np.float64)
        if counts.size <= 1:
            continue
        p = counts / n
        terms = p * (np.log(n) - np.log(counts))
        terms = np.where(np.abs(terms) >= _EPS64, terms, 0.0)
        h[j] = max(float(terms.sum()), 0.0)
    return h
