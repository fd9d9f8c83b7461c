"""Harmony's warps: conventions against the cryo-EM kernels, invertibility, Rodrigues' formula."""

import math

import numpy as np
import pytest
import torch

from sklearn_disentangle.cryoem.rotations import axis_angle_to_matrix as kernel_axis_angle
from sklearn_disentangle.cryoem.rotations import euler_to_matrix, matrix_to_euler, rotate_images
from sklearn_disentangle.datasets.cryoem import molecule_blobs, render_volume
from sklearn_disentangle.harmony.warps import (
    axis_angle_to_matrix,
    rotation_2d,
    warp_from_canonical,
    warp_to_canonical,
)


def blob_image(h, w, centres, sigma=1.5):
    yy, xx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    img = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)) for cx, cy in centres)
    return torch.as_tensor(img, dtype=torch.float32)


@pytest.mark.parametrize("size", [(16, 16), (15, 15), (13, 18)])
def test_2d_rotation_matches_relion_inplane_kernel(size):
    imgs = torch.rand(4, *size)
    psi = torch.tensor([0.0, 33.0, -120.0, 270.0])
    ours = warp_from_canonical(imgs[:, None], rotation_2d(torch.deg2rad(psi)), torch.zeros(4, 2))[:, 0]
    torch.testing.assert_close(ours, rotate_images(imgs, psi), atol=1e-5, rtol=0)
    # the 2 x 2 block is RELION's in-plane matrix
    torch.testing.assert_close(rotation_2d(torch.deg2rad(psi)), euler_to_matrix(
        torch.stack([torch.zeros(4), torch.zeros(4), psi], 1))[:, :2, :2], atol=1e-6, rtol=0)


def test_shift_moves_content_by_plus_shift_pixels():
    img = blob_image(15, 17, [(0, 0)])[None, None]
    out = warp_from_canonical(img, torch.eye(2)[None], torch.tensor([[3.0, -2.0]]))[0, 0]
    row, col = np.unravel_index(int(out.argmax()), out.shape)
    assert (col - 17 // 2, row - 15 // 2) == (3, -2)


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_known_pose_applied_then_inverted_returns_the_image(scale):
    img = blob_image(32, 32, [(-4, -3), (0, -4), (3, -2), (5, 4)], sigma=2.5)[None, None]
    angle = torch.tensor([math.radians(57.0)])
    matrix = rotation_2d(angle) * scale
    shift = torch.tensor([[2.5, -1.25]])
    posed = warp_from_canonical(img, matrix, shift)
    assert (posed - img).abs().max() > 0.5  # the pose really moves the content
    back = warp_to_canonical(posed, matrix, shift)
    yy, xx = np.meshgrid(np.arange(32) - 16, np.arange(32) - 16, indexing="ij")
    interior = torch.as_tensor(np.hypot(xx, yy) < 10)
    err = (back - img)[0, 0][interior].abs().max() / img.max()
    assert err < 0.05  # two bilinear resamplings of blobs of sigma 2.5 px (measured: 0.035)


def test_rodrigues_matches_the_cryoem_kernel_and_is_a_rotation():
    rng = np.random.default_rng(0)
    v = torch.as_tensor(rng.normal(size=(200, 3)) * 2.0)
    v = torch.cat([v, torch.tensor([[0.0, 0.0, 0.0], [1e-5, -2e-5, 3e-6], [math.pi, 0.0, 0.0]], dtype=v.dtype)])
    ours = axis_angle_to_matrix(v)
    torch.testing.assert_close(ours, kernel_axis_angle(v), atol=1e-10, rtol=0)
    eye = torch.eye(3, dtype=v.dtype).expand(len(v), 3, 3)
    torch.testing.assert_close(ours @ ours.transpose(1, 2), eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.linalg.det(ours), torch.ones(len(v), dtype=v.dtype), atol=1e-10, rtol=0)
    # Euler round trip through the RELION kernels
    torch.testing.assert_close(euler_to_matrix(matrix_to_euler(ours)), ours, atol=1e-8, rtol=0)


def test_rodrigues_gradient_is_finite_at_the_identity():
    v = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(v).sum().backward()
    assert torch.isfinite(v.grad).all()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (torch.randn(3, 3, dtype=torch.float64, requires_grad=True),))


def test_3d_warp_moves_blobs_like_the_simulator():
    # make_subtomograms' convention: content at r moves to R r + t (centre D // 2, (x, y, z))
    d = 20
    centres, sigmas, weights = molecule_blobs(0.5, d)
    canonical = torch.as_tensor(render_volume(centres[0], sigmas * 2, weights, d))[None, None]
    rot = euler_to_matrix(torch.tensor([[40.0, 70.0, -30.0]])).to(torch.float64)
    shift = np.array([1.5, -1.0, 2.0])
    expected = render_volume(np.einsum("ij,bj->bi", rot[0].numpy(), centres[0]) + shift, sigmas * 2, weights, d)
    out = warp_from_canonical(canonical, rot.float(), torch.as_tensor(shift[None], dtype=torch.float32))[0, 0]
    rel = np.linalg.norm(out.numpy() - expected) / np.linalg.norm(expected)
    assert rel < 0.05  # trilinear resampling of smooth blobs (measured: 0.028)
    wrong = warp_from_canonical(canonical, rot.transpose(1, 2).float(), torch.as_tensor(shift[None], dtype=torch.float32))
    assert np.linalg.norm(wrong[0, 0].numpy() - expected) / np.linalg.norm(expected) > 0.3


def test_3d_centres_are_right_for_non_cubic_volumes():
    shape = (9, 12, 14)  # (D, H, W)
    vol = torch.zeros(1, 1, *shape)
    vol[0, 0, 9 // 2, 12 // 2 + 0, 14 // 2 + 3] = 1.0  # x = +3 from the centre voxel
    rz90 = kernel_axis_angle(torch.tensor([[0.0, 0.0, math.pi / 2]])).float()  # x -> y
    out = warp_from_canonical(vol, rz90, torch.zeros(1, 3))[0, 0]
    z, y, x = np.unravel_index(int(out.argmax()), shape)
    assert (x - 14 // 2, y - 12 // 2, z - 9 // 2) == (0, 3, 0)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-5)
    # the inverse warp brings it back exactly (90-degree turns hit voxel centres)
    back = warp_to_canonical(out[None, None], rz90, torch.zeros(1, 3))
    torch.testing.assert_close(back, vol, atol=1e-5, rtol=0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="needs matrices"):
        warp_to_canonical(torch.zeros(1, 1, 4, 4), torch.eye(3)[None], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="must have shape"):
        warp_to_canonical(torch.zeros(1, 4, 4), torch.eye(2)[None], torch.zeros(1, 2))


def test_sixd_is_a_continuous_map_onto_proper_rotations_with_identity_at_zero():
    from sklearn_disentangle.harmony.warps import sixd_to_matrix

    torch.testing.assert_close(sixd_to_matrix(torch.zeros(2, 6)), torch.eye(3).expand(2, 3, 3))
    u = torch.randn(64, 6, dtype=torch.float64)
    r = sixd_to_matrix(u)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(64, dtype=torch.float64))
    # every rotation is reached: the first two columns of R (minus the offsets) map back to R,
    # also for half-turns, where the axis-angle vector jumps
    rots = kernel_axis_angle(torch.tensor([[0.0, 0.0, math.pi], [math.pi, 0, 0], [0.3, -1.2, 2.0]],
                                          dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    u = torch.cat([rots[:, :, 0] - eye[0], rots[:, :, 1] - eye[1]], 1)
    torch.testing.assert_close(sixd_to_matrix(u), rots)
    # small input changes give small rotation changes (no wrap-around)
    d = (sixd_to_matrix(u + 1e-4) - sixd_to_matrix(u)).abs().max()
    assert d < 1e-3
