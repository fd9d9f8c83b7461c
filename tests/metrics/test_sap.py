"""SAP: reference loop equality, closed forms, invariances, pools, errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.svm import LinearSVC

from sklearn_disentangle.metrics import sap, sap_score_matrix


def _sap_reference(mus, ys, mus_test, ys_test, continuous):
    """disentanglement_lib's _compute_sap written as its (code, factor) loop."""
    score = np.zeros((mus.shape[1], ys.shape[1]))
    for i in range(mus.shape[1]):
        for j in range(ys.shape[1]):
            if continuous:
                cov = np.cov(mus[:, i], ys[:, j], ddof=1)
                score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
            else:
                clf = LinearSVC(C=0.01, class_weight="balanced").fit(mus[:, i][:, None], ys[:, j])
                score[i, j] = np.mean(clf.predict(mus_test[:, i][:, None]) == ys_test[:, j])
    srt = np.sort(score, axis=0)
    return np.mean(srt[-1] - srt[-2])


@pytest.fixture
def binary_pool(rng):
    n = 900
    factors = rng.randint(0, 2, size=(n, 3))
    codes = np.c_[factors[:, 2] * 2.0, rng.normal(size=n), factors[:, 0] - 0.5, factors[:, 1] * 0.3]
    return factors, codes + 0.05 * rng.normal(size=codes.shape)


@pytest.mark.parametrize("continuous", [False, True])
def test_sap_equals_reference_with_split(binary_pool, continuous):
    factors, codes = binary_pool
    n_train = int(np.ceil(len(factors) * 2 / 3))  # split_train_test: first ceil(n p) rows
    expected = _sap_reference(codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:], continuous)
    assert sap(factors, codes, continuous_factors=continuous) == pytest.approx(expected, abs=1e-12)


def test_sap_explicit_test_pool(binary_pool, rng):
    factors, codes = binary_pool
    f_test = rng.randint(0, 2, size=(300, 3))
    c_test = np.c_[f_test[:, 2] * 2.0, rng.normal(size=300), f_test[:, 0] - 0.5, f_test[:, 1] * 0.3]
    expected = _sap_reference(codes, factors, c_test, f_test, False)
    assert sap(factors, codes, f_test, c_test) == pytest.approx(expected, abs=1e-12)


def test_sap_closed_forms(binary_pool, rng):
    factors, codes = binary_pool
    n = len(factors)
    # continuous variant: r^2 = 1 for the matching code, ~0 for the others
    assert sap(factors, codes, continuous_factors=True) > 0.95
    assert sap(factors, rng.normal(size=(n, 4)), continuous_factors=True) < 5 * 3 / n
    # discrete variant: the matching code predicts perfectly, an unrelated one is at chance
    matrix = sap_score_matrix(factors, codes)
    assert (matrix[[2, 3, 0], [0, 1, 2]] > 0.99).all()
    chance_gap = 3 / np.sqrt(n / 3)  # three standard errors of an accuracy on n/3 test rows
    srt = np.sort(matrix, axis=0)
    assert abs(sap(factors, codes) - (srt[-1] - srt[-2]).mean()) < 1e-12
    assert 0.5 - chance_gap < sap(factors, codes) < 0.5 + chance_gap  # 1 - chance for binary factors
    assert sap(factors, rng.normal(size=(n, 4))) < chance_gap


def test_sap_permutation_invariant(binary_pool):
    factors, codes = binary_pool
    perm = [3, 1, 0, 2]
    for continuous in (False, True):
        assert sap(factors, codes[:, perm], continuous_factors=continuous) == pytest.approx(
            sap(factors, codes, continuous_factors=continuous), abs=1e-12
        )


def test_sap_duplicated_code_lowers_score(binary_pool):
    factors, codes = binary_pool
    dup = np.c_[codes, codes[:, 0] * -1.5]  # factor 2 is now in two codes -> its gap is 0
    assert sap(factors, dup, continuous_factors=True) == pytest.approx(
        sap(factors, codes, continuous_factors=True) * 2 / 3, abs=0.02
    )


def test_sap_constant_code_scores_zero_continuous(binary_pool):
    factors, codes = binary_pool
    codes = codes.copy()
    codes[:, 1] = 3.0
    m = sap_score_matrix(factors, codes, continuous_factors=True)
    assert (m[1] == 0).all()


def test_sap_dataframe_and_determinism(binary_pool):
    factors, codes = binary_pool
    a = sap(pd.DataFrame(factors), pd.DataFrame(codes), random_state=0)
    assert a == sap(factors, codes, random_state=0) == sap(factors, codes, random_state=1)
    assert a == sap(factors, codes, random_state=0, n_jobs=2)


def test_sap_errors(binary_pool):
    factors, codes = binary_pool
    with pytest.raises(ValueError, match="pass both factors_test and codes_test"):
        sap(factors, codes, factors_test=factors)
    with pytest.raises(ValueError, match="same columns"):
        sap(factors, codes, factors[:, :2], codes[:, :4])
    with pytest.raises(ValueError, match="train_fraction must be a float strictly between 0 and 1"):
        sap(factors, codes, train_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        sap(factors, codes[:, :1])
    with pytest.raises(ValueError, match="same number of rows"):
        sap(factors, codes[:10])
    sorted_f = np.sort(factors[:, :1], axis=0)  # the training rows only hold value 0
    with pytest.raises(ValueError, match="column 0 has a single distinct value"):
        sap(sorted_f[: len(sorted_f) // 3], codes[: len(sorted_f) // 3], sorted_f[-5:], codes[-5:])
