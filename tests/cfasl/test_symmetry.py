"""The CFASL symmetry codebook: group elements, regularisers, section switch, equivariance."""

import numpy as np
import pytest
import torch

from sklearn_disentangle.cfasl.symmetry import (
    SymmetryCodebook,
    act,
    change_vectors,
    commutativity_loss,
    parallel_loss,
    perpendicular_loss,
    sparsity_loss,
)

D, T, B = 4, 3, 10


def aligned_codebook(seed=0):
    """Each section scales its own coordinate: G[i, j] = a_ij E_ii (diagonal, commuting)."""
    rng = torch.Generator().manual_seed(seed)
    a = torch.rand(D, T, generator=rng) + 0.5
    G = torch.zeros(D, T, D, D)
    for i in range(D):
        G[i, :, i, i] = a[i]
    return G


def codes(seed=0):
    return torch.randn(B, D, generator=torch.Generator().manual_seed(seed)) + 0.1


def test_composite_and_its_inverse_multiply_to_identity():
    torch.manual_seed(0)
    cb = SymmetryCodebook(D, n_subsections=T, init_std=0.3)
    z = torch.randn(8, D)
    pr = cb.pair(z[:4], torch.zeros(4, D), z[4:], torch.zeros(4, D), z[:4], z[4:])
    eye = torch.eye(D).expand(4, D, D)
    torch.testing.assert_close(pr["g"] @ pr["g_inv"], eye, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pr["g_inv"] @ pr["g"], eye, atol=1e-4, rtol=1e-4)
    # the weights: switch in [0, 1], attention a distribution over sub-sections
    assert pr["attention"].shape == (4, D, T)
    torch.testing.assert_close(pr["attention"].sum(-1), torch.ones(4, D))
    assert ((pr["switch"] >= 0) & (pr["switch"] <= 1)).all()
    # A is the switch/attention-weighted sum of the codebook
    w = pr["switch"][..., None] * pr["attention"]
    torch.testing.assert_close(pr["A"], torch.einsum("pst,stij->pij", w, cb.generators.detach()))


def test_act_is_row_vector_convention():
    z = torch.tensor([[1.0, 2.0]])
    g = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert act(z, g).tolist() == [[2.0, 1.0]]
    assert act(z, g[None]).tolist() == [[2.0, 1.0]]


def test_regularisers_vanish_on_a_factor_aligned_commuting_codebook():
    G = aligned_codebook()
    z = codes()
    delta = change_vectors(z, torch.linalg.matrix_exp(G))
    assert delta.shape == (D, T, B, D)
    assert sparsity_loss(delta).item() == pytest.approx(0.0, abs=1e-8)
    assert parallel_loss(delta).item() == pytest.approx(0.0, abs=1e-6)
    for j in range(T):
        sub = torch.full((D,), j)
        assert perpendicular_loss(delta, sub).item() == pytest.approx(0.0, abs=1e-8)
    assert commutativity_loss(G).item() == pytest.approx(0.0, abs=1e-8)


def test_regularisers_are_positive_on_a_random_codebook():
    torch.manual_seed(0)
    G = 0.3 * torch.randn(D, T, D, D)
    z = codes()
    delta = change_vectors(z, torch.linalg.matrix_exp(G))
    assert sparsity_loss(delta).item() > 1e-3
    assert parallel_loss(delta).item() > 0.1
    assert perpendicular_loss(delta).item() > 1e-3
    assert commutativity_loss(G).item() > 1e-3


def test_commutativity_is_the_true_commutator_over_all_elements():
    # two non-commuting elements placed in *different* sections (the reference only checked section 0)
    G = torch.zeros(2, 1, 2, 2)
    G[0, 0, 0, 1] = 1.0  # E_01
    G[1, 0, 1, 0] = 1.0  # E_10; [E_01, E_10] = diag(1, -1)
    assert commutativity_loss(G).item() == pytest.approx(2.0)
    # mean over pairs a < b: a third, commuting-with-nothing-nonzero element (zero) halves... thirds it
    G3 = torch.zeros(3, 1, 2, 2)
    G3[:2] = G
    assert commutativity_loss(G3).item() == pytest.approx(2.0 / 3)
    # symmetric, but not commuting: A A^T-style code version would give 0 for symmetric products
    S1 = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    S2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert commutativity_loss(torch.stack([S1, S2])).item() == pytest.approx(8.0)


def test_perpendicular_draws_subsections_from_range_of_n_subsections():
    # D = 2 sections but T = 5 sub-sections: only the last one is non-orthogonal across sections
    delta = torch.zeros(2, 5, 3, 2)
    delta[0, :, :, 0] = 1.0
    delta[1, :4, :, 1] = 1.0
    delta[1, 4, :, 0] = 1.0  # sub-section 4 of section 1 moves section 0's coordinate
    torch.manual_seed(0)
    values = {round(perpendicular_loss(delta).item(), 6) for _ in range(200)}
    assert values == {0.0, 0.5}  # index 4 (>= D) is drawn sometimes


def test_parallel_and_sparsity_distinguish_directions():
    par = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])[None, :, None, :]  # (1, 2, 1, 2)
    diag = torch.tensor([[1.0, 0.0], [1.0, 1.0]])[None, :, None, :]
    assert parallel_loss(par).item() < 1e-6 < parallel_loss(diag).item()
    assert sparsity_loss(par).item() == 0.0
    assert sparsity_loss(diag).item() == pytest.approx(0.5)


def test_zero_change_vector_gives_finite_losses():
    delta = torch.zeros(2, 2, 3, 2)
    assert torch.isfinite(parallel_loss(delta)) and torch.isfinite(perpendicular_loss(delta))


def test_prediction_loss_is_cross_entropy_on_logits():
    logits = torch.tensor([[[0.0, 5.0], [5.0, 0.0]]])  # confident and right
    label = torch.tensor([[1, 0]])
    good = SymmetryCodebook.prediction_loss(logits, label).item()
    bad = SymmetryCodebook.prediction_loss(logits, 1 - label).item()
    assert good == pytest.approx(2 * np.log1p(np.exp(-5.0)), rel=1e-5)
    assert bad > 9.0  # the double-softmax version is bounded by 2 * log(1 + e) ~ 2.6


def test_pseudo_label_uses_threshold_and_switch_input_uses_logvar2():
    torch.manual_seed(0)
    cb = SymmetryCodebook(2, n_subsections=2, th=0.5)
    z1 = torch.tensor([[0.0, 0.0]])
    z2 = torch.tensor([[0.4, 0.6]])
    pr = cb.pair(z1, torch.zeros(1, 2), z2, torch.zeros(1, 2), z1, z2)
    assert pr["label"].tolist() == [[0, 1]]
    # the switch input depends on logvar2 (the reference used mu2 there)
    a = cb.pair(z1, torch.zeros(1, 2), z2, torch.zeros(1, 2), z1, z2)["logits"]
    b = cb.pair(z1, torch.zeros(1, 2), z2, torch.full((1, 2), 3.0), z1, z2)["logits"]
    assert not torch.allclose(a, b)


def test_gradients_reach_codebook_and_selector():
    torch.manual_seed(0)
    cb = SymmetryCodebook(3, n_subsections=2, init_std=0.2)
    z = torch.randn(6, 3)
    reg = cb.regularisers(z)
    pr = cb.pair(z[:3], torch.zeros(3, 3), z[3:], torch.zeros(3, 3), z[:3], z[3:])
    total = sum(reg.values()) + cb.prediction_loss(pr["logits"], pr["label"]) + act(z[:3], pr["g"]).pow(2).mean()
    total.backward()
    assert cb.generators.grad.abs().sum() > 0
    assert cb.selector.weight.grad.abs().sum() > 0


def test_bad_codebook_init_is_an_error():
    with pytest.raises(ValueError, match="init must be"):
        SymmetryCodebook(2, init="xavier")
