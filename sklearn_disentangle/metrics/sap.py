"""Separated Attribute Predictability (SAP), Kumar et al. (2018), as in disentanglement_lib."""

import numpy as np
from joblib import Parallel, delayed
from sklearn.svm import LinearSVC
from sklearn.utils import check_random_state

from ._pools import DEFAULT_TRAIN_FRACTION, train_test_pools

__all__ = ["sap", "sap_score_matrix"]


def _svc_accuracy(x_train, y_train, x_test, y_test, seed):
    if np.unique(y_train).size < 2:
        raise ValueError(
            "a factor takes a single value in the training pool, so SAP's classifier cannot "
            "be trained; use a larger or shuffled pool."
        )
    clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
    clf.fit(x_train[:, None], y_train)
    return float(np.mean(clf.predict(x_test[:, None]) == y_test))


def sap_score_matrix(
    factors,
    codes,
    factors_test=None,
    codes_test=None,
    *,
    continuous_factors=False,
    train_fraction=DEFAULT_TRAIN_FRACTION,
    random_state=None,
    n_jobs=None,
):
    """The (n_codes, n_factors) predictability matrix underlying :func:`sap`.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Ground-truth factors of the training pool.
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the training pool, ``n_codes >= 2``.
    factors_test, codes_test : array-like of shape (n_test, n_factors) / (n_test, n_codes), default=None
        Held-out pool; when None the last rows of the given pool are held out (see
        :func:`sap`).
    continuous_factors : bool, default=False
        Squared correlations instead of one-feature classifier accuracies.
    train_fraction : float, default=2/3
        Training fraction when no test pool is given.
    random_state : int, RandomState instance or None, default=None
        Seeds the classifiers.
    n_jobs : int, default=None
        Fit the classifiers in parallel (joblib).

    Returns
    -------
    score_matrix : ndarray of shape (n_codes, n_factors)
        Test accuracy of a one-feature balanced ``LinearSVC(C=0.01)`` (discrete factors)
        or squared correlation on the training pool (continuous factors).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import sap_score_matrix
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 2, size=(300, 2))
    >>> codes = np.c_[factors[:, 0], rng.normal(size=300)]
    >>> sap_score_matrix(factors, codes, continuous_factors=True).round(2)[0]
    array([1., 0.])
    """
    factors, codes, factors_test, codes_test = train_test_pools(
        factors, codes, factors_test, codes_test, train_fraction, min_codes=2
    )
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    if continuous_factors:
        # squared Pearson correlation on the training pool (ddof=1), 0 for constant codes
        score = np.zeros((n_codes, n_factors))
        y = factors.astype(np.float64)
        for i in range(n_codes):
            for j in range(n_factors):
                cov = np.cov(codes[:, i], y[:, j], ddof=1)
                if cov[0, 0] > 1e-12:
                    score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
        return score
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max, size=(n_codes, n_factors))
    jobs = (
        delayed(_svc_accuracy)(
            codes[:, i], factors[:, j], codes_test[:, i], factors_test[:, j], int(seeds[i, j])
        )
        for i in range(n_codes)
        for j in range(n_factors)
    )
    values = Parallel(n_jobs=n_jobs, prefer="threads")(jobs)  # liblinear releases the GIL
    return np.asarray(values, dtype=np.float64).reshape(n_codes, n_factors)


def sap(
    factors,
    codes,
    factors_test=None,
    codes_test=None,
    *,
    continuous_factors=False,
    train_fraction=DEFAULT_TRAIN_FRACTION,
    random_state=None,
    n_jobs=None,
):
    """Separated Attribute Predictability score.

    For every code dimension ``i`` and factor ``j`` a score ``S_ij`` measures how well
    code ``i`` alone predicts factor ``j``; SAP is the mean over factors of the gap between
    the largest and second-largest score over codes, as ``sap_score`` of
    disentanglement_lib:

    - discrete factors (default, ``continuous_factors=False``): ``S_ij`` is the accuracy on
      the test pool of ``LinearSVC(C=0.01, class_weight="balanced")`` trained on the single
      feature ``z_i`` of the training pool (one-vs-rest). With a single linear feature many
      classes cannot be separated, so SAP on many-valued factors stays well below 1 even
      for perfect codes, and an unrelated code still scores chance accuracy (about
      0.5 for a balanced binary factor), so perfect codes of binary factors give ~0.5;
    - continuous factors: ``S_ij = cov(z_i, v_j)^2 / (var(z_i) var(v_j))`` on the training
      pool (ddof 1), and 0 for a code with variance <= 1e-12; the test pool is unused.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Ground-truth factors of the training pool.
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the training pool, ``n_codes >= 2``.
    factors_test, codes_test : array-like of shape (n_test, n_factors) / (n_test, n_codes), default=None
        Held-out pool. When both are None, the first ``ceil(n_samples * train_fraction)``
        rows train and the remaining rows test (no shuffling), as disentanglement_lib's
        ``split_train_test``.
    continuous_factors : bool, default=False
        Use the squared-correlation score matrix.
    train_fraction : float, default=2/3
        Fraction of rows used for training when no test pool is given; 2/3 reproduces the
        reference's 10 000 train / 5 000 test proportion.
    random_state : int, RandomState instance or None, default=None
        Seeds the classifiers (``LinearSVC`` only uses it in its dual solver; with the
        primal solver sklearn picks for one feature the score is deterministic).
    n_jobs : int, default=None
        Fit the ``n_codes * n_factors`` classifiers in parallel (joblib).

    Returns
    -------
    score : float
        SAP score in [0, 1].

    See Also
    --------
    sap_score_matrix : the underlying (n_codes, n_factors) matrix.

    Notes
    -----
    The reference ran ``LinearSVC`` with the then-default ``dual=True``; scikit-learn
    >= 1.5 picks the primal solver for a single feature (``dual="auto"``). Both solve the
    same convex problem, so accuracies agree up to points lying within the solver's
    tolerance of a decision boundary.

    References
    ----------
    Kumar, Sattigeri, Balakrishnan, "Variational Inference of Disentangled Latent
    Concepts from Unlabeled Observations", ICLR 2018. https://arxiv.org/abs/1711.00848

    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import sap
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 2, size=(600, 2))
    >>> codes = np.c_[factors[:, 1], factors[:, 0]] + 0.1 * rng.normal(size=(600, 2))
    >>> round(sap(factors, codes, continuous_factors=True), 2)
    0.96
    >>> round(sap(factors, codes), 2)    # about 1 - 0.5: an unrelated code scores chance
    0.55
    """
    score = sap_score_matrix(
        factors,
        codes,
        factors_test,
        codes_test,
        continuous_factors=continuous_factors,
        train_fraction=train_fraction,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))
