"""Commutative Lie Group VAE: Lie basis, group decoder, L_hes / L_comm / L_rec."""

import numpy as np
import pytest
import torch

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.cfasl.model import CommutativeLieVAEModule
from sklearn_disentangle.cfasl.objectives import CFASLCommutativeLieObjective, CommutativeLieObjective


def module(z_dim=3, **kw):
    torch.manual_seed(0)
    return CommutativeLieVAEModule((1, 16, 16), z_dim, CommutativeLieObjective(), weights={"rec": 0.1}, **kw)


def test_lie_basis_init_is_small_normal_and_not_overwritten():
    m = module()
    std = float(m.lie_basis.detach().std())
    assert 5e-4 < std < 2e-3  # N(0, 0.001^2), not xavier (~0.5 for 3 x 3)
    est = CFASLVAE(z_dim=3, model_type="commutativevae", max_epochs=1)
    est._check_method_params(np.zeros((2, 1, 16, 16), np.float32))
    assert float(est._build_module((1, 16, 16)).lie_basis.detach().abs().max()) < 0.01


def test_decoder_goes_through_the_group_element():
    m = module()
    with torch.no_grad():
        m.lie_basis.zero_()
        m.lie_basis[0] = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    z = torch.tensor([[np.pi / 2, 5.0, -3.0]])
    g = m.group_element(z)[0]
    expected = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotation by pi/2
    torch.testing.assert_close(g, expected, atol=1e-5, rtol=1e-5)
    assert m.decode(z).shape == (1, 1, 16, 16)
    torch.testing.assert_close(m.decode_raw(z), m.decoder(g.reshape(1, -1)))


def test_basis_losses_on_commuting_and_non_commuting_bases():
    diag = torch.diag_embed(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # A0 A1 = 0: commuting, zero Hessian
    hes, comm = CommutativeLieObjective.basis_losses(diag)
    assert hes.item() == 0.0 and comm.item() == 0.0
    e01 = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    e10 = e01.T
    hes, comm = CommutativeLieObjective.basis_losses(torch.stack([e01, e10]))
    # A0 A1 = E00, A1 A0 = E11: ||.||^2 = 1 each, 2 off-diagonal pairs / D^2 = 4
    assert hes.item() == pytest.approx(2 / 4)
    # [A0, A1] = diag(1, -1): ||.||^2 = 2, for both ordered pairs
    assert comm.item() == pytest.approx(4 / 4)
    # the paper's commutator, not the reference's A_i A_j - (A_i A_j)^T: symmetric products count
    s1, s2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    _, comm = CommutativeLieObjective.basis_losses(torch.stack([s1, s2]))
    assert comm.item() > 1.0


def test_forward_eq_prob_uses_encoder_group_features_in_training_only():
    m = module(forward_eq_prob=1.0)
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(1)
    out = m(x)
    torch.testing.assert_close(out["x_raw"], m.decoder(out["group_enc"]))
    m.eval()
    out = m(x)
    torch.testing.assert_close(out["x_raw"], m.decoder(out["group_dec"]))
    assert out["group_enc"].min() >= 0 and out["group_enc"].max() <= 1  # sigmoid features


def test_loss_terms_add_up_with_the_rec_weight():
    m = module()
    m.eval()
    x = (torch.rand(6, 1, 16, 16) > 0.5).float()
    torch.manual_seed(0)
    t = {k: float(v.detach()) for k, v in m.loss(m(x), x).items()}
    expected = t["recon"] + t["kl"] + 40 * t["hessian"] + 20 * t["commutator"] + 0.1 * t["group_rec"]
    assert t["loss"] == pytest.approx(expected, rel=1e-5)


def test_cfasl_variant_decodes_the_transformed_latents():
    """Decoder equivariance compares dec(z g) with the partner image (the reference decoded z)."""
    torch.manual_seed(0)
    est = CFASLVAE(z_dim=3, model_type="cfasl_commutativevae", n_subsections=2, max_epochs=1)
    est._check_method_params(np.zeros((8, 1, 16, 16), np.float32))
    m = est._build_module((1, 16, 16))
    assert isinstance(m.objective, CFASLCommutativeLieObjective)
    calls = []
    original = m.decode_raw
    m.decode_raw = lambda z: calls.append(z.detach().clone()) or original(z)
    x = (torch.rand(8, 1, 16, 16) > 0.5).float()
    out = m(x)
    m.loss(out, x)
    assert len(calls) == 1 and calls[0].shape == (8, 3)
    assert not torch.allclose(calls[0], out["z"].detach())


def test_rec_weight_changes_the_group_reconstruction():
    rng = np.random.RandomState(0)
    X = (rng.rand(64, 16, 16) > 0.7).astype(np.float32)
    common = dict(z_dim=3, model_type="commutativevae", max_epochs=2, batch_size=16, lr=2e-3, random_state=0)
    lo = CFASLVAE(rec=0.0, **common).fit(X).history_[-1, "train_group_rec"]
    hi = CFASLVAE(rec=50.0, **common).fit(X).history_[-1, "train_group_rec"]
    assert hi < lo
