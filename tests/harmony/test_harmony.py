"""HarmonyEstimator: shapes, poses and their bounds, the loss, gamma="auto", inputs, errors."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

from sklearn_disentangle import HarmonyEstimator, ParticleStack, StarReader
from sklearn_disentangle.cryoem.rotations import euler_to_matrix
from sklearn_disentangle.datasets.cryoem import make_cryoem_particles, make_subtomograms, render_volume
from sklearn_disentangle.harmony import auto_gamma
from sklearn_disentangle.harmony.model import HarmonyModule

TINY = {"max_epochs": 2, "batch_size": 16, "lr": 1e-3, "random_state": 0}


def particles(n=48, size=16, seed=0):
    stack, truth = make_cryoem_particles(n, size, n_conformations=2, snr=2.0, ctf=False, random_state=seed)
    return stack, truth


@pytest.fixture(scope="module")
def rigid2d():
    stack, _ = particles()
    X = stack.get_images()
    return HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), **TINY).fit(X), X


@pytest.fixture(scope="module")
def rigid3d():
    vols, _ = make_subtomograms(24, 12, random_state=0)
    return HarmonyEstimator("rigid3d", z_dim=2, encoder_widths=(4, 8, 16), **TINY).fit(vols), vols


# ----------------------------------------------------------------------------- gamma
@pytest.mark.parametrize("n, batch, expected", [
    (48, 16, 1), (1000, 1, 1), (1001, 1, 2), (100_000, 100, 1), (100_001, 100, 2),
    (250_000, 100, 3), (250_000, 50, 5), (1, 100, 1),
])
def test_auto_gamma_is_the_seed_rule(n, batch, expected):
    # the reference's estimate_optimal_gamma: ceil(M / (1000 * batch_size)), by hand
    assert auto_gamma(n, batch) == expected


def test_fitted_gamma_follows_the_rule_on_the_training_part():
    X = np.random.default_rng(0).normal(size=(40, 8, 8)).astype(np.float32)
    est = HarmonyEstimator(encoder_widths=(8,), max_epochs=1, batch_size=8, random_state=0).fit(X)
    assert est.gamma_ == auto_gamma(40, 8) == 1.0 and est.net_.module_.gamma == 1.0
    est = HarmonyEstimator(gamma=2.5, encoder_widths=(8,), max_epochs=1, random_state=0).fit(X)
    assert est.gamma_ == 2.5 and est.net_.module_.gamma == 2.5
    assert est.gamma == 2.5  # the parameter is not overwritten
    est = HarmonyEstimator(encoder_widths=(8,), max_epochs=1, validation_fraction=0.25, random_state=0).fit(X)
    assert est.gamma_ == auto_gamma(30, 100) == 1.0


@pytest.mark.parametrize("in_gamma", [True, False])
@pytest.mark.parametrize("prior", [0.0, 0.7])
def test_loss_combines_the_terms_as_documented(in_gamma, prior):
    torch.manual_seed(0)
    m = HarmonyModule((1, 12, 12), 3, kind="rigid2d", encoder_widths=(16,), gamma=2.0, prior_kl_weight=prior,
                      cross_weight_in_gamma=in_gamma)
    x = torch.randn(5, 1, 12, 12)
    t = m.loss(m(x), x)
    image = 2.0 * (t["recon_1"] + t["recon_2"] + t["cross"]) if in_gamma else \
        2.0 * (t["recon_1"] + t["recon_2"]) + t["cross"]
    torch.testing.assert_close(t["loss"], image + t["kl_branches"] + prior * t["kl_prior"])
    assert all(float(v.detach()) >= 0 for v in t.values())


def test_branch_kl_is_the_directed_gaussian_kl_divided_by_z_dim():
    m = HarmonyModule((1, 8, 8), 2, kind="rigid2d", encoder_widths=(8,))
    z = torch.zeros(3, 2)
    out = {"rec_1": torch.zeros(3, 1, 8, 8), "rec_2": torch.zeros(3, 1, 8, 8), "can_1": torch.zeros(3, 1, 8, 8),
           "can_2": torch.zeros(3, 1, 8, 8), "mu_1": z, "logvar_1": z, "mu_2": z + 1.0, "logvar_2": z + math.log(2.0)}
    # KL(N(0,1) || N(1,2)) = 0.5 (log 2 + (1 + 1) / 2 - 1) per dimension; summed over 2 dims, / z_dim
    expected = 0.5 * (math.log(2.0) + 1.0 - 1.0)
    assert float(m.loss(out, None)["kl_branches"]) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- outputs
def test_transform_is_the_content_mean_without_augmentation_or_sampling(rigid2d):
    est, X = rigid2d
    Z = est.transform(X)
    assert Z.shape == (len(X), 2) and Z.dtype == np.float32
    np.testing.assert_array_equal(est.transform(X), Z)  # no randomness
    with torch.no_grad():
        mu = est.net_.module_.encode(torch.as_tensor(X[:, None]))["z_mean"].numpy()
    np.testing.assert_allclose(Z, mu, rtol=1e-5, atol=1e-6)


def test_rigid2d_params_are_within_bounds(rigid2d):
    est, X = rigid2d
    p = est.transform_params(X)
    assert list(p.columns) == ["angle_deg", "shift_x", "shift_y"] and len(p) == len(X)
    assert p["angle_deg"].between(-180, 180).all()
    assert est.max_shift_ == 16 / 4
    assert (p[["shift_x", "shift_y"]].abs() <= est.max_shift_).all().all()
    assert p.dtypes.eq(np.float64).all()


def test_affine2d_scale_and_contrast_gain_are_within_bounds():
    X = np.random.default_rng(0).uniform(size=(32, 3, 16, 16)).astype(np.float32)
    aff = HarmonyEstimator("affine2d", encoder_widths=(16,), max_scale=1.5, **TINY).fit(X)
    p = aff.transform_params(X)
    assert list(p.columns) == ["angle_deg", "shift_x", "shift_y", "scale"]
    assert p["scale"].between(1 / 1.5, 1.5).all()
    con = HarmonyEstimator("contrast", encoder_widths=(4, 8, 16), gain_range=(0.7, 1.6), **TINY).fit(X)
    g = con.transform_params(X)
    assert list(g.columns) == ["gain"] and g["gain"].between(0.7, 1.6).all()
    assert con.normalize_ is None and con.decoder_output_ == "sigmoid"
    rec = con.inverse_transform(con.transform(X))
    assert rec.shape == X.shape and rec.min() >= 0 and rec.max() <= 1


def test_rigid3d_params_are_relion_euler_and_orthonormal_matrices(rigid3d):
    est, vols = rigid3d
    p = est.transform_params(vols)
    cols = [f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
    assert list(p.columns) == ["rot", "tilt", "psi"] + cols + ["shift_x", "shift_y", "shift_z"]
    mats = p[cols].to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-5)
    np.testing.assert_allclose(euler_to_matrix(p[["rot", "tilt", "psi"]].to_numpy().copy()).numpy(), mats, atol=1e-5)
    assert p["tilt"].between(0, 180).all()
    assert (p[["shift_x", "shift_y", "shift_z"]].abs() <= est.max_shift_).all().all()
    assert est.batch_size == "auto" or est.batch_size_ == 16


def test_rigid3d_defaults_follow_the_seed():
    est = HarmonyEstimator("rigid3d")
    assert (est.lr, est.z_dim, est.batch_size) == (1e-4, 1, "auto")
    vols, _ = make_subtomograms(4, 8, random_state=0)
    fitted = est.set_params(max_epochs=1, encoder_widths=(2, 4)).fit(vols)
    assert fitted.batch_size_ == 50 and fitted.augment_shift_ == 4.0
    assert HarmonyEstimator(encoder_widths=(4,), max_epochs=1).fit(vols[:, 0]).batch_size_ == 100


def test_half_turn_resolution_changes_angles_by_0_or_180_degrees_only(rigid2d):
    est, X = rigid2d
    p = est.transform_params(X)
    module = est.net_.module_
    module.resolve_half_turns = False
    try:
        raw = est.transform_params(X)
    finally:
        module.resolve_half_turns = True
    diff = np.abs(np.remainder(p["angle_deg"] - raw["angle_deg"] + 180, 360) - 180)
    assert np.all((diff < 1e-3) | (np.abs(diff - 180) < 1e-3))
    np.testing.assert_array_equal(p[["shift_x", "shift_y"]], raw[["shift_x", "shift_y"]])
    # each sample's chosen turn is the one closer to the decoding of its content mean
    xp = module.prepare(torch.as_tensor(X[:, None]))
    with torch.no_grad():
        enc = module.encode(torch.as_tensor(X[:, None]))
        template = module.decode(enc["z_mean"])
        chosen = module.choose_half_turn(xp, enc, template)
        err = [(module.canonicalize(xp, dict(enc, matrix=sign * enc["matrix"])) - template).pow(2).flatten(1).sum(1)
               for sign in (1, -1)]
    np.testing.assert_array_equal(chosen["half_turn"].numpy(), (err[1] < err[0]).numpy())
    np.testing.assert_array_equal(chosen["half_turn"].numpy(), diff > 90)


def test_rigid3d_half_turn_resolution_picks_the_180_degree_turn_about_the_right_axis():
    # content: blobs along +x (strong) and +y (weak); the template expects them on -x and -y,
    # i.e. turned by 180 degrees about the canonical z axis: candidate 3
    centres = np.array([[[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    x = torch.as_tensor(render_volume(centres, [1.2, 1.2], [1.0, 0.6], 13))[:, None]
    template = torch.as_tensor(render_volume(-centres * [1, 1, 0], [1.2, 1.2], [1.0, 0.6], 13))[:, None]
    m = HarmonyModule((1, 13, 13, 13), 1, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d",
                      resolve_half_turns=True, normalize=False)
    pose = {"matrix": torch.eye(3)[None], "shift": torch.zeros(1, 3)}
    out = m.choose_half_turn(x, pose, template)
    assert out["half_turn"].tolist() == [3]
    torch.testing.assert_close(out["matrix"][0], torch.diag(torch.tensor([-1.0, -1.0, 1.0])))
    assert (m.canonicalize(x, out) - template).abs().max() < 1e-4


def test_rigid3d_half_turn_resolution_changes_rotations_by_canonical_half_turns_only(rigid3d):
    _, vols = rigid3d
    est = HarmonyEstimator("rigid3d", z_dim=2, encoder_widths=(4, 8, 16), pose_search=0, **TINY).fit(vols)
    cols = [f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
    module = est.net_.module_
    assert module.resolve_half_turns and module.rotation_head == "6d"
    chosen = est.transform_params(vols)[cols].to_numpy().reshape(-1, 3, 3)
    module.resolve_half_turns = False
    try:
        raw = est.transform_params(vols)[cols].to_numpy().reshape(-1, 3, 3)
    finally:
        module.resolve_half_turns = True
    rel = np.round(raw.transpose(0, 2, 1) @ chosen, 4)  # M_raw^T M_chosen: identity or a half-turn
    allowed = [np.diag(d) for d in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]
    assert all(any(np.allclose(r, a, atol=1e-3) for a in allowed) for r in rel)


def test_rigid3d_rotation_heads():
    vols, _ = make_subtomograms(16, 8, random_state=0)
    for head, n_pose in (("6d", 9), ("axis_angle", 6)):
        est = HarmonyEstimator("rigid3d", rotation_head=head, encoder_widths=(4, 8), **TINY).fit(vols)
        assert est.net_.module_.n_pose == n_pose
        mats = est.transform_params(vols)[[f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]].to_numpy()
        mats = mats.reshape(-1, 3, 3)
        np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="rotation_head"):
        HarmonyEstimator("rigid3d", rotation_head="quaternion", max_epochs=1).fit(vols)


@pytest.mark.parametrize("resolve", [True, False])
def test_content_from_canonical_encodes_the_canonicalised_sample(resolve):
    stack, _ = particles(24)
    X = stack.get_images()
    est = HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), content_from="canonical", resolve_half_turns=resolve,
                           **TINY).fit(X)
    m = est.net_.module_
    x = m.prepare(torch.as_tensor(X[:, None]))
    with torch.no_grad():
        raw, mu_in, _ = m._split(m.encoder(x))
        pose = m._pose_from_raw(raw)
        turns = [pose["matrix"], -pose["matrix"]] if resolve else [pose["matrix"]]
        mus = [m._split(m.encoder(m.canonicalize(x, dict(pose, matrix=t))))[1] for t in turns]
    expected = torch.stack(mus).mean(0).numpy()
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(est.transform(X), mu_in.numpy(), atol=1e-3)  # not the single-pass content
    ref = HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), content_from="input", resolve_half_turns=resolve,
                           **TINY).fit(X)
    with torch.no_grad():
        mu_ref = ref.net_.module_._split(ref.net_.module_.encoder(x))[1]
    np.testing.assert_allclose(ref.transform(X), mu_ref.numpy(), rtol=1e-5, atol=1e-6)  # the reference's pass
    with pytest.raises(ValueError, match="content_from"):
        HarmonyEstimator(content_from="both", max_epochs=1).fit(X)


def test_fit_warns_when_the_content_code_is_inactive():
    stack, _ = particles(32)
    X = stack.get_images()
    with pytest.warns(UserWarning, match="content code is inactive"):
        est = HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), prior_kl_weight=100.0,
                               **dict(TINY, lr=1e-2, max_epochs=4)).fit(X)
    np.testing.assert_allclose(est.content_variance_, est.transform(X).astype(np.float64).var(axis=0), rtol=1e-4)
    assert est.content_variance_.shape == (2,) and (est.content_variance_ <= 0.01).all()
    # two classes that differ in more than pose (a blob and a ring): the code is active, no warning
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-8:8, -8:8]
    r = np.hypot(xx, yy)
    label = rng.integers(2, size=48)
    X = np.where(label[:, None, None] == 0, np.exp(-r ** 2 / 8), np.exp(-(r - 5) ** 2 / 2))
    X = (X + 0.05 * rng.standard_normal(X.shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = HarmonyEstimator(z_dim=1, encoder_widths=(32, 16), **dict(TINY, lr=1e-2, max_epochs=10)).fit(X)
    assert est.content_variance_[0] > 0.1


def test_inverse_transform_into_a_pose_round_trips(rigid2d):
    est, X = rigid2d
    Z = est.transform(X[:6])
    canonical = est.inverse_transform(Z)
    assert canonical.shape == (6, 16, 16)
    pose = pd.DataFrame({"angle_deg": [0.0, 90.0, 180.0, -45.0, 30.0, 0.0], "shift_x": [0, 1, 0, -2, 0.5, 0],
                         "shift_y": [0, 0, 2, 1, -1, 0]}, dtype=float)
    posed = est.inverse_transform(Z, params=pose)
    np.testing.assert_allclose(posed[0], canonical[0], atol=1e-5)  # identity pose
    # 180 degrees about pixel 8, then 2 rows down: out[y, x] = canonical[18 - y, 16 - x]
    np.testing.assert_allclose(posed[2][3:, 1:], canonical[2][15:2:-1, 15:0:-1], atol=1e-4)
    # canonicalising with the same pose brings the posed images back (interior)
    module = est.net_.module_
    p = est._pose_from_params(pose, 6)
    back = module.canonicalize(torch.as_tensor(posed[:, None]), p)[:, 0].numpy()
    yy, xx = np.meshgrid(np.arange(16) - 8, np.arange(16) - 8, indexing="ij")
    inner = np.hypot(xx, yy) < 5
    scale = np.abs(canonical).max()
    # (90 and 180 degrees with integer shifts map pixel centres onto pixel centres: exact)
    np.testing.assert_allclose(back[1:3][:, inner], canonical[1:3][:, inner], atol=1e-4 * scale)
    # the transform_params frame works directly
    assert est.inverse_transform(Z, params=est.transform_params(X[:6])).shape == (6, 16, 16)


def test_inverse_transform_rejects_bad_params(rigid2d):
    est, X = rigid2d
    Z = est.transform(X[:3])
    good = est.transform_params(X[:3])
    with pytest.raises(TypeError, match="DataFrame"):
        est.inverse_transform(Z, params=good.to_numpy())
    with pytest.raises(ValueError, match="rows"):
        est.inverse_transform(Z, params=good.iloc[:2])
    with pytest.raises(ValueError, match="shift_y"):
        est.inverse_transform(Z, params=good.drop(columns="shift_y"))
    bad = good.copy()
    bad.loc[0, "angle_deg"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.inverse_transform(Z, params=bad)


def test_rigid3d_inverse_transform_accepts_euler_or_matrix(rigid3d):
    est, vols = rigid3d
    Z = est.transform(vols[:2])
    p = est.transform_params(vols[:2])
    a = est.inverse_transform(Z, params=p)
    b = est.inverse_transform(Z, params=p[["rot", "tilt", "psi", "shift_x", "shift_y", "shift_z"]])
    assert a.shape == (2, 12, 12, 12)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_same_seed_same_poses_other_seed_differs(rigid2d):
    est, X = rigid2d
    again = clone(est).fit(X)
    pd.testing.assert_frame_equal(again.transform_params(X), est.transform_params(X))
    other = clone(est).set_params(random_state=1).fit(X)
    assert not np.allclose(other.transform_params(X).to_numpy(), est.transform_params(X).to_numpy())


def test_training_lowers_the_loss():
    stack, _ = particles(64, 16)
    est = HarmonyEstimator(encoder_widths=(64, 32), max_epochs=8, batch_size=16, lr=1e-3, random_state=0)
    est.fit(stack.get_images())
    loss = est.history_[:, "train_loss"]
    assert loss[-1] < 0.8 * loss[0]
    for term in ("recon_1", "recon_2", "cross", "kl_branches", "kl_prior"):
        assert np.isfinite(est.history_[:, f"train_{term}"]).all()


# ----------------------------------------------------------------------------- inputs
def test_channel_axis_and_flat_input_with_image_shape_are_equivalent(rigid2d):
    est, X = rigid2d
    a = clone(est).fit(X[:, None])
    np.testing.assert_array_equal(a.transform(X[:, None]), est.transform(X))
    b = clone(est).set_params(image_shape=(16, 16)).fit(X.reshape(len(X), -1))
    np.testing.assert_array_equal(b.transform(X.reshape(len(X), -1)), est.transform(X))
    assert list(b.transform_params(X.reshape(len(X), -1)).columns) == ["angle_deg", "shift_x", "shift_y"]


def test_flat_input_without_image_shape_has_no_pose():
    X = np.random.default_rng(0).normal(size=(20, 5))
    est = HarmonyEstimator(encoder_widths=(8,), max_epochs=1, random_state=0).fit(X)
    assert est.transform(X).shape == (20, 1)
    assert float(est.history_[-1, "train_cross"]) == 0.0
    with pytest.raises(ValueError, match="no pose"):
        est.transform_params(X)


def test_particle_stack_input_and_star_pipeline(tmp_path):
    stack, truth = particles(40, 16)
    est = HarmonyEstimator(z_dim=2, encoder_widths=(16,), max_epochs=1, random_state=0)
    before = stack.get_images().copy()
    Z = est.fit(stack).transform(stack)
    np.testing.assert_array_equal(stack.get_images(), before)  # user data untouched
    np.testing.assert_array_equal(Z, clone(est).fit(stack.get_images()).transform(stack.get_images()))
    assert len(est.transform_params(stack[:5])) == 5
    # a RELION star file + .mrcs stack, written with the library's writer
    path = tmp_path / "particles.star"
    stack.to_star(path)
    assert (tmp_path / "particles.mrcs").exists()
    pipe = Pipeline([("read", StarReader()), ("harmony", clone(est)),
                     ("kmeans", KMeans(n_clusters=2, n_init=2, random_state=0))])
    labels = pipe.fit(str(path)).predict(str(path))
    assert labels.shape == (40,) and set(labels) <= {0, 1}
    with pytest.raises(ValueError, match="rigid3d"):
        HarmonyEstimator("rigid3d").fit(stack)


def test_non_cubic_volumes_and_channels_first_volumes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 8, 10, 12)).astype(np.float32)
    est = HarmonyEstimator("rigid3d", encoder_widths=(4, 8), **{**TINY, "max_epochs": 1}).fit(X)
    assert est.input_shape_ == (1, 8, 10, 12)
    assert est.inverse_transform(est.transform(X[:2])).shape == (2, 8, 10, 12)
    est2 = clone(est).fit(X[:, None])
    np.testing.assert_array_equal(est2.transform(X[:, None]), est.transform(X))


def test_best_checkpoint_uses_the_held_out_loss(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 8, 8)).astype(np.float32)
    est = HarmonyEstimator(encoder_widths=(8,), max_epochs=3, validation_fraction=0.25, checkpoint_dir=tmp_path,
                           random_state=0).fit(X)
    assert (tmp_path / "best_params.pt").exists()
    assert "valid_loss" in est.history_[-1]
    assert not (HarmonyEstimator(encoder_widths=(8,), max_epochs=1, checkpoint_dir=tmp_path / "b", random_state=0)
                .fit(X) and (tmp_path / "b" / "best_params.pt").exists())


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, X_shape, match", [
    ({"kind": "rigid4d"}, (8, 8, 8), "kind"),
    ({"kind": "rigid3d"}, (8, 8, 8), "expects X of shape"),
    ({"kind": "contrast", "normalize": "per_sample"}, (8, 8, 8), "z-score away the gain"),
    ({"decoder_output": "sigmoid"}, (8, 8, 8), "needs the model to see values in"),
    ({"gain_range": (2.0, 1.0)}, (8, 8, 8), "gain_range"),
    ({"augment_scale": (1.0,)}, (8, 8, 8), "augment_scale"),
    ({"gamma": 0}, (8, 8, 8), "gamma"),
    ({"batch_size": "big"}, (8, 8, 8), "batch_size"),
    ({"encoder_widths": (4, 0)}, (8, 8, 8), "encoder_widths"),
    ({"kind": "contrast", "encoder_widths": (4, 4, 4, 4, 8)}, (8, 8, 8), "stride-2 convolutions"),
])
def test_bad_parameters_raise_clear_errors(params, X_shape, match):
    X = np.random.default_rng(0).uniform(-1, 2, size=X_shape).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        HarmonyEstimator(max_epochs=1, **params).fit(X)


def test_shape_mismatch_after_fit(rigid2d):
    est, X = rigid2d
    with pytest.raises(ValueError, match="expecting 256 features|fitted on shape"):
        est.transform(X[:, :15, :15])
    with pytest.raises(ValueError, match="z_dim"):
        est.inverse_transform(np.zeros((2, 5)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_poses_and_pickle():
    import pickle

    stack, _ = particles(64, 16)
    X = stack.get_images()
    est = HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), device="cuda", **TINY).fit(X)
    assert str(est.net_.device).startswith("cuda")
    p = est.transform_params(X)
    assert (p[["shift_x", "shift_y"]].abs() <= est.max_shift_).all().all()
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.transform(X), est.transform(X), rtol=1e-5, atol=1e-5)


def test_contrast_loss_frames():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    obs = HarmonyModule((3, 8, 8), 1, kind="contrast", encoder_widths=(4, 8), normalize=False,
                        decoder_output="sigmoid", prior_kl_weight=0.0)
    out = obs(x)
    t = obs.loss(out, x)
    g1, g2 = out["gain_1"].view(-1, 1, 1, 1), out["gain_2"].view(-1, 1, 1, 1)
    sse = lambda a, b: (a - b).pow(2).flatten(1).sum(1).mean()  # noqa: E731
    torch.testing.assert_close(t["recon_1"], sse(out["rec_1"] * g1, x))
    torch.testing.assert_close(t["cross"], sse(x, out["x_2"] * g1 / g2))
    obs.contrast_frame = "canonical"  # the reference's frame
    t = obs.loss(out, x)
    torch.testing.assert_close(t["recon_1"], sse(out["rec_1"], x / g1))
    torch.testing.assert_close(t["cross"], sse(x / g1, out["x_2"] / g2))
    with pytest.raises(ValueError, match="contrast_frame"):
        HarmonyModule((3, 8, 8), 1, kind="contrast", encoder_widths=(4, 8), contrast_frame="raw")
