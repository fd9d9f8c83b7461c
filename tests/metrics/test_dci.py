"""DCI: hand-made importance matrices (dlib unit-test facts), closed forms, options, errors."""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from sklearn_disentangle.metrics import dci, dci_from_importance


def test_identity_importance_is_perfect():
    s = dci_from_importance(np.eye(10) * 3.0)
    assert s["disentanglement"] == pytest.approx(1.0, abs=1e-8)
    assert s["completeness"] == pytest.approx(1.0, abs=1e-8)


def test_one_code_for_two_factors():
    # dlib dci_test: every code used for two of ten factors -> D = 1 - ln2/ln10, C = 1
    r = np.hstack([np.diag(5.0 * np.ones(5))] * 2)
    s = dci_from_importance(r)
    assert s["disentanglement"] == pytest.approx(1 - np.log(2) / np.log(10), abs=1e-8)
    assert s["completeness"] == pytest.approx(1.0, abs=1e-8)
    # and the transpose: every factor spread over two of ten codes
    s = dci_from_importance(r.T)
    assert s["disentanglement"] == pytest.approx(1.0, abs=1e-8)
    assert s["completeness"] == pytest.approx(1 - np.log(2) / np.log(10), abs=1e-8)


def test_one_code_for_all_factors_and_zero_matrix():
    r = np.zeros((10, 10))
    r[0] = 1.0  # code 0 predicts every factor: entropy log K -> D = 0
    assert dci_from_importance(r)["disentanglement"] == pytest.approx(0.0, abs=1e-7)
    s = dci_from_importance(np.zeros((4, 3)))  # uniform weights, uniform entropies
    assert s["disentanglement"] == pytest.approx(0.0, abs=1e-7)
    assert s["completeness"] == pytest.approx(0.0, abs=1e-7)


def test_hand_computed_importance():
    # 2 codes x 2 factors; code 0: (3, 1), code 1: (0, 4)
    r = np.array([[3.0, 1.0], [0.0, 4.0]])
    h = lambda p: -sum(x * np.log2(x) for x in p if x > 0)  # noqa: E731
    d = (4 / 8) * (1 - h([0.75, 0.25])) + (4 / 8) * (1 - h([0.0, 1.0]))
    c = (3 / 8) * (1 - h([1.0, 0.0])) + (5 / 8) * (1 - h([0.2, 0.8]))
    s = dci_from_importance(r)
    assert s["disentanglement"] == pytest.approx(d, abs=1e-9)
    assert s["completeness"] == pytest.approx(c, abs=1e-9)


@pytest.fixture
def pool(rng):
    n = 600
    factors = np.c_[rng.randint(0, 3, n), rng.randint(0, 4, n), rng.randint(0, 2, n)]
    codes = np.c_[factors[:, 1] * 0.5, factors[:, 0] * 2.0, -factors[:, 2], rng.normal(size=n)]
    return factors, codes + 0.05 * rng.normal(size=codes.shape)


def test_dci_gbt_equals_reference_computation(pool):
    factors, codes = pool
    n_train = 400  # ceil(600 * 2/3)
    s = dci(factors, codes, random_state=0)
    seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=3)
    r = np.zeros((4, 3))
    acc_train, acc_test = [], []
    for j in range(3):
        m = GradientBoostingClassifier(random_state=int(seeds[j])).fit(codes[:n_train], factors[:n_train, j])
        r[:, j] = np.abs(m.feature_importances_)
        acc_train.append(np.mean(m.predict(codes[:n_train]) == factors[:n_train, j]))
        acc_test.append(np.mean(m.predict(codes[n_train:]) == factors[n_train:, j]))
    np.testing.assert_allclose(s["importance_matrix"], r, atol=1e-12)
    ref = dci_from_importance(r)
    assert s["disentanglement"] == pytest.approx(ref["disentanglement"], abs=1e-12)
    assert s["completeness"] == pytest.approx(ref["completeness"], abs=1e-12)
    assert s["informativeness_train"] == pytest.approx(np.mean(acc_train))
    assert s["informativeness_test"] == pytest.approx(np.mean(acc_test))


def test_dci_closed_forms_and_permutation(pool, rng):
    factors, codes = pool
    s = dci(factors, codes, random_state=0)
    assert s["disentanglement"] > 0.99 and s["completeness"] > 0.99
    assert s["informativeness_test"] == 1.0
    assert set(s) == {
        "disentanglement", "completeness", "informativeness_train", "informativeness_test", "importance_matrix",
    }
    perm = [2, 3, 0, 1]
    p = dci(factors, codes[:, perm], random_state=0)
    assert p["disentanglement"] == pytest.approx(s["disentanglement"], abs=1e-9)
    assert p["completeness"] == pytest.approx(s["completeness"], abs=1e-9)
    np.testing.assert_allclose(p["importance_matrix"], s["importance_matrix"][perm], atol=1e-9)
    # independent codes: importances spread evenly, test accuracy at chance
    ind = dci(factors, rng.normal(size=codes.shape), random_state=0)
    assert ind["disentanglement"] < 0.1 and ind["completeness"] < 0.1
    chance = np.mean([np.bincount(f).max() / len(f) for f in factors[400:].T])
    assert ind["informativeness_test"] < chance + 3 * 0.5 / np.sqrt(200)


def test_dci_duplicated_factor_lowers_completeness(pool, rng):
    factors, codes = pool
    dup = np.c_[codes, factors[:, 0] * 2.0 + 0.05 * rng.normal(size=len(codes))]
    s, d = dci(factors, codes, random_state=0), dci(factors, dup, random_state=0)
    assert d["completeness"] < s["completeness"] - 0.05
    assert d["disentanglement"] == pytest.approx(s["disentanglement"], abs=1e-6)


@pytest.mark.parametrize("importance", ["lasso", "random_forest", "hist_gbt"])
def test_dci_fast_options(pool, importance):
    factors, codes = pool
    s = dci(factors, codes, importance=importance, random_state=0)
    assert s["disentanglement"] > 0.95 and s["completeness"] > 0.95
    np.testing.assert_allclose(s["importance_matrix"].sum(axis=0), 1.0)
    again = dci(factors, codes, importance=importance, random_state=0)
    np.testing.assert_array_equal(again["importance_matrix"], s["importance_matrix"])


def test_dci_estimator_params_and_determinism(pool):
    factors, codes = pool
    a = dci(factors, codes, importance="random_forest", estimator_params={"n_estimators": 5}, random_state=3)
    b = dci(factors, codes, importance="random_forest", estimator_params={"n_estimators": 5}, random_state=3)
    np.testing.assert_array_equal(a["importance_matrix"], b["importance_matrix"])
    c = dci(factors, codes, importance="random_forest", estimator_params={"n_estimators": 5}, random_state=3, n_jobs=2)
    np.testing.assert_array_equal(a["importance_matrix"], c["importance_matrix"])


def test_dci_errors(pool):
    factors, codes = pool
    with pytest.raises(ValueError, match="importance must be one of"):
        dci(factors, codes, importance="xgboost")
    with pytest.raises(ValueError, match="at least 2 factors"):
        dci(factors[:, :1], codes)
    with pytest.raises(TypeError, match="estimator_params must be a dict"):
        dci(factors, codes, estimator_params=[1])
    with pytest.raises(ValueError, match="must be non-negative"):
        dci_from_importance(-np.eye(3))
    with pytest.raises(ValueError, match="at least 2 codes and 2 factors"):
        dci_from_importance(np.ones((1, 3)))
    bad = codes.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        dci(factors, bad)
