"""Rotated handwritten digits and the rotation helper."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_disentangle.datasets import GroundTruthDataset, RotatedDigitsDataset, make_rotated_digits, rotate_images


@pytest.fixture(scope="module")
def digits16():
    return make_rotated_digits(200, resolution=16, n_angles=8, random_state=0)


def _blob(size=32, centre=(13.0, 19.0), sigma=3.0):
    r, c = np.mgrid[:size, :size]
    return np.exp(-((r - centre[0]) ** 2 + (c - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


# ----------------------------------------------------------------------------- rotate_images
def test_rotate_single_pixel_90_degrees_counter_clockwise():
    img = np.zeros((1, 5, 5), dtype=np.float32)
    img[0, 2, 4] = 1.0  # right of centre
    out = rotate_images(img, [90.0])
    assert out.shape == (1, 5, 5)
    assert out.dtype == np.float32
    expected = np.zeros((5, 5), dtype=np.float32)
    expected[0, 2] = 1.0  # counter-clockwise as displayed: right -> top
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_allclose(rotate_images(img, [-90.0])[0], np.rot90(img[0], k=-1), atol=1e-5)
    np.testing.assert_allclose(rotate_images(img, [180.0])[0], img[0, ::-1, ::-1], atol=1e-5)


def test_rotate_90_equals_rot90_for_any_image():
    rng = np.random.RandomState(0)
    imgs = rng.rand(3, 6, 6).astype(np.float32)
    out = rotate_images(imgs, [90.0, 90.0, 270.0])
    np.testing.assert_allclose(out[0], np.rot90(imgs[0]), atol=1e-5)
    np.testing.assert_allclose(out[1], np.rot90(imgs[1]), atol=1e-5)
    np.testing.assert_allclose(out[2], np.rot90(imgs[2], k=3), atol=1e-5)


def test_flip_mirrors_left_right():
    rng = np.random.RandomState(1)
    imgs = rng.rand(2, 7, 7).astype(np.float32)
    out = rotate_images(imgs, [0.0, 0.0], flip=[True, False])
    np.testing.assert_allclose(out[0], imgs[0][:, ::-1], atol=1e-5)
    np.testing.assert_allclose(out[1], imgs[1], atol=1e-5)


def test_flip_is_applied_before_rotation():
    img = np.zeros((1, 5, 5), dtype=np.float32)
    img[0, 1, 3] = 1.0
    out = rotate_images(img, [90.0], flip=[True])[0]
    np.testing.assert_allclose(out, np.rot90(img[0][:, ::-1]), atol=1e-5)
    # the other order gives a different image here
    assert not np.allclose(out, np.rot90(img[0])[:, ::-1], atol=1e-3)


def test_zero_and_360_degrees_are_identity():
    rng = np.random.RandomState(2)
    imgs = rng.rand(2, 8, 8).astype(np.float32)
    np.testing.assert_allclose(rotate_images(imgs, [0.0, 0.0]), imgs, atol=1e-6)
    np.testing.assert_allclose(rotate_images(imgs, [360.0, 720.0]), imgs, atol=1e-4)


def test_rotations_compose():
    img = _blob()[None]
    a, b = 25.0, 40.0
    twice = rotate_images(rotate_images(img, [a]), [b])
    once = rotate_images(img, [a + b])
    # bilinear interpolation blurs a little; the blob is smooth, so both agree closely
    assert np.abs(twice - once).max() < 0.05
    assert np.abs(once - img).max() > 0.5  # and the rotation really moved the blob
    # the blob's centre of mass turns by a + b about the image centre (y up)
    def angle(x):
        r, c = np.mgrid[: x.shape[-2], : x.shape[-1]]
        w = x[0] / x[0].sum()
        return np.degrees(np.arctan2(-((r * w).sum() - 15.5), (c * w).sum() - 15.5))
    np.testing.assert_allclose((angle(once) - angle(img)) % 360, a + b, atol=1.0)


def test_rotate_output_size_and_extent():
    img = np.ones((1, 8, 8), dtype=np.float32)
    out = rotate_images(img, [0.0], output_size=16)
    assert out.shape == (1, 16, 16)
    np.testing.assert_allclose(out[0, 2:-2, 2:-2], 1.0, atol=1e-6)
    # extent 0.5 shrinks the input to the central half of the field of view
    small = rotate_images(img, [0.0], output_size=16, extent=0.5)
    assert small[0, :3].sum() == 0 and small[0, -3:].sum() == 0
    np.testing.assert_allclose(small[0, 5:11, 5:11], 1.0, atol=1e-6)
    np.testing.assert_allclose(small.sum(), 0.25 * out.sum(), rtol=0.1)


def test_rotate_validation():
    with pytest.raises(ValueError, match=r"images must have shape \(n, H, W\)"):
        rotate_images(np.zeros((5, 5)), [0.0])
    with pytest.raises(ValueError, match=r"angles_deg must have shape \(2,\)"):
        rotate_images(np.zeros((2, 5, 5)), [0.0])


# ----------------------------------------------------------------------------- dataset
def test_shapes_and_factor_names(digits16):
    assert isinstance(digits16, RotatedDigitsDataset)
    assert isinstance(digits16, GroundTruthDataset)
    assert digits16.images.shape == (200, 16, 16)
    assert digits16.images.dtype == np.float32
    assert digits16.images.min() >= -1e-6 and digits16.images.max() <= 1 + 1e-6
    assert digits16.factors.shape == (200, 2)
    assert digits16.factors.dtype == np.int64
    assert digits16.factor_names == ("digit", "angle")
    assert digits16.factor_sizes == (10, 8)
    assert digits16.observation_shape == (16, 16)
    np.testing.assert_allclose(digits16.angles_deg, np.arange(8) * 45.0)
    assert digits16.instance.shape == (200,)
    assert digits16.factors[:, 1].max() < 8


def test_factors_match_source_digits(digits16):
    targets = load_digits().target
    np.testing.assert_array_equal(digits16.factors[:, 0], targets[digits16.instance])


def test_images_are_the_rotated_source_digits(digits16):
    src = load_digits().images / 16.0
    i = 5
    expected = rotate_images(src[digits16.instance[i]][None], [digits16.angles_deg[digits16.factors[i, 1]]],
                             output_size=16, extent=1 / np.sqrt(2))
    np.testing.assert_allclose(digits16.images[i], expected[0], atol=1e-6)


def test_default_uses_every_digit_once():
    data = make_rotated_digits(resolution=8, n_angles=4, random_state=0)
    assert data.images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(data.instance, np.arange(1797))
    np.testing.assert_array_equal(data.factors[:, 0], load_digits().target)


def test_flips_add_a_factor():
    data = make_rotated_digits(300, resolution=12, n_angles=4, flips=True, random_state=0)
    assert data.factor_names == ("digit", "angle", "flip")
    assert data.factor_sizes == (10, 4, 2)
    assert data.factors.shape == (300, 3)
    assert set(np.unique(data.factors[:, 2])) == {0, 1}
    assert data.images.shape == (300, 12, 12)


def test_max_angle():
    data = make_rotated_digits(10, resolution=8, n_angles=4, max_angle=90.0, random_state=0)
    np.testing.assert_allclose(data.angles_deg, [0.0, 22.5, 45.0, 67.5])


def test_determinism_under_random_state():
    a = make_rotated_digits(50, resolution=8, flips=True, random_state=3)
    b = make_rotated_digits(50, resolution=8, flips=True, random_state=3)
    c = make_rotated_digits(50, resolution=8, flips=True, random_state=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.factors, b.factors)
    assert not np.array_equal(a.factors, c.factors)
    f1, x1 = a.sample(10, random_state=0)
    f2, x2 = a.sample(10, random_state=0)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)


def test_sample_observations_render_requested_digit_class():
    # With one angle (0 degrees) the dataset holds every bundled digit once, unrotated:
    # a rendered observation of class d must be one of the class-d images and no other.
    data = make_rotated_digits(resolution=8, n_angles=1, random_state=0)
    flat = data.images.reshape(len(data.images), -1)
    rng = np.random.RandomState(0)
    factors = np.array([[d, 0] for d in range(10) for _ in range(3)])
    obs = data.sample_observations_from_factors(factors, random_state=rng)
    assert obs.shape == (30, 8, 8)
    for f, o in zip(factors, obs):
        dist = np.abs(flat - o.ravel()).max(axis=1)
        matches = np.flatnonzero(dist < 1e-6)
        assert len(matches) >= 1
        assert set(data.factors[matches, 0]) == {f[0]}


def test_sample_observations_rotate_and_flip_as_requested():
    data = make_rotated_digits(20, resolution=16, n_angles=4, flips=True, random_state=0)
    for digit in (1, 7):
        base, rot, flipped = data.sample_observations_from_factors(
            [[digit, 0, 0]], random_state=5)[0], data.sample_observations_from_factors(
            [[digit, 1, 0]], random_state=5)[0], data.sample_observations_from_factors(
            [[digit, 0, 1]], random_state=5)[0]
        # same seed -> same handwritten instance; angle class 1 = 90 degrees
        np.testing.assert_allclose(rot, np.rot90(base), atol=1e-5)
        np.testing.assert_allclose(flipped, base[:, ::-1], atol=1e-5)


def test_sample_observations_random_instance_varies():
    data = make_rotated_digits(20, resolution=8, n_angles=2, random_state=0)
    obs = data.sample_observations_from_factors([[4, 0]] * 20, random_state=0)
    assert len(np.unique(obs.reshape(20, -1), axis=0)) > 1


def test_sample_observations_validate_factors(digits16):
    with pytest.raises(ValueError, match="'digit' takes values 0..9"):
        digits16.sample_observations_from_factors([[10, 0]])
    with pytest.raises(ValueError, match="'angle' takes values 0..7"):
        digits16.sample_observations_from_factors([[0, 8]])
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        digits16.sample_observations_from_factors([[0, 0, 0]])


@pytest.mark.parametrize("kwargs, match", [
    ({"resolution": 4}, "resolution must be an int >= 8"),
    ({"resolution": 16.0}, "resolution must be an int >= 8"),
    ({"n_angles": 0}, "n_angles must be an int >= 1"),
    ({"n_angles": 2.5}, "n_angles must be an int >= 1"),
    ({"n_samples": -3}, "n_samples"),
    ({"n_samples": 2.0}, "n_samples"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_rotated_digits(**kwargs)
