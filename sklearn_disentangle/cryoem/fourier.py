"""Centred FFT helpers, frequency grids and Fourier cropping/padding for odd and even boxes.

Convention: the centre of a box of size ``D`` is the pixel ``D // 2`` in real space and the
zero frequency sits at index ``D // 2`` of a centred spectrum, for odd and even ``D`` alike
(``fftshift(fft(ifftshift(x)))``). Frequencies are in cycles per Angstrom (cycles per pixel
when ``pixel_size=1``). All functions act on the trailing 2 (or ``ndim``) axes and keep device
and batch axes.
"""

import torch

__all__ = [
    "fft2_centered",
    "ifft2_centered",
    "fftn_centered",
    "ifftn_centered",
    "frequency_grid",
    "fourier_crop",
    "fourier_pad",
    "resize_fourier",
]


def _dims(ndim):
    return tuple(range(-ndim, 0))


def fftn_centered(x, ndim=3):
    """Centred forward FFT over the last ``ndim`` axes (zero frequency at index ``D // 2``).

    Parameters
    ----------
    x : tensor of shape (..., D1, ..., Dndim)
    ndim : int, default=3

    Returns
    -------
    spectrum : complex tensor, same shape

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fftn_centered
    >>> f = fftn_centered(torch.ones(4, 4, 4))
    >>> float(f[2, 2, 2].real), float(f.abs().sum())
    (64.0, 64.0)
    """
    dims = _dims(ndim)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifftn_centered(f, ndim=3):
    """Inverse of :func:`fftn_centered` (complex output; take ``.real`` for real data).

    Parameters
    ----------
    f : complex tensor of shape (..., D1, ..., Dndim)
    ndim : int, default=3

    Returns
    -------
    x : complex tensor, same shape

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fftn_centered, ifftn_centered
    >>> x = torch.rand(5, 6, 7, dtype=torch.float64)
    >>> bool(torch.allclose(ifftn_centered(fftn_centered(x)).real, x))
    True
    """
    dims = _dims(ndim)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f, dim=dims), dim=dims), dim=dims)


def fft2_centered(x):
    """Centred 2-D FFT over the last two axes (see :func:`fftn_centered`).

    Parameters
    ----------
    x : tensor of shape (..., H, W)

    Returns
    -------
    spectrum : complex tensor of shape (..., H, W)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fft2_centered
    >>> float(fft2_centered(torch.ones(3, 3))[1, 1].real)
    9.0
    """
    return fftn_centered(x, 2)


def ifft2_centered(f):
    """Inverse of :func:`fft2_centered` (complex output).

    Parameters
    ----------
    f : complex tensor of shape (..., H, W)

    Returns
    -------
    x : complex tensor of shape (..., H, W)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fft2_centered, ifft2_centered
    >>> x = torch.rand(2, 8, 8, dtype=torch.float64)
    >>> bool(torch.allclose(ifft2_centered(fft2_centered(x)).real, x))
    True
    """
    return ifftn_centered(f, 2)


def frequency_grid(shape, pixel_size=1.0, *, dtype=torch.float32, device=None):
    """Centred frequency coordinates (cycles per Angstrom) of a box.

    Parameters
    ----------
    shape : tuple of int
        Box shape, e.g. ``(H, W)`` or ``(D, H, W)``.
    pixel_size : float, default=1.0
        Pixel size in Angstrom.
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, default=None

    Returns
    -------
    grids : tuple of tensors, each of shape ``shape``
        One per axis, in axis order (so ``(ky, kx)`` for a 2-D box), zero at index ``n // 2``.

    Examples
    --------
    >>> from sklearn_disentangle.cryoem.fourier import frequency_grid
    >>> ky, kx = frequency_grid((4, 4), pixel_size=2.0)
    >>> kx[0].tolist()
    [-0.25, -0.125, 0.0, 0.125]
    """
    axes = [(torch.arange(n, dtype=dtype, device=device) - n // 2) / (n * float(pixel_size)) for n in shape]
    return torch.meshgrid(*axes, indexing="ij")


def fourier_crop(spectrum, new_size, ndim=2):
    """Keep the central ``new_size`` frequencies of a centred spectrum (low-pass crop).

    Parameters
    ----------
    spectrum : tensor of shape (..., D, ..., D)
        Centred spectrum (see :func:`fftn_centered`).
    new_size : int
        New box size, ``<= D``; odd and even sizes both keep the zero frequency centred.
    ndim : int, default=2

    Returns
    -------
    cropped : tensor of shape (..., new_size, ..., new_size)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fourier_crop
    >>> fourier_crop(torch.zeros(3, 32, 32), 15).shape
    torch.Size([3, 15, 15])
    """
    out = spectrum
    for dim in _dims(ndim):
        n = out.shape[dim]
        if new_size > n:
            raise ValueError(f"fourier_crop: new_size {new_size} is larger than the box {n}; use fourier_pad.")
        start = n // 2 - new_size // 2
        out = out.narrow(dim, start, new_size)
    return out


def fourier_pad(spectrum, new_size, ndim=2):
    """Zero-pad a centred spectrum to ``new_size`` (the inverse of :func:`fourier_crop`).

    Parameters
    ----------
    spectrum : tensor of shape (..., D, ..., D)
    new_size : int
        New box size, ``>= D``.
    ndim : int, default=2

    Returns
    -------
    padded : tensor of shape (..., new_size, ..., new_size)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import fourier_crop, fourier_pad
    >>> x = torch.rand(8, 8)
    >>> bool(torch.equal(fourier_crop(fourier_pad(x, 13), 8), x))
    True
    """
    shape = list(spectrum.shape)
    index = [slice(None)] * len(shape)
    for dim in _dims(ndim):
        n = shape[dim]
        if new_size < n:
            raise ValueError(f"fourier_pad: new_size {new_size} is smaller than the box {n}; use fourier_crop.")
        start = new_size // 2 - n // 2
        shape[dim] = new_size
        index[dim] = slice(start, start + n)
    out = spectrum.new_zeros(shape)
    out[tuple(index)] = spectrum
    return out


def resize_fourier(x, new_size, ndim=2):
    """Resample real images or volumes by Fourier cropping (down) or zero padding (up).

    Intensities are rescaled by ``(new_size / D) ** ndim`` so the mean value (the zero
    frequency in real units) is preserved; frequencies up to the smaller Nyquist are kept
    exactly.

    Parameters
    ----------
    x : real tensor of shape (..., D, ..., D)
    new_size : int
    ndim : int, default=2

    Returns
    -------
    resized : real tensor of shape (..., new_size, ..., new_size)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cryoem.fourier import resize_fourier
    >>> x = torch.rand(2, 32, 32, dtype=torch.float64)
    >>> y = resize_fourier(x, 16)
    >>> y.shape, bool(torch.allclose(y.mean((1, 2)), x.mean((1, 2))))
    (torch.Size([2, 16, 16]), True)
    """
    n = x.shape[-1]
    if new_size == n:
        return x
    f = fftn_centered(x, ndim)
    f = fourier_crop(f, new_size, ndim) if new_size < n else fourier_pad(f, new_size, ndim)
    return ifftn_centered(f, ndim).real * (new_size / n) ** ndim
