"""DCI disentanglement, completeness and informativeness (Eastwood & Williams, 2018)."""

import numpy as np
import scipy.stats
from joblib import Parallel, delayed
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.inspection import permutation_importance
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ._pools import DEFAULT_TRAIN_FRACTION, train_test_pools
from ._validation import _as_2d_array, _check_finite

__all__ = ["dci", "dci_from_importance"]

_IMPORTANCES = ("gbt", "lasso", "random_forest", "hist_gbt")


def _fit_one(kind, x_train, y_train, x_test, y_test, seed, params):
    """Importance vector (n_codes,), train accuracy, test accuracy for one factor."""
    if np.unique(y_train).size < 2:
        raise ValueError(
            "a factor takes a single value in the training pool, so DCI's classifier "
            "cannot be trained; use a larger or shuffled pool."
        )
    if kind == "lasso":
        scaler = StandardScaler().fit(x_train)
        xs_train, xs_test = scaler.transform(x_train), scaler.transform(x_test)
        classes = np.unique(y_train)
        # Eastwood & Williams regress the factor *value*: standardise it, fit the lasso,
        # read importances off |coef| and predict the nearest observed class value
        mean, std = float(np.mean(y_train)), float(np.std(y_train))
        model = Lasso(**{"alpha": 0.05, **params}).fit(xs_train, (y_train - mean) / std)
        importance = np.abs(np.ravel(model.coef_))

        def predict(xs):
            value = model.predict(xs) * std + mean
            pos = np.clip(np.searchsorted(classes, value), 1, len(classes) - 1)
            lower, upper = classes[pos - 1], classes[pos]
            return np.where(value - lower <= upper - value, lower, upper)

        pred_train, pred_test = predict(xs_train), predict(xs_test)
    else:
        if kind == "gbt":
            model = GradientBoostingClassifier(**{"random_state": seed, **params})
        elif kind == "random_forest":
            model = RandomForestClassifier(**{"random_state": seed, "max_features": None, **params})
        else:  # hist_gbt
            model = HistGradientBoostingClassifier(
                **{"random_state": seed, "early_stopping": False, **params}
            )
        # one OpenMP thread per model (parallelise across factors with n_jobs): on a
        # shared machine oversubscribed OpenMP made histogram boosting ~40x slower
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(x_train, y_train)
            if kind == "hist_gbt":
                result = permutation_importance(
                    model, x_train, y_train, n_repeats=3, max_samples=min(1000, len(x_train)),
                    random_state=seed,
                )
                importance = np.clip(result.importances_mean, 0.0, None)
            else:
                importance = np.abs(model.feature_importances_)
            pred_train, pred_test = model.predict(x_train), model.predict(x_test)
    total = importance.sum()
    if kind != "gbt" and total > 0:
        importance = importance / total
    return (
        importance,
        float(np.mean(pred_train == y_train)),
        float(np.mean(pred_test == y_test)),
    )


def dci_from_importance(importance_matrix):
    """Disentanglement and completeness of an importance matrix.

    With ``R`` the (n_codes, n_factors) matrix of non-negative importances, as
    disentanglement_lib's ``dci.py``:

    - disentanglement of code ``i``: ``D_i = 1 - H_K(R_i. / sum_j R_ij)`` (entropy with log
      base ``K = n_factors``, computed on ``R + 1e-11``); total
      ``D = sum_i rho_i D_i`` with ``rho_i = sum_j R_ij / sum_ij R_ij``;
    - completeness of factor ``j``: ``C_j = 1 - H_D(R_.j / sum_i R_ij)`` (base
      ``n_codes``); total ``C = sum_j (sum_i R_ij / sum R) C_j``.

    An all-zero matrix gets uniform weights (so ``D = C = 0``), as in the reference.

    Parameters
    ----------
    importance_matrix : array-like of shape (n_codes, n_factors)
        Non-negative importance of each code for predicting each factor
        (``n_codes >= 2`` and ``n_factors >= 2``).

    Returns
    -------
    scores : dict
        ``{"disentanglement": float, "completeness": float}``.

    References
    ----------
    Eastwood, Williams, "A Framework for the Quantitative Evaluation of Disentangled
    Representations", ICLR 2018. https://openreview.net/forum?id=By-7dz-AZ

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import dci_from_importance
    >>> {k: round(v, 6) for k, v in dci_from_importance(np.eye(3)).items()}
    {'disentanglement': 1.0, 'completeness': 1.0}
    >>> r = np.hstack([np.eye(5), np.eye(5)])   # 5 codes, each used for 2 of 10 factors
    >>> s = dci_from_importance(r)
    >>> bool(np.isclose(s["disentanglement"], 1 - np.log(2) / np.log(10)))
    True
    """
    r = _as_2d_array(importance_matrix, "importance_matrix").astype(np.float64)
    _check_finite(r, "importance_matrix")
    if (r < 0).any():
        raise ValueError("importance_matrix must be non-negative; pass absolute importances.")
    n_codes, n_factors = r.shape
    if n_codes < 2 or n_factors < 2:
        raise ValueError(
            f"importance_matrix must have at least 2 codes and 2 factors (entropies use log "
            f"base n_factors and n_codes), got shape {r.shape}."
        )
    per_code = 1.0 - scipy.stats.entropy(r.T + 1e-11, base=n_factors)
    weights = r if r.sum() != 0.0 else np.ones_like(r)
    code_importance = weights.sum(axis=1) / weights.sum()
    disentanglement = float(np.sum(per_code * code_importance))
    per_factor = 1.0 - scipy.stats.entropy(r + 1e-11, base=n_codes)
    factor_importance = weights.sum(axis=0) / weights.sum()
    completeness = float(np.sum(per_factor * factor_importance))
    return {"disentanglement": disentanglement, "completeness": completeness}


def dci(
    factors,
    codes,
    factors_test=None,
    codes_test=None,
    *,
    importance="gbt",
    train_fraction=DEFAULT_TRAIN_FRACTION,
    estimator_params=None,
    random_state=None,
    n_jobs=None,
):
    """DCI: disentanglement, completeness and informativeness of codes.

    For every factor a classifier predicts the factor from all codes; its importances
    form the columns of an (n_codes, n_factors) importance matrix ``R``, from which
    :func:`dci_from_importance` computes disentanglement and completeness. The mean
    train / test accuracies of the classifiers are the informativeness scores (they are
    accuracies, higher is better, despite the reference's internal name "err"). This is
    ``dci`` of disentanglement_lib.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors of the training pool (``n_factors >= 2``).
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the training pool (``n_codes >= 2``).
    factors_test, codes_test : array-like, default=None
        Held-out pool. When both are None the first ``ceil(n_samples * train_fraction)``
        rows train and the rest test (no shuffling), as the reference's
        ``split_train_test``.
    importance : {"gbt", "lasso", "random_forest", "hist_gbt"}, default="gbt"
        Classifier and importance measure:

        - ``"gbt"`` (the reference): ``GradientBoostingClassifier()`` with sklearn defaults
          (100 stages, depth 3), ``R[:, j] = |feature_importances_|`` (impurity based). Slow
          for many-valued factors (one tree per class and stage).
        - ``"lasso"`` (Eastwood & Williams' original choice): ``Lasso(alpha=0.05)``
          regressing the standardised factor value on standardised codes,
          ``R[:, j] = |coef|``; the prediction is the observed factor value nearest to the
          regression output. Fast, but it treats every factor as ordinal and linear in the
          codes (fine for position, scale, orientation; arbitrary for a categorical factor
          such as shape), so informativeness is lower than with trees.
        - ``"random_forest"``: ``RandomForestClassifier(max_features=None)`` (every split
          sees all codes, as boosting does; the default ``"sqrt"`` would force splits on
          uninformative codes and inflate their importance), impurity importances. Fully
          grown trees also split on noise once the informative codes are exhausted, so on
          noisy codes D and C come out lower than with ``"gbt"``.
        - ``"hist_gbt"``: ``HistGradientBoostingClassifier(early_stopping=False)`` with
          permutation importances (mean accuracy drop over 3 repeats on at most 1 000
          training rows, clipped at 0), since histogram boosting has no impurity
          importances. Faster than ``"gbt"`` on large pools; with many-valued factors the
          predictions of the permutation step dominate. Each model
          runs on one OpenMP thread; use ``n_jobs`` to fit the factors in parallel.

        The non-reference importances are normalised to sum to 1 per factor, as the
        reference's ``feature_importances_`` are.
    train_fraction : float, default=2/3
        Training fraction when no test pool is given (the reference's 10 000 / 5 000).
    estimator_params : dict, default=None
        Extra constructor arguments of the classifier (e.g. ``{"n_estimators": 50}``, or
        ``{"alpha": 0.05}`` for ``"lasso"``).
    random_state : int, RandomState instance or None, default=None
        Seeds the classifiers (one seed per factor drawn from it). The reference leaves
        ``GradientBoostingClassifier`` unseeded, which moves D/C by ~5e-3.
    n_jobs : int, default=None
        Fit the per-factor classifiers in parallel (joblib).

    Returns
    -------
    scores : dict
        ``disentanglement`` (float), ``completeness`` (float), ``informativeness_train``
        (float, mean training accuracy), ``informativeness_test`` (float, mean test
        accuracy), ``importance_matrix`` (ndarray of shape (n_codes, n_factors)).

    See Also
    --------
    dci_from_importance

    References
    ----------
    Eastwood, Williams, "A Framework for the Quantitative Evaluation of Disentangled
    Representations", ICLR 2018. https://openreview.net/forum?id=By-7dz-AZ

    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import dci
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 4, size=(600, 2))
    >>> codes = np.c_[factors[:, 1], factors[:, 0], rng.normal(size=600)]
    >>> s = dci(factors, codes, random_state=0)      # reference: gradient boosting
    >>> round(s["disentanglement"], 6), round(s["completeness"], 6), s["informativeness_test"]
    (1.0, 1.0, 1.0)
    >>> s["importance_matrix"].round(3)
    array([[0., 1.],
           [1., 0.],
           [0., 0.]])
    """
    if importance not in _IMPORTANCES:
        raise ValueError(f"importance must be one of {_IMPORTANCES}, got {importance!r}.")
    if estimator_params is not None and not isinstance(estimator_params, dict):
        raise TypeError(f"estimator_params must be a dict or None, got {type(estimator_params).__name__}.")
    params = dict(estimator_params or {})
    factors, codes, factors_test, codes_test = train_test_pools(
        factors, codes, factors_test, codes_test, train_fraction, min_codes=2
    )
    n_factors = factors.shape[1]
    if n_factors < 2:
        raise ValueError(
            "DCI needs at least 2 factors (disentanglement uses entropies with log base "
            f"n_factors), got {n_factors}."
        )
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max, size=n_factors)
    results = Parallel(n_jobs=n_jobs, prefer="threads")(  # tree builders release the GIL
        delayed(_fit_one)(
            importance, codes, factors[:, j], codes_test, factors_test[:, j], int(seeds[j]), params
        )
        for j in range(n_factors)
    )
    importance_matrix = np.stack([res[0] for res in results], axis=1)
    scores = dci_from_importance(importance_matrix)
    scores["informativeness_train"] = float(np.mean([res[1] for res in results]))
    scores["informativeness_test"] = float(np.mean([res[2] for res in results]))
    scores["importance_matrix"] = importance_matrix
    return scores
