"""FactorVAE score (Kim & Mnih, 2018), pool form, as in disentanglement_lib."""

import numpy as np
from sklearn.utils import check_random_state

from ._sampling import PoolSampler
from ._validation import check_factors_codes, check_int

__all__ = ["factor_vae_score"]


def global_variances(sampler, n_variance_estimate, rng):
    """Per-dimension variance (ddof 1) of ``n_variance_estimate`` i.i.d. codes."""
    codes = sampler.iid_codes(n_variance_estimate, rng)
    return np.var(codes, axis=0, ddof=1)


def active_dims(variances, threshold):
    """Dimensions kept by the reference's ``prune_dims``: ``sqrt(var) >= threshold``.

    Dimensions with exactly zero variance are always pruned (with ``threshold=0`` the
    reference would divide by zero).
    """
    return (np.sqrt(variances) >= threshold) & (variances > 0)


def _votes(sampler, n_votes, batch_size, rng, variances, active):
    votes = np.zeros((sampler.n_factors, variances.size), dtype=np.int64)
    idx = np.flatnonzero(active)
    for subsets, codes in sampler.fixed_batches(n_votes, batch_size, 1, rng):
        local = np.var(codes, axis=1, ddof=1)[:, idx]
        dims = idx[np.argmin(local / variances[idx], axis=1)]
        np.add.at(votes, (subsets[:, 0], dims), 1)
    return votes


def factor_vae_from_sampler(sampler, rng, *, batch_size, n_train, n_eval, n_variance_estimate, threshold):
    """FactorVAE score on any sampler (pool or generator); returns the details dict."""
    variances = global_variances(sampler, n_variance_estimate, rng)
    active = active_dims(variances, threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active_dims": 0}
    train_votes = _votes(sampler, n_train, batch_size, rng, variances, active)
    classifier = np.argmax(train_votes, axis=0)  # majority factor per code dimension
    cols = np.arange(train_votes.shape[1])
    train_accuracy = train_votes[classifier, cols].sum() / train_votes.sum()
    if n_eval > 0:
        eval_votes = _votes(sampler, n_eval, batch_size, rng, variances, active)
        eval_accuracy = eval_votes[classifier, cols].sum() / eval_votes.sum()
    else:  # CFASL protocol: accuracy on the training votes
        eval_accuracy = train_accuracy
    return {
        "train_accuracy": float(train_accuracy),
        "eval_accuracy": float(eval_accuracy),
        "n_active_dims": int(active.sum()),
    }


def check_vote_sizes(batch_size, n_train, n_eval, n_variance_estimate, threshold, *, min_eval=1):
    batch_size = check_int(batch_size, "batch_size", low=2)
    n_train = check_int(n_train, "n_train", low=1)
    n_eval = check_int(n_eval, "n_eval", low=min_eval)
    n_variance_estimate = check_int(n_variance_estimate, "n_variance_estimate", low=2)
    if isinstance(threshold, bool) or not np.isscalar(threshold) or not threshold >= 0:
        raise ValueError(f"threshold must be a non-negative float, got {threshold!r}.")
    return batch_size, n_train, n_eval, n_variance_estimate, float(threshold)


CFASL_PRESET = {"batch_size": 100, "n_train": 800, "n_eval": 0, "n_variance_estimate": 100, "threshold": 0.06}
REFERENCE_PRESET = {"batch_size": 64, "n_train": 10000, "n_eval": 5000, "n_variance_estimate": 10000, "threshold": 0.05}


def resolve_fvm_params(cfasl_compat=False, **params):
    """Fill None sizes from the reference (or CFASL) preset and validate them."""
    preset = CFASL_PRESET if cfasl_compat else REFERENCE_PRESET
    keys = ("batch_size", "n_train", "n_eval", "n_variance_estimate", "threshold")
    values = [preset[k] if params.get(k) is None else params[k] for k in keys]
    return dict(zip(keys, check_vote_sizes(*values, min_eval=0)))


def factor_vae_score(
    factors,
    codes,
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
    """FactorVAE disentanglement score, computed from a labelled pool of codes.

    As ``factor_vae.py`` of disentanglement_lib, with batches drawn from the pool:

    1. per-dimension variances (ddof 1) of ``n_variance_estimate`` codes drawn uniformly
       (with replacement) from the pool; dimensions with ``sqrt(var) < threshold`` are
       pruned (collapsed), and if none is left every score is 0;
    2. one vote: a factor ``k`` uniformly at random, a batch of ``batch_size`` codes whose
       factor ``k`` is equal (first row uniform over the pool, the others uniform among the
       rows sharing its value of ``k``), and the active dimension with the smallest
       within-batch variance divided by its global variance; the vote is (k, dimension);
    3. a majority-vote classifier (the most voted factor per dimension, ties to the lowest
       factor) is fitted on ``n_train`` votes; the score is its accuracy on ``n_eval``
       fresh votes.

    The pool form works on any encoded data set and inside cross-validation; it equals
    the generator form in distribution when the pool is a complete factor grid (or the
    factors are independent and uniform). Use :func:`evaluate` for the generator form.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors of the pool.
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the pool (posterior means as the reference, or samples for CFASL's
        protocol).
    batch_size : int, default=None
        Codes per vote; None means 64 (reference) or 100 (``cfasl_compat``).
    n_train, n_eval : int, default=None
        Training and evaluation votes; None means 10 000 and 5 000 (reference) or 800 and
        0 (``cfasl_compat``). ``n_eval=0`` reports the accuracy on the training votes.
    n_variance_estimate : int, default=None
        Codes used for the global variances; None means 10 000 (reference) or 100
        (``cfasl_compat``).
    threshold : float, default=None
        Prune threshold on the standard deviation; None means 0.05 (the reference
        study's gin value) or 0.06 (``cfasl_compat``).
    cfasl_compat : bool, default=False
        The CFASL code's FactorVAE protocol (spec: 100-code variance batch, threshold 0.06,
        800 votes of 100 codes, majority-vote accuracy on those same votes). CFASL also
        encodes with *sampled* codes; pass sampled codes to reproduce its numbers. Explicit
        size arguments override the preset.
    random_state : int, RandomState instance or None, default=None
        Makes the draws, hence the score, reproducible.
    return_details : bool, default=False
        Return a dict ``{"train_accuracy", "eval_accuracy", "n_active_dims"}`` instead of
        the score. ``n_active_dims`` is the number of unpruned dimensions (the reference
        reports the total number of dimensions under that name by mistake).

    Returns
    -------
    score : float or dict
        Evaluation accuracy in [0, 1] (or the details dict).

    Notes
    -----
    The reference stores the argmin's position inside the active subset as a column
    index of the vote matrix; here it is the dimension's own index. The two are a
    relabelling of columns and give identical accuracies.

    References
    ----------
    Kim, Mnih, "Disentangling by Factorising", ICML 2018. https://arxiv.org/abs/1802.05983

    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import factor_vae_score
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 5, size=(2000, 3))
    >>> codes = np.c_[factors[:, 2], factors[:, 0], factors[:, 1], np.zeros(2000)]
    >>> factor_vae_score(factors, codes, n_train=500, n_eval=200, random_state=0)
    1.0
    >>> factor_vae_score(factors, codes, cfasl_compat=True, random_state=0)
    1.0
    """
    sizes = resolve_fvm_params(
        cfasl_compat, batch_size=batch_size, n_train=n_train, n_eval=n_eval,
        n_variance_estimate=n_variance_estimate, threshold=threshold,
    )
    factors, codes = check_factors_codes(factors, codes)
    rng = check_random_state(random_state)
    details = factor_vae_from_sampler(
        PoolSampler(factors, codes),
        rng,
        **sizes,
    )
    return details if return_details else details["eval_accuracy"]
