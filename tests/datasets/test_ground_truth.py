"""The ground-truth dataset protocol: factor validation, grid indexing, sampling streams."""

import numpy as np
import pytest

from sklearn_disentangle.datasets import FactorGridDataset, GroundTruthDataset, make_dsprites_like
from sklearn_disentangle.datasets import _base


class _Grid(FactorGridDataset):
    """A 2 x 3 x 4 grid whose observation encodes its own factors (for exact checks)."""

    factor_names = ("a", "b", "c")
    factor_sizes = (2, 3, 4)
    observation_shape = (3,)

    def _render(self, factors):
        return factors.astype(np.float32)


@pytest.fixture
def grid():
    return _Grid()


def test_protocol_is_abstract():
    with pytest.raises(TypeError):
        GroundTruthDataset()
    with pytest.raises(TypeError):
        FactorGridDataset()


def test_grid_basic_attributes(grid):
    assert grid.n_factors == 3
    assert grid.n_samples == 24
    assert len(grid) == 24
    assert repr(grid) == "_Grid(a=2, b=3, c=4; observation_shape=(3,))"


def test_index_is_mixed_radix_last_factor_fastest(grid):
    assert grid.index_from_factors([[0, 0, 1]]).tolist() == [1]
    assert grid.index_from_factors([[0, 1, 0]]).tolist() == [4]
    assert grid.index_from_factors([[1, 0, 0]]).tolist() == [12]
    assert grid.index_from_factors([[1, 2, 3]]).tolist() == [23]
    factors = grid.factors
    assert factors.shape == (24, 3)
    assert factors.dtype == np.int64
    np.testing.assert_array_equal(factors[:5], [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 1, 0]])
    np.testing.assert_array_equal(grid.index_from_factors(factors), np.arange(24))


def test_index_round_trip_matches_numpy(grid):
    rng = np.random.RandomState(0)
    factors = grid.sample_factors(50, random_state=rng)
    index = grid.index_from_factors(factors)
    assert index.dtype == np.int64
    np.testing.assert_array_equal(index, np.ravel_multi_index(tuple(factors.T), (2, 3, 4)))
    np.testing.assert_array_equal(grid.factors_from_index(index), factors)
    all_index = np.arange(24)
    np.testing.assert_array_equal(grid.index_from_factors(grid.factors_from_index(all_index)), all_index)


def test_factors_from_index_rejects_out_of_range(grid):
    with pytest.raises(ValueError, match="0..23"):
        grid.factors_from_index([24])
    with pytest.raises(ValueError, match="0..23"):
        grid.factors_from_index([-1])
    assert grid.factors_from_index(np.array([], dtype=np.int64)).shape == (0, 3)


def test_images_of_grid_match_factors(grid):
    np.testing.assert_array_equal(grid.images, grid.factors.astype(np.float32))


def test_sample_observations_from_factors_uses_given_factors(grid):
    factors = [[1, 2, 3], [0, 0, 0], [1, 0, 2]]
    np.testing.assert_array_equal(grid.sample_observations_from_factors(factors), factors)


def test_sample_factors_range_shape_and_dtype(grid):
    factors = grid.sample_factors(500, random_state=0)
    assert factors.shape == (500, 3)
    assert factors.dtype == np.int64
    assert factors.min() == 0
    np.testing.assert_array_equal(factors.max(axis=0), [1, 2, 3])
    # every value of every factor occurs (uniform draws, 500 samples)
    for k, size in enumerate(grid.factor_sizes):
        assert set(np.unique(factors[:, k])) == set(range(size))


def test_sample_is_deterministic_under_int_seed(grid):
    f1, x1 = grid.sample(20, random_state=3)
    f2, x2 = grid.sample(20, random_state=3)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    f3, _ = grid.sample(20, random_state=4)
    assert not np.array_equal(f1, f3)
    np.testing.assert_array_equal(grid.sample_observations(20, random_state=3), x1)


def test_random_state_instance_is_advanced_sequentially(grid):
    rng = np.random.RandomState(7)
    first = grid.sample_factors(10, random_state=rng)
    second = grid.sample_factors(10, random_state=rng)
    assert not np.array_equal(first, second)
    # the same stream drawn in one go: column-wise draws, one call per factor
    ref = np.random.RandomState(7)
    expected_first = np.stack([ref.randint(s, size=10) for s in grid.factor_sizes], axis=1)
    expected_second = np.stack([ref.randint(s, size=10) for s in grid.factor_sizes], axis=1)
    np.testing.assert_array_equal(first, expected_first)
    np.testing.assert_array_equal(second, expected_second)


def test_sample_with_random_state_instance_continues_stream(grid):
    rng = np.random.RandomState(11)
    f1, _ = grid.sample(8, random_state=rng)
    f2, _ = grid.sample(8, random_state=rng)
    ref = np.random.RandomState(11)
    np.testing.assert_array_equal(f1, grid.sample_factors(8, random_state=ref))
    np.testing.assert_array_equal(f2, grid.sample_factors(8, random_state=ref))


@pytest.mark.parametrize("bad", [-1, 2.5, "3", None, True])
def test_n_samples_validation(grid, bad):
    with pytest.raises(ValueError, match="n_samples must be a non-negative int"):
        grid.sample_factors(bad)


def test_n_samples_accepts_zero_and_numpy_int(grid):
    assert grid.sample_factors(0, random_state=0).shape == (0, 3)
    assert grid.sample_factors(np.int64(4), random_state=0).shape == (4, 3)


@pytest.mark.parametrize("factors", [[[0, 0]], [[0, 0, 0, 0]], [0, 0, 0], np.zeros((2, 3, 1), int)])
def test_check_factors_wrong_shape(grid, factors):
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\)") as excinfo:
        grid.check_factors(factors)
    assert "['a', 'b', 'c']" in str(excinfo.value)


def test_check_factors_out_of_range_names_factor(grid):
    with pytest.raises(ValueError, match=r"factor 'c' takes values 0..3, got 4 in row 1"):
        grid.check_factors([[0, 0, 0], [1, 2, 4]])
    with pytest.raises(ValueError, match=r"factor 'a' takes values 0..1, got -1 in row 0"):
        grid.check_factors([[-1, 0, 0]])


def test_check_factors_type_errors(grid):
    with pytest.raises(TypeError, match="integer class indices"):
        grid.check_factors([[0.5, 0, 0]])
    with pytest.raises(TypeError, match="integer class indices"):
        grid.check_factors(np.array([[np.nan, 0, 0]]))
    with pytest.raises(TypeError, match="integer class indices"):
        grid.check_factors(np.array([["0", "0", "0"]]))
    with pytest.raises(TypeError):
        grid.sample_observations_from_factors([[0, 1.5, 0]])


def test_check_factors_accepts_integral_floats(grid):
    out = grid.check_factors(np.array([[1.0, 2.0, 3.0]]))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[1, 2, 3]])
    assert grid.check_factors(np.zeros((0, 3))).shape == (0, 3)


def test_images_refused_above_two_gib(monkeypatch, grid):
    # 24 observations of 3 float32 = 288 bytes
    monkeypatch.setattr(_base, "_MAX_IN_MEMORY_BYTES", 287)
    with pytest.raises(ValueError, match=r"sample\(\)"):
        grid.images
    monkeypatch.setattr(_base, "_MAX_IN_MEMORY_BYTES", 288)
    assert grid.images.shape == (24, 3)


def test_full_dsprites_grid_images_refused_with_clear_message():
    data = make_dsprites_like(resolution=64)
    assert data.n_samples == 737280
    with pytest.raises(ValueError) as excinfo:
        data.images
    msg = str(excinfo.value)
    assert "sample()" in msg
    assert "737280" in msg
    assert "GiB" in msg
