"""beta-VAE score (Higgins et al., 2017), pool form, as in disentanglement_lib."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state

from ._sampling import PoolSampler
from ._validation import check_factors_codes, check_int

__all__ = ["beta_vae_score"]


def _points(sampler, n_points, batch_size, rng):
    labels, features = [], []
    for ks, codes1, codes2 in sampler.pair_batches(n_points, batch_size, rng):
        labels.append(ks)
        features.append(np.mean(np.abs(codes1 - codes2), axis=1))
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_from_sampler(sampler, rng, *, batch_size, n_train, n_eval):
    """beta-VAE score on any sampler (pool or generator); returns the details dict."""
    x_train, y_train = _points(sampler, n_train, batch_size, rng)
    if np.unique(y_train).size < 2:
        raise ValueError(
            f"all {n_train} training points of the beta-VAE score hold the same factor; "
            "increase n_train so that the classifier sees at least two factors."
        )
    model = LogisticRegression(random_state=rng)
    model.fit(x_train, y_train)
    train_accuracy = model.score(x_train, y_train)
    x_eval, y_eval = _points(sampler, n_eval, batch_size, rng)
    eval_accuracy = model.score(x_eval, y_eval)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy)}


def beta_vae_score(
    factors,
    codes,
    *,
    batch_size=64,
    n_train=10000,
    n_eval=5000,
    random_state=None,
    return_details=False,
):
    """beta-VAE disentanglement score, computed from a labelled pool of codes.

    As ``beta_vae.py`` of disentanglement_lib: one point draws a factor ``k`` uniformly,
    two batches of ``batch_size`` codes whose rows agree pairwise on factor ``k`` (the
    first batch uniform over the pool, each row of the second uniform among the pool rows
    sharing the paired row's value of ``k``), and uses the mean absolute difference of the
    paired codes (a vector of length n_codes) as features with label ``k``. A
    ``LogisticRegression(random_state=rng)`` with sklearn defaults (lbfgs, no feature
    scaling) is fitted on ``n_train`` points; the score is its accuracy on ``n_eval``
    fresh points.

    Parameters
    ----------
    factors : array-like or DataFrame of shape (n_samples, n_factors)
        Discrete ground-truth factors of the pool.
    codes : array-like or DataFrame of shape (n_samples, n_codes)
        Codes of the pool.
    batch_size : int, default=64
        Pairs averaged per point (reference: 64).
    n_train, n_eval : int, default=10000, 5000
        Training and evaluation points (reference: 10 000 and 5 000).
    random_state : int, RandomState instance or None, default=None
        Makes the draws, hence the score, reproducible.
    return_details : bool, default=False
        Return ``{"train_accuracy", "eval_accuracy"}`` instead of the score.

    Returns
    -------
    score : float or dict
        Evaluation accuracy in [0, 1] (or the details dict).

    Notes
    -----
    The reference ran with sklearn <= 0.21, whose LogisticRegression default was
    liblinear one-vs-rest; current sklearn uses multinomial lbfgs, which is what runs here.
    Zero-variance code dimensions give zero features and are harmless.

    References
    ----------
    Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework", ICLR 2017. https://openreview.net/forum?id=Sy2fzU9gl

    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import beta_vae_score
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 5, size=(2000, 3))
    >>> codes = factors + 0.05 * rng.normal(size=(2000, 3))
    >>> beta_vae_score(factors, codes, n_train=300, n_eval=100, random_state=0)
    1.0
    """
    batch_size = check_int(batch_size, "batch_size", low=1)
    n_train = check_int(n_train, "n_train", low=2)
    n_eval = check_int(n_eval, "n_eval", low=1)
    factors, codes = check_factors_codes(factors, codes)
    rng = check_random_state(random_state)
    details = beta_vae_from_sampler(
        PoolSampler(factors, codes), rng, batch_size=batch_size, n_train=n_train, n_eval=n_eval
    )
    return details if return_details else details["eval_accuracy"]
