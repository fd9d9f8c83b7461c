"""Histogram discretiser, discrete MI and entropy against numpy/sklearn and hand values."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score

from sklearn_disentangle.metrics import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
)


def _reference_discretize(codes, n_bins):
    """disentanglement_lib's per-row loop: np.histogram edges + np.digitize(row, edges[:-1])."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram(codes[:, d], n_bins)[1]
        out[:, d] = np.digitize(codes[:, d], edges[:-1])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [1, 2, 7, 20])
def test_discretize_matches_numpy_histogram_digitize(dtype, n_bins):
    rng = np.random.RandomState(1)
    for trial in range(60):
        n = rng.randint(1, 200)
        scale, offset = 10.0 ** rng.uniform(-4, 4), rng.normal() * 10.0 ** rng.uniform(-2, 3)
        codes = (rng.normal(size=(n, 4)) * scale + offset).astype(dtype)
        if trial % 3 == 0:  # many values exactly on bin edges
            codes = (np.round(codes / scale * 4) * scale / 4).astype(dtype)
        codes[:, 3] = codes[0, 3]  # a constant column
        try:
            expected = _reference_discretize(codes, n_bins)
        except ValueError:  # numpy: too many bins for the range; we must raise too
            with pytest.raises(ValueError, match="too small a range"):
                histogram_discretize(codes, n_bins)
            continue
        np.testing.assert_array_equal(histogram_discretize(codes, n_bins), expected)


def test_discretize_edge_semantics():
    # edges of [0, 1] with 4 bins: 0, .25, .5, .75, 1
    codes = np.array([[0.0], [0.25], [0.5], [0.7499], [0.75], [1.0]])
    # min -> 1, a value on an interior edge -> the upper bin, max -> n_bins
    np.testing.assert_array_equal(histogram_discretize(codes, 4).ravel(), [1, 2, 3, 3, 4, 4])


def test_discretize_constant_column_gets_one_code():
    codes = np.c_[np.full(7, 3.5), np.arange(7.0)]
    out = histogram_discretize(codes, 20)
    assert np.unique(out[:, 0]).size == 1
    # numpy widens the range to [3, 4]: 3.5 lies exactly on interior edge 10 -> bin 11
    assert out[0, 0] == np.digitize([3.5], np.histogram([3.5], 20)[1][:-1])[0] == 11


def test_discretize_float32_is_binned_in_float32():
    rng = np.random.RandomState(0)
    codes = rng.normal(size=(500, 3)).astype(np.float32)
    np.testing.assert_array_equal(histogram_discretize(codes), _reference_discretize(codes, 20))
    # and not necessarily the same as binning the float64 values
    assert histogram_discretize(pd.DataFrame(codes)).shape == (500, 3)


def test_discretize_too_small_range_raises():
    codes = np.c_[np.float32(1e6) + np.array([0, 1e-3, 2e-3], dtype=np.float32)]
    with pytest.raises(ValueError, match="too small a range.*cast the codes to float64"):
        histogram_discretize(codes, 20)


@pytest.mark.filterwarnings("ignore:Clustering metrics expects discrete values")
def test_discrete_mi_matches_sklearn_per_pair():
    rng = np.random.RandomState(0)
    factors = np.c_[rng.randint(0, 5, 800), rng.randint(3, 9, 800), rng.choice([-2.5, 0.0, 7.0], 800)]
    codes = np.c_[rng.randint(1, 21, (800, 3)), factors[:, 0] * 2, np.full(800, 4)]
    mi = discrete_mutual_info(factors, codes)
    expected = np.array(
        [[mutual_info_score(factors[:, j], codes[:, i]) for j in range(3)] for i in range(5)]
    )
    np.testing.assert_allclose(mi, expected, rtol=0, atol=1e-12)
    assert mi[4].tolist() == [0.0, 0.0, 0.0]  # a constant code carries no information
    np.testing.assert_allclose(mi[3, 0], discrete_entropy(factors[:, :1])[0], atol=1e-12)


def test_discrete_mi_hand_computed():
    # 24 samples; y is uniform on {0, 1}; c1 == y (MI = ln 2); c2 takes value 1 only when
    # y = 1, in 6 of 12 cases: p(y, c2) = {(0,0): 1/2, (1,0): 1/4, (1,1): 1/4}
    y = np.repeat([0, 1], 12)
    c1 = y.copy()
    c2 = np.r_[np.zeros(12), np.zeros(6), np.ones(6)]
    mi = discrete_mutual_info(y[:, None], np.c_[c1, c2])
    expected_c2 = 0.5 * np.log(0.5 / (0.5 * 0.75)) + 0.25 * np.log(0.25 / (0.5 * 0.75)) + 0.25 * np.log(
        0.25 / (0.5 * 0.25)
    )
    np.testing.assert_allclose(mi[:, 0], [np.log(2), expected_c2], atol=1e-15)
    np.testing.assert_allclose(expected_c2, 0.2157615543388357, atol=1e-15)


def test_discrete_entropy_hand_computed():
    # 30 samples with counts 15, 10, 5 -> H = -(1/2 ln 1/2 + 1/3 ln 1/3 + 1/6 ln 1/6)
    y = np.r_[np.zeros(15), np.ones(10), np.full(5, 2)][:, None]
    h = -(0.5 * np.log(0.5) + np.log(1 / 3) / 3 + np.log(1 / 6) / 6)
    np.testing.assert_allclose(discrete_entropy(y), [h], atol=1e-15)
    assert discrete_entropy(np.zeros((4, 1)))[0] == 0.0
    y2 = np.random.RandomState(0).randint(0, 7, (300, 2))
    np.testing.assert_allclose(
        discrete_entropy(y2), [mutual_info_score(c, c) for c in y2.T], atol=1e-13
    )


def test_discrete_mi_shape_errors():
    with pytest.raises(ValueError, match="same number of rows"):
        discrete_mutual_info(np.zeros((3, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        histogram_discretize(np.arange(5.0))
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        histogram_discretize(np.zeros((3, 2)), n_bins=0)
