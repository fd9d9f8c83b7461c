"""The contrast transfer function in RELION's parameterisation.

For a spatial frequency ``k`` (cycles/Angstrom) of modulus ``s`` and angle
``theta = atan2(k_y, k_x)`` (x = image column, y = image row)::

    lambda   = 12.2643247 / sqrt(V + 0.978466e-6 V**2)          electron wavelength (A), V in volts
    df(theta) = (dfU + dfV) / 2 + (dfU - dfV) / 2 * cos(2 (theta - dfAngle))      (A, underfocus > 0)
    chi      = pi lambda df s**2 - pi / 2 Cs lambda**3 s**4 + phase_shift + arctan(w / sqrt(1 - w**2))
    CTF      = scale * sin(chi) * exp(-B s**2 / 4)

with ``Cs`` in Angstrom (mm x 1e7), ``w`` the amplitude contrast, the phase shift in radians
(given in degrees), and ``B`` RELION's ``rlnCtfBfactor`` (A^2). This is RELION's ``CTF::getCTF``
sign: the CTF is ``+w`` at zero frequency (positive for a positive density), which is the
negative of cryoDRGN's ``sqrt(1 - w**2) sin(gamma) - w cos(gamma)``.
"""

import math

import numpy as np
import torch

from .fourier import fft2_centered, frequency_grid, ifft2_centered

__all__ = ["electron_wavelength", "compute_ctf", "ctf_from_table", "apply_ctf", "phase_flip"]


def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in Angstrom for an acceleration voltage in kV.

    Parameters
    ----------
    voltage_kv : float or tensor

    Returns
    -------
    wavelength : float or tensor
        In Angstrom (0.0197 A at 300 kV).

    Examples
    --------
    >>> from sklearn_disentangle.cryoem.ctf import electron_wavelength
    >>> round(electron_wavelength(300.0), 5)
    0.01969
    """
    v = voltage_kv * 1e3
    if isinstance(v, torch.Tensor):
        return 12.2643247 / torch.sqrt(v + 0.978466e-6 * v * v)
    return 12.2643247 / math.sqrt(v + 0.978466e-6 * v * v)


def _column(x, n, dtype, device):
    if not isinstance(x, torch.Tensor):
        x = np.array(x, dtype=np.float64)  # a writable copy (pandas may hand out read-only views)
    t = torch.as_tensor(x, dtype=dtype, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    elif t.numel() != n:
        raise ValueError(f"CTF parameters must be scalars or have one value per image ({n}); got {t.numel()}.")
    return t[:, None, None]


def compute_ctf(
    box_size,
    pixel_size,
    defocus_u,
    defocus_v=None,
    defocus_angle=0.0,
    voltage=300.0,
    spherical_aberration=2.7,
    amplitude_contrast=0.1,
    phase_shift=0.0,
    bfactor=0.0,
    scale=1.0,
    *,
    dtype=torch.float32,
    device=None,
):
    """2-D CTFs on the centred Fourier grid of a ``box_size`` image, one per parameter row.

    Parameters
    ----------
    box_size : int
        Image size ``D`` (odd or even); zero frequency at index ``D // 2``.
    pixel_size : float or array-like of shape (n,)
        Angstrom per pixel.
    defocus_u, defocus_v : float or array-like of shape (n,)
        Defoci in Angstrom (RELION ``rlnDefocusU``/``V``, underfocus positive); ``defocus_v``
        defaults to ``defocus_u`` (no astigmatism).
    defocus_angle : float or array-like, default=0.0
        Astigmatism angle in degrees (``rlnDefocusAngle``), from the x axis.
    voltage : float or array-like, default=300.0
        Acceleration voltage in kV.
    spherical_aberration : float or array-like, default=2.7
        Cs in mm.
    amplitude_contrast : float or array-like, default=0.1
    phase_shift : float or array-like, default=0.0
        Phase-plate shift in degrees (``rlnPhaseShift``).
    bfactor : float or array-like, default=0.0
        Envelope B-factor in A^2 (``rlnCtfBfactor``): ``exp(-B s^2 / 4)``.
    scale : float or array-like, default=1.0
        ``rlnCtfScalefactor``.
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, default=None
        Defaults to the device of a tensor argument, else CPU.

    Returns
    -------
    ctf : tensor of shape (n, box_size, box_size)
        ``n`` is the number of parameter rows (1 for scalars).

    Examples
    --------
    >>> from sklearn_disentangle.cryoem.ctf import compute_ctf
    >>> c = compute_ctf(32, 2.0, 15000.0, amplitude_contrast=0.1)
    >>> c.shape, round(float(c[0, 16, 16]), 6)
    (torch.Size([1, 32, 32]), 0.1)
    """
    params = [pixel_size, defocus_u, defocus_v, defocus_angle, voltage, spherical_aberration,
              amplitude_contrast, phase_shift, bfactor, scale]
    if device is None:
        device = next((p.device for p in params if isinstance(p, torch.Tensor)), None)
    n = max((p.numel() if isinstance(p, torch.Tensor) else int(np.size(p))) if p is not None else 1 for p in params)
    if defocus_v is None:
        defocus_v = defocus_u
    col = lambda x: _column(x, n, torch.float64, device)  # noqa: E731  (compute in float64)
    apix, dfu, dfv, dfang = col(pixel_size), col(defocus_u), col(defocus_v), col(defocus_angle)
    kv, cs, w, ps, bf, sc = (col(v) for v in (voltage, spherical_aberration, amplitude_contrast,
                                               phase_shift, bfactor, scale))
    ky, kx = frequency_grid((box_size, box_size), 1.0, dtype=torch.float64, device=device)
    kx, ky = kx / apix, ky / apix  # cycles per Angstrom
    s2 = kx * kx + ky * ky
    theta = torch.atan2(ky, kx)
    lam = electron_wavelength(kv)
    df = 0.5 * (dfu + dfv) + 0.5 * (dfu - dfv) * torch.cos(2 * (theta - torch.deg2rad(dfang)))
    k3 = torch.atan(w / torch.sqrt(1 - w * w))
    chi = math.pi * lam * df * s2 - 0.5 * math.pi * cs * 1e7 * lam**3 * s2 * s2 + torch.deg2rad(ps) + k3
    ctf = sc * torch.sin(chi) * torch.exp(-bf * s2 / 4)
    return ctf.to(dtype)


def ctf_from_table(table, box_size, *, pixel_size=None, dtype=torch.float32, device=None):
    """CTFs for the rows of a CTF table (the columns of :func:`sklearn_disentangle.io.parse_ctf`).

    Parameters
    ----------
    table : pandas.DataFrame or mapping of str to array-like
        Columns ``defocus_u``, ``defocus_v``, ``defocus_angle``, ``voltage``,
        ``spherical_aberration``, ``amplitude_contrast``, ``phase_shift``, ``bfactor``,
        ``scale`` and ``pixel_size`` (e.g. ``ParticleStack.ctf``).
    box_size : int
        Image size ``D`` of the (possibly downsampled) images the CTF is for.
    pixel_size : float or array-like, default=None
        Pixel size of those images; defaults to the table's ``pixel_size`` column. After
        Fourier cropping ``D0 -> D`` pass ``pixel_size * D0 / D``.
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, default=None

    Returns
    -------
    ctf : tensor of shape (n, box_size, box_size)

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_disentangle.cryoem.ctf import ctf_from_table
    >>> table = pd.DataFrame({"defocus_u": [15000.0], "defocus_v": [14000.0], "defocus_angle": [30.0],
    ...                       "voltage": [300.0], "spherical_aberration": [2.7], "amplitude_contrast": [0.1],
    ...                       "phase_shift": [0.0], "bfactor": [0.0], "scale": [1.0], "pixel_size": [2.0]})
    >>> ctf_from_table(table, 32).shape
    torch.Size([1, 32, 32])
    """
    def col(name):
        return np.asarray(table[name], dtype=np.float64)

    apix = col("pixel_size") if pixel_size is None else pixel_size
    if pixel_size is None and np.isnan(apix).any():
        raise ValueError("the CTF table has no pixel size for some rows; pass pixel_size=.")
    return compute_ctf(box_size, apix, col("defocus_u"), col("defocus_v"), col("defocus_angle"), col("voltage"),
                       col("spherical_aberration"), col("amplitude_contrast"), col("phase_shift"), col("bfactor"),
                       col("scale"), dtype=dtype, device=device)


def apply_ctf(images, ctf):
    """Multiply images by a CTF in Fourier space.

    Parameters
    ----------
    images : tensor of shape (n, D, D)
    ctf : tensor of shape (n, D, D) or (D, D)
        Centred CTF, e.g. from :func:`compute_ctf`.

    Returns
    -------
    filtered : tensor of shape (n, D, D)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.ctf import apply_ctf
    >>> x = torch.rand(2, 8, 8, dtype=torch.float64)
    >>> bool(torch.allclose(apply_ctf(x, torch.ones(8, 8, dtype=torch.float64)), x))
    True
    """
    return ifft2_centered(fft2_centered(images) * ctf).real.to(images.dtype)


def phase_flip(images, ctf):
    """Phase-flip images: multiply their spectra by ``sign(CTF)``.

    Parameters
    ----------
    images : tensor of shape (n, D, D)
    ctf : tensor of shape (n, D, D) or (D, D)

    Returns
    -------
    flipped : tensor of shape (n, D, D)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.ctf import phase_flip
    >>> x = torch.rand(1, 8, 8, dtype=torch.float64)
    >>> bool(torch.allclose(phase_flip(x, -torch.ones(8, 8)), -x))
    True
    """
    return apply_ctf(images, torch.sign(ctf).to(images.dtype))
