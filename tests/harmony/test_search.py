"""Harmony's rotation search: the SO(3) grid, the interpolation matrices, recovery of known poses."""

import math
import pickle

import numpy as np
import pytest
import torch

from sklearn_disentangle import HarmonyEstimator
from sklearn_disentangle.cryoem.rotations import random_rotations, rotation_grid
from sklearn_disentangle.datasets.cryoem import make_subtomograms, molecule_blobs, render_volume
from sklearn_disentangle.harmony.model import HarmonyModule
from sklearn_disentangle.nn import gaussian_kl
from sklearn_disentangle.harmony.search import RotationSearch, density_centre, interpolation_matrix, superposition_ncc
from sklearn_disentangle.harmony.warps import rotation_2d, warp_from_canonical

TINY = {"max_epochs": 2, "batch_size": 16, "lr": 1e-3, "random_state": 0}


def geodesic_deg(a, b):
    rel = a.transpose(-1, -2) @ b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def molecule(size, t=0.0):
    centres, sigmas, weights = molecule_blobs([t], size)
    return torch.as_tensor(render_volume(centres, sigmas, weights, size), dtype=torch.float64)[:, None]


# ----------------------------------------------------------------------------- the grid
def test_rotation_grid_is_a_set_of_rotations_that_covers_so3():
    g = rotation_grid(1000, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(g.transpose(1, 2) @ g, eye.expand(1000, 3, 3), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(g), torch.ones(1000, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(rotation_grid(1000, dtype=torch.float64), g, atol=0, rtol=0)  # deterministic
    # covering: every one of 2000 random rotations is close to a grid rotation; a random set of
    # the same size leaves bigger holes (expected spacing (8 pi^2 / 1000)^(1/3) = 24.6 deg)
    probe = random_rotations(2000, 1, dtype=torch.float64)
    nearest = geodesic_deg(probe[:, None], g[None]).min(1).values
    rand = random_rotations(1000, 2, dtype=torch.float64)
    nearest_rand = geodesic_deg(probe[:, None], rand[None]).min(1).values
    assert nearest.max() < 22.0  # measured 20.5 (random set: 28.6)
    assert nearest.max() < 0.8 * nearest_rand.max()
    # well separated: no two grid rotations closer than 15 deg (q and -q would coincide)
    d = geodesic_deg(g[:, None], g[None]) + torch.eye(1000, dtype=torch.float64) * 180
    assert d.min() > 15.0  # measured 17.7


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_rotation_grid_rejects_bad_sizes(n):
    with pytest.raises(ValueError, match="positive int"):
        rotation_grid(n)


# ----------------------------------------------------------------------------- interpolation
@pytest.mark.parametrize("spatial", [(9, 12), (8, 8, 8), (7, 10, 9)])
def test_interpolation_matrix_samples_like_the_warps(spatial):
    k = len(spatial)
    gen = torch.Generator().manual_seed(0)
    img = torch.randn((3, 1) + spatial, generator=gen, dtype=torch.float64)
    rot = rotation_2d(torch.tensor([0.7], dtype=torch.float64)) if k == 2 else random_rotations(
        1, 0, dtype=torch.float64)
    shift = torch.tensor([[0.3, -1.2, 0.8][:k]], dtype=torch.float64)
    axes = [torch.arange(s, dtype=torch.float64) - s // 2 for s in spatial]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], -1).reshape(-1, k)
    src = (coords - shift) @ rot[0]  # warp_from_canonical samples at M^T (p - t)
    m = interpolation_matrix(spatial, src)
    ours = (m @ img.reshape(3, -1).T).T.reshape(img.shape)
    torch.testing.assert_close(ours, warp_from_canonical(img, rot.expand(3, k, k), shift.expand(3, k)),
                               atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- the search
@pytest.mark.parametrize("size", [13, 16])  # 16: the global round runs on pooled volumes
def test_search_recovers_known_3d_rotations_of_a_template(size):
    if size == 16:
        template = molecule(size).float()
    else:  # an asymmetric object of blobs wider than a voxel (the molecule at 13^3 is sub-voxel)
        centres = np.array([[[3.0, 0.0, 0.0], [0.0, 2.5, 0.5], [-1.0, -1.0, 2.5], [-2.0, 1.0, -1.5]]])
        template = torch.as_tensor(render_volume(centres, [1.2, 1.1, 1.0, 1.2], [1.0, 0.8, 0.6, 0.9], size))[:, None]
    truth = random_rotations(6, 0)
    shift = torch.tensor([[0.5, -1.0, 0.0]]).expand(6, 3)
    x = warp_from_canonical(template.expand(6, -1, -1, -1, -1), truth, shift)
    search = RotationSearch(3, 1000)
    assert search.pooled((size,) * 3) == (size >= 16)
    found = search(x, template.expand(6, -1, -1, -1, -1), shift)
    err = geodesic_deg(found, truth)
    assert err.max() < 6.0, err  # the last local step is 3 degrees
    torch.testing.assert_close(found.transpose(1, 2) @ found, torch.eye(3).expand(6, 3, 3), atol=1e-5, rtol=0)


def test_search_in_noise_beats_the_grid_spacing():
    vols, truth = make_subtomograms(40, 16, n_conformations=2, snr=2.0, random_state=0)
    x = torch.as_tensor(vols)[:, None]
    centres, sigmas, weights = molecule_blobs(np.linspace(0.0, 1.0, 2), 16)
    templates = torch.as_tensor(render_volume(centres, sigmas, weights, 16))[truth.labels][:, None]
    found = RotationSearch(3, 1000)(x, templates, torch.as_tensor(truth.shifts, dtype=torch.float32))
    err = geodesic_deg(found.double(), torch.as_tensor(truth.rotations))
    assert float(err.median()) < 8.0, err  # measured 3.7 at SNR 2; the grid spacing is 24.6


def test_search_recovers_2d_angles_and_stays_one_rotation_per_sample():
    yy, xx = np.meshgrid(np.arange(21) - 10, np.arange(21) - 10, indexing="ij")
    blob = lambda cx, cy, s: np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s ** 2))  # noqa: E731
    template = torch.as_tensor(blob(5, 0, 1.5) + 0.6 * blob(-2, 4, 1.5), dtype=torch.float32)[None, None]
    angles = torch.tensor([0.0, 1.0, -2.5, 3.0])
    x = warp_from_canonical(template.expand(4, -1, -1, -1), rotation_2d(angles), torch.zeros(4, 2))
    found = RotationSearch(2, 72)(x, template.expand(4, -1, -1, -1), torch.zeros(4, 2))
    got = torch.atan2(found[:, 0, 1], found[:, 0, 0])
    diff = torch.remainder(got - angles + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < math.radians(1.5)  # grid 5 deg, last local step 0.625 deg


def _pseudo_symmetric_2d(n, seed):
    """Noisy rotated copies of a template that is symmetric under 180 deg but for a small blob."""
    yy, xx = np.meshgrid(np.arange(21) - 10, np.arange(21) - 10, indexing="ij")
    blob = lambda cx, cy: np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.2 ** 2))  # noqa: E731
    template = torch.as_tensor(blob(6, 0) + blob(-6, 0) + 0.3 * blob(0, 4), dtype=torch.float32)[None, None]
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(n, generator=g) * 2 * math.pi
    x = warp_from_canonical(template.expand(n, -1, -1, -1), rotation_2d(angles), torch.zeros(n, 2))
    return x + 0.3 * torch.randn(x.shape, generator=g), template, angles


def test_search_candidates_rescue_samples_a_half_turn_off():
    # a coarse grid (30 deg): the grid point nearest the flipped pose can outscore the one nearest
    # the right pose; refining the best 4 and keeping the best refined one fixes most of those
    x, template, angles = _pseudo_symmetric_2d(300, 1)
    flipped, scores = [], []
    for k in (1, 4):
        found = RotationSearch(2, 12, n_candidates=k)(x, template, torch.zeros(300, 2))
        got = torch.atan2(found[:, 0, 1], found[:, 0, 0])
        err = (torch.remainder(got - angles + math.pi, 2 * math.pi) - math.pi).abs()
        flipped.append(float((err > math.pi / 2).float().mean()))
        lt = warp_from_canonical(template.expand(300, -1, -1, -1), found, torch.zeros(300, 2))
        scores.append((lt * (2 * x - lt)).flatten(1).sum(1))  # minus the squared error, but for |x|^2
        torch.testing.assert_close(found @ found.transpose(1, 2), torch.eye(2).expand(300, 2, 2), atol=1e-5, rtol=0)
    assert flipped[0] > 0.15 and flipped[1] < 0.5 * flipped[0], flipped  # measured 0.197 -> 0.073
    assert bool((scores[1] >= scores[0] - 1e-3).all())  # the argmax's path is one of the candidates


@pytest.mark.parametrize("bad", [0, -1, 13, 2.5, True, "4"])
def test_search_candidates_are_validated(bad):
    with pytest.raises(ValueError, match=r"n_candidates must be an integer between 1 and n_rotations \(12\)"):
        RotationSearch(2, 12, n_candidates=bad)
    x, template, _ = _pseudo_symmetric_2d(2, 0)
    with pytest.raises(ValueError, match=r"n_candidates must be an integer between 1 and n_rotations \(12\)"):
        RotationSearch(2, 12)(x, template, torch.zeros(2, 2), n_candidates=bad)


def test_search_candidates_per_call_match_an_instance_built_with_them():
    x, template, _ = _pseudo_symmetric_2d(40, 1)
    per_call = RotationSearch(2, 12)(x, template, torch.zeros(40, 2), n_candidates=4)
    built = RotationSearch(2, 12, n_candidates=4)(x, template, torch.zeros(40, 2))
    one = RotationSearch(2, 12)(x, template, torch.zeros(40, 2))
    torch.testing.assert_close(per_call, built)
    assert not torch.allclose(per_call, one)  # the override took effect (some samples a half-turn apart)


def test_search_pickled_before_candidates_existed_refines_one():
    search = RotationSearch(2, 12, n_candidates=3)
    state = search.__getstate__()
    del state["n_candidates"]
    old = RotationSearch.__new__(RotationSearch)
    old.__setstate__(state)
    assert old.n_candidates == 1


def test_module_pose_search_refines_search_candidates_at_most_the_grid():
    from sklearn_disentangle.harmony.model import SEARCH_CANDIDATES

    m = HarmonyModule((1, 9, 9), 1, kind="rigid2d", encoder_widths=(8,), pose_search=36)
    assert m.rotation_search.n_candidates == SEARCH_CANDIDATES == 4
    small = HarmonyModule((1, 9, 9), 1, kind="rigid2d", encoder_widths=(8,), pose_search=2)
    assert small.rotation_search.n_candidates == 2  # a grid smaller than the default count


def test_search_plan_is_cached_but_not_pickled():
    search = RotationSearch(3, 50)
    search(torch.randn(2, 1, 8, 8, 8), torch.randn(2, 1, 8, 8, 8), torch.zeros(2, 3))
    assert len(search._cache) == 1
    again = pickle.loads(pickle.dumps(search))
    assert again._cache == {} and again.n_rotations == 50
    assert len(pickle.dumps(search)) < 2000


def test_superposition_ncc_scores_a_stack_of_rotations_like_each_one():
    # the molecule, rotated: read back at the true rotation it matches itself (NCC ~1), and a
    # stack of rotations gives, per rotation, what the single-matrix call gives
    template = molecule(16).float()
    truth = random_rotations(1, 3)
    x = warp_from_canonical(template, truth, density_centre(template))
    stack = torch.cat([truth, rotation_grid(5)])
    ncc = superposition_ncc(x, template, stack)
    assert ncc.shape == (6,)
    single = [superposition_ncc(x, template, m) for m in stack]
    assert all(isinstance(v, float) for v in single)
    torch.testing.assert_close(ncc, torch.tensor(single), atol=1e-5, rtol=0)
    assert ncc[0] > 0.95 and ncc[0] > ncc[1:].max() + 0.1, ncc


def test_density_centre_follows_shifts_and_not_rotations():
    vols, truth = make_subtomograms(40, 16, n_conformations=2, snr=2.0, random_state=0)
    x = torch.as_tensor(vols)[:, None]
    centre = density_centre(x).double().numpy()
    # rotation-free: the centre minus the true shift does not depend on the (uniform) rotations
    resid = centre - truth.shifts
    corr = [np.corrcoef(centre[:, a], truth.shifts[:, a])[0, 1] for a in range(3)]
    assert min(corr) > 0.8, corr  # measured 0.88-0.94 at SNR 2 (shifts U(-1.5, 1.5))
    assert np.abs(resid.mean(0)).max() < 0.3 and resid.std(0).max() < 0.6
    # exact on a clean, symmetric object: a blob moved by (2, -1, 1) voxels
    blob = torch.as_tensor(render_volume(np.array([[[2.0, -1.0, 1.0]]]), [1.2], [1.0], 15))[:, None]
    torch.testing.assert_close(density_centre(blob), torch.tensor([[2.0, -1.0, 1.0]], dtype=blob.dtype),
                               atol=1e-5, rtol=0)


def test_module_search_shift_is_density_centre_plus_head():
    m = HarmonyModule((1, 12, 12, 12), 1, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d",
                      pose_search=20, max_shift=3.0)
    x = torch.randn(3, 1, 12, 12, 12, generator=torch.Generator().manual_seed(1))
    xp = m.prepare(x)
    raw = m._split(m.encoder(xp))[0]
    head = 3.0 * torch.tanh(raw[:, 6:9])
    torch.testing.assert_close(m.encode(x)["shift"], head + density_centre(xp))


# ----------------------------------------------------------------------------- in Harmony
def test_module_search_replaces_the_rotation_and_trains_the_head():
    m = HarmonyModule((1, 8, 8, 8), 2, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d",
                      content_from="canonical", resolve_half_turns=True, pose_search=64)
    x = torch.randn(5, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    enc = m.encode(x)
    grid_or_refined = enc["matrix"]
    assert not torch.allclose(grid_or_refined, enc["head_matrix"])  # the searched rotation, not the head's
    out = m(x)
    terms = m.loss(out, x)
    assert "pose_head" in terms and float(terms["pose_head"].detach()) > 0
    torch.testing.assert_close(terms["pose_head"], 0.5 * sum(
        (out[f"head_{i}"] - out[f"search_{i}"]).pow(2).flatten(1).sum(1).mean() for i in (1, 2)))
    terms["loss"].backward()
    head_grad = m.encoder.head[-1].weight.grad[:6].abs().sum()  # the 6-D rotation outputs
    assert head_grad > 0
    # content is read off the sample canonicalised with the searched rotation
    torch.testing.assert_close(enc["z_mean"], m._split(m.encoder(m.canonicalize(m.prepare(x), enc)))[1])


def test_module_search_errors():
    with pytest.raises(ValueError, match="affine2d"):
        HarmonyModule((1, 8, 8), 1, kind="affine2d", encoder_widths=(8,), pose_search=10)
    with pytest.raises(ValueError, match="pose_search"):
        HarmonyModule((1, 8, 8), 1, encoder_widths=(8,), pose_search=-1)


def test_estimator_pose_search_defaults_and_errors():
    vols, _ = make_subtomograms(16, 8, random_state=0)
    est = HarmonyEstimator("rigid3d", encoder_widths=(4, 8), **TINY).fit(vols)
    assert est.pose_search_ == 1000 and est.net_.module_.rotation_search.n_rotations == 1000
    assert "train_pose_head" in est.history_[-1]
    X = np.random.default_rng(0).normal(size=(16, 8, 8)).astype(np.float32)
    est2 = HarmonyEstimator(encoder_widths=(8,), **TINY).fit(X)
    assert est2.pose_search_ == 0 and est2.net_.module_.rotation_search is None
    assert "train_pose_head" not in est2.history_[-1]
    with pytest.raises(ValueError, match="pose_search searches rotations"):
        HarmonyEstimator("contrast", pose_search=10, encoder_widths=(4, 8), **TINY).fit(np.abs(X))
    with pytest.raises(ValueError, match="pose_search"):
        HarmonyEstimator("rigid3d", pose_search=-5, **TINY).fit(vols)


def test_estimator_with_search_is_deterministic_and_its_poses_are_rotations():
    vols, _ = make_subtomograms(16, 8, random_state=0)
    a = HarmonyEstimator("rigid3d", pose_search=200, encoder_widths=(4, 8), **TINY).fit(vols)
    b = HarmonyEstimator("rigid3d", pose_search=200, encoder_widths=(4, 8), **TINY).fit(vols)
    pa, pb = a.transform_params(vols), b.transform_params(vols)
    np.testing.assert_array_equal(pa.to_numpy(), pb.to_numpy())
    np.testing.assert_array_equal(a.transform(vols), b.transform(vols))
    mats = pa[[f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]].to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-5)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(vols), a.transform(vols))


def test_rigid2d_with_search_gives_angles_that_match_its_matrices():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 16, 16)).astype(np.float32)
    est = HarmonyEstimator(pose_search=36, encoder_widths=(16,), **TINY).fit(X)
    p = est.transform_params(X)
    assert p["angle_deg"].between(-180, 180).all()
    pose = est.net_.module_.pose(torch.as_tensor(X[:, None]))
    torch.testing.assert_close(rotation_2d(pose["angle"]), pose["matrix"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(p["angle_deg"], np.rad2deg(pose["angle"].numpy()), atol=1e-4)
    assert est.inverse_transform(est.transform(X[:4]), params=p.iloc[:4]).shape == (4, 16, 16)


def test_module_search_consensus_then_own_template_and_tracks_the_code():
    m = HarmonyModule((1, 8, 8, 8), 2, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d",
                      content_from="canonical", pose_search=64)
    x = torch.randn(5, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.search_code.copy_(torch.tensor([[0.5, -1.0]]))
    m.eval()
    xp = m.prepare(x)
    enc = m.encode(x)
    # first pass: one template for every sample; second: each sample's content read in that frame
    first = m.rotation_search(xp, m.decode(m.search_code), enc["shift"])
    torch.testing.assert_close(first, m.rotation_search(xp, m.decode(m.search_code).expand(5, -1, -1, -1, -1),
                                                        enc["shift"]))
    own = m._split(m.encoder(m.canonicalize(xp, dict(enc, matrix=first))))[1]
    torch.testing.assert_close(enc["matrix"], m.rotation_search(xp, m.decode(own), enc["shift"]))
    before = m.search_code.clone()
    m.encode(x)
    torch.testing.assert_close(m.search_code, before)  # inference leaves the code alone
    m.train()
    z = m.encode(x)["z_mean"].detach()
    torch.testing.assert_close(m.search_code, before + 0.1 * (z.mean(0, keepdim=True) - before))
    assert "search_code" in m.state_dict()  # saved with the parameters


def test_module_variational_zero_is_a_plain_autoencoder_in_training_only():
    m = HarmonyModule((1, 8, 8), 2, encoder_widths=(16,), prior_kl_weight=0.5, gamma=2.0)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    m.variational = 0.0
    torch.manual_seed(1)
    out = m(x)
    # the code is the mean: the reconstruction is the decoded mean
    torch.testing.assert_close(out["rec_1"], m.decode(out["mu_1"]))
    t = m.loss(out, x)
    assert float(t["kl_branches"].detach()) > 0 and float(t["kl_prior"].detach()) > 0  # still reported
    torch.testing.assert_close(t["loss"], 2.0 * (t["recon_1"] + t["recon_2"] + t["cross"]))
    m.eval()  # held-out losses use the full objective whatever the schedule
    t = m.loss(m(x), x)
    torch.testing.assert_close(t["loss"], 2.0 * (t["recon_1"] + t["recon_2"] + t["cross"])
                               + t["kl_branches"] + 0.5 * t["kl_prior"])
    m.train()
    m.variational = 0.5  # the ramp: half the noise, half the KL weights
    m.reparameterize = lambda mu, logvar: mu + 1.0  # a known draw
    out = m(x)
    torch.testing.assert_close(out["rec_1"], m.decode(out["mu_1"] + 0.5))
    t = m.loss(out, x)
    torch.testing.assert_close(t["loss"], 2.0 * (t["recon_1"] + t["recon_2"] + t["cross"])
                               + 0.5 * (t["kl_branches"] + 0.5 * t["kl_prior"]))
    del m.reparameterize
    m.variational = 1.0
    out = m(x)
    assert not torch.allclose(out["rec_1"], m.decode(out["mu_1"]))  # sampled in full


def test_estimator_content_warmup_schedule_defaults_and_resume():
    vols, _ = make_subtomograms(16, 8, random_state=0)
    est = HarmonyEstimator("rigid3d", pose_search=20, encoder_widths=(4, 8), content_warmup=1,
                           **dict(TINY, max_epochs=3)).fit(vols)
    assert est.content_warmup_ == 1
    # one step per epoch: one epoch as an autoencoder, one of the ramp (starting at 0), then 1
    np.testing.assert_allclose(est.history_[:, "variational"], [0.0, 0.0, 1.0])
    est.partial_fit(vols)  # continued training stays past the warm-up
    assert est.history_[-1, "variational"] == 1.0
    est2 = pickle.loads(pickle.dumps(est)).partial_fit(vols)
    assert est2.history_[-1, "variational"] == 1.0
    # "auto": 6 epochs (at most a fifth of max_epochs) with a search, none without
    auto = HarmonyEstimator("rigid3d", pose_search=20, encoder_widths=(4, 8), **dict(TINY, max_epochs=10)).fit(vols)
    assert auto.content_warmup_ == 2
    np.testing.assert_allclose(auto.history_[:, "variational"][:5], [0.0, 0.0, 0.0, 0.5, 1.0])
    long = HarmonyEstimator("rigid3d", max_epochs=100)
    long._check_method_params(long._validate_input(vols, reset=True))  # the set-up fit does first
    assert long.content_warmup_ == 6
    X = np.random.default_rng(0).normal(size=(16, 8, 8)).astype(np.float32)
    plain = HarmonyEstimator(encoder_widths=(8,), **TINY).fit(X)
    assert plain.content_warmup_ == 0 and "variational" not in plain.history_[-1]
    with pytest.raises(ValueError, match="content_warmup"):
        HarmonyEstimator(content_warmup=-1, encoder_widths=(8,), **TINY).fit(X)


def test_module_search_with_content_from_input_is_one_pass_against_its_own_content():
    m = HarmonyModule((1, 8, 8, 8), 2, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d",
                      content_from="input", pose_search=64).eval()
    x = torch.randn(4, 1, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    xp = m.prepare(x)
    raw, mu, _ = m._split(m.encoder(xp))
    enc = m.encode(x)
    torch.testing.assert_close(enc["z_mean"], mu)  # the input pass's content, not re-read
    torch.testing.assert_close(enc["matrix"], m.rotation_search(xp, m.decode(mu), enc["shift"]))


def test_prior_free_bits_floor_the_per_dimension_prior_kl_in_the_objective_only():
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = HarmonyModule((1, 8, 8), 2, encoder_widths=(8,), prior_kl_weight=2.0)
    free = HarmonyModule((1, 8, 8), 2, encoder_widths=(8,), prior_kl_weight=2.0, prior_free_bits=5.0)
    free.load_state_dict(plain.state_dict())
    plain.eval(), free.eval()
    with torch.no_grad():
        out = plain(x)
        a, b = plain.loss(out, x), free.loss(out, x)
    per_dim = [gaussian_kl(out[f"mu_{i}"], out[f"logvar_{i}"]).mean(0) for i in (1, 2)]
    assert float(max(d.max() for d in per_dim)) < 5.0  # every dimension under the floor
    torch.testing.assert_close(b["kl_prior"], a["kl_prior"])  # recorded: the plain KL
    # in the objective each of the 2 dimensions of both branches counts 5 nats: 0.5 * 2 * (2 * 5)
    torch.testing.assert_close(b["loss"] - a["loss"], 2.0 * (10.0 - a["kl_prior"]))
    # below the floor the prior gives the code no gradient
    mu = out["mu_1"].clone().requires_grad_(True)
    loss = free.loss(dict(out, mu_1=mu, rec_1=out["rec_1"].detach()), x)
    grad = torch.autograd.grad(loss["loss"] - loss["kl_branches"], mu)[0]  # image terms: no mu_1 in them
    assert float(grad.abs().max()) == 0.0
    with pytest.raises(ValueError, match="prior_free_bits"):
        HarmonyEstimator(prior_free_bits=-1.0).fit(np.zeros((8, 8, 8), np.float32))
