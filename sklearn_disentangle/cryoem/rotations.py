"""Rotations in RELION's convention: ZYZ Euler angles, matrices, random SO(3), in-plane rotations.

Convention (stated once, tested against RELION-derived matrices): the Euler angles
``(rot, tilt, psi)`` in degrees give the matrix

    A = Rz(psi) @ Ry(tilt) @ Rz(rot),   Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]],
                                         Ry(b) = [[c, 0, -s], [0, 1, 0], [s, 0, c]],

RELION's ``Euler_angles2matrix``. ``A`` maps reference-frame coordinates ``r = (x, y, z)`` to
image-frame coordinates ``p = A r``; the projection image is the integral of the volume along
the image ``z`` axis, and the third row of ``A`` is the viewing direction
``(cos rot sin tilt, sin rot sin tilt, cos tilt)``. cryoDRGN's and OPUS-DSD's pose matrices
are exactly this ``A``.

All functions are batched over leading axes and work on CPU or GPU tensors (the result
follows the input's device and dtype); NumPy arrays are accepted and give tensors back.
"""

import math

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = [
    "euler_to_matrix",
    "matrix_to_euler",
    "random_rotations",
    "rotation_grid",
    "quaternion_to_matrix",
    "axis_angle_to_matrix",
    "inplane_rotation_matrix",
    "rotate_images",
]


def _as_tensor(x):
    if isinstance(x, torch.Tensor):
        return x if x.dtype.is_floating_point else x.to(torch.float64)
    x = np.asarray(x)
    t = torch.as_tensor(x)
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    return t


def euler_to_matrix(angles):
    """RELION ZYZ Euler angles (degrees) to rotation matrices.

    Parameters
    ----------
    angles : tensor or array-like of shape (..., 3)
        ``(rot, tilt, psi)`` in degrees (RELION's ``rlnAngleRot``, ``rlnAngleTilt``,
        ``rlnAnglePsi``).

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)
        RELION's ``A = Rz(psi) Ry(tilt) Rz(rot)``, same dtype and device as the input
        (float64 for integer or NumPy input).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import euler_to_matrix
    >>> euler_to_matrix(torch.tensor([90.0, 0.0, 0.0])).round() + 0.0
    tensor([[ 0.,  1.,  0.],
            [-1.,  0.,  0.],
            [ 0.,  0.,  1.]])
    """
    angles = _as_tensor(angles)
    a, b, g = torch.deg2rad(angles).unbind(-1)
    ca, sa, cb, sb, cg, sg = a.cos(), a.sin(), b.cos(), b.sin(), g.cos(), g.sin()
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        torch.stack([sc, ss, cb], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_euler(matrices):
    """Rotation matrices to RELION ZYZ Euler angles (degrees), the inverse of :func:`euler_to_matrix`.

    The tilt is returned in ``[0, 180]`` and rot, psi in ``(-180, 180]``, RELION's
    ``Euler_matrix2angles`` choice. At the gimbal poles (tilt 0 or 180) the rotation is put
    entirely into psi and rot is set to 0.

    Parameters
    ----------
    matrices : tensor or array-like of shape (..., 3, 3)

    Returns
    -------
    angles : tensor of shape (..., 3)
        ``(rot, tilt, psi)`` in degrees.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import euler_to_matrix, matrix_to_euler
    >>> m = euler_to_matrix(torch.tensor([30.0, 60.0, -45.0], dtype=torch.float64))
    >>> matrix_to_euler(m).round(decimals=6)
    tensor([ 30.,  60., -45.], dtype=torch.float64)
    """
    m = _as_tensor(matrices)
    abs_sb = torch.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    eps = 16 * torch.finfo(m.dtype).eps if m.dtype.is_floating_point else 1e-12
    regular = abs_sb > eps
    tilt = torch.atan2(abs_sb, m[..., 2, 2])
    psi = torch.atan2(m[..., 1, 2], -m[..., 0, 2])
    rot = torch.atan2(m[..., 2, 1], m[..., 2, 0])
    up = m[..., 2, 2] > 0
    psi_pole = torch.where(up, torch.atan2(-m[..., 1, 0], m[..., 0, 0]), torch.atan2(m[..., 1, 0], -m[..., 0, 0]))
    tilt_pole = torch.where(up, torch.zeros_like(tilt), torch.full_like(tilt, math.pi))
    rot = torch.where(regular, rot, torch.zeros_like(rot))
    tilt = torch.where(regular, tilt, tilt_pole)
    psi = torch.where(regular, psi, psi_pole)
    return torch.rad2deg(torch.stack([rot, tilt, psi], -1))


def quaternion_to_matrix(q):
    """Unit quaternions ``(w, x, y, z)`` to rotation matrices (active, right-handed).

    Parameters
    ----------
    q : tensor of shape (..., 4)
        Quaternions; they are normalised first.

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import quaternion_to_matrix
    >>> quaternion_to_matrix(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    q = _as_tensor(q)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


def axis_angle_to_matrix(vectors):
    """Rotation vectors (axis times angle in radians) to matrices, Rodrigues' formula.

    This is the exponential map used for cryoSPARC's ``alignments3D/pose`` field.

    Parameters
    ----------
    vectors : tensor or array-like of shape (..., 3)

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)
        Active rotations by ``|v|`` radians about ``v / |v|``.

    Examples
    --------
    >>> import math, torch
    >>> from sklearn_disentangle.cryoem.rotations import axis_angle_to_matrix
    >>> axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])).round() + 0.0
    tensor([[ 0., -1.,  0.],
            [ 1.,  0.,  0.],
            [ 0.,  0.,  1.]])
    """
    v = _as_tensor(vectors)
    theta = v.norm(dim=-1, keepdim=True)
    small = theta < 1e-8
    axis = v / torch.where(small, torch.ones_like(theta), theta)
    half = theta / 2
    q = torch.cat([half.cos(), axis * half.sin()], -1)
    q = torch.where(small, torch.cat([torch.ones_like(theta), v / 2], -1), q)
    return quaternion_to_matrix(q)


def random_rotations(n, random_state=None, *, dtype=torch.float32, device=None):
    """Rotations drawn uniformly (Haar measure) from SO(3).

    Normalised 4-D Gaussian vectors are uniform unit quaternions, hence uniform rotations.

    Parameters
    ----------
    n : int
        Number of rotations.
    random_state : int, RandomState instance or None, default=None
        Seed (NumPy generator, so results do not depend on torch's global state).
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, default=None

    Returns
    -------
    matrices : tensor of shape (n, 3, 3)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import random_rotations
    >>> r = random_rotations(4, random_state=0, dtype=torch.float64)
    >>> bool(torch.allclose(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3)))
    True
    """
    rng = check_random_state(random_state)
    q = torch.as_tensor(rng.standard_normal((int(n), 4)), dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


#: psi of the super-Fibonacci spiral, the real root of psi^4 = psi + 4 (Alexa, CVPR 2022).
_SUPER_FIBONACCI_PSI = 1.533751168755204288118041


def rotation_grid(n, *, dtype=torch.float32, device=None):
    """``n`` rotations spread evenly over SO(3): the super-Fibonacci spiral (Alexa, CVPR 2022).

    Sample ``i`` (``s = i + 1/2``) is the unit quaternion
    ``(r sin a, r cos a, R sin b, R cos b)`` with ``r = sqrt(s / n)``, ``R = sqrt(1 - s / n)``,
    ``a = 2 pi s / sqrt(2)`` and ``b = 2 pi s / psi`` (``psi^4 = psi + 4``): a deterministic,
    low-discrepancy set for any ``n``, with a typical spacing of about
    ``(8 pi^2 / n) ** (1/3)`` radians (25 degrees for n = 1000). Used as the global grid of
    exhaustive pose searches.

    Parameters
    ----------
    n : int
        Number of rotations (>= 1).
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, default=None

    Returns
    -------
    matrices : tensor of shape (n, 3, 3)

    References
    ----------
    Alexa. Super-Fibonacci spirals: fast, low-discrepancy sampling of SO(3). CVPR 2022.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import rotation_grid
    >>> g = rotation_grid(500, dtype=torch.float64)
    >>> g.shape, bool(torch.allclose(torch.linalg.det(g), torch.ones(500, dtype=torch.float64)))
    (torch.Size([500, 3, 3]), True)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    s = torch.arange(int(n), dtype=torch.float64) + 0.5
    r, big_r = torch.sqrt(s / n), torch.sqrt(1.0 - s / n)
    a, b = 2 * math.pi * s / math.sqrt(2.0), 2 * math.pi * s / _SUPER_FIBONACCI_PSI
    q = torch.stack([r * torch.sin(a), r * torch.cos(a), big_r * torch.sin(b), big_r * torch.cos(b)], -1)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def inplane_rotation_matrix(psi):
    """In-plane rotation matrices in RELION's convention, equal to ``euler_to_matrix([0, 0, psi])``.

    Parameters
    ----------
    psi : tensor or array-like of shape (...)
        In-plane angle in degrees.

    Returns
    -------
    matrices : tensor of shape (..., 3, 3)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import inplane_rotation_matrix
    >>> inplane_rotation_matrix(torch.tensor(180.0)).round() + 0.0
    tensor([[-1.,  0.,  0.],
            [ 0., -1.,  0.],
            [ 0.,  0.,  1.]])
    """
    psi = _as_tensor(psi)
    zeros = torch.zeros_like(psi)
    return euler_to_matrix(torch.stack([zeros, zeros, psi], -1))


def rotate_images(images, psi, *, mode="bilinear"):
    """Rotate 2-D images in-plane about the pixel ``D // 2`` (the FFT centre).

    The content is rotated the way a RELION in-plane angle ``psi`` rotates a projection: a
    feature at image coordinate ``p`` (x = column, y = row, relative to the centre) moves to
    ``R(psi)[:2, :2] @ p``.

    Parameters
    ----------
    images : tensor of shape (n, H, W) or (H, W)
    psi : tensor or array-like of shape (n,) or scalar
        Angles in degrees.
    mode : {'bilinear', 'nearest', 'bicubic'}, default='bilinear'
        ``torch.nn.functional.grid_sample`` interpolation.

    Returns
    -------
    rotated : tensor, same shape as ``images``

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.rotations import rotate_images
    >>> img = torch.zeros(1, 5, 5); img[0, 2, 4] = 1.0  # x = +2, y = 0
    >>> out = rotate_images(img, torch.tensor([-90.0]))
    >>> [int(i) for i in (out[0] == out[0].max()).nonzero()[0]]  # now at x = 0, y = +2
    [4, 2]
    """
    squeeze = images.ndim == 2
    if squeeze:
        images = images[None]
    n, h, w = images.shape
    psi = _as_tensor(psi).to(images.device, images.dtype).reshape(-1).expand(n)
    rot = inplane_rotation_matrix(psi)[:, :2, :2]
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=images.dtype, device=images.device) - h // 2,
        torch.arange(w, dtype=images.dtype, device=images.device) - w // 2,
        indexing="ij",
    )
    p = torch.stack([xx, yy], -1).reshape(1, -1, 2)  # output pixel coordinates
    src = p @ rot  # r = R^T p as row vectors
    gx = 2 * (src[..., 0] + w // 2) / (w - 1) - 1
    gy = 2 * (src[..., 1] + h // 2) / (h - 1) - 1
    grid = torch.stack([gx, gy], -1).reshape(n, h, w, 2)
    out = torch.nn.functional.grid_sample(images[:, None], grid, mode=mode, padding_mode="zeros", align_corners=True)
    out = out[:, 0]
    return out[0] if squeeze else out
