"""MIG: reference equality, hand-computed gap, closed forms, invariances, errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score

from sklearn_disentangle.metrics import mig


def _mig_reference(factors, codes, n_bins=20):
    """disentanglement_lib's MIG written as its straightforward loops (codes x factors)."""
    disc = np.zeros(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        disc[:, d] = np.digitize(codes[:, d], np.histogram(codes[:, d], n_bins)[1][:-1])
    m = np.array(
        [[mutual_info_score(factors[:, j], disc[:, i]) for j in range(factors.shape[1])] for i in range(codes.shape[1])]
    )
    h = np.array([mutual_info_score(f, f) for f in factors.T])
    srt = np.sort(m, axis=0)[::-1]
    return np.mean((srt[0] - srt[1]) / h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mig_equals_reference_loop(dtype):
    rng = np.random.RandomState(3)
    factors = np.c_[rng.randint(0, 3, 1200), rng.randint(0, 6, 1200), rng.randint(0, 10, 1200)]
    mixing = rng.normal(size=(3, 6))
    codes = (factors @ mixing + 0.5 * rng.normal(size=(1200, 6))).astype(dtype)
    codes[:, 5] = 1.25  # a collapsed (constant) dimension
    assert abs(mig(factors, codes) - _mig_reference(factors, codes)) < 1e-12
    assert abs(mig(factors, codes, n_bins=7) - _mig_reference(factors, codes, 7)) < 1e-12


def test_mig_hand_computed_gap():
    # 24 samples, factor uniform on {0, 1}; code 0 copies it (MI = ln 2), code 1 is 1 only
    # for half of the y = 1 samples (MI = 0.21576...); with 2 bins each code keeps its two
    # values, H(y) = ln 2, so MIG = (ln 2 - 0.21576) / ln 2.
    y = np.repeat([0, 1], 12)[:, None]
    codes = np.c_[y[:, 0], np.r_[np.zeros(18), np.ones(6)]]
    expected = (np.log(2) - 0.2157615543388357) / np.log(2)
    assert mig(y, codes, n_bins=2) == pytest.approx(expected, abs=1e-14)
    # two factors: the second one is captured by no code better than by another -> gap 0
    y2 = np.c_[y, y]
    assert mig(y2, codes, n_bins=2) == pytest.approx(expected, abs=1e-14)


def _bias_bound(n_samples, n_bins, n_values):
    """Three times the Miller-Madow bias of the plug-in MI of independent variables, over H."""
    return 3 * (n_bins - 1) * (max(n_values) - 1) / (2 * n_samples) / np.log(min(n_values))


def test_mig_closed_forms(toy_pool, rng):
    n = toy_pool.shape[0]
    # codes = permuted, scaled factors plus noise-free extra dims -> ~1 up to MI bias
    codes = np.c_[3.0 * toy_pool[:, 2], -0.1 * toy_pool[:, 0], toy_pool[:, 1] + 7, rng.normal(size=n)]
    assert mig(toy_pool, codes) > 1 - _bias_bound(n, 20, (4, 5, 3))
    # independent codes -> ~0 within the estimator's bias
    assert mig(toy_pool, rng.normal(size=(n, 5))) < _bias_bound(n, 20, (4, 5, 3))


def test_mig_permutation_invariant(toy_pool, rng):
    codes = toy_pool @ rng.normal(size=(3, 5)) + rng.normal(size=(toy_pool.shape[0], 5))
    perm = [3, 0, 4, 2, 1]
    assert mig(toy_pool, codes[:, perm]) == pytest.approx(mig(toy_pool, codes), abs=1e-14)


def test_mig_duplicated_factor_lowers_score(toy_pool):
    clean = np.c_[toy_pool, np.zeros(len(toy_pool))].astype(float)
    redundant = np.c_[toy_pool, toy_pool[:, 0]].astype(float)  # factor 0 in two codes
    full = mig(toy_pool, clean)
    low = mig(toy_pool, redundant)
    # factor 0's gap drops to exactly 0; the other gaps only change through which
    # near-zero (bias-level) MI is the runner-up: MIG falls by a third
    assert low < full - 0.3
    assert low == pytest.approx(full * 2 / 3, abs=_bias_bound(len(toy_pool), 20, (4, 5, 3)))
    only_factor0 = mig(toy_pool[:, [0, 1]], np.c_[toy_pool[:, 0], toy_pool[:, 0], toy_pool[:, 1]])
    # two factors, factor 0 duplicated: its gap is exactly 0, factor 1's is ~1 -> MIG ~ 1/2
    assert only_factor0 == pytest.approx(0.5, abs=_bias_bound(len(toy_pool), 20, (4, 5)))


def test_mig_accepts_dataframes(toy_pool):
    codes = toy_pool * 2.0
    df_f = pd.DataFrame(toy_pool, columns=["a", "b", "c"])
    df_c = pd.DataFrame(codes, columns=["z0", "z1", "z2"])
    assert mig(df_f, df_c) == mig(toy_pool, codes)


def test_mig_errors():
    f = np.random.RandomState(0).randint(0, 3, (50, 2))
    with pytest.raises(ValueError, match="same number of rows"):
        mig(f, np.zeros((49, 3)))
    with pytest.raises(ValueError, match=r"codes must be 2-D.*reshape\(-1, 1\)"):
        mig(f, np.zeros(50))
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        mig(f, np.zeros((50, 1)))
    bad = np.random.RandomState(0).normal(size=(50, 3))
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="codes contains NaN.*row 7, column 1.*drop or impute"):
        mig(f, bad)
    f_const = f.copy()
    f_const[:, 1] = 4
    with pytest.raises(ValueError, match="factors column 1 has a single distinct value"):
        mig(f_const, bad[:, [0, 2]])
    with pytest.raises(TypeError, match="must hold numbers"):
        mig(f.astype(str), np.zeros((50, 3)))
    with pytest.raises(ValueError, match="n_bins must be an int"):
        mig(f, np.zeros((50, 3)), n_bins=2.5)
    with pytest.raises(ValueError, match="3-D"):
        mig(f, np.zeros((50, 2, 2)))
