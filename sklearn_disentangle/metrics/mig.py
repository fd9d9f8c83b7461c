"""Mutual Information Gap (MIG), Chen et al. (2018), as in disentanglement_lib."""

import numpy as np

from ._discretize import discrete_entropy, discrete_mutual_info, histogram_discretize
from ._validation import check_factors_codes, check_int

__all__ = ["mig"]


def mig(factors, codes, *, n_bins=20):
    """Mutual Information Gap between ground-truth factors and codes.

    Each code dimension is discretised into ``n_bins`` equal-width histogram bins
    (:func:`histogram_discretize`); the discrete mutual information ``I(z_i; v_j)`` of
    every (code, factor) pair is estimated by the plug-in estimator in nats; for each
    factor the gap between the largest and second-largest mutual information over codes
    is divided by the factor's entropy ``H(v_j)``; MIG is the mean over factors. This is
    ``discrete_mig`` of disentanglement_lib (``mig.py``), computed on the given pool only
    (the reference uses 10 000 i.i.d. samples and no test pool).

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors (each distinct value is a class), at least two
        distinct values per factor.
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the same samples (e.g. posterior means), ``n_codes >= 2``. Constant code
        dimensions fall into a single bin and carry zero information, as in the reference.
    n_bins : int, default=20
        Histogram bins per code dimension (20 in the reference study).

    Returns
    -------
    score : float
        MIG in [0, 1]; 1 means every factor is captured by exactly one code dimension.

    See Also
    --------
    histogram_discretize, discrete_mutual_info, discrete_entropy

    References
    ----------
    Chen, Li, Grosse, Duvenaud, "Isolating Sources of Disentanglement in Variational
    Autoencoders", NeurIPS 2018. https://arxiv.org/abs/1802.04942

    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import mig
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 10, size=(2000, 2))
    >>> codes = np.c_[factors[:, 1], factors[:, 0]] * 0.1   # permuted, scaled factors
    >>> round(mig(factors, codes), 2)    # 1 minus the plug-in bias of the other code
    0.99
    >>> mig(factors, rng.normal(size=(2000, 4))) < 0.05     # independent codes
    True
    """
    n_bins = check_int(n_bins, "n_bins", low=1)
    factors, codes = check_factors_codes(factors, codes, min_codes=2)
    discrete = histogram_discretize(codes, n_bins)
    m = discrete_mutual_info(factors, discrete)  # (n_codes, n_factors)
    entropy = discrete_entropy(factors)
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy))
