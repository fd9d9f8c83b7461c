"""Differentiable pose warps for Harmony, in plain torch (``affine_grid``-style grids + ``grid_sample``).

A *pose* ``(M, t)`` says where the content of a canonical image lies in an observed one:
the canonical feature at coordinate ``r`` appears at ``p = M r + t``. ``M`` is a rotation
(2 x 2 or 3 x 3), times an isotropic scale for ``affine2d``; ``t`` is a shift in pixels
(voxels). Coordinates are ``(x, y[, z]) = (column, row[, slice])`` relative to the centre
pixel ``size // 2`` of every axis, the FFT-centre convention of RELION and of
:mod:`sklearn_disentangle.cryoem` (so a 2-D rotation by ``angle`` warps exactly like
:func:`~sklearn_disentangle.cryoem.rotations.rotate_images` with ``psi = angle`` and a 3-D
pose matrix is RELION's ``A``: :func:`~sklearn_disentangle.cryoem.rotations.matrix_to_euler`
turns it into ``(rot, tilt, psi)``).

Rotation, scale and shift are composed into one coordinate map, so a warp interpolates once
(bilinear / trilinear, zero padding outside the frame).
"""

import torch
import torch.nn.functional as F

__all__ = [
    "rotation_2d",
    "axis_angle_to_matrix",
    "sixd_to_matrix",
    "warp_to_canonical",
    "warp_from_canonical",
]


def rotation_2d(angle):
    """2-D rotation matrices in RELION's in-plane convention.

    Parameters
    ----------
    angle : tensor of shape (n,)
        Angles in radians.

    Returns
    -------
    matrices : tensor of shape (n, 2, 2)
        ``[[cos a, sin a], [-sin a, cos a]]``: the upper-left block of
        :func:`~sklearn_disentangle.cryoem.rotations.inplane_rotation_matrix` (degrees there).

    Examples
    --------
    >>> import math, torch
    >>> from sklearn_disentangle.harmony.warps import rotation_2d
    >>> rotation_2d(torch.tensor([math.pi / 2])).round() + 0.0
    tensor([[[ 0.,  1.],
             [-1.,  0.]]])
    """
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)


def axis_angle_to_matrix(v):
    """Rotation vectors to matrices by Rodrigues' formula, differentiable everywhere.

    ``R = I + (sin a / a) K + ((1 - cos a) / a^2) K^2`` with ``K`` the cross-product matrix
    of ``v`` and ``a = |v|``; near ``a = 0`` both coefficients use their Taylor series, so
    gradients stay finite at the identity.

    Parameters
    ----------
    v : tensor of shape (..., 3)
        Axis times angle (radians).

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)
        Active rotation by ``|v|`` about ``v / |v|`` (the same as
        :func:`sklearn_disentangle.cryoem.rotations.axis_angle_to_matrix`).

    Examples
    --------
    >>> import math, torch
    >>> from sklearn_disentangle.harmony.warps import axis_angle_to_matrix
    >>> axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])).round() + 0.0
    tensor([[ 0., -1.,  0.],
            [ 1.,  0.,  0.],
            [ 0.,  0.,  1.]])
    """
    a2 = (v * v).sum(-1, keepdim=True)
    small = a2 < 1e-6
    a2_safe = torch.where(small, torch.ones_like(a2), a2)
    a = torch.sqrt(a2_safe)
    c1 = torch.where(small, 1 - a2 / 6 + a2 * a2 / 120, torch.sin(a) / a)
    c2 = torch.where(small, 0.5 - a2 / 24 + a2 * a2 / 720, (1 - torch.cos(a)) / a2_safe)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
                     torch.stack([-y, x, zero], -1)], -2)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + c1[..., None] * k + c2[..., None] * (k @ k)


def sixd_to_matrix(u):
    """Rotation matrices from the continuous 6-D representation of Zhou et al. (2019).

    The two 3-vectors ``a = u[..., :3] + e_x`` and ``b = u[..., 3:] + e_y`` are
    orthonormalised by Gram-Schmidt into the first two columns of the matrix; the third is
    their cross product. The offsets make ``u = 0`` the identity. Unlike axis-angle (or
    Euler angles, or quaternions), this map from R^6 onto SO(3) has a continuous right
    inverse, so a network can follow any rotation of its input without a jump in its output.

    Parameters
    ----------
    u : tensor of shape (..., 6)

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)
        Proper rotations (``det = +1``).

    References
    ----------
    Zhou, Barnes, Lu, Yang, Li. On the continuity of rotation representations in neural
    networks. CVPR 2019.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.warps import sixd_to_matrix
    >>> sixd_to_matrix(torch.zeros(6))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    >>> r = sixd_to_matrix(torch.randn(4, 6))
    >>> bool(torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand(4, 3, 3), atol=1e-5))
    True
    """
    eye = torch.eye(3, dtype=u.dtype, device=u.device)
    a = u[..., :3] + eye[0]
    b = u[..., 3:6] + eye[1]
    c1 = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b - (c1 * b).sum(-1, keepdim=True) * c1
    c2 = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    c3 = torch.cross(c1, c2, dim=-1)
    return torch.stack([c1, c2, c3], -1)


def _pixel_coords(spatial, dtype, device):
    """Centred coordinates of every output pixel, shape (prod(spatial), k), ordered (x, y[, z])."""
    axes = [torch.arange(s, dtype=dtype, device=device) - (s // 2) for s in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")  # axis order (.., y, x)
    return torch.stack(grids[::-1], -1).reshape(-1, len(spatial))


def _sample(x, src):
    """Sample ``x`` (n, C, *spatial) at centred source coordinates ``src`` (n, P, k)."""
    spatial = x.shape[2:]
    k = len(spatial)
    sizes = torch.tensor(spatial[::-1], dtype=src.dtype, device=src.device)  # (W, H[, D]) for (x, y[, z])
    centre = torch.div(sizes, 2, rounding_mode="floor")
    denom = torch.clamp(sizes - 1, min=1)
    grid = 2 * (src + centre) / denom - 1
    grid = grid.reshape((x.shape[0],) + tuple(spatial) + (k,))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _check(x, matrix, shift):
    k = x.ndim - 2
    if k not in (2, 3):
        raise ValueError(f"x must have shape (n, C, H, W) or (n, C, D, H, W), got {tuple(x.shape)}.")
    if matrix.shape[-2:] != (k, k) or shift.shape[-1] != k:
        raise ValueError(f"a {k}-D warp needs matrices (n, {k}, {k}) and shifts (n, {k}), got "
                         f"{tuple(matrix.shape)} and {tuple(shift.shape)}.")
    return k


def warp_to_canonical(x, matrix, shift):
    """Bring observed images into the canonical frame: ``out(r) = x(M r + t)``.

    Parameters
    ----------
    x : tensor of shape (n, C, H, W) or (n, C, D, H, W)
    matrix : tensor of shape (n, k, k)
        ``M`` of the pose (rotation, possibly times a scale), k = 2 or 3.
    shift : tensor of shape (n, k)
        ``t`` in pixels, ordered ``(x, y[, z])``.

    Returns
    -------
    canonical : tensor, same shape as ``x``

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.warps import warp_to_canonical
    >>> img = torch.zeros(1, 1, 7, 7); img[0, 0, 3, 5] = 1.0  # x = +2, y = 0
    >>> out = warp_to_canonical(img, torch.eye(2)[None], torch.tensor([[2.0, 0.0]]))
    >>> [int(i) for i in (out[0, 0] == 1).nonzero()[0]]  # moved back to the centre
    [3, 3]
    """
    _check(x, matrix, shift)
    p = _pixel_coords(x.shape[2:], x.dtype, x.device)
    src = p[None] @ matrix.to(x.dtype).transpose(1, 2) + shift.to(x.dtype)[:, None, :]
    return _sample(x, src)


def warp_from_canonical(x, matrix, shift):
    """Put canonical images into a pose: ``out(p) = x(M^-1 (p - t))``, the inverse of :func:`warp_to_canonical`.

    Parameters
    ----------
    x : tensor of shape (n, C, H, W) or (n, C, D, H, W)
    matrix : tensor of shape (n, k, k)
    shift : tensor of shape (n, k)

    Returns
    -------
    posed : tensor, same shape as ``x``

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.warps import warp_from_canonical
    >>> img = torch.zeros(1, 1, 7, 7); img[0, 0, 3, 3] = 1.0
    >>> out = warp_from_canonical(img, torch.eye(2)[None], torch.tensor([[0.0, -2.0]]))
    >>> [int(i) for i in (out[0, 0] == 1).nonzero()[0]]  # y = -2: two rows up
    [1, 3]
    """
    _check(x, matrix, shift)
    p = _pixel_coords(x.shape[2:], x.dtype, x.device)
    inv = torch.linalg.inv(matrix.to(x.dtype))
    src = (p[None] - shift.to(x.dtype)[:, None, :]) @ inv.transpose(1, 2)
    return _sample(x, src)
