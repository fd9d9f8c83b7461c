"""load_dsprites on small fake dSprites files written in tmp_path (nothing downloads)."""

import numpy as np
import pytest

from sklearn_disentangle.datasets import DSpritesDataset, FactorGridDataset, load_dsprites, make_dsprites_like

SIZES = (1, 3, 2, 3, 4, 4)  # color, shape, scale, orientation, posX, posY


def _explode():
    raise AssertionError("load_dsprites unpickled the metadata entry")


class _Trap:
    """Pickles fine; unpickling it calls _explode."""

    def __reduce__(self):
        return (_explode, ())


def _arrays(sizes=SIZES):
    sprites = make_dsprites_like(resolution=16, n_scales=sizes[2], n_orientations=sizes[3], n_positions=sizes[4])
    grid = sprites.factors  # (shape, scale, orientation, posX, posY), posY fastest
    imgs = sprites.images.astype(np.uint8)
    classes = np.concatenate([np.zeros((len(grid), 1), np.int64), grid], axis=1)
    values = np.concatenate([
        np.ones((len(grid), 1)),
        grid[:, :1] + 1.0,
        sprites.factor_values["scale"][grid[:, 1]][:, None],
        sprites.factor_values["orientation"][grid[:, 2]][:, None],
        sprites.factor_values["posX"][grid[:, 3]][:, None],
        sprites.factor_values["posY"][grid[:, 4]][:, None],
    ], axis=1)
    metadata = np.array([_Trap(), {"description": "fake"}], dtype=object)
    return {"imgs": imgs, "latents_classes": classes, "latents_values": values, "metadata": metadata}


def _write(tmp_path, name="dsprites.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.fixture
def fake_file(tmp_path):
    arrays = _arrays()
    return _write(tmp_path, **arrays), arrays


def test_load_fake_dsprites(fake_file):
    path, arrays = fake_file
    data = load_dsprites(path)
    assert isinstance(data, DSpritesDataset)
    assert isinstance(data, FactorGridDataset)
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == (3, 2, 3, 4, 4)
    assert data.n_samples == 288
    assert data.observation_shape == (16, 16)
    np.testing.assert_array_equal(data.latents_values, arrays["latents_values"])
    # images are held as stored: uint8, no float copy
    assert data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, arrays["imgs"])


def test_load_accepts_str_path(fake_file):
    path, _ = fake_file
    assert load_dsprites(str(path)).factor_sizes == (3, 2, 3, 4, 4)


def test_sample_observations_from_factors_returns_right_rows(fake_file):
    path, arrays = fake_file
    data = load_dsprites(path)
    factors = np.array([[0, 0, 0, 0, 0], [2, 1, 2, 3, 3], [1, 0, 2, 1, 3], [0, 1, 0, 2, 1]])
    obs = data.sample_observations_from_factors(factors)
    assert obs.dtype == np.float32
    assert obs.shape == (4, 16, 16)
    rows = [0, 287, np.ravel_multi_index((1, 0, 2, 1, 3), (3, 2, 3, 4, 4)),
            np.ravel_multi_index((0, 1, 0, 2, 1), (3, 2, 3, 4, 4))]
    np.testing.assert_array_equal(obs, arrays["imgs"][rows].astype(np.float32))
    # each returned row carries the requested factors in the file's own latents_classes
    np.testing.assert_array_equal(arrays["latents_classes"][rows, 1:], factors)


def test_sample_matches_the_generator_it_was_written_from(fake_file):
    path, _ = fake_file
    data = load_dsprites(path)
    source = make_dsprites_like(resolution=16, n_scales=2, n_orientations=3, n_positions=4)
    factors, obs = data.sample(30, random_state=0)
    np.testing.assert_array_equal(obs, source.sample_observations_from_factors(factors))
    f2, obs2 = data.sample(30, random_state=0)
    np.testing.assert_array_equal(factors, f2)
    np.testing.assert_array_equal(obs, obs2)


def test_loaded_dataset_validates_factors(fake_file):
    data = load_dsprites(fake_file[0])
    with pytest.raises(ValueError, match="'scale' takes values 0..1, got 2"):
        data.sample_observations_from_factors([[0, 2, 0, 0, 0]])


def test_metadata_never_unpickled(tmp_path):
    # The trap raises when unpickled; np.load(allow_pickle=True) on it would fail.
    path = _write(tmp_path, **_arrays())
    with np.load(path, allow_pickle=True) as npz, pytest.raises(AssertionError, match="unpickled"):
        npz["metadata"]
    data = load_dsprites(path)
    assert data.n_samples == 288


def test_file_without_metadata_loads(tmp_path):
    arrays = _arrays()
    del arrays["metadata"]
    path = _write(tmp_path, **arrays)
    assert load_dsprites(path).factor_sizes == (3, 2, 3, 4, 4)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "dsprites.npz"
    with pytest.raises(FileNotFoundError) as excinfo:
        load_dsprites(path)
    msg = str(excinfo.value)
    assert str(path) in msg
    assert "never downloads" in msg
    assert "make_dsprites_like" in msg


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "dsprites.npz"
    path.write_bytes(b"this is not an npz archive")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_dsprites(path)
    npy = tmp_path / "imgs.npy"
    np.save(npy, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_dsprites(npy)


def test_missing_keys_are_listed(tmp_path):
    arrays = _arrays()
    del arrays["latents_values"], arrays["latents_classes"]
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError) as excinfo:
        load_dsprites(path)
    msg = str(excinfo.value)
    assert "missing arrays ['latents_classes', 'latents_values']" in msg
    assert "imgs" in msg and "metadata" in msg  # what was found


def test_shuffled_rows_rejected(tmp_path):
    arrays = _arrays()
    perm = np.random.RandomState(0).permutation(len(arrays["imgs"]))
    for key in ("imgs", "latents_classes", "latents_values"):
        arrays[key] = arrays[key][perm]
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match="not in dSprites' order"):
        load_dsprites(path)


def test_posx_fastest_order_rejected(tmp_path):
    # a complete grid whose last two factors are swapped (posX fastest) is a wrong order too
    arrays = _arrays()
    classes = arrays["latents_classes"].copy()
    classes[:, [4, 5]] = classes[:, [5, 4]]
    arrays["latents_classes"] = classes
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match="order"):
        load_dsprites(path)


def test_incomplete_grid_rejected(tmp_path):
    arrays = _arrays()
    for key in ("imgs", "latents_classes", "latents_values"):
        arrays[key] = arrays[key][:-1]
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match="complete dSprites grid"):
        load_dsprites(path)


def test_non_constant_color_rejected(tmp_path):
    arrays = _arrays()
    arrays["latents_classes"] = arrays["latents_classes"].copy()
    arrays["latents_classes"][-1, 0] = 1
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match="complete dSprites grid"):
        load_dsprites(path)


@pytest.mark.parametrize("change", ["imgs_2d", "classes_5_columns", "length_mismatch"])
def test_inconsistent_shapes_rejected(tmp_path, change):
    arrays = _arrays()
    if change == "imgs_2d":
        arrays["imgs"] = arrays["imgs"].reshape(len(arrays["imgs"]), -1)
    elif change == "classes_5_columns":
        arrays["latents_classes"] = arrays["latents_classes"][:, 1:]
    else:
        arrays["imgs"] = arrays["imgs"][:-1]
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match="expected imgs"):
        load_dsprites(path)
