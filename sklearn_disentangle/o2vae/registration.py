"""Rotation and flip registration of image batches (plain torch, batched, multichannel).

O2VAE's loss compares each reconstruction with its input after the rotation (and mirror)
that aligns them best. This module finds that transformation with the Fourier/polar
method (Reddy & Chatterji, 1996, as used by O2-VAE): resample both images on a polar grid
centred on the image centre, where a rotation about the centre becomes a circular shift
along the angle axis, and find the shift by FFT cross-correlation. A brute-force search
over a grid of angles is provided as the reference.

Conventions (shared with :func:`sklearn_disentangle.datasets.rotate_images`): positive
angles rotate counter-clockwise as displayed (rows downwards); a flip is a left-right mirror
applied *before* the rotation. ``register(x, y)`` returns ``(angle, flip)`` such that
``rotate(y, angle, flip) ~ x``.
"""

import math

import torch
import torch.nn.functional as F

__all__ = ["polar_grid", "to_polar", "rotate", "angular_cross_correlation", "estimate_rotation",
           "register", "register_brute_force", "mirror"]

_GRID_CACHE = {}


def _check_images(x, name="x"):
    if not torch.is_tensor(x) or x.ndim != 4:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (n, C, H, W), got {shape}.")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must hold square images for rotation registration, got H x W = "
                         f"{x.shape[-2]} x {x.shape[-1]}; pad or crop to a square first.")


def polar_grid(size, n_angles=360, *, device=None, dtype=torch.float32):
    """Sampling grid of a linear-polar resampling of a ``size x size`` image (cached).

    Row ``a`` is the angle ``2 pi a / n_angles`` (clockwise as displayed, rows downwards),
    column ``j`` the radius ``j R / n_r`` in pixels, where ``R`` is the distance from the
    centre to the corners and ``n_r = ceil(R)``. The centre is ``((size - 1) / 2, (size -
    1) / 2)``, the centre of the pixel grid.

    Parameters
    ----------
    size : int
        Side of the square images.
    n_angles : int, default=360
        Angular samples (360 gives 1-degree steps).
    device, dtype : torch device and dtype of the grid

    Returns
    -------
    grid : Tensor of shape (1, n_angles, n_r, 2)
        ``(x, y)`` normalised coordinates for ``grid_sample(..., align_corners=True)``.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae.registration import polar_grid
    >>> polar_grid(32).shape
    torch.Size([1, 360, 23, 2])
    """
    key = (int(size), int(n_angles), str(device), dtype)
    if key not in _GRID_CACHE:
        radius = math.sqrt(2.0) * size / 2.0
        n_r = math.ceil(radius)
        alpha = torch.arange(n_angles, dtype=torch.float64) * (2 * math.pi / n_angles)
        rho = torch.arange(n_r, dtype=torch.float64) * (radius / n_r)
        centre = (size - 1) / 2.0
        rows = centre + rho[None, :] * torch.sin(alpha[:, None])
        cols = centre + rho[None, :] * torch.cos(alpha[:, None])
        scale = 2.0 / max(size - 1, 1)
        grid = torch.stack([cols * scale - 1.0, rows * scale - 1.0], dim=-1)[None]
        _GRID_CACHE[key] = grid.to(device=device, dtype=dtype)
    return _GRID_CACHE[key]


def to_polar(x, n_angles=360):
    """Resample a batch of square images on the polar grid of :func:`polar_grid`.

    Parameters
    ----------
    x : Tensor of shape (n, C, H, H)
    n_angles : int, default=360

    Returns
    -------
    Tensor of shape (n, C, n_angles, n_r)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import to_polar
    >>> to_polar(torch.ones(2, 3, 16, 16)).shape
    torch.Size([2, 3, 360, 12])
    """
    _check_images(x)
    grid = polar_grid(x.shape[-1], n_angles, device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="zeros", align_corners=True)


def rotate(x, angles_deg, flip=None):
    """Rotate (and mirror) each image of a batch about its centre; differentiable in ``x``.

    Same convention as :func:`sklearn_disentangle.datasets.rotate_images`: positive angles
    rotate counter-clockwise as displayed; the left-right mirror is applied first. Bilinear,
    zero padding.

    Parameters
    ----------
    x : Tensor of shape (n, C, H, H)
    angles_deg : Tensor or sequence of shape (n,)
    flip : bool Tensor or sequence of shape (n,), default=None

    Returns
    -------
    Tensor of shape (n, C, H, H)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import rotate
    >>> img = torch.zeros(1, 1, 5, 5); img[0, 0, 2, 4] = 1
    >>> (rotate(img, [90.0])[0, 0] > 0.5).nonzero().tolist()
    [[0, 2]]
    """
    _check_images(x)
    n = x.shape[0]
    theta = torch.as_tensor(angles_deg, dtype=x.dtype, device=x.device).reshape(-1) * (math.pi / 180.0)
    if theta.shape[0] != n:
        raise ValueError(f"angles_deg must have one angle per image ({n}), got {theta.shape[0]}.")
    sx = torch.ones(n, dtype=x.dtype, device=x.device)
    if flip is not None:
        f = torch.as_tensor(flip, device=x.device).reshape(-1).bool()
        sx = torch.where(f, -sx, sx)
    c, s = torch.cos(theta), torch.sin(theta)
    # affine_grid maps output pixels (x right, y down) to the input point they sample: a
    # counter-clockwise display rotation samples R(-theta) p in y-up coordinates, i.e.
    # (c x - s y, s x + c y) with y down; the mirror then negates the input's x.
    A = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    A[:, 0, 0] = sx * c
    A[:, 0, 1] = -sx * s
    A[:, 1, 0] = s
    A[:, 1, 1] = c
    grid = F.affine_grid(A, tuple(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def angular_cross_correlation(px, py):
    """Circular cross-correlation over the angle axis, summed over channels and radii.

    ``cc[:, s] = sum_{c, a, r} px[:, c, a, r] * py[:, c, (a + s) % n_angles, r]``, computed
    with one FFT per image along the angle axis.

    Parameters
    ----------
    px, py : Tensor of shape (n, C, n_angles, n_r)
        Polar images (:func:`to_polar`).

    Returns
    -------
    cc : Tensor of shape (n, n_angles)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import angular_cross_correlation
    >>> p = torch.rand(1, 1, 8, 3)
    >>> int(angular_cross_correlation(p, torch.roll(p, 2, dims=2)).argmax())
    2
    """
    fx = torch.fft.rfft(px, dim=2)
    fy = torch.fft.rfft(py, dim=2)
    spectrum = (fx.conj() * fy).sum(dim=(1, 3))
    return torch.fft.irfft(spectrum, n=px.shape[2], dim=1)


def _peak_angles(cc):
    """Signed angle (degrees, in (-180, 180]) of each row's peak, refined by a parabola."""
    n_angles = cc.shape[1]
    idx = cc.argmax(dim=1)
    rows = torch.arange(cc.shape[0], device=cc.device)
    left = cc[rows, (idx - 1) % n_angles]
    mid = cc[rows, idx]
    right = cc[rows, (idx + 1) % n_angles]
    denom = left - 2 * mid + right
    offset = torch.where(denom < 0, 0.5 * (left - right) / denom.clamp(max=-1e-12), torch.zeros_like(mid))
    shift = (idx.to(cc.dtype) + offset.clamp(-0.5, 0.5)) * (360.0 / n_angles)
    return torch.remainder(shift + 180.0, 360.0) - 180.0, mid


def estimate_rotation(x, y, n_angles=360, *, _polar_x=None):
    """Angle (degrees) that rotates each ``y`` onto its ``x`` (no flip), by polar FFT.

    Parameters
    ----------
    x, y : Tensor of shape (n, C, H, H)
        Targets and images to align; all channels vote (their correlations are summed).
    n_angles : int, default=360
        Angular resolution of the polar grid; the peak is refined below one step by
        parabolic interpolation.

    Returns
    -------
    angles : Tensor of shape (n,)
        In (-180, 180]: ``rotate(y, angles) ~ x``.
    peak : Tensor of shape (n,)
        Height of the correlation peak.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import estimate_rotation, rotate
    >>> y = torch.zeros(1, 1, 32, 32); y[..., 8:24, 12:16] = 1; y[..., 20:24, 12:22] = 1
    >>> angle, _ = estimate_rotation(rotate(y, [40.0]), y)
    >>> abs(float(angle[0]) - 40.0) < 2
    True
    """
    _check_images(x, "x")
    _check_images(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    with torch.no_grad():
        px = to_polar(x.detach(), n_angles) if _polar_x is None else _polar_x
        py = to_polar(y.detach(), n_angles)
        # x(alpha) = y(alpha + theta) on this clockwise-angle grid when x = rotate(y, theta)
        return _peak_angles(angular_cross_correlation(px, py))


def mirror(x):
    """Left-right mirror of a batch of images (the flip of :func:`rotate`).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import mirror
    >>> mirror(torch.arange(3.0).reshape(1, 1, 1, 3)).flatten().tolist()
    [2.0, 1.0, 0.0]
    """
    return torch.flip(x, dims=(-1,))


def _per_sample_sq_error(a, b):
    return (a - b).pow(2).flatten(1).sum(1)


def register(x, y, *, flips=True, n_angles=360, criterion=None):
    """Find, per pair, the rotation (and flip) mapping ``y`` onto ``x``, by polar FFT.

    The flip is chosen by the smaller ``criterion`` after rotating (the O2-VAE rule).

    Parameters
    ----------
    x : Tensor of shape (n, C, H, H)
        Targets.
    y : Tensor of shape (n, C, H, H)
        Images to align to ``x``; gradients flow into ``y`` through the returned
        ``aligned`` (the angle itself is found under ``no_grad``).
    flips : bool, default=True
        Also consider the mirror image of ``y``.
    n_angles : int, default=360
    criterion : callable ``(aligned, x) -> Tensor (n,)`` or None
        Per-sample mismatch used to choose between the two flips; default summed squared
        error.

    Returns
    -------
    angles : Tensor of shape (n,)
        Degrees in (-180, 180], counter-clockwise as displayed.
    flipped : bool Tensor of shape (n,)
    aligned : Tensor of shape (n, C, H, H)
        ``rotate(y, angles, flipped)``.
    mismatch : Tensor of shape (n,)
        ``criterion(aligned, x)``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import register, rotate
    >>> y = torch.zeros(2, 1, 32, 32); y[..., 8:24, 12:16] = 1; y[..., 20:24, 12:22] = 1
    >>> x = rotate(y, [-70.0, 120.0], [False, True])
    >>> angles, flipped, aligned, _ = register(x, y)
    >>> [round(a / 10) * 10 for a in angles.tolist()], flipped.tolist()
    ([-70, 120], [False, True])
    """
    criterion = _per_sample_sq_error if criterion is None else criterion
    with torch.no_grad():
        px = to_polar(x.detach(), n_angles)
    angles, _ = estimate_rotation(x, y, n_angles, _polar_x=px)
    aligned = rotate(y, angles)
    mismatch = criterion(aligned, x)
    flipped = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if flips:
        y_m = mirror(y)
        angles_m, _ = estimate_rotation(x, y_m, n_angles, _polar_x=px)
        # rotate(mirror(y), a) is rotate(y, a, flip=True) in rotate's convention
        aligned_m = rotate(y_m, angles_m)
        mismatch_m = criterion(aligned_m, x)
        flipped = mismatch_m < mismatch
        angles = torch.where(flipped, angles_m, angles)
        aligned = torch.where(flipped[:, None, None, None], aligned_m, aligned)
        mismatch = torch.where(flipped, mismatch_m, mismatch)
    return angles, flipped, aligned, mismatch


def register_brute_force(x, y, *, flips=True, step_deg=2.0, criterion=None, chunk_size=16):
    """Like :func:`register`, by trying every angle in ``arange(0, 360, step_deg)``.

    The search runs under ``no_grad`` in chunks of angles (memory ``O(chunk_size * n * H *
    W)``); only the winning candidate is recomputed with gradients.

    Parameters
    ----------
    x, y : Tensor of shape (n, C, H, H)
    flips : bool, default=True
    step_deg : float, default=2.0
    criterion : callable or None
        Per-sample mismatch, default summed squared error.
    chunk_size : int, default=16
        Angles evaluated at once.

    Returns
    -------
    angles, flipped, aligned, mismatch
        As :func:`register`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.registration import register_brute_force, rotate
    >>> y = torch.zeros(1, 1, 16, 16); y[..., 4:12, 6:8] = 1; y[..., 10:12, 6:11] = 1
    >>> angles, flipped, _, _ = register_brute_force(rotate(y, [30.0]), y, step_deg=10)
    >>> round(float(angles[0])), bool(flipped[0])
    (30, False)
    """
    _check_images(x, "x")
    _check_images(y, "y")
    if not step_deg > 0:
        raise ValueError(f"step_deg must be > 0, got {step_deg!r}.")
    criterion = _per_sample_sq_error if criterion is None else criterion
    n = x.shape[0]
    candidates = torch.arange(0.0, 360.0, float(step_deg), dtype=x.dtype, device=x.device)
    options = [False, True] if flips else [False]
    best = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    best_angle = torch.zeros(n, dtype=x.dtype, device=x.device)
    best_flip = torch.zeros(n, dtype=torch.bool, device=x.device)
    with torch.no_grad():
        xd, yd = x.detach(), y.detach()
        for flip in options:
            for start in range(0, len(candidates), chunk_size):
                ang = candidates[start:start + chunk_size]
                k = len(ang)
                yy = yd.repeat(k, 1, 1, 1)
                rot = rotate(yy, ang.repeat_interleave(n), torch.full((k * n,), flip, device=x.device))
                err = criterion(rot, xd.repeat(k, 1, 1, 1)).reshape(k, n)
                val, arg = err.min(dim=0)
                better = val < best
                best = torch.where(better, val, best)
                best_angle = torch.where(better, ang[arg], best_angle)
                best_flip = torch.where(better, torch.full_like(best_flip, flip), best_flip)
    best_angle = torch.remainder(best_angle + 180.0, 360.0) - 180.0
    aligned = rotate(y, best_angle, best_flip)
    return best_angle, best_flip, aligned, criterion(aligned, x)
