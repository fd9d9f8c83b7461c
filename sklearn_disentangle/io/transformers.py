"""Readers as scikit-learn transformers, so a ``Pipeline`` can start from file paths.

Each reader is stateless: ``fit`` only returns ``self``; ``transform(paths)`` reads the files.
``paths`` may be one path, a list of paths, or a 1-column array or DataFrame of paths.
"""

import os

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .hdf5 import NORMALISATION_MODES, list_hdf5_volumes, read_hdf5_volume
from .mrc import read_mrc
from .particles import ParticleStack

__all__ = ["MRCReader", "StarReader", "HDF5VolumeReader"]


def _as_paths(X):
    if isinstance(X, (str, os.PathLike)):
        return [os.fspath(X)]
    if isinstance(X, pd.DataFrame):
        X = X.to_numpy()
    arr = np.asarray(X, dtype=object).reshape(-1)
    if arr.size == 0:
        raise ValueError("no file paths given.")
    out = []
    for p in arr:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"expected file paths, got {type(p).__name__} ({p!r}).")
        out.append(os.fspath(p))
    return out


class _StatelessReader(TransformerMixin, BaseEstimator):
    def fit(self, X=None, y=None):
        """Do nothing (the reader is stateless) and return ``self``.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : object
        """
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


class MRCReader(_StatelessReader):
    """Read MRC stacks or volumes from paths into one float32 array.

    Parameters
    ----------
    kind : {'auto', 'stack', 'volume'}, default='auto'
        How to interpret each file (see :func:`~sklearn_disentangle.io.read_mrc`): stacks are
        concatenated to ``(n_images, D, D)``, volumes stacked to ``(n_files, D, D, D)``.
    pixel_size : float, default=None
        Explicit pixel size (only checked for consistency; the array carries none).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import MRCReader, write_mrc
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(2):
    ...     write_mrc(os.path.join(folder, f"s{i}.mrcs"), np.zeros((3, 8, 8)))
    >>> MRCReader().fit_transform([os.path.join(folder, f"s{i}.mrcs") for i in range(2)]).shape
    (6, 8, 8)
    """

    def __init__(self, kind="auto", pixel_size=None):
        self.kind = kind
        self.pixel_size = pixel_size

    def transform(self, X):
        """Read the files.

        Parameters
        ----------
        X : str, path-like or sequence of them

        Returns
        -------
        data : ndarray, float32
            ``(n_images, D, D)`` for stacks, ``(n_files, ...)`` for volumes and images.
        """
        if self.kind not in ("auto", "stack", "volume"):
            raise ValueError(f"kind must be 'auto', 'stack' or 'volume', got {self.kind!r}.")
        arrays, kinds = [], set()
        for path in _as_paths(X):
            data, info = read_mrc(path, kind=self.kind, pixel_size=self.pixel_size)
            kinds.add(info.kind)
            arrays.append(np.asarray(data, dtype=np.float32))
        if len(kinds) > 1:
            raise ValueError(f"MRCReader got a mix of {sorted(kinds)}; pass kind= to read them alike.")
        shapes = {a.shape[1:] if kinds == {"stack"} else a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"MRCReader: files have different shapes {sorted(shapes)}.")
        return np.concatenate(arrays) if kinds == {"stack"} else np.stack(arrays)


class StarReader(_StatelessReader):
    """Read RELION STAR (or cryoSPARC ``.cs``) files into one :class:`~sklearn_disentangle.io.ParticleStack`.

    Parameters
    ----------
    datadir : str or path-like, default=None
        Folder holding the stacks (see :meth:`ParticleStack.from_star`).
    pixel_size : float, default=None
        Explicit pixel size.
    label_column : str, default=None
        Column used as labels (``'rlnClassNumber'`` gives 0-based labels).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import ParticleStack, StarReader
    >>> path = os.path.join(tempfile.mkdtemp(), "p.star")
    >>> ParticleStack(np.zeros((4, 8, 8)), pixel_size=2.0).to_star(path)
    >>> StarReader().fit_transform([path])
    ParticleStack(n=4, box_size=8, pixel_size=2 A, stacks=1, with=[])
    """

    def __init__(self, datadir=None, pixel_size=None, label_column=None):
        self.datadir = datadir
        self.pixel_size = pixel_size
        self.label_column = label_column

    def transform(self, X):
        """Read the files.

        Parameters
        ----------
        X : str, path-like or sequence of them
            ``.star`` or ``.cs`` files.

        Returns
        -------
        stack : ParticleStack
        """
        stacks = []
        for path in _as_paths(X):
            if path.lower().endswith(".cs"):
                stacks.append(ParticleStack.from_cs(path, datadir=self.datadir, pixel_size=self.pixel_size))
            else:
                stacks.append(ParticleStack.from_star(path, datadir=self.datadir, pixel_size=self.pixel_size,
                                                      label_column=self.label_column))
        return stacks[0] if len(stacks) == 1 else ParticleStack.concatenate(stacks)


class HDF5VolumeReader(_StatelessReader):
    """Read the 5-D series of HDF5 volume files (DiffAE3D layout) into one float32 array.

    Parameters
    ----------
    keys : list of str, default=None
        Series selection (see :func:`~sklearn_disentangle.io.hdf5.list_hdf5_volumes`).
    normalisation : {None, 'minmax', 'divbymax', 'minmaxvol', 'divbymaxvol'}, default='minmax'

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import HDF5VolumeReader
    >>> from sklearn_disentangle.io.hdf5 import write_hdf5_volumes
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> write_hdf5_volumes(path, {f"{p}/20208/2_0/primary": np.random.rand(1, 2, 3, 4, 4) for p in (1, 2, 3)})
    >>> HDF5VolumeReader().fit_transform(path).shape
    (3, 1, 2, 3, 4, 4)
    """

    def __init__(self, keys=None, normalisation="minmax"):
        self.keys = keys
        self.normalisation = normalisation

    def list_items(self, X):
        """``(path, "patientID/fieldID/instanceID/dataset")`` of every series :meth:`transform` reads.

        Parameters
        ----------
        X : str, path-like or sequence of them

        Returns
        -------
        items : list of tuple of str
        """
        return [(path, key) for path in _as_paths(X) for key in list_hdf5_volumes(path, self.keys)]

    def transform(self, X):
        """Read and normalise every selected series.

        Parameters
        ----------
        X : str, path-like or sequence of them

        Returns
        -------
        volumes : ndarray of shape (n_series, C, T, S, X, Y), float32
        """
        if self.normalisation not in NORMALISATION_MODES:
            raise ValueError(f"normalisation must be one of {NORMALISATION_MODES}, got {self.normalisation!r}.")
        items = self.list_items(X)
        if not items:
            raise ValueError("HDF5VolumeReader: no series found in the given files.")
        vols = [read_hdf5_volume(p, k, normalisation=self.normalisation) for p, k in items]
        shapes = {v.shape for v in vols}
        if len(shapes) > 1:
            raise ValueError(f"HDF5VolumeReader: series have different shapes {sorted(shapes)}; crop or pad them.")
        return np.stack(vols)
