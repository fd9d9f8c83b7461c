"""DiffAE3D as an estimator: EMA latents, DDIM determinism and reconstruction, editing, sampling, errors.

One short fit per geometry is shared by the module (train once, test many): 16^3 volumes
(isotropic resampling) and 16 x 32 x 32 volumes (in-plane-only, the cardiac set-up), width 8.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sklearn_disentangle import DiffAE3D
from sklearn_disentangle.datasets import make_cardiac_volumes

SMALL = dict(z_dim=16, base_channels=8, channel_mult=(1, 2), encoder_channel_mult=(1, 2, 2), num_res_blocks=1,
             attention_resolutions=(), dropout=0.0, batch_size=8, lr=2e-3, ema_decay=0.999, random_state=0)


def _cardiac(n, depth, size, seed=0):
    d = make_cardiac_volumes(n, n_frames=depth, n_slices=1, size=size, random_state=seed)
    return np.clip(d.volumes[:, :, :, 0] * 2 - 1, -1, 1).astype(np.float32), d.factors


@pytest.fixture(scope="module")
def cube():
    """16^3 cardiac-like volumes and a DiffAE3D trained for 30 steps on them."""
    X, factors = _cardiac(48, 16, 16)
    est = DiffAE3D(**SMALL, inplane_only=False, max_epochs=5).fit(X)
    return est, X, factors


@pytest.fixture(scope="module")
def cine():
    """16 x 32 x 32 (frames as depth, in-plane-only resampling), a short fit."""
    X, factors = _cardiac(8, 16, 32)
    est = DiffAE3D(**{**SMALL, "batch_size": 4}, inplane_only=True, max_epochs=1).fit(X)
    return est, X, factors


def test_training_lowers_the_loss_and_logs_terms(cube):
    est, _, _ = cube
    losses = [h["train_loss"] for h in est.history_]
    assert losses[-1] < 0.5 * losses[0]
    row = est.history_[-1]
    assert np.isfinite(row["train_eps_mse"]) and np.isfinite(row["train_z_rms"])
    assert row["ema_decay"] == pytest.approx((1 + 29) / (10 + 29))  # warm-up decay after 30 steps


def test_transform_uses_the_ema_encoder_whose_weights_differ_from_the_live_ones(cube):
    est, X, _ = cube
    m = est.net_.module_
    for live, ema in ((m.encoder, m.ema_encoder), (m.denoiser, m.ema_denoiser)):
        diffs = [float((a - b).detach().abs().max()) for a, b in zip(live.parameters(), ema.parameters())]
        assert max(diffs) > 0
    Z = est.transform(X[:4])
    with torch.no_grad():
        x = torch.from_numpy(X[:4])
        np.testing.assert_allclose(Z, m.ema_encoder(x).numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(Z, m.encoder(x).numpy(), atol=1e-4)


def test_ddim_decode_is_deterministic_given_x_T_and_z(cube, cine):
    for est, X, _ in (cube, cine):
        Z = est.transform(X[:2])
        x_T = np.random.RandomState(1).standard_normal(X[:2].shape).astype(np.float32)
        a = est.inverse_transform(Z, x_T=x_T, n_steps=5)
        b = est.inverse_transform(Z, x_T=x_T, n_steps=5)
        np.testing.assert_array_equal(a, b)
        assert a.shape == X[:2].shape and a.dtype == np.float32
        other = est.inverse_transform(Z, x_T=-x_T, n_steps=5)
        assert not np.allclose(a, other)


def test_random_x_T_is_seeded(cube):
    est, X, _ = cube
    Z = est.transform(X[:2])
    np.testing.assert_array_equal(est.inverse_transform(Z, n_steps=5), est.inverse_transform(Z, n_steps=5))
    np.testing.assert_array_equal(est.inverse_transform(Z, n_steps=5, random_state=3),
                                  est.inverse_transform(Z, n_steps=5, random_state=3))
    assert not np.array_equal(est.inverse_transform(Z, n_steps=5, random_state=3),
                              est.inverse_transform(Z, n_steps=5, random_state=4))


def test_inversion_then_decoding_reconstructs_the_training_input(cube):
    est, X, _ = cube
    x = X[:4]
    rec = est.reconstruct(x, n_steps=20)
    mse = float(((rec - x) ** 2).mean())
    assert mse < 0.05 * float(x.var()), (mse, float(x.var()))
    # the inverted x_T carries the detail: decoding the same z from fresh noise is far worse
    free = est.inverse_transform(est.transform(x), n_steps=20, random_state=0)
    assert mse < 0.5 * float(((free - x) ** 2).mean())
    # encode_stochastic + inverse_transform is what reconstruct does
    x_T = est.encode_stochastic(x, n_steps=20)
    np.testing.assert_allclose(est.inverse_transform(est.transform(x), x_T=x_T, n_steps=20), rec, atol=1e-5)


def test_inversion_ending_at_the_last_step_reconstructs_better(cube):
    """inversion_end='last_step' mirrors decoding; DiffAE's 'noise' end drops a small component."""
    est, X, _ = cube
    x = X[:4]
    errors = {}
    assert (est.inversion_end, est.inversion_iters) == ("last_step", 1)  # the defaults
    try:
        for end in ("noise", "last_step"):
            est.set_params(inversion_end=end, inversion_iters=0)  # read at call time: no refit needed
            errors[end] = float(((est.reconstruct(x, n_steps=20) - x) ** 2).mean())
    finally:
        est.set_params(inversion_end="last_step", inversion_iters=1)
    assert errors["last_step"] < errors["noise"]


def test_fixed_point_inversion_makes_the_round_trip_nearly_exact(cube):
    """inversion_iters > 0 solves each inversion step against the decoding step it must undo."""
    est, X, _ = cube
    x = X[:4]
    psnr = {}
    try:
        for iters in (0, 1, 4):
            est.set_params(inversion_end="last_step", inversion_iters=iters)
            mse = ((est.reconstruct(x, n_steps=20) - x) / 2) ** 2
            psnr[iters] = float(np.mean(10 * np.log10(1 / mse.reshape(len(x), -1).mean(1))))
    finally:
        est.set_params(inversion_end="last_step", inversion_iters=1)
    assert psnr[0] < psnr[1] < psnr[4], psnr
    assert psnr[4] > psnr[0] + 10 and psnr[4] > 45, psnr
    x_T = est.set_params(inversion_iters=4).encode_stochastic(x, n_steps=20)
    est.set_params(inversion_iters=1)
    assert np.isfinite(x_T).all() and 0.5 < float(x_T.std()) < 1.5  # still a noise-like code


def test_decoding_depends_on_z(cube):
    """DiffAE issue #63/#77: with a shared x_T, two subjects' codes decode differently.

    After 30 steps the effect is small (most detail is still carried by x_T; the benchmark
    measures how much z encodes after real training), but it must not be zero: the gradient
    path to z_sem opens after the zero-initialised layers have moved."""
    est, X, _ = cube
    Z = est.transform(X[:2])
    x_T = np.repeat(est.encode_stochastic(X[:1], n_steps=10), 2, axis=0)
    a, b = est.inverse_transform(Z, x_T=x_T, n_steps=10)
    assert float(np.abs(a - b).mean()) > 1e-5


def test_manipulate_moves_along_a_direction_and_alpha_zero_reconstructs(cube):
    est, X, _ = cube
    w = np.zeros(est.z_dim)
    w[0] = 3.0
    base = est.manipulate(X[:2], w, alpha=0.0, n_steps=10)
    np.testing.assert_allclose(base, est.reconstruct(X[:2], n_steps=10), atol=1e-5)
    moved = est.manipulate(X[:2], w, alpha=np.array([2.0, -2.0]), n_steps=10)
    assert moved.shape == X[:2].shape and float(np.abs(moved - base).mean()) > 1e-5
    with pytest.raises(ValueError, match="direction must have shape"):
        est.manipulate(X[:2], np.ones(3), 1.0)
    with pytest.raises(ValueError, match="non-zero"):
        est.manipulate(X[:2], np.zeros(est.z_dim), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        est.manipulate(X[:2], w, np.ones(5))


def test_latent_statistics_and_sampling(cube):
    est, X, _ = cube
    Z = est.transform(X).astype(np.float64)
    np.testing.assert_allclose(est.latent_mean_, Z.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.latent_scale_, Z.std(0), rtol=1e-4)
    assert est.latent_density_.n_components == 4
    np.testing.assert_array_equal(est.sample_latents(5), est.sample_latents(5))
    drawn = est.sample_latents(2000, random_state=0)
    assert np.all(np.abs(drawn.mean(0) - Z.mean(0)) < 0.25 * Z.std(0) + 1e-6)
    new, codes = est.sample(2, random_state=1, n_steps=5, return_latents=True)
    assert new.shape == (2,) + X.shape[1:] and codes.shape == (2, est.z_dim)
    assert new.min() >= -1 and new.max() <= 1
    with pytest.raises(ValueError, match="n_samples"):
        est.sample_latents(0)


def test_score_is_reproducible_and_uses_the_seeded_noise(cube):
    est, X, _ = cube
    assert est.score(X[:8]) == est.score(X[:8])
    assert -1.0 < est.score(X[:8]) < 0


def test_pickle_keeps_ema_weights_and_decodes_identically(cine):
    est, X, _ = cine
    loaded = pickle.loads(pickle.dumps(est))
    Z = est.transform(X[:2])
    np.testing.assert_array_equal(loaded.transform(X[:2]), Z)
    x_T = est.encode_stochastic(X[:2], n_steps=3)
    np.testing.assert_array_equal(loaded.encode_stochastic(X[:2], n_steps=3), x_T)
    np.testing.assert_array_equal(loaded.inverse_transform(Z, n_steps=3), est.inverse_transform(Z, n_steps=3))


def test_input_errors_name_the_fix(cine):
    est, X, _ = cine
    Z = est.transform(X[:2])
    with pytest.raises(ValueError, match="x_T must have shape"):
        est.inverse_transform(Z, x_T=np.zeros((2, 1, 8, 8, 8)))
    with pytest.raises(ValueError, match="z_dim"):
        est.inverse_transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_steps"):
        est.inverse_transform(Z, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        est.reconstruct(X[:1], n_steps=1001)
    with pytest.raises(ValueError, match="same number of rows"):
        est.encode_stochastic(X[:2], Z=Z[:1])
    with pytest.raises(ValueError, match=r"per-sample shape \(1, 8, 32, 32\) but .* fitted on shape \(1, 16, 32, 32\)"):
        est.transform(X[:, :, :8])


def test_fit_errors_and_warnings():
    X = np.zeros((4, 1, 8, 12, 12), np.float32)
    with pytest.raises(ValueError, match="divisible by 8"):
        DiffAE3D.from_preset("tiny", channel_mult=(1, 2, 2, 2), max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="at least 16"):
        DiffAE3D.from_preset("tiny", encoder_channel_mult=(1, 1, 1, 1, 1), max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="channel_mult"):
        DiffAE3D.from_preset("tiny", channel_mult=(1, 0), max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="spatial_dims"):
        DiffAE3D(spatial_dims=4).fit(X)
    with pytest.raises(ValueError, match="ddim_steps"):
        DiffAE3D.from_preset("tiny", n_timesteps=10, ddim_steps=20).fit(X)
    with pytest.raises(ValueError, match=r"\(n_samples, H, W\)"):
        DiffAE3D.from_preset("tiny", spatial_dims=2).fit(X)
    with pytest.raises(ValueError, match="Unknown preset"):
        DiffAE3D.from_preset("huge")
    for pool in ("depth", "cyclic"):
        with pytest.raises(ValueError, match=f"encoder_pool='{pool}' keeps the depth axis"):
            DiffAE3D.from_preset("tiny", spatial_dims=2, encoder_pool=pool, max_epochs=1).fit(X[:, 0, 0])
    with pytest.raises(ValueError, match="encoder_pool='cyclic' takes a Fourier coefficient along depth"):
        DiffAE3D.from_preset("tiny", encoder_pool="cyclic", inplane_only=False, max_epochs=1).fit(X[:, :, :2])
    with pytest.raises(ValueError, match="encoder_pool='cyclic' writes the phase .* needs z_dim >= 3, got z_dim=2"):
        DiffAE3D.from_preset("tiny", encoder_pool="cyclic", z_dim=2, max_epochs=1).fit(X)
    with pytest.warns(UserWarning, match=r"scaled to \[-1, 1\]"):
        DiffAE3D.from_preset("tiny", max_epochs=1, random_state=0).fit(X + 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DiffAE3D.from_preset("tiny", max_epochs=1, clip_denoised=False, random_state=0).fit(X + 3)


def test_paper_defaults_and_presets():
    est = DiffAE3D()
    assert (est.z_dim, est.spatial_dims, est.base_channels, est.channel_mult, est.encoder_channel_mult) == (
        128, 3, 32, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4))
    assert (est.num_res_blocks, est.attention_resolutions, est.dropout, est.n_timesteps, est.lr, est.ema_decay,
            est.gradient_clip, est.batch_size, est.inplane_only) == (2, (16,), 0.1, 1000, 1e-4, 0.9999, 1.0, 2, True)
    assert DiffAE3D.from_preset("paper").get_params() == est.get_params()
    assert clone(DiffAE3D.from_preset("cpu")).base_channels == 8


def test_paper_network_size():
    """The UK Biobank configuration on (1, 50, 128, 128) volumes: ~21 M parameters (spec 1.9)."""
    from sklearn_disentangle.diffae.model import DiffAEModule

    with torch.device("meta"):
        m = DiffAEModule((1, 50, 128, 128), 128, 32, (1, 1, 2, 3, 4), (1, 1, 2, 3, 4, 4), 2, (16,), 0.1, True,
                         128, 1000, True)
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    n_unet = sum(p.numel() for p in m.denoiser.parameters())
    assert 15e6 < n_enc + n_unet < 30e6 and 4e6 < n_enc < 10e6, (n_enc, n_unet)


@pytest.mark.parametrize("pool", ["depth", "cyclic"])
def test_timing_pooling_encoder_fits_and_its_latent_sees_the_frame_order(pool):
    X, _ = _cardiac(8, 8, 16)
    est = DiffAE3D.from_preset("tiny", encoder_pool=pool, max_epochs=1, random_state=0).fit(X)
    Z = est.transform(X)
    assert Z.shape == (8, 8) and np.isfinite(Z).all()
    rolled = np.roll(X, 3, axis=2)  # the same cine started at another frame
    Zr = est.transform(rolled)
    assert np.abs(Zr - Z).max() > 1e-3
    if pool == "cyclic":  # content unchanged, phase (last two) turned by 3 of 8 frames
        np.testing.assert_allclose(Zr[:, :-2], Z[:, :-2], atol=1e-4)
        assert np.all(np.abs(np.hypot(Z[:, -2], Z[:, -1]) - 0.995) <= 0.005)  # unit length up to eps / |u|^2
        turned = (Z[:, -2] + 1j * Z[:, -1]) * np.exp(-2j * np.pi * 3 / 8)
        np.testing.assert_allclose(Zr[:, -2] + 1j * Zr[:, -1], turned, atol=1e-4)
    clone(est)
    assert np.allclose(pickle.loads(pickle.dumps(est)).transform(X), Z, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 16, 16), (6, 2, 16, 16)])
def test_two_dimensional_images(shape):
    X = np.random.RandomState(0).uniform(-1, 1, shape).astype(np.float32)
    est = DiffAE3D.from_preset("tiny", spatial_dims=2, max_epochs=1, random_state=0).fit(X)
    assert est.input_shape_ == ((1,) + shape[1:] if len(shape) == 3 else shape[1:])
    assert est.reconstruct(X[:2], n_steps=3).shape == (2,) + shape[1:]


def test_flat_input_with_image_shape_is_reshaped_to_volumes():
    X = np.random.RandomState(0).uniform(-1, 1, (6, 4 * 8 * 8)).astype(np.float32)
    est = DiffAE3D.from_preset("tiny", image_shape=(4, 8, 8), max_epochs=1, random_state=0).fit(X)
    assert est.input_shape_ == (1, 4, 8, 8)
    assert type(est.net_.module_.denoiser).__name__ == "ConditionalUNet"
    assert est.inverse_transform(est.transform(X[:2]), n_steps=2).shape == (2, 256)
    flat = DiffAE3D.from_preset("tiny", max_epochs=1, random_state=0).fit(X)
    assert type(flat.net_.module_.denoiser).__name__ == "MLPDenoiser"
