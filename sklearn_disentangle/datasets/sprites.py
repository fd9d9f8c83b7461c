"""dSprites-like sprites rendered in code, with DeepMind's factor grid.

The factor order and sizes follow ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
(Matthey et al., 2017) without its constant ``color`` column, exactly as
disentanglement_lib's ``dsprites_full``: shape (3: square, ellipse, heart), scale (6 values
in [0.5, 1]), orientation (40 values in [0, 2 pi], both ends included as in the original),
posX and posY (32 values in [0, 1]).
"""

import numpy as np

from ._base import FactorGridDataset

__all__ = ["SpritesDataset", "make_dsprites_like"]

SHAPES = ("square", "ellipse", "heart")
# Geometry in canvas units (the canvas spans [0, 1] x [0, 1]): half-size of a sprite at
# scale 1, and the range of sprite centres for posX/posY in [0, 1]. Chosen so the largest
# sprite stays inside the canvas at any orientation.
_HALF_SIZE = 0.12
_CENTRE_RANGE = (0.18, 0.82)
_RENDER_CHUNK = 2048


class SpritesDataset(FactorGridDataset):
    """Binary dSprites-like images on a complete factor grid, rendered on demand.

    Built by :func:`make_dsprites_like`; see there for the parameters.

    Attributes
    ----------
    factor_names : tuple of str
        ``("shape", "scale", "orientation", "posX", "posY")``.
    factor_sizes : tuple of int
        ``(3, n_scales, n_orientations, n_positions, n_positions)``.
    factor_values : dict of str to ndarray
        The value behind each class index (scale factor, radians, relative position).
    observation_shape : tuple of int
        ``(resolution, resolution)``.

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> data = make_dsprites_like(resolution=16, n_orientations=4, n_positions=4)
    >>> data.images.shape, data.factors.shape
    ((1152, 16, 16), (1152, 5))
    """

    factor_names = ("shape", "scale", "orientation", "posX", "posY")

    def __init__(self, resolution=64, n_scales=6, n_orientations=40, n_positions=32):
        for name, value, low in (
            ("resolution", resolution, 8),
            ("n_scales", n_scales, 1),
            ("n_orientations", n_orientations, 1),
            ("n_positions", n_positions, 1),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        self.resolution = int(resolution)
        self.factor_sizes = (3, int(n_scales), int(n_orientations), int(n_positions), int(n_positions))
        self.observation_shape = (self.resolution, self.resolution)
        self.factor_values = {
            "shape": np.array(SHAPES),
            "scale": np.linspace(0.5, 1.0, n_scales),
            "orientation": np.linspace(0.0, 2 * np.pi, n_orientations),
            "posX": np.linspace(0.0, 1.0, n_positions),
            "posY": np.linspace(0.0, 1.0, n_positions),
        }

    def _render(self, factors):
        out = np.empty((len(factors),) + self.observation_shape, dtype=np.float32)
        for start in range(0, len(factors), _RENDER_CHUNK):
            chunk = factors[start : start + _RENDER_CHUNK]
            out[start : start + len(chunk)] = self._render_chunk(chunk)
        return out

    def _render_chunk(self, factors):
        res = self.resolution
        v = self.factor_values
        lo, hi = _CENTRE_RANGE
        scale = v["scale"][factors[:, 1]][:, None, None] * _HALF_SIZE
        theta = v["orientation"][factors[:, 2]][:, None, None]
        cx = (lo + (hi - lo) * v["posX"][factors[:, 3]])[:, None, None]
        # posY = 0 is the top of the image, as in dSprites (row index grows downwards).
        cy = (lo + (hi - lo) * v["posY"][factors[:, 4]])[:, None, None]
        grid = (np.arange(res) + 0.5) / res
        dx = grid[None, None, :] - cx
        dy_up = -(grid[None, :, None] - cy)  # y axis pointing up
        cos, sin = np.cos(theta), np.sin(theta)
        u = (cos * dx + sin * dy_up) / scale  # rotate the frame by -theta
        w = (-sin * dx + cos * dy_up) / scale
        shape = factors[:, 0][:, None, None]
        square = np.maximum(np.abs(u), np.abs(w)) <= 1.0
        ellipse = u**2 + (w / 0.5) ** 2 <= 1.0
        hx, hy = 1.2 * u, 1.2 * w + 0.15  # classic implicit heart, centred and fitted
        heart = (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0
        img = np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))
        return img.astype(np.float32)


def make_dsprites_like(resolution=64, *, n_scales=6, n_orientations=40, n_positions=32):
    """Generate a dSprites-like ground-truth dataset (binary 2-D shapes).

    The grid, factor order and sizes match DeepMind's dSprites (737 280 images of 64 x 64
    by default); images are rendered on demand, so nothing is held in memory until asked
    for. Use ``resolution=32`` or ``16`` and smaller grids for tests.

    Parameters
    ----------
    resolution : int, default=64
        Image side in pixels.
    n_scales : int, default=6
        Number of scale values in [0.5, 1].
    n_orientations : int, default=40
        Number of orientations in [0, 2 pi] (ends included, as in dSprites).
    n_positions : int, default=32
        Number of positions along each of x and y.

    Returns
    -------
    dataset : SpritesDataset
        A :class:`~sklearn_disentangle.datasets.FactorGridDataset` with ``images``,
        ``factors``, ``sample_factors`` and ``sample_observations_from_factors``.

    Notes
    -----
    The shapes are drawn analytically (square, ellipse of aspect 2, implicit heart
    curve) at pixel centres, so sprite sizes and positions are close to, but not pixel
    identical with, the original dataset. Load the real file with
    :func:`~sklearn_disentangle.datasets.load_dsprites`.

    References
    ----------
    Matthey, Higgins, Hassabis, Lerchner. dSprites: Disentanglement testing Sprites
    dataset, 2017. https://github.com/deepmind/dsprites-dataset

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> data = make_dsprites_like(resolution=32)
    >>> data.factor_sizes
    (3, 6, 40, 32, 32)
    >>> factors, images = data.sample(8, random_state=0)
    >>> images.shape, images.dtype
    ((8, 32, 32), dtype('float32'))
    """
    return SpritesDataset(resolution, n_scales, n_orientations, n_positions)
