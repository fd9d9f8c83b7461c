"""The ground-truth dataset protocol shared by generators, loaders and metrics.

A *ground-truth dataset* knows the generative factors of every observation. The
interventional disentanglement metrics (FactorVAE score, beta-VAE score, mFVM) need to
draw observations with chosen factors held fixed; :class:`GroundTruthDataset` is the one
interface they use, following the data interface of disentanglement_lib
(Locatello et al., 2019): ``sample_factors`` then ``sample_observations_from_factors``.

:class:`FactorGridDataset` specialises it for *complete factorial grids* (dSprites,
3D Shapes and the generated sprites), where every combination of factor values occurs
exactly once and the row of a factor vector is its mixed-radix index (last factor
fastest), so conditional sampling is an O(1) index lookup.
"""

from abc import ABC, abstractmethod
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["GroundTruthDataset", "FactorGridDataset"]

# Above this many bytes the ``images`` property refuses to render the whole grid at once.
_MAX_IN_MEMORY_BYTES = 2 * 1024**3


class GroundTruthDataset(ABC):
    """Protocol of a dataset whose observations have known discrete generative factors.

    Subclasses define ``factor_names``, ``factor_sizes``, ``observation_shape`` and
    :meth:`sample_observations_from_factors`. Factors are integer class indices, column
    ``k`` taking values ``0 .. factor_sizes[k] - 1``.

    Attributes
    ----------
    factor_names : tuple of str
        Name of each factor, in column order.
    factor_sizes : tuple of int
        Number of values of each factor.
    observation_shape : tuple of int
        Shape of one observation, e.g. ``(64, 64)`` or ``(3, 64, 64)``.

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> data = make_dsprites_like(resolution=16)
    >>> factors = data.sample_factors(5, random_state=0)
    >>> factors.shape
    (5, 5)
    >>> data.sample_observations_from_factors(factors).shape
    (5, 16, 16)
    """

    factor_names = ()
    factor_sizes = ()
    observation_shape = ()

    @property
    def n_factors(self):
        """Number of generative factors."""
        return len(self.factor_sizes)

    def sample_factors(self, n_samples, random_state=None):
        """Draw factor vectors uniformly and independently for each factor.

        Parameters
        ----------
        n_samples : int
            Number of factor vectors.
        random_state : int, RandomState instance or None, default=None
            Seed or generator; a ``RandomState`` is used (and advanced) in place, as
            disentanglement_lib does, so metrics can draw sequentially from one stream.

        Returns
        -------
        factors : ndarray of shape (n_samples, n_factors), dtype int64
        """
        n_samples = _check_n_samples(n_samples)
        rng = check_random_state(random_state)
        cols = [rng.randint(size, size=n_samples) for size in self.factor_sizes]
        return np.stack(cols, axis=1).astype(np.int64) if cols else np.zeros((n_samples, 0), np.int64)

    @abstractmethod
    def sample_observations_from_factors(self, factors, random_state=None):
        """Return one observation per factor vector.

        Parameters
        ----------
        factors : array-like of shape (n_samples, n_factors)
            Integer factor indices.
        random_state : int, RandomState instance or None, default=None
            Used by datasets whose observation is not a deterministic function of the
            factors (e.g. which handwritten instance of a digit is shown).

        Returns
        -------
        observations : ndarray of shape (n_samples, *observation_shape), dtype float32
        """

    def sample(self, n_samples, random_state=None):
        """Draw factors, then observations, from one random stream.

        Returns
        -------
        factors : ndarray of shape (n_samples, n_factors)
        observations : ndarray of shape (n_samples, *observation_shape)
        """
        rng = check_random_state(random_state)
        factors = self.sample_factors(n_samples, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_observations(self, n_samples, random_state=None):
        """Draw observations only (see :meth:`sample`)."""
        return self.sample(n_samples, random_state)[1]

    def check_factors(self, factors):
        """Validate a factor matrix and return it as an int64 array.

        Raises
        ------
        ValueError
            If the shape is wrong or a value lies outside ``0 .. factor_sizes[k] - 1``.
        TypeError
            If the values are not integers.
        """
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.n_factors:
            raise ValueError(
                f"factors must have shape (n_samples, {self.n_factors}) for the factors "
                f"{list(self.factor_names)}, got shape {factors.shape}."
            )
        if factors.size and not np.issubdtype(factors.dtype, np.integer):
            if not np.issubdtype(factors.dtype, np.floating) or not np.all(factors == np.round(factors)):
                raise TypeError(
                    f"factors must be integer class indices, got dtype {factors.dtype}."
                )
        factors = factors.astype(np.int64)
        sizes = np.asarray(self.factor_sizes)
        bad = (factors < 0) | (factors >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"factor {self.factor_names[col]!r} takes values 0..{sizes[col] - 1}, "
                f"got {factors[row, col]} in row {row}."
            )
        return factors

    def __repr__(self):
        sizes = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"{type(self).__name__}({sizes}; observation_shape={tuple(self.observation_shape)})"


class FactorGridDataset(GroundTruthDataset):
    """A complete factorial grid: one observation per combination of factor values.

    Row ``i`` of the grid holds the factor vector ``np.unravel_index(i, factor_sizes)``
    (last factor varying fastest, the layout of dSprites and 3D Shapes). Subclasses
    implement :meth:`_render` (observations for validated factor vectors).

    Attributes
    ----------
    n_samples : int
        Number of grid points, ``prod(factor_sizes)``.
    factors : ndarray of shape (n_samples, n_factors)
        The whole factor grid in row order.
    images : ndarray of shape (n_samples, *observation_shape)
        The whole grid rendered (refused with a ``MemoryError``-free ``ValueError`` when
        it would exceed 2 GiB; sample instead).

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> data = make_dsprites_like(resolution=16)
    >>> int(data.index_from_factors([[0, 0, 0, 0, 1]])[0])
    1
    """

    @property
    def n_samples(self):
        """Number of observations in the grid."""
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def __len__(self):
        return self.n_samples

    def index_from_factors(self, factors):
        """Row index of each factor vector in the grid (mixed radix, last factor fastest)."""
        factors = self.check_factors(factors)
        return np.ravel_multi_index(tuple(factors.T), self.factor_sizes).astype(np.int64)

    def factors_from_index(self, index):
        """Factor vectors of the given grid rows."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n_samples):
            raise ValueError(f"grid index must lie in 0..{self.n_samples - 1}.")
        return np.stack(np.unravel_index(index, self.factor_sizes), axis=1).astype(np.int64)

    @property
    def factors(self):
        """The whole factor grid, shape (n_samples, n_factors)."""
        return self.factors_from_index(np.arange(self.n_samples))

    @property
    def images(self):
        """The whole grid of observations (rendered on demand)."""
        nbytes = self.n_samples * int(np.prod(self.observation_shape)) * 4
        if nbytes > _MAX_IN_MEMORY_BYTES:
            raise ValueError(
                f"{type(self).__name__} has {self.n_samples} observations of shape "
                f"{tuple(self.observation_shape)} ({nbytes / 1024**3:.1f} GiB as float32); "
                "draw a subset with sample() or sample_observations_from_factors() instead, "
                "or use a lower resolution."
            )
        return self.sample_observations_from_factors(self.factors)

    def sample_observations_from_factors(self, factors, random_state=None):
        factors = self.check_factors(factors)
        return self._render(factors)

    @abstractmethod
    def _render(self, factors):
        """Observations (float32) for validated int64 factor vectors."""


def _check_n_samples(n_samples):
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}.")
    return int(n_samples)
