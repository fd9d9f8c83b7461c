"""Centred FFTs, Fourier cropping/padding (odd and even boxes) and the CTF in closed form."""

import math

import numpy as np
import pytest
import torch

from sklearn_disentangle.cryoem.ctf import apply_ctf, compute_ctf, electron_wavelength, phase_flip
from sklearn_disentangle.cryoem.fourier import (
    fft2_centered, fftn_centered, fourier_crop, fourier_pad, frequency_grid, ifft2_centered, resize_fourier,
)


@pytest.mark.parametrize("d", [16, 17])
def test_centred_fft_puts_zero_frequency_at_d_half(d):
    x = torch.zeros(d, d, dtype=torch.float64)
    x[d // 2, d // 2] = 1.0  # delta at the real-space centre -> flat real spectrum
    f = fft2_centered(x)
    assert torch.allclose(f, torch.ones_like(f))
    f1 = fft2_centered(torch.ones(d, d, dtype=torch.float64))
    assert f1[d // 2, d // 2].real == pytest.approx(d * d) and f1.abs().sum() == pytest.approx(d * d)
    ky, kx = frequency_grid((d, d), 2.0)
    assert kx[0, d // 2] == 0 and kx[0, d // 2 + 1] == pytest.approx(1 / (2 * d))


@pytest.mark.parametrize("d, new", [(32, 16), (32, 15), (31, 16), (33, 17), (30, 30)])
def test_downsampling_preserves_low_frequencies(d, new):
    x = torch.randn(3, d, d, dtype=torch.float64)
    y = resize_fourier(x, new)
    assert y.shape == (3, new, new)
    fx = fourier_crop(fft2_centered(x), new) * (new / d) ** 2
    fy = fft2_centered(y)
    keep = slice(1, None) if new % 2 == 0 else slice(None)  # drop the unpaired Nyquist row/column
    torch.testing.assert_close(fy[:, keep, keep], fx[:, keep, keep])
    torch.testing.assert_close(y.mean((1, 2)), x.mean((1, 2)))


@pytest.mark.parametrize("d, big", [(16, 24), (15, 32), (16, 17)])
def test_pad_then_crop_is_identity(d, big):
    x = torch.randn(2, d, d, dtype=torch.float64)
    assert torch.equal(fourier_crop(fourier_pad(x, big), d), x)
    if d % 2 == 0:  # the unpaired Nyquist row/column of an even box is not kept by resampling
        f = fft2_centered(x)
        f[:, 0, :] = 0
        f[:, :, 0] = 0
        x = ifft2_centered(f).real
    torch.testing.assert_close(resize_fourier(resize_fourier(x, big), d), x)
    with pytest.raises(ValueError):
        fourier_crop(x, d + 1)
    with pytest.raises(ValueError):
        fourier_pad(x, d - 1)


def test_volume_fft_round_trip():
    v = torch.randn(2, 9, 10, 11, dtype=torch.float64)
    from sklearn_disentangle.cryoem.fourier import ifftn_centered

    torch.testing.assert_close(ifftn_centered(fftn_centered(v)).real, v)
    torch.testing.assert_close(resize_fourier(v[:, :9, :9, :9], 5, ndim=3).mean((1, 2, 3)),
                               v[:, :9, :9, :9].mean((1, 2, 3)))


def test_wavelength():
    assert electron_wavelength(300.0) == pytest.approx(0.019687, abs=1e-6)
    assert electron_wavelength(200.0) == pytest.approx(0.025079, abs=1e-6)
    assert float(electron_wavelength(torch.tensor(300.0, dtype=torch.float64))) == pytest.approx(0.019687, abs=1e-6)


def _ctf(**kw):
    base = dict(box_size=64, pixel_size=2.0, defocus_u=15000.0, voltage=300.0, spherical_aberration=2.7,
                amplitude_contrast=0.1, dtype=torch.float64)
    base.update(kw)
    return compute_ctf(**base)


def test_ctf_zero_frequency_equals_amplitude_contrast():
    assert float(_ctf()[0, 32, 32]) == pytest.approx(0.1)
    assert float(_ctf(scale=0.5)[0, 32, 32]) == pytest.approx(0.05)
    # a 90 degree phase plate turns the zero-frequency value into sqrt(1 - w^2)
    assert float(_ctf(phase_shift=90.0)[0, 32, 32]) == pytest.approx(math.sqrt(1 - 0.01))


def test_ctf_closed_form_and_zero_crossings():
    """Cs = 0, w = 0: CTF = sin(pi lambda df s^2), zero at s^2 = k / (lambda df)."""
    d, apix, df = 64, 2.0, 20000.0
    c = _ctf(box_size=d, pixel_size=apix, defocus_u=df, spherical_aberration=0.0, amplitude_contrast=0.0)[0]
    lam = electron_wavelength(300.0)
    ky, kx = frequency_grid((d, d), apix, dtype=torch.float64)
    s2 = kx**2 + ky**2
    torch.testing.assert_close(c, torch.sin(math.pi * lam * df * s2))
    # hand-computed value at the pixel (x = +5, y = 0)
    s = 5 / (d * apix)
    assert float(c[32, 37]) == pytest.approx(math.sin(math.pi * 0.0196875 * df * s * s), rel=1e-4)
    # with Cs: the full RELION formula, written out independently
    c2 = _ctf(box_size=d, pixel_size=apix, defocus_u=df, spherical_aberration=2.7, amplitude_contrast=0.07)[0]
    chi = math.pi * lam * df * s * s - math.pi / 2 * 2.7e7 * lam**3 * s**4 + math.atan(0.07 / math.sqrt(1 - 0.07**2))
    assert float(c2[32, 37]) == pytest.approx(math.sin(chi), abs=1e-12)
    # RELION sign = -(cryoDRGN's sqrt(1-w^2) sin(gamma) - w cos(gamma)), gamma = -(pi lam df s^2 - ...)
    gamma = 2 * math.pi * (-0.5 * df * lam * s * s + 0.25 * 2.7e7 * lam**3 * s**4)
    assert float(c2[32, 37]) == pytest.approx(-(math.sqrt(1 - 0.07**2) * math.sin(gamma) - 0.07 * math.cos(gamma)))


def test_ctf_astigmatism_direction():
    d, apix = 64, 2.0
    ast = _ctf(box_size=d, pixel_size=apix, defocus_u=20000.0, defocus_v=10000.0, defocus_angle=90.0)[0]
    iso_u = _ctf(box_size=d, pixel_size=apix, defocus_u=20000.0)[0]
    iso_v = _ctf(box_size=d, pixel_size=apix, defocus_u=10000.0)[0]
    # along the astigmatism angle (90 deg: the y axis) the defocus is dfU, perpendicular it is dfV
    torch.testing.assert_close(ast[:, 32], iso_u[:, 32])
    torch.testing.assert_close(ast[32, :], iso_v[32, :])
    # rotating the angle by 180 degrees changes nothing
    torch.testing.assert_close(ast, _ctf(box_size=d, pixel_size=apix, defocus_u=20000.0, defocus_v=10000.0,
                                         defocus_angle=-90.0)[0])


def test_ctf_bfactor_envelope_and_batching():
    d, apix = 32, 3.0
    with_b = _ctf(box_size=d, pixel_size=apix, bfactor=200.0)[0]
    without = _ctf(box_size=d, pixel_size=apix)[0]
    ky, kx = frequency_grid((d, d), apix, dtype=torch.float64)
    torch.testing.assert_close(with_b, without * torch.exp(-200.0 * (kx**2 + ky**2) / 4))
    batch = compute_ctf(32, torch.tensor([1.0, 2.0]), torch.tensor([1e4, 2e4]), dtype=torch.float32)
    assert batch.shape == (2, 32, 32) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[1].double(), compute_ctf(32, 2.0, 2e4, dtype=torch.float64)[0], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="one value per image"):
        compute_ctf(32, torch.ones(2), torch.ones(3))


def test_odd_box_ctf_is_centred():
    c = _ctf(box_size=33)[0]
    assert float(c[16, 16]) == pytest.approx(0.1)
    torch.testing.assert_close(c, torch.flip(c, (0, 1)))  # point symmetric about the centre


def test_apply_ctf_and_phase_flip():
    x = torch.randn(2, 32, 32, dtype=torch.float64)
    ctf = _ctf(box_size=32)
    filtered = apply_ctf(x, ctf)
    torch.testing.assert_close(phase_flip(filtered, ctf), apply_ctf(x, ctf.abs()))
    torch.testing.assert_close(apply_ctf(x, torch.ones(32, 32, dtype=torch.float64)), x)
    # hand check in Fourier space
    torch.testing.assert_close(fft2_centered(filtered), fft2_centered(x) * ctf)
    assert ifft2_centered(fft2_centered(x)).imag.abs().max() < 1e-12
