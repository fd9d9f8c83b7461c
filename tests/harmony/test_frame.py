"""Harmony's common frame: template superposition, pose composition, and the estimator outputs in one frame."""

import math
import pickle

import numpy as np
import pytest
import torch

from sklearn_disentangle import HarmonyEstimator
from sklearn_disentangle.cryoem.rotations import quaternion_to_matrix
from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset
from sklearn_disentangle.harmony.model import HarmonyModule, compose_poses, invert_pose
from sklearn_disentangle.harmony.search import RotationSearch, superpose, superposition_ncc
from sklearn_disentangle.harmony.warps import rotation_2d, warp_from_canonical, warp_to_canonical

TINY = {"max_epochs": 2, "batch_size": 16, "lr": 1e-3, "random_state": 0}


def blob_image(size=21):
    """An asymmetric 2-D image: two blobs of different weights (no rotational symmetry)."""
    yy, xx = np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2, indexing="ij")
    blob = lambda cx, cy, s: np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s ** 2))  # noqa: E731
    return torch.as_tensor(blob(4, 0, 1.6) + 0.6 * blob(-2, 4, 1.6), dtype=torch.float32)[None, None]


def blob_volume(size=16):
    zz, yy, xx = np.meshgrid(*[np.arange(size) - size // 2] * 3, indexing="ij")
    blob = lambda c, s: np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / (2 * s ** 2))  # noqa: E731
    vol = blob((4, 0, 0), 1.5) + 0.7 * blob((0, 3, 0), 1.5) + 0.4 * blob((-1, -1, 3), 1.5)
    return torch.as_tensor(vol, dtype=torch.float32)[None, None]


def angle_of(matrix):
    return torch.atan2(matrix[..., 0, 1], matrix[..., 0, 0])


def table_decoder(module, table):
    """Make ``module.decode(z)`` return ``table[int(z[:, 0])]`` (templates chosen by code)."""
    module.decode = lambda z: table[z[:, 0].round().long().clamp(0, len(table) - 1)]


# ----------------------------------------------------------------------------- pose algebra
def test_compose_and_invert_match_applying_the_warps_in_turn():
    x = blob_image()
    outer = {"matrix": rotation_2d(torch.tensor([0.7])), "shift": torch.tensor([[1.5, -0.5]])}
    inner = {"matrix": 1.2 * rotation_2d(torch.tensor([-0.3])), "shift": torch.tensor([[-1.0, 2.0]])}
    both = compose_poses(outer, inner)
    assert torch.allclose(both["matrix"], outer["matrix"] @ inner["matrix"])
    twice = warp_from_canonical(warp_from_canonical(x, inner["matrix"], inner["shift"]), outer["matrix"], outer["shift"])
    once = warp_from_canonical(x, both["matrix"], both["shift"])
    interior = (slice(None), slice(None), slice(5, -5), slice(5, -5))
    assert (twice - once)[interior].abs().max() < 0.05  # two resamplings against one
    back = compose_poses(both, invert_pose(inner))
    torch.testing.assert_close(back["matrix"], outer["matrix"], atol=1e-5, rtol=0)
    torch.testing.assert_close(back["shift"], outer["shift"], atol=1e-5, rtol=0)


def test_compose_recomputes_the_2d_angle_and_drops_a_stale_axis_angle():
    outer = {"angle": torch.tensor([3.0]), "matrix": rotation_2d(torch.tensor([3.0])), "shift": torch.zeros(1, 2)}
    inner = {"matrix": rotation_2d(torch.tensor([0.5])), "shift": torch.zeros(1, 2)}
    got = compose_poses(outer, inner)["angle"]
    assert math.isclose(float(got), 3.5 - 2 * math.pi, abs_tol=1e-5)  # wrapped into (-pi, pi]
    pose3 = {"axis_angle": torch.zeros(1, 3), "matrix": torch.eye(3)[None], "shift": torch.zeros(1, 3)}
    assert "axis_angle" not in compose_poses(pose3, {"matrix": torch.eye(3)[None], "shift": torch.zeros(1, 3)})


# ----------------------------------------------------------------------------- frame_alignment
def test_frame_alignment_recovers_a_known_2d_rotation_and_shift():
    m = HarmonyModule((1, 21, 21), 1, encoder_widths=(8,)).eval()
    ref = blob_image()
    angles = torch.tensor([0.0, 0.6, -2.0, 3.0])
    shifts = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.5, 0.5], [0.5, 1.5]])
    moved = warp_from_canonical(ref.expand(4, -1, -1, -1), rotation_2d(angles), shifts)
    table_decoder(m, torch.cat([moved, ref]))
    pose = m.frame_alignment(torch.arange(4.0)[:, None], torch.tensor([[4.0]]))
    diff = torch.remainder(angle_of(pose["matrix"]) - angles + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < math.radians(1.0)
    assert (pose["shift"] - shifts).abs().max() < 0.3
    # the reference feature at r sits at M r + t in each decoding: canonicalising with the pose gives it back
    back = warp_to_canonical(moved, pose["matrix"], pose["shift"])
    for img in back:  # two bilinear resamplings of a 1.6 px blob blur its peak by about 0.1
        assert np.corrcoef(img.flatten(), ref.flatten())[0, 1] > 0.99


def test_frame_alignment_recovers_a_3d_rotation_and_keeps_the_identity_off_the_grid():
    m = HarmonyModule((1, 16, 16, 16), 1, kind="rigid3d", encoder_widths=(4, 8)).eval()
    ref = blob_volume()
    rot = quaternion_to_matrix(torch.tensor([[0.9, 0.3, -0.2, 0.25]], dtype=torch.float64)).float()
    moved = warp_from_canonical(ref, rot, torch.tensor([[1.0, 0.0, -1.0]]))
    table_decoder(m, torch.cat([ref, moved]))
    pose = m.frame_alignment(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0]]))
    # a template onto itself: exactly the identity (the super-Fibonacci grid does not hold it)
    torch.testing.assert_close(pose["matrix"][0], torch.eye(3), atol=0, rtol=0)
    assert pose["shift"][0].abs().max() < 1e-4
    rel = pose["matrix"][1].T @ rot[0]
    err = math.degrees(math.acos(max(-1.0, min(1.0, (float(torch.trace(rel)) - 1) / 2))))
    assert err < 3.0
    assert (pose["shift"][1] - torch.tensor([1.0, 0.0, -1.0])).abs().max() < 0.3


def two_conformations(seed=2, size=32):
    """The simulator's two conformations (domain swung 90 deg) seen from one direction, z-scored."""
    data = CryoEMConformationDataset(box_size=size, n_conformations=2, n_views=1, random_state=seed)
    t = torch.as_tensor(np.asarray(data.sample_observations_from_factors(np.array([[0, 0], [1, 0]]))),
                        dtype=torch.float32).reshape(2, 1, size, size)
    return (t - t.mean((1, 2, 3), keepdim=True)) / t.std((1, 2, 3), keepdim=True)


def test_frame_alignment_finds_the_better_of_two_near_equal_superpositions():
    # data seed 2's conformations superpose about 74 deg and, nearly as well, about 180 deg
    # apart; the pooled global round ranks the weaker first, so its argmax alone ends there
    t = two_conformations()
    argmax = superpose(t[1:], t[:1], RotationSearch(2, 360))["matrix"][0]
    m = HarmonyModule((1, 32, 32), 1, encoder_widths=(8,)).eval()
    assert m.frame_search.n_candidates == 1  # the candidates come from frame_alignment itself
    table_decoder(m, t)
    found = m.frame_alignment(torch.tensor([[1.0]]), torch.tensor([[0.0]]))["matrix"][0]
    assert abs(math.degrees(float(angle_of(argmax)))) > 170  # measured -179
    assert abs(math.degrees(float(angle_of(found))) + 74) < 3  # measured -74
    ncc_found, ncc_argmax = superposition_ncc(t[1:], t[:1], found), superposition_ncc(t[1:], t[:1], argmax)
    assert ncc_found > ncc_argmax + 0.02, (ncc_found, ncc_argmax)  # measured 0.811 against 0.772


def test_frame_alignment_needs_a_rotating_kind():
    m = HarmonyModule((1, 8, 8), 1, kind="contrast", encoder_widths=(4, 8))
    with pytest.raises(ValueError, match="rotating pose"):
        m.frame_alignment(torch.zeros(1, 1), torch.zeros(1, 1))


# ----------------------------------------------------------------------------- estimator
@pytest.fixture(scope="module")
def fitted():
    X = np.random.default_rng(0).normal(size=(48, 21, 21)).astype(np.float32)
    return HarmonyEstimator(common_frame=True, encoder_widths=(16,), **TINY).fit(X), X


def two_frame_model(est, X, angle=0.8):
    """``est`` with its decoder replaced: codes < 0 decode to a template, codes > 0 to it turned by ``angle``.

    The content means are set to -1 for 2/3 of the samples and +1 for the rest, so the
    reference (most populated) cluster is the unturned one.
    """
    module = est.net_.module_
    ref = blob_image()
    turned = warp_from_canonical(ref, rotation_2d(torch.tensor([angle])), torch.zeros(1, 2))
    module.decode = lambda z: torch.where((z[:, :1] > 0).view(-1, 1, 1, 1), turned, ref).expand(len(z), -1, -1, -1)
    mu = np.where(np.arange(len(X)) % 3 == 0, 1.0, -1.0)[:, None].astype(np.float32)
    mu = mu + np.random.default_rng(1).normal(scale=0.05, size=mu.shape).astype(np.float32)
    est._fit_common_frame(mu)
    return est, mu


def test_common_frame_finds_the_turn_between_two_contents(fitted):
    est, X = fitted
    est, mu = two_frame_model(pickle.loads(pickle.dumps(est)), X)
    assert est.frame_anchors_.shape[1] == 1 and len(est.frame_anchors_) <= 8
    ref_anchor = est.frame_anchors_[est.frame_reference_, 0]
    assert ref_anchor < 0  # the most populated cluster
    turned = angle_of(torch.as_tensor(est.frame_matrices_))[est.frame_anchors_[:, 0] > 0]
    unturned = angle_of(torch.as_tensor(est.frame_matrices_))[est.frame_anchors_[:, 0] < 0]
    assert (turned - 0.8).abs().max() < math.radians(1.0)
    assert unturned.abs().max() < 1e-6  # superposed on identical templates: exactly the identity
    np.testing.assert_allclose(est.frame_shifts_, 0.0, atol=0.3)
    # canonical images in the common frame: the turned content comes back unturned
    canon = est.inverse_transform(np.array([[-1.0], [1.0]], np.float32))
    ref = blob_image()[0, 0].numpy()
    turned = est.net_.module_.decode(torch.ones(1, 1))[0, 0].numpy()
    assert np.abs(canon[0] - ref).max() < 1e-5  # the reference frame: the identity
    assert np.corrcoef(canon[1].ravel(), ref.ravel())[0, 1] > 0.99 > np.corrcoef(canon[1].ravel(), turned.ravel())[0, 1]


def test_poses_in_the_common_frame_are_the_own_frame_poses_composed_with_the_correction(fitted, monkeypatch):
    est, X = fitted
    est = pickle.loads(pickle.dumps(est))
    common = est.transform_params(X)
    monkeypatch.setattr(est, "frame_anchors_", None)
    own = est.transform_params(X)
    monkeypatch.undo()
    z = est.transform(X)
    nearest = ((z[:, None] - est.frame_anchors_[None]) ** 2).sum(-1).argmin(1)
    c = est.frame_matrices_[nearest].astype(np.float64)
    m_own = rotation_2d(torch.deg2rad(torch.as_tensor(own["angle_deg"].to_numpy()))).numpy()
    m_common = rotation_2d(torch.deg2rad(torch.as_tensor(common["angle_deg"].to_numpy()))).numpy()
    np.testing.assert_allclose(m_common, m_own @ c, atol=1e-5)
    t_own = own[["shift_x", "shift_y"]].to_numpy()
    expected = np.einsum("nij,nj->ni", m_own, est.frame_shifts_[nearest]) + t_own
    np.testing.assert_allclose(common[["shift_x", "shift_y"]].to_numpy(), expected, atol=1e-4)


def test_images_rendered_from_common_frame_poses_do_not_depend_on_the_frame(fitted, monkeypatch):
    est, X = fitted
    est, mu = two_frame_model(pickle.loads(pickle.dumps(est)), X)
    params = est.transform_params(X[:6]).copy()
    Z = np.array([[-1.0], [1.0], [1.0], [-1.0], [1.0], [-1.0]], np.float32)
    rendered = est.inverse_transform(Z, params=params)
    # the same images from each content's own-frame pose: P_own = P_common o C^-1
    correction = est._frame_correction(Z)
    monkeypatch.setattr(est, "frame_anchors_", None)
    own = est.transform_params(X[:6])  # with frames off: (M, t) in each decoding's frame
    pose = compose_poses(est._pose_from_params(params, 6), invert_pose(correction))
    own["angle_deg"] = np.rad2deg(angle_of(pose["matrix"]).numpy())
    own["shift_x"], own["shift_y"] = pose["shift"][:, 0].numpy(), pose["shift"][:, 1].numpy()
    np.testing.assert_allclose(est.inverse_transform(Z, params=own), rendered, atol=1e-4)


def test_round_trip_through_the_common_frame_matches_the_own_frame_round_trip(fitted, monkeypatch):
    est, X = fitted
    z = est.transform(X[:8])
    common = est.inverse_transform(z, params=est.transform_params(X[:8]))
    monkeypatch.setattr(est, "frame_anchors_", None)
    own = est.inverse_transform(z, params=est.transform_params(X[:8]))
    np.testing.assert_allclose(common, own, atol=1e-4)


def test_common_frame_off_by_default_and_non_rotating_kinds_have_no_anchors():
    X = np.random.default_rng(0).normal(size=(32, 12, 12)).astype(np.float32)
    est = HarmonyEstimator(encoder_widths=(8,), **TINY).fit(X)  # common_frame=False: the default
    assert est.frame_anchors_ is None and est.frame_matrices_ is None and est.frame_reference_ is None
    np.testing.assert_array_equal(est.inverse_transform(est.transform(X[:3])),
                                  est.net_.module_.decode(torch.as_tensor(est.transform(X[:3]))).detach().numpy()[:, 0])
    con = HarmonyEstimator("contrast", common_frame=True, encoder_widths=(4, 8), **TINY).fit(np.abs(X))
    assert con.frame_anchors_ is None
    flat = HarmonyEstimator(common_frame=True, encoder_widths=(8,), **TINY).fit(X.reshape(32, -1))
    assert flat.frame_anchors_ is None


def test_common_frame_is_deterministic_and_survives_pickle(fitted):
    est, X = fitted
    again = pickle.loads(pickle.dumps(est))
    assert est.frame_matrices_.shape == (len(est.frame_anchors_), 2, 2)
    np.testing.assert_array_equal(again.transform_params(X), est.transform_params(X))
    refit = HarmonyEstimator(common_frame=True, encoder_widths=(16,), **TINY).fit(X)
    np.testing.assert_array_equal(refit.frame_matrices_, est.frame_matrices_)
    np.testing.assert_array_equal(refit.frame_anchors_, est.frame_anchors_)


def test_rigid3d_poses_in_the_common_frame_stay_rotations():
    vols = np.random.default_rng(0).normal(size=(24, 10, 10, 10)).astype(np.float32)
    est = HarmonyEstimator("rigid3d", common_frame=True, encoder_widths=(4, 8), pose_search=64, **TINY).fit(vols)
    assert est.frame_matrices_.shape[1:] == (3, 3)
    p = est.transform_params(vols)
    mats = p[[f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]].to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", mats, mats), np.broadcast_to(np.eye(3), mats.shape),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-5)


def test_search_takes_more_local_rounds_per_call_and_builds_them_once():
    from sklearn_disentangle.harmony.search import RotationSearch

    ref = blob_image()
    angles = torch.tensor([0.3, -1.7, 2.9])
    x = warp_from_canonical(ref.expand(3, -1, -1, -1), rotation_2d(angles), torch.zeros(3, 2))
    search = RotationSearch(2, 72)  # 5-degree grid

    def error(matrix):
        return (torch.remainder(angle_of(matrix) - angles + math.pi, 2 * math.pi) - math.pi).abs().max()

    coarse = search(x, ref, torch.zeros(3, 2))
    fine = search(x, ref, torch.zeros(3, 2), refine_rounds=6)
    assert error(fine) < math.radians(0.25) and error(fine) <= error(coarse)  # last step 0.08 deg
    plan = next(iter(search._cache.values()))
    assert len(plan[3]) == 6  # rounds built on demand and kept
    torch.testing.assert_close(search(x, ref, torch.zeros(3, 2)), coarse, atol=0, rtol=0)
