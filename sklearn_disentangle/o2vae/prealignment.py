"""Prealignment baseline: rotate each image to its principal axis, then fix the flips.

The O2-VAE paper's baseline for simple shapes (e.g. nuclei masks): instead of an invariant
model, put every object in a canonical orientation first and use any representation after.
Two steps, as the reference's prealignment module (written here from its description):

1. rotate each image about its centre so that the major axis of its second-moment ellipse
   (intensity-weighted) is horizontal;
2. iteratively pick, for each image, the one of {identity, vertical mirror, horizontal
   mirror, 180-degree rotation} (the symmetries that keep the axis horizontal) closest to
   the mean image, and recompute the mean (Pincus & Theriot, 2007).
"""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, validate_params
from ..datasets import rotate_images

__all__ = ["PrincipalAxisAligner", "principal_axis_angles"]


def _as_images(X):
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim not in (3, 4):
        raise ValueError(f"X must have shape (n, H, W) or (n, C, H, W), got {arr.shape}.")
    if arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"X must hold square images, got H x W = {arr.shape[-2]} x {arr.shape[-1]}.")
    return arr


def principal_axis_angles(images):
    """Counter-clockwise angle (degrees, as displayed) of each image's major axis.

    From the intensity-weighted second moments (negative values count as 0), in
    ``(-90, 90]``; 0 for an empty image.

    Parameters
    ----------
    images : array-like of shape (n, H, W)

    Returns
    -------
    ndarray of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.o2vae.prealignment import principal_axis_angles
    >>> bar = np.zeros((1, 9, 9)); bar[0, 4, 1:8] = 1
    >>> float(principal_axis_angles(bar)[0])
    0.0
    >>> float(principal_axis_angles(bar.transpose(0, 2, 1))[0])
    90.0
    """
    w = np.clip(np.asarray(images, dtype=np.float64), 0, None)
    n, h, width = w.shape
    rows, cols = np.mgrid[0:h, 0:width].astype(np.float64)
    x, y = cols - (width - 1) / 2.0, -(rows - (h - 1) / 2.0)  # y up
    mass = w.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    mx = (w * x).sum(axis=(1, 2)) / safe
    my = (w * y).sum(axis=(1, 2)) / safe
    dx, dy = x[None] - mx[:, None, None], y[None] - my[:, None, None]
    sxx = (w * dx * dx).sum(axis=(1, 2)) / safe
    syy = (w * dy * dy).sum(axis=(1, 2)) / safe
    sxy = (w * dx * dy).sum(axis=(1, 2)) / safe
    angle = 0.5 * np.degrees(np.arctan2(2 * sxy, sxx - syy))
    angle = np.where(angle <= -90.0, angle + 180.0, angle)
    return np.where(mass > 0, angle, 0.0)


_FLIPS = ("none", "vertical", "horizontal", "both")


def _variants(a):
    """The 4 axis-preserving variants of images (..., H, W), stacked first."""
    return np.stack([a, a[..., ::-1, :], a[..., :, ::-1], a[..., ::-1, ::-1]])


class PrincipalAxisAligner(TransformerMixin, BaseEstimator):
    """Prealignment baseline of O2-VAE: principal-axis rotation plus flip refinement.

    Parameters
    ----------
    align_channel : int, default=0
        Channel whose intensity defines the axis (multichannel input).
    n_iter : int, default=20
        Flip-refinement iterations at fit (the reference: "< 30 iterations to converge").

    Attributes
    ----------
    mean_image_ : ndarray of shape (C, H, W)
        Mean of the aligned training images, the template ``transform`` matches flips to.
    n_iter_ : int
        Iterations run (stops early when no flip changes).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.datasets import make_rotated_digits
    >>> from sklearn_disentangle.o2vae.prealignment import PrincipalAxisAligner
    >>> X = make_rotated_digits(20, resolution=16, random_state=0).images
    >>> PrincipalAxisAligner().fit_transform(X).shape
    (20, 16, 16)
    """

    _parameter_constraints = {
        "align_channel": [Interval(Integral, 0, None)],
        "n_iter": [Interval(Integral, 0, None)],
    }

    def __init__(self, align_channel=0, n_iter=20):
        self.align_channel = align_channel
        self.n_iter = n_iter

    def _rotate(self, X):
        arr = _as_images(X)
        images = arr if arr.ndim == 4 else arr[:, None]
        if self.align_channel >= images.shape[1]:
            raise ValueError(f"align_channel={self.align_channel} but X has {images.shape[1]} channel(s).")
        angles = principal_axis_angles(images[:, self.align_channel])
        n, c = images.shape[:2]
        flat = images.reshape((n * c,) + images.shape[2:])
        rotated = rotate_images(flat, np.repeat(-angles, c)).reshape(images.shape)
        return rotated, arr.ndim

    @staticmethod
    def _best_flips(images, template):
        variants = _variants(images)  # (4, n, C, H, W)
        err = ((variants - template[None, None]) ** 2).mean(axis=(2, 3, 4))
        choice = err.argmin(axis=0)
        return variants[choice, np.arange(len(images))], choice

    def fit(self, X, y=None):
        """Align X's principal axes and refine flips against the mean image.

        Parameters
        ----------
        X : array-like of shape (n, H, H) or (n, C, H, H)
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self._fit_transform(X)
        return self

    def _fit_transform(self, X):
        validate_params(self)
        images, ndim = self._rotate(X)
        self.n_iter_ = 0
        for _ in range(self.n_iter):
            template = images.mean(axis=0)
            images, new_choice = self._best_flips(images, template)
            self.n_iter_ += 1
            if not new_choice.any():  # every image already in its best variant
                break
        self.mean_image_ = images.mean(axis=0)
        return images if ndim == 4 else images[:, 0]

    def fit_transform(self, X, y=None):
        """Fit and return the aligned training images (each flip refined jointly)."""
        return self._fit_transform(X)

    def transform(self, X):
        """Rotate each image to its principal axis and pick the flip closest to ``mean_image_``.

        Parameters
        ----------
        X : array-like of shape (n, H, H) or (n, C, H, H)

        Returns
        -------
        ndarray of the same shape, float32
        """
        check_is_fitted(self)
        images, ndim = self._rotate(X)
        if images.shape[1:] != self.mean_image_.shape:
            raise ValueError(f"X has per-sample shape {images.shape[1:]} but the aligner was fitted on "
                             f"{self.mean_image_.shape}.")
        images, _ = self._best_flips(images, self.mean_image_)
        return images if ndim == 4 else images[:, 0]
