"""OPUS-DSD geometry and physics against the shared kernels and the particle simulator.

The decisive test renders a known volume with the model's renderer and compares it with
particles simulated *analytically* by ``make_cryoem_particles`` after the model's own
recentring: rotation convention, shift sign, CTF sign and pixel sizes must all be right for
the two to agree, and flipping any one of them makes the error several times larger.
"""

import math

import numpy as np
import pytest
import torch

from sklearn_disentangle.cryoem import compute_ctf, euler_to_matrix, project_real, random_rotations, shift_images
from sklearn_disentangle.datasets import make_cryoem_particles
from sklearn_disentangle.datasets.cryoem import molecule_blobs, render_volume
from sklearn_disentangle.opus_dsd.geometry import (
    backproject, ball_mask, derive_sizes, pack_ctf, prepare_mask, recentre_and_crop, view_groups,
    window_from_mask,
)
from sklearn_disentangle.opus_dsd.model import OpusDSDModule, bfactor_at_epoch, cyclic_beta


def _module(d=32, s=None, **kw):
    s = s or d
    params = dict(pixel_size=4.0, mask=ball_mask(s), n_particles=4, groups=torch.zeros(4, dtype=torch.long),
                  z_dim=2, z_aff_dim=0, width_mult=0.03125, n_pose_candidates=1, bfactor=0.0)
    params.update(kw)
    return OpusDSDModule(d, d, s, 16 * math.ceil(s / 16), **params)


def test_render_equals_kernel_projection():
    torch.manual_seed(0)
    m = _module(16, 12)
    vol = torch.rand(3, 12, 12, 12)
    rot = random_rotations(3, random_state=0)
    got = m.render(vol, rot[:, None], None)[:, 0]
    soft = vol * ((m.mask > 0.5).float() + 1e-3)
    np.testing.assert_allclose(got.numpy(), project_real(soft, rot).numpy(), atol=1e-5)


def test_render_with_ctf_equals_kernel_ctf_on_padded_grid():
    # S = R: the CTF is applied on the same grid, so it must match apply_ctf(project_real(...)) exactly
    from sklearn_disentangle.cryoem import apply_ctf

    m = _module(16, 16)
    vol = torch.rand(2, 16, 16, 16)
    rot = random_rotations(2, random_state=1)
    params = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]] * 2)
    got = m.render(vol, rot[:, None], params)[:, 0]
    ctf = compute_ctf(16, 4.0, 15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1)
    soft = vol * ((m.mask > 0.5).float() + 1e-3)
    np.testing.assert_allclose(got.numpy(), apply_ctf(project_real(soft, rot), ctf).numpy(), atol=1e-4)


def _relative_error(m, stack, truth, vols, *, ctf_sign=1.0, shift_sign=1.0):
    shifts = torch.as_tensor(stack.shifts / stack.pixel_size, dtype=torch.float32) * shift_sign
    _, target = m.preprocess(torch.as_tensor(stack.get_images()), shifts)
    params = torch.as_tensor(pack_ctf(stack.ctf))
    rot = torch.as_tensor(stack.rotations, dtype=torch.float32)
    if ctf_sign < 0:
        params = params.clone()
        params[:, 8] = -params[:, 8]  # scale -1 flips the CTF sign
    pred = m.render(vols, rot[:, None], params)[:, 0]
    mask = project_real((m.mask > 0.5).float(), rot) > 0.5
    err = ((pred - target) ** 2 * mask).sum() / ((target ** 2) * mask).sum()
    return float(err)


@pytest.fixture(scope="module")
def simulated():
    stack, truth = make_cryoem_particles(24, 32, n_conformations=2, snr=None, ctf=True, max_shift=3.0,
                                         random_state=3)
    return stack, truth


def test_renderer_reproduces_simulated_particles(simulated):
    """Model image formation == analytic simulator (poses, shift sign, CTF sign, pixel size)."""
    stack, truth = simulated
    m = _module(32, 32)
    # the true volume of each particle, on the model's grid (S = R = D here)
    centres, sigmas, weights = molecule_blobs(truth.conformation, 32)
    vols = torch.as_tensor(render_volume(centres, sigmas, weights, 32))
    err = _relative_error(m, stack, truth, vols)
    assert err < 0.02, err
    assert _relative_error(m, stack, truth, vols, ctf_sign=-1.0) > 10 * err
    assert _relative_error(m, stack, truth, vols, shift_sign=-1.0) > 10 * err
    transposed = stack[:]
    transposed.rotations = np.transpose(stack.rotations, (0, 2, 1))  # the inverse rotation
    assert _relative_error(m, transposed, truth, vols) > 10 * err


def test_renderer_reproduces_simulated_particles_after_downsampling(simulated):
    """Same with Fourier cropping (R < D) and a real-space crop (S < R): sizes and pixel sizes chain right."""
    stack, truth = simulated
    d = 32
    r, s = derive_sizes(d, 0.5, 0.75)
    assert (r, s) == (16, 12)
    m = OpusDSDModule(d, r, s, 16, pixel_size=4.0, mask=ball_mask(s), n_particles=4,
                      groups=torch.zeros(4, dtype=torch.long), z_dim=2, z_aff_dim=0, width_mult=0.03125,
                      n_pose_candidates=1, bfactor=0.0)
    centres, sigmas, weights = molecule_blobs(truth.conformation, d)
    full = torch.as_tensor(render_volume(centres, sigmas, weights, d), dtype=torch.float64)
    from sklearn_disentangle.cryoem import resize_fourier

    small = resize_fourier(full, r, ndim=3)  # voxel values kept (mean-preserving), pixel size 8 A
    start = r // 2 - s // 2
    vols = small[:, start:start + s, start:start + s, start:start + s].to(torch.float32)
    # projections on the coarse grid sum half as many voxels: scale by D / R to match the images
    err = _relative_error(m, stack, truth, vols * (d / r))
    assert err < 0.05, err
    assert _relative_error(m, stack, truth, vols * (d / r), shift_sign=-1.0) > 5 * err


def test_shift_sign_round_trip():
    """A raw image is the projection shifted by -origin; recentring by +origin gives it back."""
    rng = np.random.RandomState(0)
    proj = torch.as_tensor(rng.rand(3, 16, 16))  # integer shifts: exactly invertible
    t = torch.tensor([[2.0, -1.0], [0.0, 3.0], [-2.0, -2.0]])
    raw = shift_images(proj, -t)
    _, back = recentre_and_crop(raw, t, 16, 16)
    np.testing.assert_allclose(back.numpy(), proj.numpy(), atol=1e-5)
    # a delta moved by -t is seen at centre - t in the raw image
    img = torch.zeros(1, 16, 16)
    img[0, 8, 8] = 1
    raw = shift_images(img, -torch.tensor([[2.0, -1.0]]))
    assert [int(i) for i in (raw[0] > 0.5).nonzero()[0]] == [9, 6]  # row y = 8 + 1, column x = 8 - 2


def test_ctf_sign_is_relion():
    """The model multiplies by RELION's CTF: +w at zero frequency (the negative of cryoDRGN's)."""
    m = _module(16, 16)
    params = torch.tensor([[15000.0, 15000.0, 0.0, 300.0, 2.7, 0.07, 0.0, 0.0, 1.0]])
    from sklearn_disentangle.opus_dsd.geometry import ctf_on_grid

    ctf = ctf_on_grid(params, 16, m.render_pixel_size)
    assert float(ctf[0, 8, 8]) == pytest.approx(0.07, abs=1e-6)
    vol = torch.zeros(1, 16, 16, 16)
    vol[0, 6:10, 6:10, 6:10] = 1.0
    img = m.render(vol, torch.eye(3)[None, None], params)[0, 0]
    assert float(img.sum()) > 0  # positive density stays positive on average (DC term +w)


def test_backprojection_is_the_adjoint_extrusion():
    rot = euler_to_matrix(torch.tensor([[30.0, 70.0, -20.0]], dtype=torch.float32))
    img = torch.zeros(1, 16, 16)
    img[0, 8, 11] = 1.0  # x = +3 px in the image
    vol = backproject(img, rot)
    # every voxel lit by the back-projection lies within a pixel (bilinear support) of the line
    # r with (A r)[:2] = (3, 0); the transposed rotation would light another line
    idx = (vol[0] > 1e-4).nonzero().float()  # (z, y, x)
    r = torch.stack([idx[:, 2], idx[:, 1], idx[:, 0]], 1) - 8
    p = r @ rot[0].T
    assert len(idx) >= 10
    assert float((p[:, :2] - torch.tensor([3.0, 0.0])).abs().max()) < 1.0
    wrong = r @ rot[0]
    assert float((wrong[:, :2] - torch.tensor([3.0, 0.0])).abs().max()) > 2.0
    # identity pose: the image repeated along z
    flat = torch.rand(1, 8, 8)
    np.testing.assert_allclose(backproject(flat, torch.eye(3)[None])[0].numpy(), flat.expand(8, 8, 8).numpy(),
                               atol=1e-6)


def test_cyclic_beta_at_the_seed_breakpoints():
    n = np.array([0, 50000, 100000, 124999, 125000, 175000])
    np.testing.assert_allclose(cyclic_beta(n), [0.001, 0.501, 1.0, 1.0, 0.001, 0.501])
    assert cyclic_beta(250000 + 25000, period=125000) == pytest.approx(0.251)


def test_bfactor_schedule():
    assert bfactor_at_epoch(4.0, 0) == pytest.approx(4.0 * (1 - 0.1 / 4) * 10 / 9)
    values = [bfactor_at_epoch(4.0, e) for e in range(40)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(4.0, rel=1e-3)


def test_sizes_and_mask_window():
    assert derive_sizes(320, 0.75, 0.7) == (240, 168)
    assert derive_sizes(32, 1.0, 0.85) == (32, 26)
    with pytest.raises(ValueError, match="at least 4"):
        derive_sizes(8, 0.25, 0.5)
    mask = np.zeros((32, 32, 32))
    mask[10:22, 9:23, 12:20] = 1
    assert window_from_mask(mask) == pytest.approx((32 - 2 * 9 + 4) / 32)
    with pytest.raises(ValueError, match="no voxel"):
        window_from_mask(np.zeros((8, 8, 8)))
    ball = prepare_mask(None, 32, 32, 26)
    assert ball.shape == (26, 26, 26) and float(ball[13, 13, 13]) == 1.0 and float(ball[0, 0, 0]) == 0.0
    cropped = prepare_mask(np.ones((32, 32, 32)), 32, 16, 12)
    assert cropped.shape == (12, 12, 12) and float(cropped.min()) == 1.0


def test_view_groups_follow_the_viewing_direction():
    rots = euler_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 90.0], [0.0, 180.0, 0.0], [45.0, 90.0, 10.0],
                                         [45.0, 90.0, -70.0]], dtype=torch.float64)).numpy()
    g = view_groups(rots, 48)
    assert g[0] == g[1]  # in-plane rotation does not change the view
    assert g[3] == g[4]
    assert len({g[0], g[2], g[3]}) == 3


def test_pack_ctf_errors():
    import pandas as pd

    with pytest.raises(ValueError, match="lacks the columns"):
        pack_ctf(pd.DataFrame({"defocus_u": [1.0]}))
    stack, _ = make_cryoem_particles(2, 16, random_state=0)
    table = stack.ctf.copy()
    table.loc[0, "voltage"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pack_ctf(table)
