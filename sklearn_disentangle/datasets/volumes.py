"""Synthetic beating-heart-like volumes in the 5-D ``(Channel, Time, Slice, X, Y)`` layout.

Each subject is a bright-blood cine of a left-ventricle-like ellipsoidal shell: a myocardial
wall (intensity 1.0) around a blood pool (0.6) on a dark background (0.1), with smooth edges
and Gaussian noise. The endocardial radius contracts over the cardiac cycle,

    r(t) = radius * (1 - contraction * (1 - cos(2 pi t / n_frames + phase)) / 2),

and the wall thickens as it contracts so that the wall's cross-section area is conserved
(incompressible myocardium): ``w(t) = sqrt(r(t)^2 + (radius + wall)^2 - radius^2) - r(t)``.
The four per-subject factors ``radius``, ``wall_thickness``, ``contraction`` and ``phase`` are
returned, and the volumes can be written to the HDF5 layout of
:mod:`sklearn_disentangle.io.hdf5` (DiffAE3D's input).
"""

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_cardiac_volumes", "CARDIAC_FACTOR_NAMES"]

CARDIAC_FACTOR_NAMES = ("radius", "wall_thickness", "contraction", "phase")
"""Names of the per-subject factors of :func:`make_cardiac_volumes`."""


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def make_cardiac_volumes(n_subjects=8, *, n_frames=8, n_slices=8, size=32, noise=0.02, path=None,
                         series_key="primary_LAX_4Ch_transverse", field_id="20208", random_state=None):
    """Beating-heart-like shells with known radius, wall thickness, contraction and phase.

    Parameters
    ----------
    n_subjects : int, default=8
    n_frames : int, default=8
        Time points per cardiac cycle (the ``Time`` axis).
    n_slices : int, default=8
        Slices along the long axis (the ``Slice`` axis).
    size : int, default=32
        In-plane size ``X = Y``.
    noise : float, default=0.02
        Standard deviation of additive Gaussian noise.
    path : str or path-like, default=None
        If given, also write the volumes to this HDF5 file in the documented layout
        (``<patientID>/<field_id>/2_0/<series_key>``, ``min_val``/``max_val`` attributes).
    series_key : str, default='primary_LAX_4Ch_transverse'
    field_id : str, default='20208'
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : sklearn.utils.Bunch
        ``volumes`` ndarray of shape ``(n_subjects, 1, n_frames, n_slices, size, size)``,
        float32 in about ``[0, 1]``; ``factors`` DataFrame ``(n_subjects, 4)`` with columns
        ``radius`` and ``wall_thickness`` (pixels, at end-diastole), ``contraction`` (fraction)
        and ``phase`` (radians); ``factor_names``; ``hdf5_keys`` (HDF5 dataset paths);
        ``endocardial_radius`` ``(n_subjects, n_frames)`` and ``wall`` ``(n_subjects,
        n_frames)`` over the cycle; ``path`` (or None).

    Examples
    --------
    >>> from sklearn_disentangle.datasets.volumes import make_cardiac_volumes
    >>> data = make_cardiac_volumes(3, n_frames=4, n_slices=4, size=16, random_state=0)
    >>> data.volumes.shape, list(data.factors.columns)
    ((3, 1, 4, 4, 16, 16), ['radius', 'wall_thickness', 'contraction', 'phase'])
    """
    rng = check_random_state(random_state)
    n, t_n, s_n, d = int(n_subjects), int(n_frames), int(n_slices), int(size)
    radius = rng.uniform(0.18, 0.26, n) * d
    wall = rng.uniform(0.06, 0.11, n) * d
    contraction = rng.uniform(0.15, 0.45, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    t = np.arange(t_n)
    r_t = radius[:, None] * (1 - contraction[:, None] * (1 - np.cos(2 * np.pi * t[None] / t_n + phase[:, None])) / 2)
    area = (radius + wall) ** 2 - radius**2
    w_t = np.sqrt(r_t**2 + area[:, None]) - r_t
    yy, xx = np.meshgrid(np.arange(d) - d / 2 + 0.5, np.arange(d) - d / 2 + 0.5, indexing="ij")
    zz = (np.arange(s_n) - s_n / 2 + 0.5) * (d / max(s_n, 1)) / 1.6  # long axis 1.6x the short axes
    # ellipsoidal "radius" of every voxel, shape (S, X, Y)
    rho = np.sqrt(xx[None] ** 2 + yy[None] ** 2 + zz[:, None, None] ** 2)
    edge = 0.8
    vols = np.empty((n, 1, t_n, s_n, d, d), dtype=np.float32)
    for i in range(n):
        for k in range(t_n):
            inner = _sigmoid((r_t[i, k] - rho) / edge)
            outer = _sigmoid((r_t[i, k] + w_t[i, k] - rho) / edge)
            img = 0.1 + 0.9 * (outer - inner) + 0.5 * inner
            vols[i, 0, k] = img + rng.standard_normal(img.shape) * noise
    factors = pd.DataFrame({"radius": radius, "wall_thickness": wall, "contraction": contraction, "phase": phase})
    keys = [f"{1000001 + i}/{field_id}/2_0/{series_key}" for i in range(n)]
    if path is not None:
        from ..io.hdf5 import write_hdf5_volumes

        write_hdf5_volumes(path, dict(zip(keys, vols)))
    return Bunch(volumes=vols, factors=factors, factor_names=CARDIAC_FACTOR_NAMES, hdf5_keys=keys,
                 endocardial_radius=r_t, wall=w_t, path=None if path is None else str(path))
