"""Multi-factor FactorVAE metric mFVM_k (Jung et al., 2024, CFASL), pool form."""

import numpy as np
from sklearn.utils import check_random_state

from ._sampling import PoolSampler
from ._validation import check_factors_codes, check_int
from .factor_vae import active_dims, check_vote_sizes, global_variances

__all__ = ["mfvm"]

# CFASL code's protocol (spec 1.10/1.11): 100-image variance batch, threshold 0.06,
# 800 votes of 100 codes, accuracy on the same votes.
CFASL_PRESET = {
    "batch_size": 100,
    "n_train": 800,
    "n_eval": 0,
    "n_variance_estimate": 100,
    "threshold": 0.06,
}
DLIB_STYLE_PRESET = {
    "batch_size": 64,
    "n_train": 10000,
    "n_eval": 5000,
    "n_variance_estimate": 10000,
    "threshold": 0.05,
}


def _votes(sampler, n_votes, n_fixed, batch_size, rng, variances, active):
    """(subsets (n, k), chosen dimension sets (n, min(k, n_active)))."""
    idx = np.flatnonzero(active)
    n_pick = min(n_fixed, idx.size)
    all_s, all_q = [], []
    for subsets, codes in sampler.fixed_batches(n_votes, batch_size, n_fixed, rng):
        ratio = np.var(codes, axis=1, ddof=1)[:, idx] / variances[idx]
        pick = np.argsort(ratio, axis=1, kind="stable")[:, :n_pick]
        all_s.append(subsets)
        all_q.append(np.sort(idx[pick], axis=1))
    return np.concatenate(all_s), np.concatenate(all_q)


def _majority(subsets, chosen):
    """Majority dimension set per factor set and the macro-averaged vote accuracy."""
    rows = np.concatenate([subsets, chosen], axis=1)
    uniq, counts = np.unique(rows, axis=0, return_counts=True)
    k = subsets.shape[1]
    best, best_count, totals = {}, {}, {}
    for row, c in zip(uniq, counts):
        s, q = tuple(row[:k]), tuple(row[k:])
        totals[s] = totals.get(s, 0) + c
        if c > best_count.get(s, -1):  # ties: the lexicographically first set
            best[s], best_count[s] = q, c
    accuracy = float(np.mean([best_count[s] / totals[s] for s in totals]))
    return best, accuracy


def _macro_accuracy(subsets, chosen, best):
    k = subsets.shape[1]
    rows = np.concatenate([subsets, chosen], axis=1)
    hits, totals = {}, {}
    for row in rows:
        s = tuple(row[:k])
        totals[s] = totals.get(s, 0) + 1
        hits[s] = hits.get(s, 0) + int(best.get(s) == tuple(row[k:]))
    return float(np.mean([hits[s] / totals[s] for s in totals]))


def mfvm_from_sampler(sampler, rng, *, n_fixed, batch_size, n_train, n_eval, n_variance_estimate, threshold):
    """mFVM_k on any sampler (pool or generator); returns the details dict."""
    variances = global_variances(sampler, n_variance_estimate, rng)
    active = active_dims(variances, threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active_dims": 0, "n_subsets": 0}
    s_train, q_train = _votes(sampler, n_train, n_fixed, batch_size, rng, variances, active)
    best, train_accuracy = _majority(s_train, q_train)
    if n_eval > 0:
        s_eval, q_eval = _votes(sampler, n_eval, n_fixed, batch_size, rng, variances, active)
        eval_accuracy = _macro_accuracy(s_eval, q_eval, best)
    else:  # CFASL protocol: no held-out votes
        eval_accuracy = train_accuracy
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": eval_accuracy,
        "n_active_dims": int(active.sum()),
        "n_subsets": len(best),
    }


def resolve_mfvm_params(n_factors, n_fixed, cfasl_compat, **params):
    preset = CFASL_PRESET if cfasl_compat else DLIB_STYLE_PRESET
    resolved = {key: (preset[key] if value is None else value) for key, value in params.items()}
    n_fixed = check_int(n_fixed, "n_fixed", low=1)
    if n_fixed >= n_factors:
        raise ValueError(
            f"n_fixed must lie in 1..n_factors-1 = 1..{n_factors - 1} (the CFASL paper uses "
            f"2 <= k < n_factors), got {n_fixed}."
        )
    sizes = check_vote_sizes(
        resolved["batch_size"],
        resolved["n_train"],
        resolved["n_eval"],
        resolved["n_variance_estimate"],
        resolved["threshold"],
        min_eval=0,
    )
    keys = ("batch_size", "n_train", "n_eval", "n_variance_estimate", "threshold")
    return n_fixed, dict(zip(keys, sizes))


def mfvm(
    factors,
    codes,
    n_fixed=2,
    *,
    batch_size=None,
    n_train=None,
    n_eval=None,
    n_variance_estimate=None,
    threshold=None,
    cfasl_compat=False,
    random_state=None,
    return_details=False,
):
    """Multi-factor FactorVAE metric mFVM_k, computed from a labelled pool of codes.

    mFVM_k (CFASL, Jung et al. 2024) extends the FactorVAE score to ``k = n_fixed``
    factors fixed at once:

    1. global per-dimension variances of ``n_variance_estimate`` codes; active dimensions
       ``A = {d : sqrt(var_d) >= threshold}`` (score 0 if ``A`` is empty);
    2. one vote: a set ``S`` of ``k`` distinct factors uniformly at random; a batch of
       ``batch_size`` codes sharing the values of all factors in ``S`` (first row uniform
       over the pool, the others uniform among the rows matching it on ``S``); ``Q`` = the
       ``k`` active dimensions with the smallest within-batch variance divided by the
       global variance (all of ``A`` if ``|A| < k``); the vote is ``(S, Q)`` (sets, sorted);
    3. per factor set ``S`` the majority dimension set ``Q*(S)``; the accuracy of ``S`` is
       the share of its votes whose ``Q`` equals ``Q*(S)`` exactly (overlapping sets count
       as errors), and mFVM_k is the mean over the factor sets seen (macro average).

    Unlike the FactorVAE score (majority factor per dimension, micro-averaged), mFVM takes
    the majority dimension set per factor set and macro-averages, so ``k = 1`` is not the
    FactorVAE score.

    Two protocols:

    - default (dlib-style, recommended): the FactorVAE score's defaults of
      disentanglement_lib -- ``batch_size=64``, majority sets fitted on ``n_train=10000``
      votes and scored on ``n_eval=5000`` fresh votes (a factor set unseen in training
      scores 0), variances from ``n_variance_estimate=10000`` codes, ``threshold=0.05``;
    - ``cfasl_compat=True``: the CFASL code's own protocol (``batch_size=100``,
      ``n_train=800`` votes and accuracy measured on those same votes, ``n_eval=0``,
      variances from 100 codes, ``threshold=0.06``). CFASL also feeds *sampled* codes
      rather than posterior means; pass sampled codes to reproduce its numbers.

    Any explicit size argument overrides the chosen preset.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors of the pool (``n_factors >= 2``).
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the pool.
    n_fixed : int, default=2
        ``k``, the number of factors held fixed, ``1 <= k < n_factors`` (the paper reports
        ``k = 2 .. n_factors - 1``). The pool must be large enough that rows sharing ``k``
        factor values exist (a complete grid always is).
    batch_size, n_train, n_eval, n_variance_estimate, threshold : default=None
        ``None`` takes the value of the chosen protocol (see above). ``n_eval=0`` scores the
        training votes (CFASL).
    cfasl_compat : bool, default=False
        Use the CFASL code's protocol.
    random_state : int, RandomState instance or None, default=None
        Makes the draws, hence the score, reproducible.
    return_details : bool, default=False
        Return ``{"train_accuracy", "eval_accuracy", "n_active_dims", "n_subsets"}``.

    Returns
    -------
    score : float or dict
        mFVM_k in [0, 1]: the evaluation accuracy, or with ``n_eval=0`` the training
        accuracy (or the details dict).

    References
    ----------
    Jung, Jeong, Kim, "CFASL: Composite Factor-Aligned Symmetry Learning for
    Disentanglement in Variational AutoEncoder", TMLR 2024.
    https://openreview.net/forum?id=mDGvrH7lju

    Kim, Mnih, "Disentangling by Factorising", ICML 2018. https://arxiv.org/abs/1802.05983

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import mfvm
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 4, size=(3000, 3))
    >>> codes = np.c_[factors[:, 1], factors[:, 2], factors[:, 0]].astype(float)
    >>> mfvm(factors, codes, n_fixed=2, n_train=300, n_eval=100, random_state=0)
    1.0
    >>> mfvm(factors, codes, n_fixed=2, cfasl_compat=True, random_state=0)
    1.0
    """
    factors, codes = check_factors_codes(factors, codes)
    n_fixed, params = resolve_mfvm_params(
        factors.shape[1],
        n_fixed,
        cfasl_compat,
        batch_size=batch_size,
        n_train=n_train,
        n_eval=n_eval,
        n_variance_estimate=n_variance_estimate,
        threshold=threshold,
    )
    rng = check_random_state(random_state)
    details = mfvm_from_sampler(PoolSampler(factors, codes), rng, n_fixed=n_fixed, **params)
    return details if return_details else details["eval_accuracy"]
