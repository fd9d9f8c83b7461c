"""RELION ZYZ Euler angles, matrices, random SO(3) and in-plane rotations: hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sklearn_disentangle.cryoem.rotations import (
    axis_angle_to_matrix, euler_to_matrix, inplane_rotation_matrix, matrix_to_euler, quaternion_to_matrix,
    random_rotations, rotate_images,
)


def _rz(a):  # RELION's (passive) elementary matrices, written out by hand
    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


def _ry(b):
    c, s = math.cos(math.radians(b)), math.sin(math.radians(b))
    return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])


@pytest.mark.parametrize("angles, expected", [
    ((0, 0, 0), np.eye(3)),
    ((90, 0, 0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    ((0, 90, 0), [[0, 0, -1], [0, 1, 0], [1, 0, 0]]),
    ((0, 0, 90), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    ((90, 90, 0), [[0, 0, -1], [-1, 0, 0], [0, 1, 0]]),
    ((0, 180, 0), [[-1, 0, 0], [0, 1, 0], [0, 0, -1]]),
])
def test_hand_computed_matrices(angles, expected):
    got = euler_to_matrix(torch.tensor(angles, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_composition_viewing_direction_and_scipy():
    rng = np.random.default_rng(0)
    angles = np.column_stack([rng.uniform(-180, 180, 20), rng.uniform(0, 180, 20), rng.uniform(-180, 180, 20)])
    got = euler_to_matrix(angles).numpy()
    for (rot, tilt, psi), m in zip(angles, got):
        np.testing.assert_allclose(m, _rz(psi) @ _ry(tilt) @ _rz(rot), atol=1e-12)
        r, t = np.radians(rot), np.radians(tilt)
        np.testing.assert_allclose(m[2], [np.cos(r) * np.sin(t), np.sin(r) * np.sin(t), np.cos(t)], atol=1e-12)
    # RELION's A is the transpose of the active intrinsic ZYZ rotation
    np.testing.assert_allclose(got, Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix().transpose(0, 2, 1),
                               atol=1e-12)


def test_matrix_to_euler_round_trip_and_gimbal():
    rng = np.random.default_rng(1)
    angles = np.column_stack([rng.uniform(-179, 179, 50), rng.uniform(1, 179, 50), rng.uniform(-179, 179, 50)])
    back = matrix_to_euler(euler_to_matrix(angles)).numpy()
    np.testing.assert_allclose(back, angles, atol=1e-9)
    for tilt in (0.0, 180.0):
        m = euler_to_matrix(torch.tensor([30.0, tilt, 20.0], dtype=torch.float64))
        e = matrix_to_euler(m)
        assert float(e[0]) == 0.0 and float(e[1]) == tilt
        np.testing.assert_allclose(euler_to_matrix(e).numpy(), m.numpy(), atol=1e-12)
    # negative tilt comes back as the equivalent positive-tilt triple
    m = euler_to_matrix(torch.tensor([10.0, -40.0, 5.0], dtype=torch.float64))
    e = matrix_to_euler(m)
    assert float(e[1]) == pytest.approx(40.0)
    np.testing.assert_allclose(euler_to_matrix(e).numpy(), m.numpy(), atol=1e-12)


def test_random_rotations_are_uniform_rotations():
    r = random_rotations(4000, random_state=0, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r @ r.transpose(1, 2), eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4000, dtype=torch.float64))
    # Haar measure: E[R] = 0, E[R_ij^2] = 1/3
    assert r.mean(0).abs().max() < 0.05
    assert (r.pow(2).mean(0) - 1 / 3).abs().max() < 0.03
    assert torch.equal(random_rotations(3, random_state=5), random_rotations(3, random_state=5))


def test_axis_angle_and_quaternion_against_scipy():
    v = np.random.default_rng(2).standard_normal((10, 3))
    np.testing.assert_allclose(axis_angle_to_matrix(v).numpy(), Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(np.zeros(3)).numpy(), np.eye(3))
    q = np.random.default_rng(3).standard_normal((10, 4))
    np.testing.assert_allclose(quaternion_to_matrix(q).numpy(),
                               Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix(), atol=1e-12)


def test_inplane_matrix_and_image_rotation():
    np.testing.assert_allclose(inplane_rotation_matrix(np.array([90.0])).numpy()[0], _rz(90), atol=1e-12)
    img = torch.zeros(2, 9, 9, dtype=torch.float64)
    img[:, 4, 7] = 1.0  # x = +3, y = 0 relative to the centre pixel (4, 4)
    out = rotate_images(img, torch.tensor([90.0, 180.0]))
    # psi = 90: R p = (0, -3) -> row 1, column 4; psi = 180: (-3, 0) -> row 4, column 1
    assert out[0, 1, 4] == pytest.approx(1.0) and out[1, 4, 1] == pytest.approx(1.0)
    assert torch.allclose(rotate_images(img[0], 0.0), img[0])


def test_float32_and_device_follow_input():
    m = euler_to_matrix(torch.zeros(5, 3, dtype=torch.float32))
    assert m.dtype == torch.float32 and m.device.type == "cpu" and m.shape == (5, 3, 3)
    assert euler_to_matrix(torch.zeros(2, 4, 3)).shape == (2, 4, 3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_gpu():
    angles = torch.rand(8, 3, device="cuda") * 90
    m = euler_to_matrix(angles)
    assert m.is_cuda
    assert torch.allclose(matrix_to_euler(m), angles, atol=1e-3)
