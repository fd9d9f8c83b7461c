"""Fourier/polar rotation and flip registration (sklearn_disentangle.o2vae.registration)."""

import numpy as np
import pytest
import torch

from sklearn_disentangle.datasets import make_rotated_digits, rotate_images
from sklearn_disentangle.o2vae.registration import (
    angular_cross_correlation,
    estimate_rotation,
    mirror,
    polar_grid,
    register,
    register_brute_force,
    rotate,
    to_polar,
)


@pytest.fixture(scope="module")
def digits():
    """64 upright 32 px digits, a second channel, and known angles/flips."""
    images = make_rotated_digits(64, resolution=32, n_angles=1, random_state=0).images
    rng = np.random.RandomState(1)
    angles = rng.uniform(-180, 180, len(images))
    flips = rng.rand(len(images)) < 0.5
    return images, angles, flips


def _angle_error(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def test_rotate_matches_rotate_images_convention(digits):
    images, angles, flips = digits
    ours = rotate(torch.from_numpy(images[:8, None]), angles[:8], flips[:8])[:, 0].numpy()
    np.testing.assert_allclose(ours, rotate_images(images[:8], angles[:8], flips[:8]), atol=1e-5)
    # mirror(y) rotated equals rotate(y, flip=True)
    y = torch.from_numpy(images[:4, None])
    a = torch.tensor([10.0, 50.0, -100.0, 170.0])
    torch.testing.assert_close(rotate(mirror(y), a), rotate(y, a, torch.ones(4, dtype=torch.bool)))


def test_polar_grid_covers_the_image_and_is_cached():
    grid = polar_grid(32)
    assert grid.shape == (1, 360, 23, 2)
    assert polar_grid(32) is grid
    torch.testing.assert_close(grid[0, :, 0], torch.zeros(360, 2), atol=1e-6, rtol=0)  # radius 0 = centre
    # the outermost ring reaches the corners (|coordinate| ~ 1 at 45 degrees)
    assert float(grid[0, 45, -1].abs().min()) > 0.9


def test_cross_correlation_finds_a_circular_shift():
    p = torch.rand(3, 2, 36, 5)
    shifted = torch.stack([torch.roll(p[i], s, dims=1) for i, s in enumerate([0, 5, 30])])
    assert angular_cross_correlation(p, shifted).argmax(dim=1).tolist() == [0, 5, 30]


def test_register_recovers_known_rotations_and_flips_on_digits(digits):
    images, angles, flips = digits
    x = torch.from_numpy(rotate_images(images, angles, flips)[:, None])
    y = torch.from_numpy(images[:, None])
    found, flipped, aligned, mismatch = register(x, y)
    err = _angle_error(found.numpy(), angles)
    assert err.max() <= 2.0, err.max()
    assert np.median(err) <= 0.5
    np.testing.assert_array_equal(flipped.numpy(), flips)
    # aligning really brings y onto x
    assert float((aligned - x).abs().mean()) < 0.1 * float((y - x).abs().mean())
    assert mismatch.shape == (len(images),)


def test_register_without_flips_recovers_rotations(digits):
    images, angles, _ = digits
    x = torch.from_numpy(rotate_images(images[:16], angles[:16])[:, None])
    angles_found, _ = estimate_rotation(x, torch.from_numpy(images[:16, None]))
    assert _angle_error(angles_found.numpy(), angles[:16]).max() <= 2.0
    _, flipped, _, _ = register(x, torch.from_numpy(images[:16, None]), flips=False)
    assert not flipped.any()


def test_register_multichannel_sums_channels(digits):
    images, angles, flips = digits
    # channel 2 is a blurred, shifted copy (a second stain); channel 1 alone is blank,
    # so only the summed correlation can find the angle
    second = np.roll(images[:16], 3, axis=-1) ** 2
    y = np.stack([np.zeros_like(second), second], axis=1)
    x = np.stack([rotate_images(y[:, c], angles[:16], flips[:16]) for c in range(2)], axis=1)
    found, flipped, _, _ = register(torch.from_numpy(x), torch.from_numpy(y))
    assert _angle_error(found.numpy(), angles[:16]).max() <= 2.0
    np.testing.assert_array_equal(flipped.numpy(), flips[:16])
    # both channels informative
    y2 = np.stack([images[:16], second], axis=1)
    x2 = np.stack([rotate_images(y2[:, c], angles[:16], flips[:16]) for c in range(2)], axis=1)
    found2, flipped2, _, _ = register(torch.from_numpy(x2), torch.from_numpy(y2))
    assert _angle_error(found2.numpy(), angles[:16]).max() <= 2.0
    np.testing.assert_array_equal(flipped2.numpy(), flips[:16])


def test_brute_force_agrees_with_fourier(digits):
    images, angles, flips = digits
    x = torch.from_numpy(rotate_images(images[:6], angles[:6], flips[:6])[:, None])
    y = torch.from_numpy(images[:6, None])
    found, flipped, _, _ = register_brute_force(x, y, step_deg=2.0)
    assert _angle_error(found.numpy(), angles[:6]).max() <= 2.0
    np.testing.assert_array_equal(flipped.numpy(), flips[:6])


def test_gradient_flows_into_y_only_through_the_resampling():
    x = torch.rand(2, 1, 16, 16)
    y = torch.rand(2, 1, 16, 16, requires_grad=True)
    angles, flipped, aligned, mismatch = register(x, y)
    assert not angles.requires_grad and not flipped.requires_grad
    mismatch.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 1, 8, 10), "square"),
    (torch.rand(2, 8, 8), r"\(n, C, H, W\)"),
])
def test_errors_on_bad_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        register(bad, bad)
    with pytest.raises(ValueError, match=match):
        to_polar(bad)


def test_errors_on_mismatched_pairs_and_bad_steps():
    with pytest.raises(ValueError, match="same shape"):
        estimate_rotation(torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="step_deg"):
        register_brute_force(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), step_deg=0)
    with pytest.raises(ValueError, match="one angle per image"):
        rotate(torch.rand(2, 1, 8, 8), [1.0])
