"""Toy ground-truth datasets and encoders for the metric tests.

``FactorDataset``'s observation *is* the factor vector (plus optional Gaussian noise drawn
from the sampler's random stream), so an identity encoder gives perfect codes and a
linear map gives permuted / mixed / redundant ones with known answers.
"""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from sklearn_disentangle.datasets import GroundTruthDataset


class FactorDataset(GroundTruthDataset):
    """Observation = factor vector (float32) + ``noise`` * N(0, 1) drawn from random_state."""

    def __init__(self, factor_sizes=(4, 5, 3), noise=0.0):
        self.factor_sizes = tuple(factor_sizes)
        self.factor_names = tuple(f"f{i}" for i in range(len(factor_sizes)))
        self.observation_shape = (len(factor_sizes),)
        self.noise = noise

    def sample_observations_from_factors(self, factors, random_state=None):
        factors = self.check_factors(factors)
        obs = factors.astype(np.float32)
        if self.noise:
            rng = np.random.mtrand._rand if random_state is None else random_state
            obs = obs + self.noise * rng.normal(size=obs.shape).astype(np.float32)
        return obs


class LinearEncoder(TransformerMixin, BaseEstimator):
    """Stand-in for a fitted representation: codes = scale * X @ W (W fixed or identity).

    ``mix`` blends every code with the mean of the observation (entangling the factors).
    Every ``transform`` call is counted in ``LinearEncoder.calls`` (shared counter).
    """

    calls = []

    def __init__(self, scale=1.0, mix=0.0, weights=None):
        self.scale = scale
        self.mix = mix
        self.weights = weights

    def fit(self, X, y=None):
        X = np.asarray(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        LinearEncoder.calls.append(len(X))
        X = np.asarray(X, dtype=np.float64)
        codes = X if self.weights is None else X @ np.asarray(self.weights)
        codes = (1 - self.mix) * codes + self.mix * codes.mean(axis=1, keepdims=True)
        return (self.scale * codes).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.RandomState(0)


@pytest.fixture
def toy_pool(rng):
    """1500 i.i.d. factor vectors of a (4, 5, 3) grid."""
    n = 1500
    return np.c_[rng.randint(0, 4, n), rng.randint(0, 5, n), rng.randint(0, 3, n)]


@pytest.fixture(autouse=True)
def _reset_calls():
    LinearEncoder.calls.clear()
    yield
