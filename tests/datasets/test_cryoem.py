"""Simulated cryo-EM particles and subtomograms: ground truth is consistent and round-trips to disk."""

import numpy as np
import pytest
import torch

from sklearn_disentangle.cryoem.ctf import apply_ctf, compute_ctf
from sklearn_disentangle.cryoem.fourier import fftn_centered
from sklearn_disentangle.cryoem.projection import project_real, rotate_volume, shift_images
from sklearn_disentangle.datasets.cryoem import (
    make_cryoem_particles, make_subtomograms, molecule_blobs, render_volume,
)
from sklearn_disentangle.io import ParticleStack, read_star


def test_shapes_labels_and_determinism():
    stack, truth = make_cryoem_particles(40, 16, n_conformations=3, random_state=0)
    assert stack.shape == (40, 16, 16) and stack.pixel_size == 4.0
    assert set(truth.labels) == {0, 1, 2}
    np.testing.assert_array_equal(stack.labels, truth.labels)
    np.testing.assert_allclose(truth.conformation, np.array([0.0, 0.5, 1.0])[truth.labels])
    again, _ = make_cryoem_particles(40, 16, n_conformations=3, random_state=0)
    np.testing.assert_array_equal(again.get_images(), stack.get_images())
    assert truth.volumes.shape == (3, 16, 16, 16)
    # conformations really differ
    assert np.abs(truth.volumes[0] - truth.volumes[2]).max() > 0.5


@pytest.mark.parametrize("d, with_ctf, tol", [(32, False, 0.05), (64, True, 0.04)])
def test_noise_free_images_are_projections_of_the_true_volumes(d, with_ctf, tol):
    """Analytic rendering == grid_sample projector on the rendered volume, then -origin shift and CTF.

    The tolerance is the projector's trilinear interpolation error (smaller for wider blobs).
    """
    stack, truth = make_cryoem_particles(6, d, n_conformations=2, snr=None, ctf=with_ctf, random_state=1)
    vols = torch.as_tensor(truth.volumes[truth.labels], dtype=torch.float64)
    proj = project_real(vols, torch.as_tensor(truth.rotations))
    raw = shift_images(proj, -torch.as_tensor(truth.shifts_px))
    expected = raw.numpy()
    if with_ctf:
        c = stack.ctf
        ctf = compute_ctf(d, 4.0, c.defocus_u.to_numpy(), c.defocus_v.to_numpy(), c.defocus_angle.to_numpy(),
                          dtype=torch.float64)
        expected = apply_ctf(raw, ctf).numpy()
    else:
        assert stack.ctf is None
    images = stack.get_images()
    err = np.linalg.norm(images - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))
    assert err.max() < tol
    np.testing.assert_allclose(stack.shifts, truth.shifts_px * 4.0)


def test_snr_sets_noise_level():
    stack, truth = make_cryoem_particles(64, 16, snr=0.25, random_state=2)
    noise = stack.get_images() - truth.clean_images
    assert noise.std() == pytest.approx(truth.noise_sigma, rel=0.05)
    assert truth.clean_images.var(axis=(1, 2)).mean() / noise.var() == pytest.approx(0.25, rel=0.1)


def test_continuous_motion():
    stack, truth = make_cryoem_particles(50, 16, n_conformations=5, motion="continuous", random_state=3)
    assert truth.labels is None and truth.volumes.shape[0] == 5
    assert 0 <= truth.conformation.min() and truth.conformation.max() <= 1
    assert len(np.unique(truth.conformation)) == 50
    np.testing.assert_array_equal(stack.labels, np.abs(truth.conformation[:, None] - np.linspace(0, 1, 5)).argmin(1))
    with pytest.raises(ValueError, match="motion"):
        make_cryoem_particles(5, 16, motion="jiggle")


def test_written_mrcs_and_star_read_back_identically(tmp_path):
    stack, truth = make_cryoem_particles(24, 16, random_state=4)
    stack.to_star(tmp_path / "particles.star")
    assert (tmp_path / "particles.mrcs").exists()
    back = ParticleStack.from_star(tmp_path / "particles.star", label_column="rlnClassNumber")
    np.testing.assert_array_equal(back.get_images(), stack.get_images())
    np.testing.assert_allclose(back.rotations, stack.rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts, stack.shifts, atol=1e-5)
    np.testing.assert_array_equal(back.labels, truth.labels)
    np.testing.assert_allclose(back.ctf.to_numpy(), stack.ctf.to_numpy(), atol=1e-5)
    assert back.pixel_size == 4.0
    table = read_star(tmp_path / "particles.star")
    assert table.attrs["relion_layout"] == "3.1" and (table["rlnImageSize"] == 16).all()
    # per-conformation subsets (what a per-cluster refinement needs)
    for k in range(3):
        back[back.labels == k].to_star(tmp_path / f"class{k}.star")
        sub = ParticleStack.from_star(tmp_path / f"class{k}.star", label_column="rlnClassNumber")
        assert (sub.labels == k).all() and len(sub) == (truth.labels == k).sum()


def test_odd_box_and_no_ctf():
    stack, truth = make_cryoem_particles(5, 17, ctf=False, snr=None, max_shift=0.0, random_state=5)
    assert stack.ctf is None and stack.shape == (5, 17, 17)
    total = truth.volumes[truth.labels].sum(axis=(1, 2, 3))
    np.testing.assert_allclose(stack.get_images().sum(axis=(1, 2)), total, rtol=1e-3)  # projection keeps mass


def test_subtomograms_are_rotated_shifted_templates():
    # 48 voxels: blobs about 2.5 voxels wide, so the trilinear reference rotation is accurate
    vols, truth = make_subtomograms(4, 48, n_conformations=2, snr=None, max_shift=0.0, random_state=0)
    assert vols.shape == (4, 48, 48, 48) and truth.templates.shape == (2, 48, 48, 48)
    rotated = rotate_volume(torch.as_tensor(truth.templates[truth.labels], dtype=torch.float64),
                            torch.as_tensor(truth.rotations)).numpy()
    err = np.sqrt(((vols - rotated) ** 2).sum((1, 2, 3)) / (vols**2).sum((1, 2, 3)))
    assert err.max() < 0.06


def test_missing_wedge_removes_fourier_components():
    vols, truth = make_subtomograms(3, 16, snr=1.0, missing_wedge=45, random_state=1)
    spec = fftn_centered(torch.as_tensor(vols, dtype=torch.float64)).abs().numpy()
    assert spec[:, ~truth.wedge_mask].max() < 1e-6 * spec.max()  # zero up to float32 rounding
    assert spec[:, truth.wedge_mask].max() > 1.0
    assert 0.3 < truth.wedge_mask.mean() < 0.7  # a +-45 degree wedge keeps about half of k-space


def test_molecule_geometry_scales_with_box():
    c16, s16, _ = molecule_blobs(0.3, 16)
    c32, s32, _ = molecule_blobs(0.3, 32)
    np.testing.assert_allclose(c32, 2 * c16)
    np.testing.assert_allclose(s32, 2 * s16)
    vol = render_volume(c16[0], s16, np.ones(8), 16)
    assert vol.shape == (16, 16, 16) and vol.max() > 0.9


def test_ground_truth_dataset_protocol():
    from sklearn_disentangle.datasets._base import GroundTruthDataset
    from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset

    data = CryoEMConformationDataset(box_size=16, n_conformations=3, n_views=5, random_state=0)
    assert isinstance(data, GroundTruthDataset) and data.factor_sizes == (3, 5)
    factors = np.array([[0, 1], [2, 1], [0, 1], [0, 4]])
    obs = data.sample_observations_from_factors(factors)
    assert obs.shape == (4, 16, 16) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0], obs[2])  # same factors, same noise-free image
    assert np.abs(obs[0] - obs[1]).max() > 0.1 and np.abs(obs[0] - obs[3]).max() > 0.1
    # the image is the projection of the true volume under the view's pose
    _, truth = make_cryoem_particles(1, 16, n_conformations=3, random_state=0)
    proj = project_real(torch.as_tensor(truth.volumes[2], dtype=torch.float64),
                        torch.as_tensor(data.views[[1]]))[0].numpy()
    # 16 px: blobs under a voxel wide, so the trilinear projector is only ~12 % accurate here
    assert np.linalg.norm(obs[1] - proj) / np.linalg.norm(proj) < 0.2
    other = project_real(torch.as_tensor(truth.volumes[2], dtype=torch.float64),
                         torch.as_tensor(data.views[[0]]))[0].numpy()
    assert np.linalg.norm(obs[1] - other) / np.linalg.norm(other) > 0.5
    with pytest.raises(ValueError):
        data.sample_observations_from_factors([[3, 0]])
    noisy = CryoEMConformationDataset(box_size=16, n_views=5, snr=1.0).sample_observations_from_factors(
        factors, random_state=0)
    assert not np.allclose(noisy[0], noisy[2])


def test_ctf_from_table_matches_simulation():
    from sklearn_disentangle.cryoem.ctf import ctf_from_table

    stack, truth = make_cryoem_particles(4, 16, snr=None, random_state=6)
    # clean images = CTF applied to the CTF-free rendering of the same particles
    plain, _ = make_cryoem_particles(4, 16, snr=None, ctf=False, random_state=6)
    ctf = ctf_from_table(stack.ctf, 16, dtype=torch.float64)
    expected = apply_ctf(torch.as_tensor(plain.get_images(), dtype=torch.float64), ctf).numpy()
    np.testing.assert_allclose(truth.clean_images, expected, atol=1e-5)
    with pytest.raises(ValueError, match="pixel size"):
        ctf_from_table(stack.ctf.assign(pixel_size=np.nan), 16)


def test_hinge_angle_sets_the_domain_swing():
    c90, _, _ = molecule_blobs([0.0, 1.0], 32)
    np.testing.assert_array_equal(molecule_blobs([0.0, 1.0], 32, hinge_angle=90.0)[0], c90)  # the default
    c30, _, _ = molecule_blobs([0.0, 1.0], 32, hinge_angle=30.0)
    np.testing.assert_array_equal(c30[:, :6], c90[:, :6])  # the body does not move
    np.testing.assert_array_equal(c30[0], c90[0])  # t = 0 is the same structure
    # the arm turns by the hinge angle about the hinge, on an axis tilted 30 deg from z about x
    hinge, tilt = np.array([1.5, 2.5, 0.0]), np.deg2rad(30.0)
    untilt = np.array([[1, 0, 0], [0, np.cos(tilt), np.sin(tilt)], [0, -np.sin(tilt), np.cos(tilt)]])
    for c, angle in ((c90, 90.0), (c30, 30.0), (molecule_blobs([0.0, 1.0], 32, hinge_angle=-45.0)[0], -45.0)):
        a, b = (c[0, 6:] - hinge) @ untilt.T, (c[-1, 6:] - hinge) @ untilt.T
        turn = np.rad2deg(np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0]))
        np.testing.assert_allclose(turn, angle, atol=1e-9)
        np.testing.assert_allclose(b[:, 2], a[:, 2], atol=1e-12)
    # zero swing: the conformations are identical, in every generator
    vols, truth = make_subtomograms(4, 16, hinge_angle=0.0, snr=None, random_state=0)
    np.testing.assert_array_equal(truth.templates[0], truth.templates[1])
    _, truth = make_cryoem_particles(4, 16, n_conformations=2, hinge_angle=0.0, random_state=0)
    np.testing.assert_array_equal(truth.volumes[0], truth.volumes[1])
    from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset

    data = CryoEMConformationDataset(box_size=16, n_conformations=2, n_views=1, hinge_angle=0.0)
    obs = data.sample_observations_from_factors([[0, 0], [1, 0]])
    np.testing.assert_array_equal(obs[0], obs[1])
    small = CryoEMConformationDataset(box_size=16, n_conformations=2, n_views=1, hinge_angle=30.0)
    obs30 = small.sample_observations_from_factors([[0, 0], [1, 0]])
    full = CryoEMConformationDataset(box_size=16, n_conformations=2, n_views=1).sample_observations_from_factors(
        [[0, 0], [1, 0]])
    np.testing.assert_array_equal(obs30[0], full[0])
    assert 0 < np.abs(obs30[1] - obs30[0]).sum() < np.abs(full[1] - full[0]).sum()


@pytest.mark.parametrize("bad, err", [("30", TypeError), (True, TypeError), (None, TypeError),
                                      (float("nan"), ValueError), (float("inf"), ValueError)])
def test_hinge_angle_is_validated(bad, err):
    from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset

    with pytest.raises(err, match="hinge_angle"):
        molecule_blobs(0.5, 16, hinge_angle=bad)
    with pytest.raises(err, match="hinge_angle"):
        make_subtomograms(2, 16, hinge_angle=bad)
    with pytest.raises(err, match="hinge_angle"):
        make_cryoem_particles(2, 16, hinge_angle=bad)
    with pytest.raises(err, match="hinge_angle"):
        CryoEMConformationDataset(box_size=16, hinge_angle=bad)
