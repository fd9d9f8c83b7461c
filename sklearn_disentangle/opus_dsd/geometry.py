"""Sizes, masks, view groups, back-projection and rendering for OPUS-DSD.

Everything geometric that the OPUS-DSD model does on top of the shared kernels of
:mod:`sklearn_disentangle.cryoem`, in one place so each convention is stated and tested once:

- a particle of box ``D`` is Fourier-cropped to the *render size* ``R = even(D * downfrac)``
  and then cropped in real space to the *crop size* ``S = even(R * window_r)``; all volumes the
  model sees live on an ``S**3`` grid of pixel size ``pixel_size * D / R``;
- poses are RELION matrices ``A`` (:mod:`~sklearn_disentangle.cryoem.rotations`): a reference
  point ``r`` appears in the image at ``(A r)[:2]``; projection is
  :func:`~sklearn_disentangle.cryoem.project_real` (sum along the image ``z`` axis);
- a raw image is the projection shifted by minus its RELION origin ``t`` (pixels), so
  recentring shifts the image by ``+t`` (:func:`~sklearn_disentangle.cryoem.shift_images`);
- the CTF is RELION's (positive at zero frequency,
  :func:`~sklearn_disentangle.cryoem.compute_ctf`), applied to the projection.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..cryoem.ctf import apply_ctf, compute_ctf
from ..cryoem.fourier import fft2_centered, frequency_grid, resize_fourier
from ..cryoem.projection import _coords, _normalise, project_real, shift_images

__all__ = [
    "even", "derive_sizes", "window_from_mask", "prepare_mask", "ball_mask", "view_directions", "view_groups",
    "backproject", "recentre_and_crop", "render_projections", "crop_to_box", "ctf_on_grid", "pack_ctf",
    "CTF_COLUMNS",
]


def even(x):
    """Largest even integer not above ``x`` (OPUS-DSD's size rounding).

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.geometry import even
    >>> even(27.9), even(26)
    (26, 26)
    """
    x = int(math.floor(x))
    return x - x % 2


def derive_sizes(box_size, downfrac, window_r):
    """Render size ``R`` and crop size ``S`` of a ``box_size`` particle.

    Parameters
    ----------
    box_size : int
    downfrac : float
        Fourier-cropping fraction (``R = even(D * downfrac)``).
    window_r : float
        Real-space crop fraction (``S = even(R * window_r)``).

    Returns
    -------
    render_size, crop_size : int

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.geometry import derive_sizes
    >>> derive_sizes(320, 0.75, 0.7)
    (240, 168)
    """
    render = even(box_size * downfrac)
    crop = even(render * window_r)
    if render < 4 or crop < 4:
        raise ValueError(
            f"box {box_size} with downfrac={downfrac} and window_r={window_r} gives render size {render} and "
            f"crop size {crop}; both must be at least 4. Use a larger downfrac or a wider mask.")
    return render, crop


def window_from_mask(mask, threshold=1e-3, cap=0.9):
    """Crop fraction from a 3-D mask's bounding box: ``(D - 2 margin + 4) / D``, capped.

    Parameters
    ----------
    mask : ndarray of shape (D, D, D)
    threshold : float, default=1e-3
        Voxels above it count as inside.
    cap : float, default=0.9

    Returns
    -------
    window_r : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.opus_dsd.geometry import window_from_mask
    >>> m = np.zeros((32, 32, 32)); m[8:24, 8:24, 8:24] = 1
    >>> window_from_mask(m)
    0.625
    """
    mask = np.asarray(mask)
    d = mask.shape[0]
    inside = mask > threshold
    if not inside.any():
        raise ValueError(f"the mask has no voxel above {threshold}; pass a solvent mask of the particle.")
    margins = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        where = np.flatnonzero(inside.any(axis=other))
        margins += [int(where[0]), int(d - 1 - where[-1])]
    return float(min((d - 2 * min(margins) + 4) / d, cap))


def ball_mask(size, dtype=torch.float32, device=None):
    """Unit ball inscribed in a ``size**3`` box (radius ``size / 2``), centred at ``size // 2``.

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.geometry import ball_mask
    >>> m = ball_mask(8)
    >>> m.shape, float(m[4, 4, 4]), float(m[0, 0, 0])
    (torch.Size([8, 8, 8]), 1.0, 0.0)
    """
    c = _coords(size, dtype, device)
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return ((x * x + y * y + z * z) <= (size / 2.0) ** 2).to(dtype)


def prepare_mask(mask, box_size, render_size, crop_size):
    """Resample a box mask (``D**3``, pixel size ``p``) to the model's ``S**3`` grid.

    The ``S`` grid spans ``S * D / R`` box voxels around the centre; that central region is
    cut from the mask and resampled trilinearly to ``S**3``. ``None`` gives the inscribed ball.

    Parameters
    ----------
    mask : ndarray of shape (D, D, D) or None
    box_size, render_size, crop_size : int

    Returns
    -------
    mask : tensor of shape (S, S, S), float32 in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.opus_dsd.geometry import prepare_mask
    >>> prepare_mask(np.ones((32, 32, 32)), 32, 16, 12).shape
    torch.Size([12, 12, 12])
    """
    if mask is None:
        return ball_mask(crop_size)
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    extent = min(box_size, max(2, int(round(crop_size * box_size / render_size))))
    start = box_size // 2 - extent // 2
    m = m[start:start + extent, start:start + extent, start:start + extent]
    if extent != crop_size:
        m = F.interpolate(m[None, None], size=(crop_size,) * 3, mode="trilinear", align_corners=True)[0, 0]
    return m.clamp(0.0, 1.0).contiguous()


def view_directions(n_groups):
    """``n_groups`` nearly uniform unit vectors (a Fibonacci sphere), the view-group centres.

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.geometry import view_directions
    >>> d = view_directions(48)
    >>> d.shape, bool(abs((d ** 2).sum(1) - 1).max() < 1e-12)
    ((48, 3), True)
    """
    i = np.arange(n_groups) + 0.5
    z = 1.0 - 2.0 * i / n_groups
    phi = math.pi * (1.0 + math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def view_groups(rotations, n_groups=48):
    """Group particles by viewing direction (the third row of each RELION matrix).

    A HEALPix-free stand-in for OPUS-DSD's nside-2 HEALPix pixels (48 groups): each particle
    joins the nearest of ``n_groups`` Fibonacci-sphere directions.

    Parameters
    ----------
    rotations : array-like of shape (n, 3, 3)
    n_groups : int, default=48

    Returns
    -------
    groups : ndarray of shape (n,), int64

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.opus_dsd.geometry import view_groups
    >>> view_groups(np.stack([np.eye(3), np.diag([1.0, -1.0, -1.0])]), 2).tolist()
    [0, 1]
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    return np.argmax(rotations[:, 2, :] @ view_directions(n_groups).T, axis=1).astype(np.int64)


def backproject(images, rotations, size=None):
    """Extrude images along their viewing direction into the reference frame.

    ``V(r) = image((A r)[:2])`` on an ``S**3`` grid: the single-view back-projection that the
    OPUS-DSD encoder convolves (bilinear sampling, zero outside the image).

    Parameters
    ----------
    images : tensor of shape (n, S, S)
    rotations : tensor of shape (n, 3, 3)
        RELION pose matrices.
    size : int, default=None
        Depth of the output (defaults to ``S``).

    Returns
    -------
    volumes : tensor of shape (n, S, S, S)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import backproject
    >>> img = torch.rand(1, 6, 6)
    >>> vol = backproject(img, torch.eye(3)[None])
    >>> bool(torch.allclose(vol[0, 2], img[0], atol=1e-6))
    True
    """
    n, s = images.shape[0], images.shape[-1]
    depth = s if size is None else int(size)
    c = _coords(s, images.dtype, images.device)
    cz = _coords(depth, images.dtype, images.device)
    z, y, x = torch.meshgrid(cz, c, c, indexing="ij")
    r = torch.stack([x, y, z], -1).reshape(1, -1, 3)
    p = r @ rotations.to(images.dtype).transpose(1, 2)  # rows (A r)^T
    grid = _normalise(p[..., :2], s).reshape(n, depth * s, s, 2)
    out = F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(n, depth, s, s)


def recentre_and_crop(images, shifts_px, render_size, crop_size):
    """Recentre raw images (content moves by ``+shifts``), Fourier-crop to ``R``, crop to ``S``.

    Parameters
    ----------
    images : tensor of shape (n, D, D)
    shifts_px : tensor of shape (n, 2)
        RELION origins ``(x, y)`` in pixels of the ``D`` box.
    render_size, crop_size : int

    Returns
    -------
    spectrum : complex tensor of shape (n, R, R)
        Centred spectrum of the recentred, downsampled image (for augmentations).
    cropped : tensor of shape (n, S, S)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import recentre_and_crop
    >>> spec, img = recentre_and_crop(torch.rand(2, 16, 16), torch.zeros(2, 2), 12, 8)
    >>> spec.shape, img.shape
    (torch.Size([2, 12, 12]), torch.Size([2, 8, 8]))
    """
    centred = shift_images(images, shifts_px)
    small = resize_fourier(centred, render_size)
    return fft2_centered(small), crop_to_box(small, crop_size)


def crop_to_box(images, size):
    """Central ``size x size`` crop (centre pixel ``D // 2`` kept at ``size // 2``).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import crop_to_box
    >>> crop_to_box(torch.arange(36.0).reshape(1, 6, 6), 2)
    tensor([[[14., 15.],
             [20., 21.]]])
    """
    d = images.shape[-1]
    start = d // 2 - size // 2
    return images[..., start:start + size, start:start + size]


def _pad_to_box(images, size):
    s = images.shape[-1]
    before = size // 2 - s // 2
    after = size - s - before
    return F.pad(images, (before, after, before, after))


def render_projections(volumes, rotations, ctf=None, *, render_size=None, shifts_px=None, envelope_b=0.0,
                       pixel_size=None):
    """Project per-particle volumes at poses, then apply the CTF on the render grid.

    Parameters
    ----------
    volumes : tensor of shape (n, S, S, S)
    rotations : tensor of shape (n, C, 3, 3)
        ``C`` candidate poses per volume.
    ctf : tensor of shape (n, R, R) or None
        Centred CTF of each particle on the ``R x R`` render grid (no CTF when ``None``).
    render_size : int, default=None
        ``R``; the ``S x S`` projection is zero-padded to ``R`` before the CTF and cropped back.
    shifts_px : tensor of shape (n, 2), default=None
        In-plane shifts (``S``-grid pixels) applied with the CTF: content moves by ``+shifts``.
    envelope_b : float, default=0.0
        OPUS-DSD's envelope ``exp(-pi^2 B s^2)`` (``s`` in 1/Angstrom; ``pixel_size`` needed).
    pixel_size : float, default=None
        Pixel size of the render grid.

    Returns
    -------
    images : tensor of shape (n, C, S, S)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import render_projections
    >>> vol = torch.rand(2, 8, 8, 8)
    >>> render_projections(vol, torch.eye(3).expand(2, 3, 3, 3)).shape
    torch.Size([2, 3, 8, 8])
    """
    n, c = rotations.shape[:2]
    s = volumes.shape[-1]
    proj = project_real(volumes.repeat_interleave(c, 0), rotations.reshape(n * c, 3, 3), batch_size=n * c)
    proj = proj.reshape(n, c, s, s)
    if ctf is None and shifts_px is None and not envelope_b:
        return proj
    r = s if render_size is None else int(render_size)
    filt = torch.ones((n, r, r), dtype=proj.dtype, device=proj.device) if ctf is None else ctf.to(proj.dtype)
    if envelope_b:
        if pixel_size is None:
            raise ValueError("envelope_b needs pixel_size.")
        ky, kx = frequency_grid((r, r), pixel_size, dtype=proj.dtype, device=proj.device)
        filt = filt * torch.exp(-(math.pi ** 2) * float(envelope_b) * (kx * kx + ky * ky))
    if shifts_px is not None:
        ky, kx = frequency_grid((r, r), 1.0, dtype=proj.dtype, device=proj.device)
        t = shifts_px.to(proj.dtype)
        filt = filt * torch.exp(-2j * math.pi * (kx * t[:, 0, None, None] + ky * t[:, 1, None, None]))
    padded = _pad_to_box(proj, r)
    out = apply_ctf(padded, filt[:, None])
    return crop_to_box(out, s)


def ctf_on_grid(ctf_params, size, pixel_size):
    """CTF of each particle on a ``size`` grid from packed parameters (see :func:`pack_ctf`).

    Parameters
    ----------
    ctf_params : tensor of shape (n, 9)
        Columns in :data:`CTF_COLUMNS` order.
    size : int
    pixel_size : float
        Pixel size of that grid (Angstrom).

    Returns
    -------
    ctf : tensor of shape (n, size, size), float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import ctf_on_grid
    >>> c = ctf_on_grid(torch.tensor([[15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]]), 16, 4.0)
    >>> c.shape, round(float(c[0, 8, 8]), 4)
    (torch.Size([1, 16, 16]), 0.1)
    """
    p = ctf_params.to(torch.float64)
    return compute_ctf(size, pixel_size, p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5], p[:, 6], p[:, 7],
                       p[:, 8], dtype=torch.float32, device=ctf_params.device)


CTF_COLUMNS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "spherical_aberration", "amplitude_contrast",
               "phase_shift", "bfactor", "scale")


def pack_ctf(table):
    """The CTF table's columns as an ``(n, 9)`` float32 array in :data:`CTF_COLUMNS` order.

    Parameters
    ----------
    table : pandas.DataFrame
        e.g. ``ParticleStack.ctf`` (columns of :func:`~sklearn_disentangle.io.parse_ctf`).

    Returns
    -------
    params : ndarray of shape (n, 9), float32

    Examples
    --------
    >>> from sklearn_disentangle.datasets import make_cryoem_particles
    >>> from sklearn_disentangle.opus_dsd.geometry import pack_ctf
    >>> stack, _ = make_cryoem_particles(3, 16, random_state=0)
    >>> pack_ctf(stack.ctf).shape
    (3, 9)
    """
    missing = [c for c in CTF_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"the CTF table lacks the columns {missing}; build it with sklearn_disentangle.io.parse_ctf.")
    arr = np.stack([np.asarray(table[c], dtype=np.float64) for c in CTF_COLUMNS], 1)
    if not np.isfinite(arr).all():
        bad = [c for i, c in enumerate(CTF_COLUMNS) if not np.isfinite(arr[:, i]).all()]
        raise ValueError(f"the CTF table has missing (NaN) values in {bad}; fill them before fitting.")
    return arr.astype(np.float32)
