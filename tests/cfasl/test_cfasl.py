"""CFASLVAE baselines: objectives against closed forms, architecture, and learning."""

import math

import numpy as np
import pytest
import torch
from skorch.callbacks import GradientNormClipping

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.cfasl import OBJECTIVES
from sklearn_disentangle.cfasl.model import VAEModule
from sklearn_disentangle.cfasl.objectives import BetaTCVAEObjective, BetaVAEObjective, log_importance_weights
from sklearn_disentangle.datasets import make_dsprites_like
from sklearn_disentangle.nn import ConvDecoder, ConvEncoder, gaussian_kl, log_normal_pdf


@pytest.fixture(scope="module")
def sprites():
    factors, X = make_dsprites_like(resolution=16).sample(384, random_state=0)
    return X, factors


MODEL_TYPES = ["betavae", "betatcvae", "controlvae", "commutativevae",
               "cfasl_betavae", "cfasl_betatcvae", "cfasl_controlvae", "cfasl_commutativevae"]


def test_registry_of_model_types():
    assert sorted(OBJECTIVES) == sorted(MODEL_TYPES)
    for name, cls in OBJECTIVES.items():
        assert cls.codebook == name.startswith("cfasl_")
        assert cls.lie_group == name.endswith("commutativevae")
        assert cls.controlled == name.endswith("controlvae")


def test_gaussian_kl_closed_form():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # KL = 0.5 * (mu^2 + var - 1 - log var) per dim
    expected = [0.5 * (1 + 1 - 1 - 0), 0.5 * (4 + 4 - 1 - math.log(4))]
    np.testing.assert_allclose(gaussian_kl(mu, logvar)[0].numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("B, N", [(2, 2), (4, 100), (64, 737280)])
def test_mss_weights_are_the_paper_matrix(B, N):
    W = log_importance_weights(B, N).double().exp()
    np.testing.assert_allclose(W.sum(dim=1).numpy(), np.ones(B), rtol=1e-6)
    np.testing.assert_allclose(torch.diagonal(W).numpy(), np.full(B, 1.0 / N), rtol=1e-6)
    strat = (N - B + 1) / (N * (B - 1))
    for b in range(B):
        assert W[b, (b + 1) % B].item() == pytest.approx(strat, rel=1e-6)
    if B > 2:
        assert W[0, 2].item() == pytest.approx(1.0 / (B - 1), rel=1e-6)


def test_mws_weights_and_error_when_dataset_smaller_than_batch():
    W = log_importance_weights(4, 10, "mws").exp()
    np.testing.assert_allclose(W.numpy(), np.full((4, 4), 1 / 40), rtol=1e-6)
    with pytest.raises(ValueError, match="dataset_size"):
        log_importance_weights(8, 4, "mss")


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_tcvae_decomposition_telescopes_to_log_ratio(estimator):
    """MI + TC + dimension-wise KL equals E[log q(z|x) - log p(z)] exactly."""
    torch.manual_seed(0)
    B, D = 16, 5
    mu, logvar = torch.randn(B, D), torch.randn(B, D) * 0.3
    z = mu + torch.exp(0.5 * logvar) * torch.randn(B, D)

    class M:
        beta = 1.0

    obj = BetaTCVAEObjective(dataset_size=1000, tc_estimator=estimator)
    penalty, terms = obj(M, {"z": z, "z_mean": mu, "z_logvar": logvar})
    log_ratio = (log_normal_pdf(z, mu, logvar).sum(1) - log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)).mean()
    assert float(terms["mi"] + terms["tc"] + terms["dwkl"]) == pytest.approx(float(log_ratio), rel=1e-5, abs=1e-5)
    assert float(penalty) == pytest.approx(float(log_ratio), rel=1e-5, abs=1e-5)
    M.beta = 3.0
    penalty3, terms3 = obj(M, {"z": z, "z_mean": mu, "z_logvar": logvar})
    assert float(penalty3 - penalty) == pytest.approx(2.0 * float(terms["tc"]), rel=1e-5, abs=1e-5)


def test_tcvae_total_correlation_is_small_for_independent_dims():
    torch.manual_seed(0)
    B, D, N = 512, 3, 512
    mu = torch.randn(B, D)  # aggregate posterior ~ factorised
    logvar = torch.full((B, D), math.log(0.05))
    z = mu + torch.exp(0.5 * logvar) * torch.randn(B, D)
    corr = mu.clone()
    corr[:, 1] = corr[:, 0]  # perfectly dependent dims
    zc = corr + torch.exp(0.5 * logvar) * torch.randn(B, D)

    class M:
        beta = 1.0

    obj = BetaTCVAEObjective(dataset_size=N)
    _, indep = obj(M, {"z": z, "z_mean": mu, "z_logvar": logvar})
    _, dep = obj(M, {"z": zc, "z_mean": corr, "z_logvar": logvar})
    assert float(dep["tc"]) > float(indep["tc"]) + 0.5


def test_beta_vae_loss_terms_add_up():
    m = VAEModule((1, 16, 16), z_dim=3, objective=BetaVAEObjective(), beta=4.0)
    x = (torch.rand(6, 1, 16, 16) > 0.5).float()
    terms = m.loss(m(x), x)
    terms = {k: float(v.detach()) for k, v in terms.items()}
    assert terms["loss"] == pytest.approx(terms["recon"] + 4.0 * terms["kl"], rel=1e-6)


@pytest.mark.parametrize("res, n_conv, n_deconv", [(64, 4, 4), (32, 3, 3), (16, 2, 2)])
def test_architecture_follows_the_reference_at_64_and_scales_down(res, n_conv, n_deconv):
    est = CFASLVAE(z_dim=10, max_epochs=1, random_state=0)
    est._check_method_params(np.zeros((2, 1, res, res), np.float32))
    est.reconstruction_ = "bernoulli"
    module = est._build_module((1, res, res))
    convs = [m for m in module.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in module.decoder.deconvs if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == n_conv and len(deconvs) == n_deconv
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (0, 0) for c in convs)
    assert module.fc_mu.in_features == 128  # dSprites' dense width for 1-channel images
    if res == 64:
        assert [c.out_channels for c in convs] == [32, 32, 64, 64]
        assert module.encoder.flat_dim == 256
        assert [c.out_channels for c in deconvs] == [64, 32, 32, 1]
        n_params = sum(p.numel() for p in module.parameters())
        assert 200_000 < n_params < 400_000
    x = torch.zeros(2, 1, res, res)
    assert module.decode(module.encode(x)["z_mean"]).shape == x.shape


def test_odd_sizes_and_three_channels():
    enc = ConvEncoder((3, 30, 30), out_dim=256)
    dec = ConvDecoder(6, (3, 30, 30), hidden_dim=256)
    assert dec(torch.zeros(1, 6)).shape == (1, 3, 30, 30)
    assert enc(torch.zeros(1, 3, 30, 30)).shape == (1, 256)
    est = CFASLVAE(max_epochs=1)
    est._n_train = 2
    est.reconstruction_ = "gaussian"
    assert est._build_module((3, 32, 32)).fc_mu.in_features == 256


def test_reconstruction_auto_and_bernoulli_range_check():
    binary = (np.random.RandomState(0).rand(8, 16, 16) > 0.5).astype(np.float32)
    grey = binary * 0.5
    assert CFASLVAE(max_epochs=1, z_dim=2).fit(binary).reconstruction_ == "bernoulli"
    assert CFASLVAE(max_epochs=1, z_dim=2).fit(grey).reconstruction_ == "gaussian"
    assert CFASLVAE(max_epochs=1, z_dim=2, reconstruction="bernoulli").fit(grey).reconstruction_ == "bernoulli"
    with pytest.raises(ValueError, match=r"reconstruction='bernoulli' needs X in \[0, 1\]"):
        CFASLVAE(max_epochs=1, reconstruction="bernoulli").fit(grey * 3 - 1)


def test_gradient_clipping_is_on_by_default_and_can_be_disabled():
    X = (np.random.RandomState(0).rand(8, 16, 16) > 0.5).astype(np.float32)
    est = CFASLVAE(z_dim=2, max_epochs=1).fit(X)
    clip = dict(est.net_.callbacks_)["gradient_clip"]
    assert isinstance(clip, GradientNormClipping) and clip.gradient_clip_value == 1.0
    est = CFASLVAE(z_dim=2, max_epochs=1, gradient_clip=None).fit(X)
    assert "gradient_clip" not in dict(est.net_.callbacks_)


@pytest.mark.parametrize("model_type", ["betavae", "betatcvae"])
def test_learns_on_sprites(model_type):
    # 32 px: at 16 px the smallest sprites are ~2 px and a few epochs only learn the mean image
    _, X = make_dsprites_like(resolution=32).sample(1024, random_state=0)
    est = CFASLVAE(z_dim=4, model_type=model_type, beta=1.0, max_epochs=6, batch_size=32, lr=2e-3,
                   random_state=0).fit(X)
    losses = est.history_[:, "train_loss"]
    assert losses[0] > 1.5 * losses[-1], losses
    recon = est.history_[:, "train_recon"]
    assert recon[-1] < recon[0]
    # the codes carry information: reconstructions beat the mean image by a clear margin
    rec = est.inverse_transform(est.transform(X))
    mean_err = np.mean((X - X.mean(0)) ** 2)
    assert np.mean((rec - X) ** 2) < 0.7 * mean_err
    assert est.history_[-1, "train_kl"] > 1.0


def test_beta_controls_the_kl(sprites):
    X, _ = sprites
    kl = {}
    for beta in (0.1, 8.0):
        est = CFASLVAE(z_dim=4, beta=beta, max_epochs=3, batch_size=32, lr=2e-3, random_state=0).fit(X)
        kl[beta] = est.history_[-1, "train_kl"]
    assert kl[8.0] < 0.5 * kl[0.1], kl


# ---------------------------------------------------------------- every model type

def tiny_cfasl(model_type, **kw):
    return CFASLVAE(**{**dict(z_dim=3, model_type=model_type, n_subsections=2, max_epochs=1, batch_size=16,
                              lr=1e-3, random_state=0), **kw})


@pytest.fixture(scope="module")
def tiny_X():
    _, X = make_dsprites_like(resolution=16).sample(48, random_state=0)
    return X


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_contract_essentials_for_every_model_type(model_type, tiny_X):
    import pickle

    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    X = tiny_X
    est = tiny_cfasl(model_type)
    assert est.fit(X) is est
    Z = est.transform(X)
    assert Z.shape == (len(X), 3) and Z.dtype == np.float32 and np.isfinite(Z).all()
    assert est.inverse_transform(Z).shape == X.shape
    assert np.isfinite(est.score(X))
    row = est.history_[-1]
    terms = [k for k in row if k.startswith("train_") and k not in ("train_loss", "train_batch_count")]
    assert all(np.isfinite(row[k]) for k in terms)
    if model_type.startswith("cfasl_"):
        assert {"train_parallel", "train_perpendicular", "train_commutativity", "train_sparsity",
                "train_prediction", "train_enc_equivariance", "train_dec_equivariance"} <= set(row)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "net_")
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.transform(X), Z)
    assert loaded.score(X) == est.score(X)
    # same random_state -> identical latents
    np.testing.assert_array_equal(clone(est).fit(X).transform(X), Z)
    search = GridSearchCV(clone(est), {"beta": [1.0, 2.0]}, cv=2).fit(X)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("model_type", MODEL_TYPES[1:])  # betavae: tests/test_common.py
def test_sklearn_check_estimator_for_new_model_types(model_type):
    from sklearn.utils.estimator_checks import check_estimator

    # sklearn's checks feed unscaled data (e.g. N(100, 1) features): beta-TCVAE's MI term
    # then pushes log-variances up until exp overflows unless they are bounded
    check_estimator(tiny_cfasl(model_type, z_dim=2, max_epochs=1))


@pytest.mark.parametrize("model_type", ["cfasl_betavae", "cfasl_commutativevae"])
@pytest.mark.parametrize("n", [1, 15, 17])
def test_odd_and_single_sample_batches_do_not_crash(model_type, n, tiny_X):
    est = tiny_cfasl(model_type, batch_size=n).fit(tiny_X[:max(n, 17)])
    assert np.isfinite(est.history_[-1, "train_loss"])
    single = tiny_cfasl(model_type, batch_size=4).fit(tiny_X[:1])
    assert single.history_[-1, "train_prediction"] == 0.0  # no pair in a batch of one


def test_selector_has_its_own_learning_rate(tiny_X):
    est = tiny_cfasl("cfasl_betavae", lr=1e-3).fit(tiny_X)
    groups = est.net_.optimizer_.param_groups
    sel = [g for g in groups if any(p is est.net_.module_.codebook.selector.weight for p in g["params"])]
    assert len(sel) == 1 and sel[0]["lr"] == pytest.approx(2e-4)
    rest = [g for g in groups if g is not sel[0]]
    assert all(g["lr"] == pytest.approx(1e-3) for g in rest)
    assert any(p is est.net_.module_.codebook.generators for g in rest for p in g["params"])
    est = tiny_cfasl("cfasl_betavae", selector_lr=5e-5).fit(tiny_X)
    assert sorted(g["lr"] for g in est.net_.optimizer_.param_groups) == [5e-5, 1e-3]
    # baselines have a single group
    assert len(tiny_cfasl("betavae").fit(tiny_X).net_.optimizer_.param_groups) == 1


def test_symmetries_and_apply_symmetry(tiny_X):
    import scipy.linalg

    est = tiny_cfasl("cfasl_betavae").fit(tiny_X)
    G = est.symmetries_
    assert G.shape == (3, 2, 3, 3)
    np.testing.assert_allclose(est.symmetry_elements_[1, 0], scipy.linalg.expm(G[1, 0].astype(np.float64)),
                               rtol=1e-4, atol=1e-5)
    Z = est.transform(tiny_X[:5])
    one = est.apply_symmetry(Z, section=1, subsection=0)
    np.testing.assert_allclose(one, Z @ scipy.linalg.expm(G[1, 0].astype(np.float64)), rtol=1e-4, atol=1e-5)
    many = est.apply_symmetry(Z, section=1, subsection=0, steps=[-1.0, 0.0, 1.0])
    assert many.shape == (3, 5, 3)
    np.testing.assert_allclose(many[1], Z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(est.apply_symmetry(many[2], 1, 0, steps=-1.0), Z, rtol=1e-3, atol=1e-4)
    mean = est.apply_symmetry(Z, section=2, steps=1.0)  # mean of the section's sub-symmetries
    np.testing.assert_allclose(mean, Z @ scipy.linalg.expm(G[2].mean(0).astype(np.float64)), rtol=1e-4, atol=1e-5)
    imgs = est.apply_symmetry(Z, section=0, steps=[0.0, 1.0], decode=True)
    assert imgs.shape == (2, 5, 16, 16)
    with pytest.raises(ValueError, match="section must be"):
        est.apply_symmetry(Z, section=3)
    with pytest.raises(ValueError, match="subsection must be"):
        est.apply_symmetry(Z, section=0, subsection=2)
    with pytest.raises(ValueError, match="columns"):
        est.apply_symmetry(Z[:, :2], section=0)
    base = tiny_cfasl("betavae").fit(tiny_X)
    with pytest.raises(AttributeError, match="no symmetry codebook"):
        base.symmetries_
    with pytest.raises(AttributeError, match="no Lie-algebra basis"):
        base.lie_basis_
    assert tiny_cfasl("commutativevae").fit(tiny_X).lie_basis_.shape == (3, 3, 3)


def test_plot_symmetry_actions(tiny_X):
    from sklearn_disentangle.plotting import plot_symmetry_actions, symmetry_actions

    est = tiny_cfasl("cfasl_controlvae").fit(tiny_X)
    grid = symmetry_actions(est, tiny_X[0], sections=[0, 2], subsection=1, steps=[-2, 0, 2])
    assert grid.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(grid[0, 1], est.inverse_transform(est.transform(tiny_X[:1]))[0], atol=1e-5)
    fig = plot_symmetry_actions(est, tiny_X[0], sections=[0, 2], steps=[-2, 0, 2], traversals=True)
    assert len(fig.axes) == 12


@pytest.mark.parametrize("params, match", [
    ({"th": 0.0}, "th"),
    ({"th": -0.1}, "th"),
    ({"n_subsections": 0}, "n_subsections"),
    ({"n_subsections": 2.5}, "n_subsections"),
    ({"c": 0.0}, "'c'"),
    ({"rec": -1.0}, "rec"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"gumbel_tau": 0.0}, "gumbel_tau"),
    ({"selector_lr": 0.0}, "selector_lr"),
    ({"model_type": "groupvae"}, "model_type"),
])
def test_bad_parameters_raise_clear_errors(params, match, tiny_X):
    with pytest.raises(ValueError, match=match):
        tiny_cfasl(**{"model_type": "cfasl_betavae", **params}).fit(tiny_X)


@pytest.mark.parametrize("model_type, init_std, falling", [
    ("cfasl_betavae", 0.5, ("loss", "recon", "dec_equivariance", "enc_equivariance", "commutativity", "sparsity")),
    ("cfasl_betatcvae", 1.0, ("loss", "recon", "dec_equivariance", "enc_equivariance", "commutativity", "sparsity",
                              "parallel", "prediction")),
    # codebook starts at N(0, 1e-6): commutativity and sparsity are ~0 from the start
    ("cfasl_commutativevae", 1.0, ("loss", "recon", "dec_equivariance", "enc_equivariance", "parallel")),
    ("cfasl_controlvae", 0.5, ("loss", "recon", "dec_equivariance", "enc_equivariance", "commutativity", "sparsity")),
    # baselines without a codebook (betavae / betatcvae: test_learns_on_sprites); the Lie basis
    # starts at N(0, 1e-3), so its Hessian and commutator penalties are ~1e-6 throughout
    ("controlvae", 1.0, ("loss", "recon")),
    ("commutativevae", 1.0, ("loss", "recon", "group_rec")),
])
def test_cfasl_short_fit_lowers_the_terms_that_should_fall(model_type, init_std, falling):
    _, X = make_dsprites_like(resolution=16).sample(256, random_state=0)
    est = CFASLVAE(z_dim=4, model_type=model_type, n_subsections=2, max_epochs=3, batch_size=32, lr=2e-3,
                   codebook_init_std=init_std, random_state=0).fit(X)
    h = est.history_
    for term in falling:
        values = h[:, f"train_{term}"]
        assert values[-1] < values[0], (term, values)


@pytest.mark.parametrize("model_type", ["cfasl_betavae", "cfasl_commutativevae"])
def test_three_channel_grey_images(model_type):
    rng = np.random.RandomState(0)
    X = rng.rand(32, 3, 16, 16).astype(np.float32)  # not binary: Gaussian likelihood
    est = tiny_cfasl(model_type).fit(X)
    assert est.reconstruction_ == "gaussian"
    assert est.inverse_transform(est.transform(X)).shape == X.shape
    assert est.net_.module_.fc_mu is not None and np.isfinite(est.history_[-1, "train_dec_equivariance"])
