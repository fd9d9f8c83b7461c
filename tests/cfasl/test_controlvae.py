"""ControlVAE: the PI controller (paper algorithm) and its callback in CFASLVAE."""

import numpy as np
import pytest

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.cfasl.control import PIController, PIControllerCallback
from sklearn_disentangle.datasets import make_dsprites_like


def plant(beta):
    """A toy 'model': the KL it settles to at weight beta (falls as beta rises)."""
    return 40.0 / beta


@pytest.mark.parametrize("target", [5.0, 10.0, 20.0])
def test_controller_drives_a_toy_kl_to_the_target(target):
    pid = PIController(target=target, beta_min=1.0, beta_max=100.0, k_p=0.01, k_i=0.01)
    kl = plant(1.0)
    for _ in range(3000):
        kl = plant(pid.step(kl))
    assert kl == pytest.approx(target, rel=0.02)
    assert pid.beta_prev == pytest.approx(40.0 / target, rel=0.02)


def test_controller_respects_bounds_and_does_not_wind_up():
    pid = PIController(target=1.0, beta_min=2.0, beta_max=5.0, k_i=1.0)
    betas = [pid.step(100.0) for _ in range(50)]  # KL far above target: saturates at beta_max
    assert max(betas) == 5.0 and min(betas) >= 2.0
    # anti-windup: the integral stopped growing at saturation, so a KL below target brings
    # beta back down at once instead of after unwinding 50 steps of error
    assert pid.integral <= 3.0 + 1e-9
    down = [pid.step(0.0) for _ in range(5)]
    assert down[-1] < 5.0
    assert all(b >= 2.0 for b in down)


def test_controller_tracks_beta_prev_and_integral_moves():
    # the reference never updated beta_prev (0.0), so with beta_min >= 1 its integral froze
    pid = PIController(target=2.0, beta_min=1.0, k_i=0.001)
    pid.step(10.0)
    pid.step(10.0)
    assert pid.integral == pytest.approx(0.016)
    assert pid.beta_prev > 1.0 + 0.01


def test_controller_error_on_bad_bounds():
    with pytest.raises(ValueError, match="beta_max"):
        PIController(target=1.0, beta_min=5.0, beta_max=5.0)


def test_controlvae_raises_beta_and_pulls_kl_toward_c():
    # toy problem: 8 correlated Gaussian features (MLP path), free KL ~ 6 nats at beta = 1
    rng = np.random.RandomState(0)
    X = (rng.randn(256, 3) @ rng.randn(3, 8) * 2).astype(np.float32)
    common = dict(z_dim=3, max_epochs=6, batch_size=16, lr=3e-3, random_state=0)
    free = CFASLVAE(model_type="betavae", beta=1.0, **common).fit(X)
    ctrl = CFASLVAE(model_type="controlvae", beta=1.0, c=2.0, **common).fit(X)
    cb = dict(ctrl.net_.callbacks_)["kl_controller"]
    assert isinstance(cb, PIControllerCallback) and cb.target == 2.0 and cb.beta_min == 1.0
    betas = ctrl.history_[:, "beta"]
    assert np.all(np.diff(betas) > 0) and betas[-1] > 1.2, betas  # KL above c: beta keeps rising
    kl_free, kl_ctrl = free.history_[-1, "train_kl"], ctrl.history_[-1, "train_kl"]
    assert 2.0 < kl_ctrl < kl_free - 0.3, (kl_free, kl_ctrl)
    # with c above the KL, beta stays at beta_min: the baseline beta-VAE exactly
    loose = CFASLVAE(model_type="controlvae", beta=1.0, c=1000.0, **{**common, "max_epochs": 2}).fit(X)
    np.testing.assert_allclose(loose.history_[:, "beta"], 1.0)
    same = CFASLVAE(model_type="betavae", beta=1.0, **{**common, "max_epochs": 2}).fit(X)
    np.testing.assert_allclose(loose.transform(X), same.transform(X), rtol=1e-5, atol=1e-6)
