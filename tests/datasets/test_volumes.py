"""Synthetic cardiac volumes: factors drive the images, and the HDF5 layout round-trips."""

import numpy as np

from sklearn_disentangle.datasets.volumes import make_cardiac_volumes
from sklearn_disentangle.io import HDF5VolumeReader
from sklearn_disentangle.io.hdf5 import list_hdf5_volumes, read_hdf5_volume


def test_shapes_factors_and_determinism():
    data = make_cardiac_volumes(4, n_frames=6, n_slices=5, size=24, random_state=0)
    assert data.volumes.shape == (4, 1, 6, 5, 24, 24) and data.volumes.dtype == np.float32
    assert list(data.factors.columns) == list(data.factor_names)
    assert len(data.hdf5_keys) == 4 and data.path is None
    again = make_cardiac_volumes(4, n_frames=6, n_slices=5, size=24, random_state=0)
    np.testing.assert_array_equal(again.volumes, data.volumes)


def test_wall_area_is_conserved_and_contraction_follows_phase():
    data = make_cardiac_volumes(5, n_frames=12, random_state=1)
    r, w = data.endocardial_radius, data.wall
    area = (r + w) ** 2 - r**2
    np.testing.assert_allclose(area, area[:, :1].repeat(12, 1))
    f = data.factors
    np.testing.assert_allclose(r.max(1), f.radius, rtol=0.05)  # end-diastole
    np.testing.assert_allclose(r.min(1) / r.max(1), 1 - f.contraction, atol=0.05)  # end-systole
    assert (w.max(1) > f.wall_thickness * 0.999).all()  # the wall thickens as it contracts


def test_images_show_blood_pool_and_wall():
    data = make_cardiac_volumes(2, n_frames=4, n_slices=8, size=32, noise=0.0, random_state=2)
    mid = data.volumes[:, 0, :, 4]  # middle slice
    centre = mid[..., 15:17, 15:17].mean(axis=(-1, -2))
    corner = mid[..., :3, :3].mean(axis=(-1, -2))
    np.testing.assert_allclose(centre, 0.6, atol=0.05)
    np.testing.assert_allclose(corner, 0.1, atol=0.02)
    assert mid.max() > 0.75  # the myocardium (1.0 for a thick wall) is brighter than the pool
    # the blood-pool area follows the endocardial radius over time
    pool = (mid > 0.5).sum(axis=(-1, -2))
    for i in range(2):
        assert np.corrcoef(pool[i], data.endocardial_radius[i] ** 2)[0, 1] > 0.9


def test_written_hdf5_reads_back(tmp_path):
    path = tmp_path / "data.h5"
    data = make_cardiac_volumes(3, n_frames=4, n_slices=4, size=16, path=path, random_state=3)
    assert data.path == str(path)
    assert list_hdf5_volumes(path, ["LAX_4Ch_transverse"]) == sorted(data.hdf5_keys)
    raw = read_hdf5_volume(path, data.hdf5_keys[1])
    np.testing.assert_array_equal(raw, data.volumes[1])
    scaled = HDF5VolumeReader(normalisation="minmaxvol").transform(path)
    assert scaled.shape == (3, 1, 4, 4, 16, 16)
    lo, hi = np.abs(data.volumes[0]).min(), np.abs(data.volumes[0]).max()
    np.testing.assert_allclose(scaled[0], (data.volumes[0] - lo) / (hi - lo), atol=1e-5)


def test_factor_ranges():
    f = make_cardiac_volumes(50, n_frames=2, n_slices=2, size=16, random_state=4).factors
    assert f.radius.between(0.18 * 16, 0.26 * 16).all() and f.contraction.between(0.15, 0.45).all()
    assert f.phase.between(0, 2 * np.pi).all()
    assert f.wall_thickness.between(0.06 * 16, 0.11 * 16).all()
