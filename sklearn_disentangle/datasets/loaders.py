"""Loaders for real ground-truth datasets a user already has on disk (nothing downloads)."""

import os
import zipfile

import numpy as np

from ._base import FactorGridDataset

__all__ = ["DSpritesDataset", "load_dsprites"]

_DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
_DSPRITES_SIZES = (1, 3, 6, 40, 32, 32)


class DSpritesDataset(FactorGridDataset):
    """DeepMind's dSprites held in memory; see :func:`load_dsprites`.

    Attributes
    ----------
    factor_names : tuple of str
        ``("shape", "scale", "orientation", "posX", "posY")`` (the constant ``color``
        column is dropped, as disentanglement_lib's ``dsprites_full`` does).
    factor_sizes : tuple of int
        ``(3, 6, 40, 32, 32)`` for the real file.
    latents_values : ndarray of shape (n_samples, 6)
        The file's factor values (color, shape, scale, orientation, posX, posY).

    Examples
    --------
    >>> from sklearn_disentangle.datasets import load_dsprites
    >>> data = load_dsprites("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")  # doctest: +SKIP
    >>> data.factor_sizes  # doctest: +SKIP
    (3, 6, 40, 32, 32)
    """

    factor_names = ("shape", "scale", "orientation", "posX", "posY")

    def __init__(self, imgs, latents_classes, latents_values, sizes):
        self._imgs = imgs
        self.factor_sizes = tuple(int(s) for s in sizes[1:])
        self.observation_shape = tuple(imgs.shape[1:])
        self.latents_values = latents_values
        self._latents_classes = latents_classes

    def _render(self, factors):
        return self._imgs[self.index_from_factors(factors)].astype(np.float32)

    @property
    def images(self):
        """All images as stored (uint8 0/1, no float32 copy)."""
        return self._imgs


def load_dsprites(path):
    """Load DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

    Reads the arrays ``imgs``, ``latents_classes`` and ``latents_values`` only; the
    pickled ``metadata`` entry is never unpickled (factor sizes are recovered from the
    class indices and checked against the grid layout). The whole image array is loaded
    into memory (about 3 GB for the real file).

    Parameters
    ----------
    path : str or path-like
        Path to the ``.npz`` file.

    Returns
    -------
    dataset : DSpritesDataset
        A :class:`~sklearn_disentangle.datasets.FactorGridDataset` with the same interface
        as :func:`~sklearn_disentangle.datasets.make_dsprites_like`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an ``.npz`` archive with dSprites' arrays, or the arrays are
        inconsistent with a complete dSprites factor grid.

    Examples
    --------
    >>> from sklearn_disentangle.datasets import load_dsprites
    >>> data = load_dsprites("/data/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")  # doctest: +SKIP
    >>> factors, images = data.sample(64, random_state=0)  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"dSprites file not found: {path!r}. Download {_DSPRITES_FILE} from "
            "https://github.com/deepmind/dsprites-dataset yourself and pass its path "
            "(this library never downloads), or use make_dsprites_like() for generated data."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not an .npz archive; expected {_DSPRITES_FILE}.")
    with np.load(path, allow_pickle=False) as npz:
        missing = {"imgs", "latents_classes", "latents_values"} - set(npz.files)
        if missing:
            raise ValueError(
                f"{path!r} is not a dSprites file: missing arrays {sorted(missing)} "
                f"(found {sorted(npz.files)}); expected {_DSPRITES_FILE}."
            )
        imgs, classes, values = npz["imgs"], npz["latents_classes"], npz["latents_values"]
    if imgs.ndim != 3 or classes.ndim != 2 or classes.shape[1] != 6 or len(classes) != len(imgs):
        raise ValueError(
            f"{path!r}: expected imgs (N, H, W) and latents_classes (N, 6) with the same N, "
            f"got imgs {imgs.shape} and latents_classes {classes.shape}."
        )
    sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
    if sizes[0] != 1 or int(np.prod(sizes)) != len(imgs):
        raise ValueError(
            f"{path!r}: latents_classes do not form a complete dSprites grid (sizes {sizes}, "
            f"{len(imgs)} images; the real file has sizes {_DSPRITES_SIZES})."
        )
    expected = np.stack(np.unravel_index(np.arange(len(imgs)), sizes), axis=1)
    if not np.array_equal(classes, expected):
        raise ValueError(
            f"{path!r}: rows are not in dSprites' order (color, shape, scale, orientation, "
            "posX, posY with posY fastest); the grid lookup would return wrong images."
        )
    return DSpritesDataset(imgs, classes, values, sizes)
