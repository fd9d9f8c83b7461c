"""Noise schedule, DDIM kernels and the 2-D/3-D networks (shapes, zero-init, the gradient of z_sem)."""

import numpy as np
import pytest
import torch

from sklearn_disentangle.diffae.diffusion import GaussianDiffusion, ddim_timesteps, linear_beta_schedule
from sklearn_disentangle.diffae.model import DiffAEModule
from sklearn_disentangle.diffae.unet import (ConditionalUNet, CyclicPhasePool, SemanticEncoder, cyclic_depth_features,
                                             timestep_embedding)


def test_linear_schedule_matches_ddpm():
    b = linear_beta_schedule(1000)
    assert b.dtype == np.float64 and b.shape == (1000,)
    np.testing.assert_allclose([b[0], b[-1]], [1e-4, 0.02])
    np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999)
    np.testing.assert_allclose(linear_beta_schedule(500)[[0, -1]], [2e-4, 0.04])  # scaled by 1000 / T
    with pytest.raises(ValueError, match="n_timesteps"):
        linear_beta_schedule(0)


def test_ddim_timesteps_follow_the_stride_rule():
    np.testing.assert_array_equal(ddim_timesteps(1000, 20), np.arange(0, 1000, 50))
    np.testing.assert_array_equal(ddim_timesteps(1000, 100), np.arange(0, 1000, 10))
    assert len(ddim_timesteps(1000, 30)) == 30 and ddim_timesteps(1000, 30)[1] == 34
    grid = ddim_timesteps(10, 7)  # no stride gives 7 of 10: evenly spaced fallback
    assert len(grid) == 7 and grid[0] == 0 and grid[-1] == 9 and np.all(np.diff(grid) > 0)
    assert ddim_timesteps(1000, 1).tolist() == [0]
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="n_steps"):
            ddim_timesteps(1000, bad)


def test_q_sample_is_the_forward_marginal():
    d = GaussianDiffusion(1000)
    x0, noise, t = torch.randn(3, 5), torch.randn(3, 5), torch.tensor([0, 500, 999])
    a = torch.from_numpy(d.alphas_cumprod[[0, 500, 999]]).float()[:, None]
    torch.testing.assert_close(d.q_sample(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise)


def _oracle(d, target):
    """The exact eps-predictor of a data distribution concentrated on ``target``."""
    def model(x, t):
        a = torch.from_numpy(d.alphas_cumprod[t.numpy()]).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return (x - a.sqrt() * target) / (1 - a).sqrt()
    return model


@pytest.mark.parametrize("end", ["noise", "last_step"])
def test_ddim_decode_and_inversion_with_an_exact_model(end):
    d = GaussianDiffusion(1000)
    target = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8
    model = _oracle(d, target)
    out = d.ddim_decode(model, torch.randn(2, 1, 4, 4, dtype=torch.float64), n_steps=10)
    torch.testing.assert_close(out, target)  # any x_T decodes to the only data point
    for n_iter in (0, 2):
        x_T = d.ddim_invert(model, target, n_steps=10, end=end, n_iter=n_iter)
        torch.testing.assert_close(d.ddim_decode(model, x_T, n_steps=10), target)
    with pytest.raises(ValueError, match="end must be"):
        d.ddim_invert(model, target, n_steps=10, end="middle")


def test_fixed_point_inversion_converges_to_the_inverse_of_decoding():
    """With an imperfect model, explicit DDIM inversion leaves an error; the implicit steps remove it."""
    d = GaussianDiffusion(1000)
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(16, 16, generator=gen, dtype=torch.float64) * 0.3

    def model(x, t):  # smooth, t-dependent, not a denoiser of any data set
        return torch.tanh(x @ W) * (1 + t.to(x.dtype).reshape(-1, 1) / 1000) + 0.3 * x

    x0 = torch.rand(4, 16, generator=gen, dtype=torch.float64) * 1.6 - 0.8
    errors = []
    for n_iter in (0, 1, 2, 5, 12):
        x_T = d.ddim_invert(model, x0, n_steps=20, end="last_step", n_iter=n_iter)
        errors.append(float((d.ddim_decode(model, x_T, n_steps=20) - x0).abs().max()))
    assert errors[0] > 0.5  # the explicit inversion is far off for this model
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5, errors
    # the 'noise' end keeps its own (unmirrored) last step, but the iterations still run
    x_T = d.ddim_invert(model, x0, n_steps=20, end="noise", n_iter=3)
    assert x_T.shape == x0.shape and torch.isfinite(x_T).all()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="n_iter must be"):
            d.ddim_invert(model, x0, n_steps=5, n_iter=bad)


def test_clipping_keeps_the_x0_prediction_in_range():
    d = GaussianDiffusion(100)
    out = d.ddim_decode(lambda x, t: -10 * torch.ones_like(x), torch.zeros(1, 3), n_steps=5)
    assert float(out.abs().max()) <= 1.0
    free = d.ddim_decode(lambda x, t: -10 * torch.ones_like(x), torch.zeros(1, 3), n_steps=5, clip_denoised=False)
    assert float(free.abs().max()) > 1.0


def test_mean_pooled_encoder_cannot_tell_when_a_frame_event_happens_but_depth_and_cyclic_pooling_can():
    """Global average pooling is blind to a shift along depth (away from the borders); 'depth' and 'cyclic' are not."""
    torch.manual_seed(0)
    x = -torch.ones(2, 1, 32, 8, 8)
    x[0, :, 12, 2:6, 2:6] = 1.0  # the same event at frame 12 ...
    x[1, :, 19, 2:6, 2:6] = 1.0  # ... and at frame 19
    kw = dict(dims=3, in_channels=1, z_dim=4, base_channels=4, channel_mult=(1,), num_res_blocks=1,
              attention_resolutions=(), image_size=8, inplane_only=True)
    with torch.no_grad():
        z_mean = SemanticEncoder(**kw)(x)
        z_depth = SemanticEncoder(**kw, pool="depth", depth=32)(x)
        z_cyclic = SemanticEncoder(**kw, pool="cyclic")(x)  # any depth: no depth argument
    torch.testing.assert_close(z_mean[0], z_mean[1], atol=1e-5, rtol=1e-4)
    assert float((z_depth[0] - z_depth[1]).abs().max()) > 1e-2
    assert z_cyclic.shape == (2, 4) and float((z_cyclic[0] - z_cyclic[1]).abs().max()) > 1e-2
    # resampling along depth too: the linear layer sees the down-sampled depth
    iso = {**kw, "channel_mult": (1, 2, 2), "inplane_only": False}
    with torch.no_grad():
        assert SemanticEncoder(**iso, pool="depth", depth=32)(x).shape == (2, 4)
        assert SemanticEncoder(**iso, pool="cyclic")(x).shape == (2, 4)
    with pytest.raises(ValueError, match="pool='cyclic' needs 3-D input"):
        SemanticEncoder(**{**kw, "dims": 2}, pool="cyclic")
    with pytest.raises(ValueError, match="pool='depth' needs 3-D input"):
        SemanticEncoder(**{**kw, "dims": 2}, pool="depth", depth=4)
    with pytest.raises(ValueError, match="pool='depth' needs 3-D input"):
        SemanticEncoder(**kw, pool="depth")  # depth missing
    with pytest.raises(ValueError, match="pool must be"):
        SemanticEncoder(**kw, pool="max")


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    np.testing.assert_allclose(emb[0].numpy(), [1, 1, 1, 1, 0, 0, 0, 0])
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 4)
    np.testing.assert_allclose(emb[1].numpy(), np.r_[np.cos(3 * freqs), np.sin(3 * freqs)], rtol=1e-5)


@pytest.mark.parametrize("shape, inplane", [((1, 16, 16, 16), False), ((1, 16, 32, 32), True), ((2, 16, 16), False)])
def test_networks_shapes_and_zero_initial_output(shape, inplane):
    dims = len(shape) - 1
    size = max(shape[-2:]) if inplane else max(shape[1:])
    unet = ConditionalUNet(dims, shape[0], 6, 8, (1, 2, 2), 1, (8,), 0.1, size, 6, inplane_only=inplane)
    enc = SemanticEncoder(dims, shape[0], 6, 8, (1, 2, 2, 4), 1, (8,), size, inplane_only=inplane)
    x = torch.randn((2,) + shape)
    z = enc(x)
    assert z.shape == (2, 6)
    eps = unet(x, torch.tensor([3, 900]), z)
    assert eps.shape == x.shape
    assert float(eps.detach().abs().max()) == 0.0  # zero-initialised final convolution


def test_inplane_only_never_resamples_the_depth():
    # 4 in-plane halvings of 32 px; the depth (5 frames, not even divisible by 2) is kept
    enc = SemanticEncoder(3, 1, 4, 4, (1, 1, 1, 1, 1), 1, (), 32, inplane_only=True)
    unet = ConditionalUNet(3, 1, 4, 4, (1, 1, 1, 1, 1), 1, (), 0.0, 32, 4, inplane_only=True)
    x = torch.randn(1, 1, 5, 32, 32)
    assert unet(x, torch.tensor([1]), enc(x)).shape == x.shape
    with pytest.raises(RuntimeError):
        ConditionalUNet(3, 1, 4, 4, (1, 1, 1, 1, 1), 1, (), 0.0, 32, 4, inplane_only=False)(
            x, torch.tensor([1]), torch.randn(1, 4))


def test_attention_is_placed_at_the_listed_resolutions():
    unet = ConditionalUNet(2, 1, 4, 4, (1, 2, 2), 1, (16,), 0.0, 32, 4)
    n_attn = sum(type(m).__name__ == "AttentionBlock" for m in unet.modules())
    # resolution 16: one down block + two up blocks, plus the middle one
    assert n_attn == 4


def _module(shape):
    torch.manual_seed(0)
    return DiffAEModule(shape, z_dim=8, base_channels=8, channel_mult=(1, 2), encoder_channel_mult=(1, 2),
                        num_res_blocks=1, attention_resolutions=(), dropout=0.0, inplane_only=True,
                        embed_channels=8, n_timesteps=1000, clip_denoised=True)


def test_encoder_gradient_is_zero_for_two_steps_then_the_weights_move():
    """The zero-initialised output convolutions (final conv, then every residual block's last
    conv) block the gradient of z_sem: step 0 only trains the final conv, step 1 the blocks'
    last convs, and the encoder gets a non-zero gradient from step 2 on (DiffAE issue #63)."""
    m = _module((1, 16, 32, 32))
    x = torch.rand(2, 1, 16, 32, 32) * 2 - 1
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    initial = [p.detach().clone() for p in m.encoder.parameters()]
    norms = []
    for step in range(3):
        opt.zero_grad()
        m.loss(m(x), x)["loss"].backward()
        norms.append(sum(float(p.grad.abs().sum()) for p in m.encoder.parameters()))
        if step == 0:  # only the final convolution receives a gradient at step 0
            assert float(m.denoiser.out.weight.grad.abs().sum()) > 0
            assert all(float(p.grad.abs().sum()) == 0 for n, p in m.denoiser.named_parameters() if "out_conv" in n)
        opt.step()
        moved = any(not torch.equal(a, b) for a, b in zip(initial, m.encoder.parameters()))
        assert moved == (step == 2), f"step {step}"
    assert norms[0] == 0.0 and norms[1] == 0.0 and norms[2] > 0.0
    assert all(p.grad is None for p in m.ema_encoder.parameters())  # the EMA copy is never trained


def test_module_uses_the_ema_networks_in_eval_mode():
    m = _module((1, 8, 16, 16))
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(0.1)
    x = torch.rand(2, 1, 8, 16, 16)
    m.train()
    live = m.encode(x)["z_mean"]
    m.eval()
    ema = m.encode(x)["z_mean"]
    torch.testing.assert_close(ema, m.ema_encoder(x))
    assert not torch.allclose(live, ema)
    m.update_ema(0.0)  # decay 0 copies the live weights
    torch.testing.assert_close(m.encode(x)["z_mean"], live)
    assert int(m.ema_updates) == 1


def test_cyclic_depth_features_keep_the_mean_and_rotate_the_first_fourier_pair_under_a_roll():
    g = torch.randn(3, 5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mean, re, im = cyclic_depth_features(g)
    assert mean.shape == re.shape == im.shape == (3, 5)
    torch.testing.assert_close(mean, g.mean(-1))
    # against NumPy's FFT: F1 = fft(g)[1] / D
    ref = np.fft.fft(g.numpy(), axis=-1)[..., 1] / 12
    np.testing.assert_allclose(re.numpy(), ref.real, atol=1e-12)
    np.testing.assert_allclose(im.numpy(), ref.imag, atol=1e-12)
    k = 5
    mean_r, re_r, im_r = cyclic_depth_features(torch.roll(g, k, dims=-1))
    torch.testing.assert_close(mean_r, mean)
    turn = np.exp(-2j * np.pi * k / 12)
    np.testing.assert_allclose((re_r + 1j * im_r).numpy(), turn * ref, atol=1e-12)
    with pytest.raises(ValueError, match="D >= 2"):
        cyclic_depth_features(g[..., :1])


def test_cyclic_phase_pool_splits_a_roll_into_unchanged_content_and_a_turned_unit_phase():
    torch.manual_seed(0)
    pool = CyclicPhasePool(5, 7).double()
    g = torch.randn(4, 5, 12, dtype=torch.float64)
    z = pool(g)
    assert z.shape == (4, 7)
    # by hand: u = sum_c w_c F1_c with complex weights, e = u / |u|, content from [mean, F1 conj(e)]
    ref = np.fft.fft(g.numpy(), axis=-1)[..., 1] / 12
    w = pool.phase_weight.detach().numpy()
    u = ref @ (w[0] + 1j * w[1])
    e = u / np.sqrt(np.abs(u) ** 2 + pool.eps)
    np.testing.assert_allclose(z[:, 5].detach().numpy() + 1j * z[:, 6].detach().numpy(), e, atol=1e-12)
    aligned = ref * np.conj(e)[:, None]
    feats = np.concatenate([g.numpy().mean(-1), aligned.real, aligned.imag], 1)
    lin = pool.out
    np.testing.assert_allclose(z[:, :5].detach().numpy(),
                               feats @ lin.weight.detach().numpy().T + lin.bias.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(np.abs(e), 1.0, atol=1e-4)  # unit length up to eps / |u|^2
    for k in (1, 5, 11):
        zr = pool(torch.roll(g, k, dims=-1))
        torch.testing.assert_close(zr[:, :5], z[:, :5])  # content: invariant to the cyclic shift
        turned = (z[:, 5] + 1j * z[:, 6]).detach().numpy() * np.exp(-2j * np.pi * k / 12)
        np.testing.assert_allclose(zr[:, 5].detach().numpy() + 1j * zr[:, 6].detach().numpy(), turned, atol=1e-10)
    # gradients stay finite where the phase combination vanishes
    zero = torch.zeros(2, 5, 12, dtype=torch.float64, requires_grad=True)
    pool(zero).sum().backward()
    assert torch.isfinite(zero.grad).all() and all(torch.isfinite(p.grad).all() for p in pool.parameters())
    with pytest.raises(ValueError, match="z_dim >= 3"):
        CyclicPhasePool(5, 2)


def test_cyclic_encoder_pads_depth_cyclically_so_a_rolled_cine_keeps_its_content_code_exactly():
    torch.manual_seed(0)
    enc = SemanticEncoder(3, 1, 6, 4, (1, 2), 1, (8,), 8, inplane_only=True, pool="cyclic").double()
    x = torch.randn(3, 1, 12, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        z, zr = enc(x), enc(torch.roll(x, 5, dims=2))
    torch.testing.assert_close(zr[:, :4], z[:, :4], atol=1e-12, rtol=0)
    turned = torch.view_as_complex(z[:, 4:].contiguous()) * np.exp(-2j * np.pi * 5 / 12)
    torch.testing.assert_close(zr[:, 4:], torch.view_as_real(turned), atol=1e-12, rtol=0)
    # the padding really is cyclic along depth and zero in-plane
    conv = enc.inp
    xs = torch.randn(1, 1, 4, 5, 5, dtype=torch.float64)
    ref = torch.nn.functional.conv3d(torch.cat([xs[:, :, -1:], xs, xs[:, :, :1]], 2), conv.weight, conv.bias,
                                     padding=(0, 1, 1))
    torch.testing.assert_close(conv(xs), ref)

