"""Simulated cryo-EM particles and subtomograms with known conformations and poses.

The molecule is a sum of isotropic 3-D Gaussian blobs: a rigid *body* and a *domain* that
swings about a hinge. Its conformation is a coordinate ``t`` in ``[0, 1]`` (the hinge angle
is ``t * hinge_angle``); ``n_conformations`` evenly spaced values give discrete states, and
``motion='continuous'`` draws ``t`` uniformly.

Because blobs are Gaussian, projections are rendered **analytically** (exactly, no
interpolation): a blob of weight ``w`` and width ``s`` at ``r`` projects under pose ``A`` to a
2-D Gaussian of amplitude ``w sqrt(2 pi) s`` at ``(A r)[:2]``, the convention of
:func:`sklearn_disentangle.cryoem.project_real`. Raw images are then shifted by minus their
RELION origin, multiplied by a CTF (RELION parameterisation, random defocus) and given white
Gaussian noise of variance ``var(clean) / snr``. Everything is returned, so the particles can be
written as ``.mrcs`` + ``.star`` with :meth:`~sklearn_disentangle.io.ParticleStack.to_star` and
read back identically.
"""

import math

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from ..cryoem.ctf import apply_ctf, compute_ctf
from ..cryoem.rotations import matrix_to_euler, quaternion_to_matrix
from ..io.particles import ParticleStack
from ._base import GroundTruthDataset

__all__ = ["make_cryoem_particles", "make_subtomograms", "molecule_blobs", "render_volume", "CryoEMConformationDataset"]


def molecule_blobs(t, box_size, hinge_angle=90.0):
    """Blob centres (voxels, relative to the box centre), widths and weights at conformation ``t``.

    Parameters
    ----------
    t : float or array-like of shape (k,)
        Conformation coordinate(s) in ``[0, 1]``: hinge angle ``t * hinge_angle`` degrees.
    box_size : int
    hinge_angle : float, default=90.0
        Swing of the domain, in degrees, between ``t = 0`` and ``t = 1``. The domain holds
        26 % of the mass far from the centre, so with a large swing the least-squares
        superposition of two conformations is not the body frame (about 90 degrees from it
        in 3-D at the default, 15 at ``hinge_angle=30``): smaller swings give conformations
        whose common frame is (nearly) the body frame.

    Returns
    -------
    centres : ndarray of shape (k, n_blobs, 3)
        ``(x, y, z)`` in voxels.
    sigmas : ndarray of shape (n_blobs,)
    weights : ndarray of shape (n_blobs,)

    Examples
    --------
    >>> from sklearn_disentangle.datasets.cryoem import molecule_blobs
    >>> centres, sigmas, weights = molecule_blobs([0.0, 1.0], 32)
    >>> centres.shape, sigmas.shape
    ((2, 8, 3), (8,))
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    hinge_angle = _check_hinge_angle(hinge_angle)
    u = box_size / 32.0  # geometry scales with the box
    body = np.array([[-4.0, -3.0, 0.0], [0.0, -4.0, 2.0], [3.0, -2.0, -2.0], [-2.0, 1.0, -3.0],
                     [1.0, 0.5, 3.0], [-3.5, 3.0, 1.5]]) * u
    hinge = np.array([1.5, 2.5, 0.0]) * u
    arm = np.array([[3.5, 1.0, 0.0], [7.0, 1.5, 0.0]]) * u  # relative to the hinge, swings about z then x
    angles = np.deg2rad(hinge_angle * t)
    c, s = np.cos(angles), np.sin(angles)
    rot = np.zeros((len(t), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    tilt = np.deg2rad(30.0)
    tilt_x = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    domain = hinge + np.einsum("kij,nj->kni", tilt_x @ rot, arm)
    centres = np.concatenate([np.broadcast_to(body, (len(t),) + body.shape), domain], axis=1)
    sigmas = np.array([1.6, 1.5, 1.7, 1.4, 1.5, 1.3, 1.4, 1.6]) * u
    weights = np.array([1.0, 0.9, 1.0, 0.8, 0.9, 0.7, 0.9, 1.1])
    return centres, sigmas, weights


def _check_hinge_angle(hinge_angle):
    if isinstance(hinge_angle, bool) or not isinstance(hinge_angle, (int, float, np.integer, np.floating)):
        raise TypeError(f"hinge_angle must be a real number of degrees, got {type(hinge_angle).__name__}.")
    if not math.isfinite(hinge_angle):
        raise ValueError(f"hinge_angle must be finite (degrees), got {hinge_angle}.")
    return float(hinge_angle)


def render_volume(centres, sigmas, weights, box_size):
    """Render Gaussian blobs on a ``box_size**3`` grid (indexed ``[z, y, x]``, centre ``D // 2``).

    Parameters
    ----------
    centres : array-like of shape (k, n_blobs, 3) or (n_blobs, 3)
    sigmas, weights : array-like of shape (n_blobs,)
    box_size : int

    Returns
    -------
    volumes : ndarray of shape (k, D, D, D) or (D, D, D), float32

    Examples
    --------
    >>> from sklearn_disentangle.datasets.cryoem import molecule_blobs, render_volume
    >>> vol = render_volume(*molecule_blobs(0.5, 16), 16)
    >>> vol.shape
    (1, 16, 16, 16)
    """
    centres = np.asarray(centres, dtype=np.float64)
    single = centres.ndim == 2
    centres = centres[None] if single else centres
    g = np.arange(box_size) - box_size // 2
    out = np.zeros((len(centres), box_size, box_size, box_size), dtype=np.float64)
    for k, cs in enumerate(centres):
        for (cx, cy, cz), s, w in zip(cs, sigmas, weights):
            ex = np.exp(-((g - cx) ** 2) / (2 * s * s))
            ey = np.exp(-((g - cy) ** 2) / (2 * s * s))
            ez = np.exp(-((g - cz) ** 2) / (2 * s * s))
            out[k] += w * ez[:, None, None] * ey[None, :, None] * ex[None, None, :]
    out = out.astype(np.float32)
    return out[0] if single else out


def _project_blobs(centres, sigmas, weights, rotations, offsets, box_size):
    """Analytic projections; centres (n, b, 3), rotations (n, 3, 3), offsets (n, 2) px added to positions."""
    pos = np.einsum("nij,nbj->nbi", rotations, centres)[..., :2] + offsets[:, None, :]
    g = np.arange(box_size) - box_size // 2
    ex = np.exp(-((g[None, None, :] - pos[..., 0:1]) ** 2) / (2 * sigmas[None, :, None] ** 2))  # (n, b, D)
    ey = np.exp(-((g[None, None, :] - pos[..., 1:2]) ** 2) / (2 * sigmas[None, :, None] ** 2))
    amp = weights * np.sqrt(2 * np.pi) * sigmas
    return np.einsum("b,nby,nbx->nyx", amp, ey, ex)


def _uniform_rotations(n, rng):
    return quaternion_to_matrix(torch.as_tensor(rng.standard_normal((n, 4)))).numpy()


def make_cryoem_particles(n_particles=256, box_size=32, *, n_conformations=3, motion="discrete", snr=0.5,
                          ctf=True, pixel_size=4.0, max_shift=2.0, defocus_range=(10000.0, 25000.0),
                          hinge_angle=90.0, random_state=None):
    """Simulated single-particle cryo-EM images with ground truth.

    Parameters
    ----------
    n_particles : int, default=256
    box_size : int, default=32
        Image size ``D`` (odd or even).
    n_conformations : int, default=3
        Number of discrete states (evenly spaced hinge coordinates in ``[0, 1]``); with
        ``motion='continuous'`` only the number of ground-truth volumes returned.
    motion : {'discrete', 'continuous'}, default='discrete'
        Discrete states, or a hinge coordinate drawn uniformly per particle.
    snr : float or None, default=0.5
        Signal-to-noise ratio ``var(clean) / var(noise)``; ``None`` for noise-free images.
    ctf : bool, default=True
        Apply a CTF (300 kV, Cs 2.7 mm, amplitude contrast 0.1, random defocus and
        astigmatism). At 4 A/px and 32 px it oscillates visibly.
    pixel_size : float, default=4.0
        Angstrom per pixel.
    max_shift : float, default=2.0
        RELION origins are drawn uniformly in ``[-max_shift, max_shift]`` pixels per axis.
    defocus_range : tuple of float, default=(10000.0, 25000.0)
        Range of defocus U in Angstrom.
    hinge_angle : float, default=90.0
        Domain swing in degrees between the first and last conformation (see
        :func:`molecule_blobs`).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    stack : ParticleStack
        Images (float32, in memory), ``rotations``, ``shifts`` (Angstrom), ``ctf`` table (when
        ``ctf=True``), ``pixel_size`` and ``labels`` (conformation index; for continuous
        motion the index of the nearest returned volume).
    truth : sklearn.utils.Bunch
        ``conformation`` (coordinate in ``[0, 1]`` per particle), ``labels`` (discrete index or
        None), ``volumes`` ``(n_conformations, D, D, D)`` at ``volume_coordinates``,
        ``rotations``, ``euler`` (RELION degrees), ``shifts_px`` (origins in pixels),
        ``clean_images`` (CTF applied, no noise), ``noise_sigma``.

    Examples
    --------
    >>> from sklearn_disentangle.datasets.cryoem import make_cryoem_particles
    >>> stack, truth = make_cryoem_particles(20, 16, n_conformations=2, random_state=0)
    >>> stack.shape, truth.volumes.shape, sorted(set(truth.labels.tolist()))
    ((20, 16, 16), (2, 16, 16, 16), [0, 1])
    """
    if motion not in ("discrete", "continuous"):
        raise ValueError(f"motion must be 'discrete' or 'continuous', got {motion!r}.")
    if n_conformations < 1:
        raise ValueError(f"n_conformations must be >= 1, got {n_conformations}.")
    if snr is not None and not snr > 0:
        raise ValueError(f"snr must be positive or None, got {snr}.")
    hinge_angle = _check_hinge_angle(hinge_angle)
    rng = check_random_state(random_state)
    n, d = int(n_particles), int(box_size)
    grid_t = np.linspace(0.0, 1.0, n_conformations) if n_conformations > 1 else np.zeros(1)
    if motion == "discrete":
        labels = rng.randint(n_conformations, size=n)
        t = grid_t[labels]
    else:
        t = rng.uniform(0.0, 1.0, n)
        labels = np.abs(t[:, None] - grid_t[None]).argmin(1)
    rotations = _uniform_rotations(n, rng)
    shifts_px = rng.uniform(-max_shift, max_shift, (n, 2))
    centres, sigmas, weights = molecule_blobs(t, d, hinge_angle)
    images = _project_blobs(centres, sigmas, weights, rotations, -shifts_px, d)  # raw = shifted by -origin
    ctf_table = None
    if ctf:
        import pandas as pd

        dfu = rng.uniform(*defocus_range, n)
        dfv = dfu - rng.uniform(0.0, 500.0, n)
        ang = rng.uniform(-90.0, 90.0, n)
        ctf_table = pd.DataFrame({
            "defocus_u": dfu, "defocus_v": dfv, "defocus_angle": ang, "voltage": 300.0, "spherical_aberration": 2.7,
            "amplitude_contrast": 0.1, "phase_shift": 0.0, "bfactor": 0.0, "scale": 1.0, "pixel_size": pixel_size,
        })
        ctfs = compute_ctf(d, pixel_size, dfu, dfv, ang, 300.0, 2.7, 0.1, dtype=torch.float64)
        images = apply_ctf(torch.as_tensor(images), ctfs).numpy()
    clean = images.astype(np.float32)
    sigma = 0.0
    if snr is not None:
        sigma = float(np.sqrt(clean.var(axis=(1, 2)).mean() / snr))
        images = clean + rng.standard_normal(clean.shape).astype(np.float32) * sigma
    else:
        images = clean.copy()
    stack = ParticleStack(images, pixel_size=pixel_size, rotations=rotations, shifts=shifts_px * pixel_size,
                          ctf=ctf_table, labels=labels)
    truth = Bunch(
        conformation=t, labels=labels if motion == "discrete" else None,
        volumes=render_volume(molecule_blobs(grid_t, d, hinge_angle)[0], sigmas, weights, d), volume_coordinates=grid_t,
        rotations=rotations, euler=matrix_to_euler(rotations).numpy(), shifts_px=shifts_px, clean_images=clean,
        noise_sigma=sigma,
    )
    return stack, truth


def make_subtomograms(n_subtomograms=64, box_size=16, *, n_conformations=2, snr=1.0, missing_wedge=None,
                      max_shift=1.5, hinge_angle=90.0, random_state=None):
    """Simulated subtomograms: 3-D conformations under random rotation and shift, with noise.

    Parameters
    ----------
    n_subtomograms : int, default=64
    box_size : int, default=16
    n_conformations : int, default=2
        Evenly spaced hinge coordinates of the molecule of :func:`molecule_blobs`.
    snr : float or None, default=1.0
        ``var(clean) / var(noise)``; ``None`` for no noise.
    missing_wedge : float or None, default=None
        Maximum tilt angle in degrees of a single-axis tilt series about y (e.g. 60): Fourier
        components with ``|k_z| > tan(missing_wedge) |k_x|`` are removed (after noise, as in
        a real tomogram). ``None``: no wedge.
    max_shift : float, default=1.5
        Shifts drawn uniformly in ``[-max_shift, max_shift]`` voxels per axis.
    hinge_angle : float, default=90.0
        Domain swing in degrees between the first and last conformation (see
        :func:`molecule_blobs`).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    volumes : ndarray of shape (n_subtomograms, D, D, D), float32
    truth : sklearn.utils.Bunch
        ``labels``, ``rotations`` (content at ``r`` moved to ``R r``), ``shifts`` (voxels,
        ``(x, y, z)``), ``templates`` ``(n_conformations, D, D, D)``, ``clean`` (no noise, no
        wedge), ``wedge_mask`` (centred Fourier mask or None).

    Examples
    --------
    >>> from sklearn_disentangle.datasets.cryoem import make_subtomograms
    >>> vols, truth = make_subtomograms(6, 16, missing_wedge=60, random_state=0)
    >>> vols.shape, truth.wedge_mask.shape
    ((6, 16, 16, 16), (16, 16, 16))
    """
    hinge_angle = _check_hinge_angle(hinge_angle)
    rng = check_random_state(random_state)
    n, d = int(n_subtomograms), int(box_size)
    grid_t = np.linspace(0.0, 1.0, n_conformations) if n_conformations > 1 else np.zeros(1)
    labels = rng.randint(n_conformations, size=n)
    rotations = _uniform_rotations(n, rng)
    shifts = rng.uniform(-max_shift, max_shift, (n, 3))
    centres, sigmas, weights = molecule_blobs(grid_t[labels], d, hinge_angle)
    moved = np.einsum("nij,nbj->nbi", rotations, centres) + shifts[:, None, :]
    clean = render_volume(moved, sigmas, weights, d)
    vols = clean
    if snr is not None:
        sigma = float(np.sqrt(clean.var(axis=(1, 2, 3)).mean() / snr))
        vols = clean + rng.standard_normal(clean.shape).astype(np.float32) * sigma
    mask = None
    if missing_wedge is not None:
        from ..cryoem.fourier import fftn_centered, frequency_grid, ifftn_centered

        kz, _, kx = frequency_grid((d, d, d), dtype=torch.float64)
        mask = (kz.abs() <= math.tan(math.radians(float(missing_wedge))) * kx.abs()) | ((kz == 0) & (kx == 0))
        vols = ifftn_centered(fftn_centered(torch.as_tensor(vols, dtype=torch.float64)) * mask).real.numpy()
        mask = mask.numpy()
    truth = Bunch(labels=labels, rotations=rotations, shifts=shifts,
                  templates=render_volume(molecule_blobs(grid_t, d, hinge_angle)[0], sigmas, weights, d), clean=clean,
                  wedge_mask=mask)
    return np.asarray(vols, dtype=np.float32), truth


class CryoEMConformationDataset(GroundTruthDataset):
    """Ground-truth dataset of projections with two discrete factors: conformation and view.

    Observations are noise-free (or noisy, with ``snr``) analytic projections of the molecule
    of :func:`molecule_blobs` at ``n_conformations`` evenly spaced hinge coordinates, seen
    from one of ``n_views`` fixed viewing rotations (drawn uniformly once from
    ``random_state``). It implements the :class:`~sklearn_disentangle.datasets.GroundTruthDataset`
    protocol, so interventional metrics can hold the conformation fixed while the view varies.

    Parameters
    ----------
    box_size : int, default=32
    n_conformations : int, default=3
    n_views : int, default=8
    snr : float or None, default=None
        Per-image Gaussian noise at this signal-to-noise ratio (drawn from the
        ``random_state`` given to :meth:`sample_observations_from_factors`).
    hinge_angle : float, default=90.0
        Domain swing in degrees between the first and last conformation (see
        :func:`molecule_blobs`).
    random_state : int, RandomState instance or None, default=0
        Seeds the fixed set of views.

    Attributes
    ----------
    factor_names : tuple of str
        ``('conformation', 'view')``.
    factor_sizes : tuple of int
    observation_shape : tuple of int
        ``(box_size, box_size)``.
    views : ndarray of shape (n_views, 3, 3)
        RELION pose matrices of the views.

    Examples
    --------
    >>> from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset
    >>> data = CryoEMConformationDataset(box_size=16, n_conformations=2, n_views=4)
    >>> factors, images = data.sample(5, random_state=0)
    >>> factors.shape, images.shape
    ((5, 2), (5, 16, 16))
    """

    factor_names = ("conformation", "view")

    def __init__(self, box_size=32, n_conformations=3, n_views=8, snr=None, hinge_angle=90.0, random_state=0):
        self.box_size = int(box_size)
        self.hinge_angle = _check_hinge_angle(hinge_angle)
        self.n_conformations = int(n_conformations)
        self.n_views = int(n_views)
        self.snr = snr
        self.factor_sizes = (self.n_conformations, self.n_views)
        self.observation_shape = (self.box_size, self.box_size)
        self.views = _uniform_rotations(self.n_views, check_random_state(random_state))
        self._t = np.linspace(0.0, 1.0, self.n_conformations) if self.n_conformations > 1 else np.zeros(1)

    def sample_observations_from_factors(self, factors, random_state=None):
        """Projections for the given (conformation, view) factor rows.

        Parameters
        ----------
        factors : array-like of shape (n_samples, 2)
        random_state : int, RandomState instance or None, default=None
            Draws the noise when ``snr`` is set.

        Returns
        -------
        observations : ndarray of shape (n_samples, box_size, box_size), float32
        """
        factors = self.check_factors(factors)
        centres, sigmas, weights = molecule_blobs(self._t[factors[:, 0]], self.box_size, self.hinge_angle)
        images = _project_blobs(centres, sigmas, weights, self.views[factors[:, 1]],
                                np.zeros((len(factors), 2)), self.box_size).astype(np.float32)
        if self.snr is not None and len(images):
            rng = check_random_state(random_state)
            sigma = float(np.sqrt(images.var(axis=(1, 2)).mean() / self.snr))
            images = images + rng.standard_normal(images.shape).astype(np.float32) * sigma
        return images
