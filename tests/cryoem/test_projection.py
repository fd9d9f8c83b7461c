"""Projection (real space and Fourier slice), volume rotation and Fourier shifts."""

import math

import numpy as np
import pytest
import torch

from sklearn_disentangle.cryoem.projection import (
    project_fourier, project_real, rotate_volume, shift_images, shift_volumes,
)
from sklearn_disentangle.cryoem.rotations import euler_to_matrix, random_rotations, rotate_images

D = 32


def _blob_volume(centres, sigma, d=D):
    z, y, x = torch.meshgrid(*[torch.arange(d, dtype=torch.float64) - d // 2] * 3, indexing="ij")
    vol = torch.zeros(d, d, d, dtype=torch.float64)
    for cx, cy, cz in centres:
        vol += torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))
    return vol


def _gaussian_2d(cx, cy, sigma, d=D):
    y, x = torch.meshgrid(*[torch.arange(d, dtype=torch.float64) - d // 2] * 2, indexing="ij")
    return math.sqrt(2 * math.pi) * sigma * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def test_rotated_gaussian_blob_projects_to_analytic_gaussian():
    centre = torch.tensor([4.0, -3.0, 5.0], dtype=torch.float64)
    sigma = 3.0  # trilinear interpolation blurs by ~1/6 px^2: a 3 px blob keeps it under 2 %
    vol = _blob_volume([centre.tolist()], sigma)
    rots = euler_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [30.0, 60.0, -45.0], [120.0, 100.0, 10.0]],
                                        dtype=torch.float64))
    images = project_real(vol, rots)
    for img, a in zip(images, rots):
        px, py, _ = (a @ centre).tolist()  # a feature at r appears at (A r)[:2]
        expected = _gaussian_2d(px, py, sigma)
        assert (img - expected).abs().max() < 0.02 * expected.max()
        y, x = torch.meshgrid(*[torch.arange(D, dtype=torch.float64) - D // 2] * 2, indexing="ij")
        centroid = torch.stack([(img * x).sum(), (img * y).sum()]) / img.sum()
        torch.testing.assert_close(centroid, torch.tensor([px, py], dtype=torch.float64), atol=0.02, rtol=0)


def test_identity_projection_is_sum_along_z_both_ways():
    vol = torch.rand(D, D, D, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    torch.testing.assert_close(project_real(vol, eye)[0], vol.sum(0))
    torch.testing.assert_close(project_fourier(vol, eye)[0], vol.sum(0))


@pytest.mark.parametrize("d", [24, 25])
def test_real_space_and_fourier_slice_projections_agree(d):
    centres = [(3, 0, -2), (-4, 5, 1), (0, -5, 4)]
    vol = _blob_volume(centres, 2.0, d)
    rots = random_rotations(6, random_state=0, dtype=torch.float64)
    real = project_real(vol, rots)
    fourier = project_fourier(vol, rots, oversampling=3)
    analytic = torch.stack([sum(_gaussian_2d(*(a @ torch.tensor(c, dtype=torch.float64)).tolist()[:2], 2.0, d)
                                for c in centres) for a in rots])

    def rel(x):
        return ((x - analytic).norm(dim=(1, 2)) / analytic.norm(dim=(1, 2))).max()

    assert ((real - fourier).norm(dim=(1, 2)) / real.norm(dim=(1, 2))).max() < 0.04
    assert rel(real) < 0.04 and rel(fourier) < 0.04
    # the default 2x oversampling is coarser but still close (trilinear interpolation of the spectrum)
    assert rel(project_fourier(vol, rots)) < 0.08


def test_one_volume_per_pose_and_batching():
    vols = torch.rand(5, 16, 16, 16)
    rots = random_rotations(5, random_state=1)
    per_pose = project_real(vols, rots, batch_size=2)
    for i in range(5):
        torch.testing.assert_close(per_pose[i], project_real(vols[i], rots[i:i + 1])[0])
    with pytest.raises(ValueError, match="volume must have shape"):
        project_real(torch.rand(3, 16, 16, 16), rots)


def test_inplane_pose_equals_rotated_image():
    vol = _blob_volume([(5, 2, 0), (-3, -4, 2)], 1.5)
    top = project_real(vol, torch.eye(3, dtype=torch.float64)[None])
    psi = torch.tensor([35.0], dtype=torch.float64)
    posed = project_real(vol, euler_to_matrix(torch.stack([torch.zeros(1, dtype=torch.float64),
                                                           torch.zeros(1, dtype=torch.float64), psi], -1)))
    rotated = rotate_images(top, psi)
    assert (posed - rotated).abs().max() < 0.02 * top.max()


def test_rotate_volume_moves_content_to_a_r_and_back():
    centre = torch.tensor([5.0, 0.0, -3.0], dtype=torch.float64)
    vol = _blob_volume([centre.tolist()], 2.5)
    a = euler_to_matrix(torch.tensor([[40.0, 70.0, 10.0]], dtype=torch.float64))
    moved = rotate_volume(vol, a)[0]
    expected = _blob_volume([(a[0] @ centre).tolist()], 2.5)
    assert (moved - expected).abs().max() < 0.07  # trilinear interpolation error, peak = 1
    z, y, x = torch.meshgrid(*[torch.arange(D, dtype=torch.float64) - D // 2] * 3, indexing="ij")
    centroid = torch.stack([(moved * c).sum() for c in (x, y, z)]) / moved.sum()
    torch.testing.assert_close(centroid, a[0] @ centre, atol=0.02, rtol=0)
    back = rotate_volume(moved, a.transpose(1, 2))[0]
    assert (back - vol).abs().max() < 0.12


def test_shift_sign_and_integer_shift_is_roll():
    img = torch.rand(2, 16, 16, dtype=torch.float64)
    out = shift_images(img, torch.tensor([[3.0, -2.0], [0.0, 5.0]]))
    torch.testing.assert_close(out[0], torch.roll(img[0], shifts=(-2, 3), dims=(0, 1)))  # +x = +column
    torch.testing.assert_close(out[1], torch.roll(img[1], shifts=(5, 0), dims=(0, 1)))
    t = torch.tensor([[1.3, -0.7], [0.25, 2.5]])
    odd = torch.rand(2, 15, 15, dtype=torch.float64)
    torch.testing.assert_close(shift_images(shift_images(odd, t), -t), odd)
    # even box: sub-pixel shifts are invertible once the unpaired Nyquist row/column is empty
    from sklearn_disentangle.cryoem.fourier import fft2_centered, ifft2_centered

    f = fft2_centered(img)
    f[:, 0, :] = 0
    f[:, :, 0] = 0
    band = ifft2_centered(f).real
    torch.testing.assert_close(shift_images(shift_images(band, t), -t), band)


@pytest.mark.parametrize("d", [32, 33])
def test_subpixel_shift_moves_centroid(d):
    img = _gaussian_2d(0.0, 0.0, 2.0, d)[None]
    out = shift_images(img, torch.tensor([[1.5, -0.75]]))
    torch.testing.assert_close(out[0], _gaussian_2d(1.5, -0.75, 2.0, d), atol=1e-6, rtol=0)


def test_shift_volumes():
    vol = _blob_volume([(0, 0, 0)], 1.5, 24)[None]
    out = shift_volumes(vol, torch.tensor([[2.0, -1.0, 3.0]]))
    torch.testing.assert_close(out[0], _blob_volume([(2, -1, 3)], 1.5, 24), atol=1e-6, rtol=0)


def test_dtype_and_device_follow_inputs():
    vol = torch.rand(8, 8, 8)
    out = project_real(vol, torch.eye(3)[None])
    assert out.dtype == torch.float32 and out.device == vol.device
    assert shift_images(torch.rand(1, 8, 8), torch.zeros(1, 2)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_projection_on_gpu_matches_cpu():
    vol = _blob_volume([(3, 0, -2), (-4, 5, 1)], 2.0, 24).float()
    rots = random_rotations(4, random_state=0)
    cpu = project_fourier(vol, rots)
    gpu = project_fourier(vol.cuda(), rots.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(project_real(vol.cuda(), rots.cuda()).cpu(), project_real(vol, rots), atol=1e-3,
                               rtol=1e-3)
