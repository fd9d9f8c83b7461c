"""dSprites-like sprites rendered in code: DeepMind's grid, binary images, geometry."""

import numpy as np
import pytest

from sklearn_disentangle.datasets import FactorGridDataset, GroundTruthDataset, SpritesDataset, make_dsprites_like


def _centre_of_mass(img):
    rows, cols = np.nonzero(img)
    return rows.mean(), cols.mean()


@pytest.fixture(scope="module")
def data16():
    return make_dsprites_like(resolution=16)


def test_factor_grid_equals_deepminds(data16):
    assert isinstance(data16, SpritesDataset)
    assert isinstance(data16, FactorGridDataset)
    assert isinstance(data16, GroundTruthDataset)
    assert data16.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data16.factor_sizes == (3, 6, 40, 32, 32)
    assert data16.n_factors == 5
    assert data16.n_samples == 737280 == len(data16)
    assert data16.observation_shape == (16, 16)
    assert make_dsprites_like().observation_shape == (64, 64)


def test_factor_values(data16):
    v = data16.factor_values
    assert list(v["shape"]) == ["square", "ellipse", "heart"]
    np.testing.assert_allclose(v["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert len(v["orientation"]) == 40
    assert v["orientation"][0] == 0.0
    np.testing.assert_allclose(v["orientation"][-1], 2 * np.pi)
    np.testing.assert_allclose(v["posX"], np.linspace(0, 1, 32))
    np.testing.assert_allclose(v["posY"], np.linspace(0, 1, 32))


def test_sample_images_are_binary_float32(data16):
    factors, images = data16.sample(64, random_state=0)
    assert factors.shape == (64, 5)
    assert factors.dtype == np.int64
    assert images.shape == (64, 16, 16)
    assert images.dtype == np.float32
    assert set(np.unique(images)) <= {0.0, 1.0}
    # every sprite is visible and much smaller than the canvas
    area = images.sum(axis=(1, 2))
    assert area.min() >= 1
    assert area.max() < 0.25 * 16 * 16


def test_sample_deterministic_under_random_state(data16):
    f1, x1 = data16.sample(16, random_state=42)
    f2, x2 = data16.sample(16, random_state=42)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    f3, _ = data16.sample(16, random_state=43)
    assert not np.array_equal(f1, f3)


def test_random_state_instance_advanced_sequentially(data16):
    rng = np.random.RandomState(0)
    f1, x1 = data16.sample(8, random_state=rng)
    f2, x2 = data16.sample(8, random_state=rng)
    assert not np.array_equal(f1, f2)
    ref = np.random.RandomState(0)
    np.testing.assert_array_equal(f1, data16.sample_factors(8, random_state=ref))
    np.testing.assert_array_equal(f2, data16.sample_factors(8, random_state=ref))
    np.testing.assert_array_equal(x2, data16.sample_observations_from_factors(f2))


def test_rendering_is_a_function_of_the_factors(data16):
    factors = [[2, 3, 7, 5, 9], [0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(
        data16.sample_observations_from_factors(factors, random_state=0),
        data16.sample_observations_from_factors(factors, random_state=1),
    )


def test_index_round_trip_on_dsprites_grid(data16):
    factors = data16.sample_factors(200, random_state=0)
    index = data16.index_from_factors(factors)
    np.testing.assert_array_equal(index, np.ravel_multi_index(tuple(factors.T), (3, 6, 40, 32, 32)))
    np.testing.assert_array_equal(data16.factors_from_index(index), factors)
    assert int(data16.index_from_factors([[0, 0, 0, 0, 1]])[0]) == 1
    assert int(data16.index_from_factors([[0, 0, 0, 1, 0]])[0]) == 32
    assert int(data16.index_from_factors([[2, 5, 39, 31, 31]])[0]) == 737279


def test_sprite_moves_right_with_posx_and_down_with_posy():
    data = make_dsprites_like(resolution=32)
    for shape in range(3):
        cols = [_centre_of_mass(data.sample_observations_from_factors([[shape, 2, 0, x, 16]])[0])[1]
                for x in (0, 8, 16, 24, 31)]
        rows = [_centre_of_mass(data.sample_observations_from_factors([[shape, 2, 0, 16, y]])[0])[0]
                for y in (0, 8, 16, 24, 31)]
        assert np.all(np.diff(cols) > 0), (shape, cols)
        assert np.all(np.diff(rows) > 0), (shape, rows)
        # posX does not move the sprite vertically, posY not horizontally
        row_at_x = [_centre_of_mass(data.sample_observations_from_factors([[shape, 2, 0, x, 16]])[0])[0]
                    for x in (0, 31)]
        assert abs(row_at_x[0] - row_at_x[1]) < 0.5


def test_sprite_area_grows_with_scale():
    data = make_dsprites_like(resolution=64)
    for shape in range(3):
        factors = [[shape, s, 0, 16, 16] for s in range(6)]
        area = data.sample_observations_from_factors(factors).sum(axis=(1, 2))
        assert np.all(np.diff(area) > 0), (shape, area)
        # area ~ scale**2: the largest is about 4x the smallest
        assert 3.0 < area[-1] / area[0] < 5.0


def test_three_shapes_differ(data16):
    images = make_dsprites_like(resolution=32).sample_observations_from_factors(
        [[s, 5, 3, 16, 16] for s in range(3)])
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(images[a] - images[b]).sum() >= 5, (a, b)
    # the square (scale 1) covers more pixels than the ellipse of aspect 2
    area = images.sum(axis=(1, 2))
    assert area[0] > area[1]


def test_orientation_zero_and_two_pi_give_same_image():
    data = make_dsprites_like(resolution=32)
    for shape in range(3):
        first, last = data.sample_observations_from_factors([[shape, 4, 0, 10, 20], [shape, 4, 39, 10, 20]])
        np.testing.assert_array_equal(first, last)


def test_orientation_rotates_the_ellipse():
    data = make_dsprites_like(resolution=32, n_orientations=4)
    # orientations 0, 2pi/3, 4pi/3, 2pi: a quarter-ish turn changes the ellipse
    imgs = data.sample_observations_from_factors([[1, 5, k, 16, 16] for k in range(4)])
    assert np.abs(imgs[0] - imgs[1]).sum() > 10
    np.testing.assert_array_equal(imgs[0], imgs[3])
    # a 90 degree turn of the centred ellipse is (almost) a transpose of the image
    data90 = make_dsprites_like(resolution=32, n_orientations=5)  # 0, pi/2, pi, 3pi/2, 2pi
    e0, e90 = data90.sample_observations_from_factors([[1, 5, 0, 16, 16], [1, 5, 1, 16, 16]])
    rows0, cols0 = np.nonzero(e0)
    rows90, cols90 = np.nonzero(e90)
    # wide ellipse at 0 (aspect 2: wider than tall), tall after a quarter turn
    assert np.ptp(cols0) > 1.5 * np.ptp(rows0)
    assert np.ptp(rows90) > 1.5 * np.ptp(cols90)


def test_largest_sprite_stays_inside_canvas():
    # The continuous sprite keeps a margin of ~0.01 of the canvas at any orientation; at
    # 64 px the border pixels' centres (0.0078 from the edge) lie in that margin.
    data = make_dsprites_like(resolution=64)
    corners = [(x, y) for x in (0, 31) for y in (0, 31)]
    factors = [[s, 5, o, x, y] for s in range(3) for o in range(0, 40, 3) for x, y in corners]
    images = data.sample_observations_from_factors(factors)
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border == 0
    assert images.sum(axis=(1, 2)).min() > 0


def test_reduced_grid_images_and_factors_consistent():
    data = make_dsprites_like(resolution=16, n_orientations=4, n_positions=4)
    assert data.factor_sizes == (3, 6, 4, 4, 4)
    images, factors = data.images, data.factors
    assert images.shape == (1152, 16, 16)
    assert images.dtype == np.float32
    assert factors.shape == (1152, 5)
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(np.arange(1152), (3, 6, 4, 4, 4)), axis=1))
    picked = data.sample_factors(40, random_state=0)
    np.testing.assert_array_equal(images[data.index_from_factors(picked)],
                                  data.sample_observations_from_factors(picked))
    np.testing.assert_array_equal(data.sample_observations_from_factors(factors[::37]), images[::37])
    # orientations 0 and 2 pi are both in the grid (as in dSprites) and render alike
    first = images[factors[:, 2] == 0]
    last = images[factors[:, 2] == 3]
    np.testing.assert_array_equal(first, last)
    # moving along posX or posY always changes the image
    for k in (3, 4):
        for v in range(3):
            a = images[factors[:, k] == v]
            b = images[factors[:, k] == v + 1]
            assert np.all(np.abs(a - b).sum(axis=(1, 2)) > 0)


def test_render_in_chunks_equals_render_at_once(monkeypatch):
    from sklearn_disentangle.datasets import sprites

    data = make_dsprites_like(resolution=16, n_orientations=3, n_positions=3)
    whole = data.images
    monkeypatch.setattr(sprites, "_RENDER_CHUNK", 7)
    np.testing.assert_array_equal(data.images, whole)


def test_images_refuses_full_64px_grid():
    with pytest.raises(ValueError, match=r"sample\(\)"):
        make_dsprites_like(resolution=64).images


def test_check_factors_errors_through_sprites(data16):
    with pytest.raises(ValueError, match=r"shape \(n_samples, 5\)"):
        data16.sample_observations_from_factors([[0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"'orientation' takes values 0..39, got 40"):
        data16.sample_observations_from_factors([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match=r"'posY' takes values 0..31, got 32"):
        data16.index_from_factors([[0, 0, 0, 0, 32]])
    with pytest.raises(TypeError):
        data16.sample_observations_from_factors([[0, 0, 0.5, 0, 0]])


@pytest.mark.parametrize("kwargs, match", [
    ({"resolution": 4}, "resolution must be an int >= 8"),
    ({"resolution": 16.0}, "resolution must be an int >= 8"),
    ({"resolution": True}, "resolution"),
    ({"n_scales": 0}, "n_scales must be an int >= 1"),
    ({"n_orientations": 0}, "n_orientations must be an int >= 1"),
    ({"n_positions": 2.0}, "n_positions must be an int >= 1"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dsprites_like(**kwargs)


def test_n_samples_validation(data16):
    with pytest.raises(ValueError, match="n_samples"):
        data16.sample(-1)
    with pytest.raises(ValueError, match="n_samples"):
        data16.sample(3.0)
    factors, images = data16.sample(0, random_state=0)
    assert factors.shape == (0, 5)
    assert images.shape == (0, 16, 16)
