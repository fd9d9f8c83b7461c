"""OpusDSD analysis: clusters, maps, centre volumes, per-cluster STAR files read back, trajectories."""

import json
import os

import numpy as np
import pytest

from sklearn_disentangle import OpusDSD
from sklearn_disentangle.datasets import make_cryoem_particles
from sklearn_disentangle.io import ParticleStack, StarReader, read_mrc, read_star
from sklearn_disentangle.opus_dsd import (
    cluster_latents, latent_trajectory, pc_trajectory, write_cluster_stars, write_volume_series,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    stack, truth = make_cryoem_particles(48, 16, n_conformations=2, snr=1.0, random_state=0)
    folder = tmp_path_factory.mktemp("data")
    stack.to_star(folder / "run_data.star")
    on_disk = StarReader().transform([str(folder / "run_data.star")])
    est = OpusDSD(**OpusDSD._tiny_params()).fit(on_disk)
    return est, on_disk, folder


def test_analyze_writes_every_output(trained, tmp_path):
    est, stack, folder = trained
    out = tmp_path / "analyze"
    summary = est.analyze(stack, n_clusters=3, output_dir=out, umap=False, n_pcs=2, n_points=4)
    assert summary.labels.shape == (48,) and set(summary.labels) == {0, 1, 2}
    assert summary.centers.shape == (3, 2) and summary.pca.shape == (48, 2) and summary.umap is None
    np.testing.assert_array_equal(np.load(out / "z.npy"), est.transform(stack))
    kdir = out / "kmeans3"
    np.testing.assert_array_equal(np.load(kdir / "labels.npy"), summary.labels)
    np.testing.assert_allclose(np.loadtxt(kdir / "centers.txt"), summary.centers, atol=1e-5)
    assert np.loadtxt(kdir / "centers_ind.txt", dtype=int).tolist() == summary.center_indices.tolist()
    # centres are on data: the code of the listed particle
    np.testing.assert_allclose(summary.centers, summary.z[summary.center_indices])
    # centre volumes: valid MRC files with the model's voxel size, equal to inverse_transform
    for i in range(3):
        data, info = read_mrc(kdir / f"reference_{i:03d}.mrc")
        assert data.shape == (16, 16, 16) and info.pixel_size == pytest.approx(est.volume_pixel_size_)
        np.testing.assert_allclose(data, est.inverse_transform(summary.centers[i:i + 1])[0], rtol=1e-5, atol=1e-6)
    # PNG maps by cluster, view and tilt
    for name in ("pca.png", "pca_pose.png", "pca_tilt.png"):
        with open(out / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # volume series along the PCs and the trajectory between the first and last centres
    assert len(summary.files["pc"]) == 2 * 4 and len(summary.files["trajectory"]) == 4
    np.testing.assert_allclose(np.loadtxt(out / "trajectory" / "z.txt")[[0, -1]], summary.centers[[0, -1]], atol=1e-5)
    with open(out / "summary.json") as fh:
        info = json.load(fh)
    assert info["cluster_sizes"] == np.bincount(summary.labels).tolist()
    assert not [f for _, _, files in os.walk(out) for f in files if "tmp" in f]


def test_cluster_star_files_hold_the_original_rows(trained, tmp_path):
    est, stack, folder = trained
    summary = est.analyze(stack, n_clusters=2, output_dir=tmp_path, umap=False, n_pcs=0, write_volumes=False)
    original = read_star(folder / "run_data.star")
    total = 0
    for c in range(2):
        path = tmp_path / "kmeans2" / f"cluster{c}.star"
        rows = read_star(path)
        members = np.flatnonzero(summary.labels == c)
        assert len(rows) == len(members)
        assert rows["rlnImageName"].tolist() == original["rlnImageName"].iloc[members].tolist()
        for col in ("rlnAngleRot", "rlnAngleTilt", "rlnDefocusU", "rlnOriginXAngst"):
            np.testing.assert_allclose(rows[col].to_numpy(float), original[col].iloc[members].to_numpy(float),
                                       atol=1e-5)
        # the project's reader loads the cluster as particles (paths resolve against the original folder)
        back = StarReader(datadir=str(folder)).transform([str(path)])
        np.testing.assert_allclose(back.get_images(), stack.get_images(members))
        np.testing.assert_allclose(back.rotations, stack.rotations[members], atol=1e-5)
        total += len(rows)
    assert total == 48


def test_cluster_stars_for_in_memory_particles(tmp_path):
    stack, _ = make_cryoem_particles(6, 16, random_state=0)
    paths = write_cluster_stars(stack, np.array([0, 1, 0, 2, 2, 2]), tmp_path)
    assert sorted(paths) == [0, 1, 2]
    back = ParticleStack.from_star(paths[2])
    np.testing.assert_allclose(back.get_images(), stack.get_images([3, 4, 5]), atol=1e-6)
    with pytest.raises(ValueError, match="non-negative integers"):
        write_cluster_stars(stack, np.array([0, 1, 0, 2, 2, -1]), tmp_path)
    with pytest.raises(ValueError, match="shape"):
        write_cluster_stars(stack, [0, 1], tmp_path)


def test_cluster_latents_recovers_blobs_and_orders_centres():
    rng = np.random.RandomState(0)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [1.0, 0.0], [11.0, 0.0]])
    truth = np.repeat(np.arange(4), 30)
    Z = means[truth] + rng.randn(120, 2) * 0.1
    res = cluster_latents(Z, 4, random_state=0)
    # one cluster per blob
    assert all(len(set(res.labels[truth == k])) == 1 for k in range(4))
    # dendrogram order keeps the two near pairs adjacent
    xs = res.centers[:, 0]
    assert abs(xs[0] - xs[1]) < 2 and abs(xs[2] - xs[3]) < 2
    for k in range(4):
        np.testing.assert_allclose(res.centers[k], Z[res.center_indices[k]])
        assert (res.labels[res.center_indices[k]]) == k
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_latents(Z[:3], 4)
    with pytest.raises(ValueError, match="NaN"):
        cluster_latents(np.full((5, 2), np.nan), 2)


def test_trajectories():
    Z = np.c_[np.linspace(-1, 1, 101), np.linspace(-1, 1, 101) * 0.1]
    pts = pc_trajectory(Z, 0, 5)
    assert pts.shape == (5, 2)
    np.testing.assert_allclose(np.abs(pts[[0, -1], 0]), 0.9, atol=1e-6)
    np.testing.assert_allclose(latent_trajectory([0, 0], [2, 4], 3), [[0, 0], [1, 2], [2, 4]])
    with pytest.raises(ValueError, match="same length"):
        latent_trajectory([0], [1, 2])
    with pytest.raises(ValueError, match="component"):
        pc_trajectory(Z, 5)


def test_write_volume_series_checks_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, D, D, D\)"):
        write_volume_series(np.zeros((8, 8, 8)), tmp_path, 1.0)


def test_analyze_needs_output_dir(trained):
    est, stack, _ = trained
    with pytest.raises(ValueError, match="output_dir"):
        est.analyze(stack, n_clusters=2)


def test_analyze_with_umap(trained, tmp_path):
    """UMAP map (umap-learn, imported lazily) on 48 rows."""
    est, stack, _ = trained
    summary = est.analyze(stack, n_clusters=2, output_dir=tmp_path, umap=True, n_pcs=0, write_volumes=False,
                          umap_kwargs={"n_neighbors": 10})
    assert summary.umap.shape == (48, 2) and np.isfinite(summary.umap).all()
    np.testing.assert_allclose(np.load(tmp_path / "umap.npy"), summary.umap)
    for name in ("umap.png", "umap_pose.png"):
        assert os.path.getsize(tmp_path / name) > 1000
