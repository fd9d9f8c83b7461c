"""FactorVAE score, beta-VAE score and mFVM in the pool form."""

import numpy as np
import pandas as pd
import pytest

from sklearn_disentangle.metrics import beta_vae_score, factor_vae_score, mfvm
from sklearn_disentangle.metrics._sampling import PoolSampler
from sklearn_disentangle.metrics.mfvm import _macro_accuracy, _majority

SMALL = {"n_train": 400, "n_eval": 300}


def _three_se(p, n):
    return 3 * np.sqrt(p * (1 - p) / n)


def test_pool_batches_hold_the_chosen_factors_fixed(toy_pool, rng):
    sampler = PoolSampler(toy_pool, toy_pool.astype(float))  # codes = factors
    for n_fixed in (1, 2):
        seen = set()
        for subsets, codes in sampler.fixed_batches(200, 16, n_fixed, rng):
            assert codes.shape[1:] == (16, 3)
            for s, batch in zip(subsets, codes):
                assert list(s) == sorted(set(s)) and len(s) == n_fixed
                assert (batch[:, s] == batch[0, s]).all()
                seen.add(tuple(s))
        assert len(seen) == {1: 3, 2: 3}[n_fixed]  # every factor set gets drawn
    for ks, c1, c2 in sampler.pair_batches(50, 8, rng):
        assert (c1[np.arange(len(ks)), :, ks] == c2[np.arange(len(ks)), :, ks]).all()


def test_factor_vae_closed_forms(toy_pool, rng):
    n = len(toy_pool)
    codes = np.c_[toy_pool[:, 2] * 0.5, toy_pool[:, 0] * 3.0, np.zeros(n), toy_pool[:, 1]]
    details = factor_vae_score(toy_pool, codes, random_state=0, return_details=True, **SMALL)
    assert details == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "n_active_dims": 3}
    score = factor_vae_score(toy_pool, rng.normal(size=(n, 4)), random_state=0, **SMALL)
    assert score < 1 / 3 + _three_se(1 / 3, SMALL["n_eval"])


def test_factor_vae_pruning_as_reference(toy_pool):
    # sqrt(var) < 0.05 for every dimension -> no active dimension -> all scores 0
    tiny = toy_pool * 0.01
    assert factor_vae_score(toy_pool, tiny, random_state=0, return_details=True, **SMALL) == {
        "train_accuracy": 0.0,
        "eval_accuracy": 0.0,
        "n_active_dims": 0,
    }
    # a lower threshold keeps them
    assert factor_vae_score(toy_pool, tiny, threshold=0.001, random_state=0, **SMALL) == 1.0


def test_factor_vae_cfasl_compat(toy_pool, rng):
    codes = toy_pool + 0.5 * rng.normal(size=toy_pool.shape)
    a = factor_vae_score(toy_pool, codes, cfasl_compat=True, random_state=2, return_details=True)
    b = factor_vae_score(
        toy_pool, codes, batch_size=100, n_train=800, n_eval=0, n_variance_estimate=100,
        threshold=0.06, random_state=2, return_details=True,
    )
    assert a == b and a["eval_accuracy"] == a["train_accuracy"]
    assert factor_vae_score(toy_pool, toy_pool * 1.0, cfasl_compat=True, random_state=0) == 1.0


def test_factor_vae_redundant_code(toy_pool):
    # factor 0 in two codes: the majority classifier maps both to factor 0 -> still 1.0,
    # but a code mixing factors 1 and 2 loses one of them
    codes = np.c_[toy_pool[:, 0], toy_pool[:, 0], toy_pool[:, 1] + toy_pool[:, 2]]
    score = factor_vae_score(toy_pool, codes.astype(float), random_state=0, **SMALL)
    assert 0.4 < score < 0.9


def test_beta_vae_closed_forms(toy_pool, rng):
    n = len(toy_pool)
    codes = np.c_[toy_pool[:, 1], toy_pool[:, 2] * 2.0, toy_pool[:, 0] * 0.5, np.ones(n)]
    details = beta_vae_score(toy_pool, codes, random_state=0, return_details=True, **SMALL)
    assert details["eval_accuracy"] == 1.0 and details["train_accuracy"] == 1.0
    score = beta_vae_score(toy_pool, rng.normal(size=(n, 4)), random_state=0, **SMALL)
    assert score < 1 / 3 + _three_se(1 / 3, SMALL["n_eval"])


def test_mfvm_closed_forms(toy_pool, rng):
    n = len(toy_pool)
    codes = np.c_[toy_pool[:, 1], toy_pool[:, 2] * 2.0, toy_pool[:, 0] * 0.5, np.zeros(n)]
    details = mfvm(toy_pool, codes, n_fixed=2, random_state=0, return_details=True, **SMALL)
    assert details == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "n_active_dims": 3, "n_subsets": 3}
    assert mfvm(toy_pool, codes, n_fixed=1, random_state=0, **SMALL) == 1.0
    # random codes: majority among C(4, 2) = 6 dimension sets
    assert mfvm(toy_pool, rng.normal(size=(n, 4)), random_state=0, **SMALL) < 1 / 6 + _three_se(1 / 6, 100)


def test_mfvm_votes_macro_average_by_hand():
    # factor set (0,): dims (1,) x3, (2,) x1 -> 3/4; factor set (1,): (2,) x1, (0,) x1 -> 1/2
    subsets = np.array([[0], [0], [0], [0], [1], [1]])
    chosen = np.array([[1], [1], [1], [2], [2], [0]])
    best, accuracy = _majority(subsets, chosen)
    assert accuracy == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert best[(0,)] == (1,) and best[(1,)] == (0,)  # tie -> the first set in sorted order
    # the FactorVAE score's micro-averaged majority factor per dimension on the same votes
    # would be (3 + 1 + 1) / 6: mFVM with k = 1 is not the FactorVAE score
    eval_s = np.array([[0], [1], [1], [2]])
    eval_q = np.array([[1], [2], [0], [1]])
    # (0,): 1/1; (1,): 1/2; (2,) was never seen in training: 0/1
    assert _macro_accuracy(eval_s, eval_q, best) == pytest.approx((1 + 0.5 + 0) / 3)


def test_mfvm_exact_set_match(toy_pool, rng):
    # factor 2 is in no code: for S = {0, 2} dim 0 is always chosen but the second dim is
    # a coin toss among three; such votes overlap the majority set yet count as errors.
    # Expected ~ (1 [S={0,1}] + 1/3 + 1/3) / 3 = 5/9 (a little more: majority of a noisy draw)
    codes = np.c_[toy_pool[:, 0], toy_pool[:, 1], rng.normal(size=(len(toy_pool), 2))]
    d = mfvm(toy_pool, codes, n_fixed=2, random_state=0, return_details=True, **SMALL)
    assert d["n_active_dims"] == 4 and d["n_subsets"] == 3
    assert 5 / 9 - 0.1 < d["eval_accuracy"] < 5 / 9 + 0.15


def test_mfvm_cfasl_compat_preset(toy_pool, rng):
    codes = toy_pool + 0.3 * rng.normal(size=toy_pool.shape)
    a = mfvm(toy_pool, codes, cfasl_compat=True, random_state=5, return_details=True)
    b = mfvm(
        toy_pool, codes, batch_size=100, n_train=800, n_eval=0, n_variance_estimate=100,
        threshold=0.06, random_state=5, return_details=True,
    )
    assert a == b
    assert a["eval_accuracy"] == a["train_accuracy"]  # no held-out votes in CFASL's protocol
    # explicit arguments override the preset
    c = mfvm(toy_pool, codes, cfasl_compat=True, n_eval=200, random_state=5, return_details=True)
    assert c["train_accuracy"] == a["train_accuracy"]


@pytest.mark.parametrize("func", [factor_vae_score, beta_vae_score, mfvm])
def test_interventional_determinism_and_dataframes(func, toy_pool, rng):
    codes = toy_pool + 0.8 * rng.normal(size=toy_pool.shape)
    a = func(toy_pool, codes, random_state=7, **SMALL)
    b = func(pd.DataFrame(toy_pool), pd.DataFrame(codes), random_state=np.random.RandomState(7), **SMALL)
    assert a == b
    assert 0.0 <= a <= 1.0


def test_interventional_errors(toy_pool):
    codes = toy_pool.astype(float)
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        factor_vae_score(toy_pool, codes, batch_size=1)
    with pytest.raises(ValueError, match="threshold must be a non-negative float"):
        factor_vae_score(toy_pool, codes, threshold=-1)
    with pytest.raises(ValueError, match="n_fixed must lie in 1..n_factors-1 = 1..2"):
        mfvm(toy_pool, codes, n_fixed=3)
    with pytest.raises(ValueError, match="n_train must be an int"):
        beta_vae_score(toy_pool, codes, n_train=0)
    with pytest.raises(ValueError, match="same number of rows"):
        beta_vae_score(toy_pool, codes[:-1])
    nan_codes = codes.copy()
    nan_codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mfvm(toy_pool, nan_codes)
    with pytest.raises(ValueError, match="increase n_train"):
        beta_vae_score(toy_pool, codes, n_train=2, n_eval=2, random_state=4)  # both points: factor 2
