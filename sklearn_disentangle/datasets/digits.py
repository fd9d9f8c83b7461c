"""Rotated (and optionally flipped) handwritten digits with known angles.

Built from scikit-learn's bundled 8 x 8 digits (no download), upsampled and rotated in one
bilinear resampling step, so the O(2)-invariance of an encoder can be measured against a
known rotation angle and flip.
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state

from ._base import GroundTruthDataset, _check_n_samples

__all__ = ["RotatedDigitsDataset", "make_rotated_digits", "rotate_images"]


def rotate_images(images, angles_deg, flip=None, *, output_size=None, extent=1.0):
    """Rotate (and optionally mirror) a batch of images about their centre.

    Bilinear resampling with zero padding. Positive angles rotate counter-clockwise as
    displayed (rows downwards). The mirror (left-right) is applied before the rotation.

    Parameters
    ----------
    images : array-like of shape (n, H, W)
    angles_deg : array-like of shape (n,)
    flip : array-like of bool of shape (n,), default=None
    output_size : int, default=None
        Side of the square output (default: H).
    extent : float, default=1.0
        Fraction of the output's field of view that the input's width spans (a value
        below 1 shrinks the input, leaving a margin so corners are not cut by rotation).

    Returns
    -------
    ndarray of shape (n, output_size, output_size), dtype float32

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.datasets import rotate_images
    >>> img = np.zeros((1, 5, 5), dtype=np.float32); img[0, 2, 4] = 1
    >>> out = rotate_images(img, [90.0])
    >>> tuple(int(i) for i in np.argwhere(out[0] > 0.5)[0])
    (0, 2)
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W), got {tuple(x.shape)}.")
    n = x.shape[0]
    size = x.shape[-1] if output_size is None else int(output_size)
    theta = torch.as_tensor(np.deg2rad(np.asarray(angles_deg, dtype=np.float64)), dtype=torch.float32)
    if theta.shape != (n,):
        raise ValueError(f"angles_deg must have shape ({n},), got {tuple(theta.shape)}.")
    sx = torch.ones(n)
    if flip is not None:
        sx = torch.where(torch.as_tensor(np.asarray(flip, dtype=bool)), -1.0, 1.0)
    c, s = torch.cos(theta), torch.sin(theta)
    # affine_grid maps each output pixel (x right, y down, in [-1, 1]) to the input
    # position it samples. A counter-clockwise display rotation by theta samples the input
    # at R(-theta) p in y-up coordinates, i.e. (c x - s y, s x + c y) in y-down ones; the
    # mirror negates the input x, and 1/extent zooms out.
    inv = 1.0 / extent
    A = torch.zeros(n, 2, 3)
    A[:, 0, 0] = sx * c * inv
    A[:, 0, 1] = -sx * s * inv
    A[:, 1, 0] = s * inv
    A[:, 1, 1] = c * inv
    grid = F.affine_grid(A, (n, 1, size, size), align_corners=False)
    out = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy()


class RotatedDigitsDataset(GroundTruthDataset):
    """Handwritten digits under known rotations (and flips); see :func:`make_rotated_digits`.

    Attributes
    ----------
    images : ndarray of shape (n_samples, resolution, resolution), float32 in [0, 1]
    factors : ndarray of shape (n_samples, n_factors), int64
        Columns ``digit``, ``angle`` (index into ``angles_deg``) and, with flips,
        ``flip``.
    angles_deg : ndarray of shape (n_angles,)
        The rotation angle of each ``angle`` class.
    instance : ndarray of shape (n_samples,)
        Row of scikit-learn's digits each image was made from.

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_rotated_digits
    >>> data = make_rotated_digits(100, resolution=16, random_state=0)
    >>> data.images.shape, data.factor_names
    ((100, 16, 16), ('digit', 'angle'))
    """

    def __init__(self, resolution, n_angles, flips, max_angle, n_samples, random_state):
        digits = load_digits()
        self._source = (digits.images / 16.0).astype(np.float32)
        self._targets = digits.target.astype(np.int64)
        self._by_digit = [np.flatnonzero(self._targets == d) for d in range(10)]
        self.resolution = int(resolution)
        self.observation_shape = (self.resolution, self.resolution)
        self.angles_deg = np.arange(n_angles) * (float(max_angle) / n_angles)
        self.flips = bool(flips)
        self.factor_names = ("digit", "angle", "flip") if flips else ("digit", "angle")
        self.factor_sizes = (10, int(n_angles), 2) if flips else (10, int(n_angles))
        rng = check_random_state(random_state)
        if n_samples is None:
            instance = np.arange(len(self._targets))
        else:
            instance = rng.randint(len(self._targets), size=n_samples)
        cols = [self._targets[instance], rng.randint(n_angles, size=len(instance))]
        if flips:
            cols.append(rng.randint(2, size=len(instance)))
        self.factors = np.stack(cols, axis=1).astype(np.int64)
        self.instance = instance
        self.images = self._render(instance, self.factors)

    def _render(self, instance, factors):
        flip = factors[:, 2].astype(bool) if self.flips else None
        # The 8 x 8 digit spans 1/sqrt(2) of the field of view, so no corner is cut.
        return rotate_images(
            self._source[instance], self.angles_deg[factors[:, 1]], flip,
            output_size=self.resolution, extent=1 / np.sqrt(2),
        )

    def sample_observations_from_factors(self, factors, random_state=None):
        """Render the given digits/angles/flips, each from a random handwritten instance."""
        factors = self.check_factors(factors)
        rng = check_random_state(random_state)
        instance = np.array(
            [self._by_digit[d][rng.randint(len(self._by_digit[d]))] for d in factors[:, 0]],
            dtype=np.int64,
        )
        return self._render(instance, factors)


def make_rotated_digits(n_samples=None, *, resolution=32, n_angles=16, flips=False,
                        max_angle=360.0, random_state=None):
    """Rotated handwritten digits with the digit, angle (and flip) as known factors.

    Each image is one of scikit-learn's 1 797 bundled 8 x 8 digits, upsampled to
    ``resolution`` and rotated by one of ``n_angles`` equally spaced angles in
    ``[0, max_angle)`` (and mirrored left-right when ``flips`` is set). The benchmark of
    O(2)-invariance used for O2VAE and Harmony: an invariant encoder maps all rotations of
    one image to the same code.

    Parameters
    ----------
    n_samples : int, default=None
        Number of images; ``None`` uses every bundled digit once (1 797).
    resolution : int, default=32
        Output side in pixels.
    n_angles : int, default=16
        Number of rotation classes.
    flips : bool, default=False
        Also mirror half of the images (adds a ``flip`` factor).
    max_angle : float, default=360.0
        Angles are ``arange(n_angles) * max_angle / n_angles`` degrees.
    random_state : int, RandomState instance or None, default=None
        Seed for the angles, flips and (when ``n_samples`` is set) instances.

    Returns
    -------
    dataset : RotatedDigitsDataset
        With ``images``, ``factors``, ``angles_deg`` and the
        :class:`~sklearn_disentangle.datasets.GroundTruthDataset` sampling interface.

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_rotated_digits
    >>> data = make_rotated_digits(resolution=16, flips=True, random_state=0)
    >>> data.images.shape, data.factor_sizes
    ((1797, 16, 16), (10, 16, 2))
    """
    if not isinstance(resolution, (int, np.integer)) or resolution < 8:
        raise ValueError(f"resolution must be an int >= 8, got {resolution!r}.")
    if not isinstance(n_angles, (int, np.integer)) or n_angles < 1:
        raise ValueError(f"n_angles must be an int >= 1, got {n_angles!r}.")
    if n_samples is not None:
        n_samples = _check_n_samples(n_samples)
    return RotatedDigitsDataset(resolution, n_angles, flips, max_angle, n_samples, random_state)
