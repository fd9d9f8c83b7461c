"""Principal-axis prealignment baseline."""

import numpy as np
import pytest

from sklearn_disentangle.datasets import make_rotated_digits, rotate_images
from sklearn_disentangle.o2vae.prealignment import PrincipalAxisAligner, principal_axis_angles


def _ellipse(size=32, a=10.0, b=4.0):
    r, c = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
    return ((c / a) ** 2 + (r / b) ** 2 <= 1).astype(np.float32)


@pytest.mark.parametrize("angle", [0.0, 30.0, -60.0, 89.0])
def test_principal_axis_angle_of_a_rotated_ellipse(angle):
    img = rotate_images(_ellipse()[None], [angle])
    found = float(principal_axis_angles(img)[0])
    assert abs((found - angle + 90) % 180 - 90) < 2.0


def test_rotated_copies_of_a_shape_align_to_the_same_image():
    # an asymmetric shape: an ellipse with a blob at one end
    base = _ellipse()
    base[14:18, 22:26] = 1.0
    angles = np.array([0.0, 40.0, 100.0, 200.0, 290.0])
    flips = np.array([False, True, False, True, False])
    copies = rotate_images(np.repeat(base[None], 5, axis=0), angles, flips)
    aligner = PrincipalAxisAligner().fit(copies)
    out = aligner.transform(copies)
    spread_before = np.abs(copies - copies[:1]).mean()
    spread_after = np.abs(out - out[:1]).mean()
    assert spread_after < 0.25 * spread_before
    assert aligner.n_iter_ >= 1 and aligner.mean_image_.shape == (1, 32, 32)


def test_multichannel_and_fit_transform_shapes():
    X = make_rotated_digits(12, resolution=16, random_state=0).images
    X2 = np.stack([X, X ** 2], axis=1)
    out = PrincipalAxisAligner(align_channel=1).fit_transform(X2)
    assert out.shape == X2.shape and out.dtype == np.float32


def test_errors():
    with pytest.raises(ValueError, match="square"):
        PrincipalAxisAligner().fit(np.zeros((2, 8, 6)))
    with pytest.raises(ValueError, match="align_channel"):
        PrincipalAxisAligner(align_channel=2).fit(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="n_iter"):
        PrincipalAxisAligner(n_iter=-1).fit(np.zeros((2, 8, 8)))
    fitted = PrincipalAxisAligner().fit(np.random.rand(3, 8, 8))
    with pytest.raises(ValueError, match="fitted on"):
        fitted.transform(np.random.rand(3, 10, 10))
