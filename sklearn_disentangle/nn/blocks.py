"""Encoder/decoder families shared by the methods.

The convolutional pair is the architecture of the disentanglement benchmarks (FactorVAE /
CFASL, spec ``cfasl_and_metrics.md`` 1.8): at 64 x 64, four convolutions (kernel 4,
stride 2, no padding, channels 32-32-64-64, no batch norm) take the image to 64 x 2 x 2,
then one linear layer *without* activation; the decoder mirrors it with two linear layers
and four transposed convolutions (kernel 4, stride 2, padding 1) from 4 x 4. Other sizes
use the same family: convolutions are added while the feature map stays at least 2 pixels
wide (at most four), and the decoder upsamples from ``ceil(size / 2**k)`` and crops, so
32 and 16 px images get 3 and 2 stages. 2-D and 3-D inputs are supported.
"""

import math

import torch
from torch import nn

__all__ = ["ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder", "make_encoder", "make_decoder"]

_ENC_CHANNELS = (32, 32, 64, 64)
_DEC_CHANNELS = (64, 32, 32)


def _conv_cls(n_spatial, transposed=False):
    if n_spatial == 2:
        return nn.ConvTranspose2d if transposed else nn.Conv2d
    if n_spatial == 3:
        return nn.ConvTranspose3d if transposed else nn.Conv3d
    raise ValueError(f"convolutional blocks support 2-D and 3-D images, got {n_spatial} spatial dims.")


class ConvEncoder(nn.Module):
    """Strided-convolution trunk ending in a linear layer of ``out_dim`` features.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` or ``(C, D, H, W)``.
    out_dim : int
        Size of the final linear layer (no activation, as the reference).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import ConvEncoder
    >>> enc = ConvEncoder((1, 64, 64), out_dim=128)
    >>> [m.out_channels for m in enc.convs if hasattr(m, "out_channels")]
    [32, 32, 64, 64]
    >>> enc(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 128])
    """

    def __init__(self, input_shape, out_dim):
        super().__init__()
        channels, *spatial = input_shape
        conv = _conv_cls(len(spatial))
        sizes = list(spatial)
        n_convs = 0
        while n_convs < len(_ENC_CHANNELS) and min((s - 4) // 2 + 1 for s in sizes) >= 2:
            sizes = [(s - 4) // 2 + 1 for s in sizes]
            n_convs += 1
        if n_convs == 0:
            raise ValueError(f"images of spatial size {tuple(spatial)} are too small for the conv encoder (need >= 6 px).")
        chans = _ENC_CHANNELS[len(_ENC_CHANNELS) - n_convs:]
        layers, c_in = [], channels
        for c_out in chans:
            layers += [conv(c_in, c_out, kernel_size=4, stride=2), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.flat_dim = c_in * math.prod(sizes)
        self.fc = nn.Linear(self.flat_dim, out_dim)

    def forward(self, x):
        return self.fc(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: two linear layers then transposed convolutions.

    The output is the raw decoder output (logits or mean; no final nonlinearity).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import ConvDecoder
    >>> dec = ConvDecoder(10, output_shape=(1, 30, 30), hidden_dim=128)
    >>> dec(torch.zeros(2, 10)).shape
    torch.Size([2, 1, 30, 30])
    """

    def __init__(self, z_dim, output_shape, hidden_dim):
        super().__init__()
        channels, *spatial = output_shape
        convt = _conv_cls(len(spatial), transposed=True)
        n_up = max(1, min(4, math.ceil(math.log2(max(spatial) / 4))))
        self.start = tuple(math.ceil(s / 2**n_up) for s in spatial)
        self.output_spatial = tuple(spatial)
        chans = list(_DEC_CHANNELS[len(_DEC_CHANNELS) - (n_up - 1):]) if n_up > 1 else []
        self.start_channels = 64
        self.fc = nn.Sequential(
            nn.Linear(z_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, self.start_channels * math.prod(self.start)), nn.ReLU(),
        )
        layers, c_in = [], self.start_channels
        for c_out in chans:
            layers += [convt(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        layers.append(convt(c_in, channels, kernel_size=4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        h = self.fc(z).view(z.shape[0], self.start_channels, *self.start)
        out = self.deconvs(h)
        crop = tuple(slice(0, s) for s in self.output_spatial)
        return out[(slice(None), slice(None)) + crop]


class MLPEncoder(nn.Module):
    """Two hidden ReLU layers for flat ``(n, n_features)`` inputs.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import MLPEncoder
    >>> MLPEncoder(5, out_dim=8)(torch.zeros(3, 5)).shape
    torch.Size([3, 8])
    """

    def __init__(self, n_features, out_dim, hidden_dim=256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x):
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Mirror of :class:`MLPEncoder` (raw output, no final nonlinearity).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import MLPDecoder
    >>> MLPDecoder(2, (5,), hidden_dim=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 5])
    """

    def __init__(self, z_dim, output_shape, hidden_dim=256):
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, math.prod(self.output_shape)),
        )

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.output_shape)


def make_encoder(input_shape, out_dim):
    """:class:`ConvEncoder` for image shapes ``(C, ...)``, :class:`MLPEncoder` for ``(n_features,)``.

    Examples
    --------
    >>> from sklearn_disentangle.nn import make_encoder
    >>> type(make_encoder((1, 32, 32), 64)).__name__, type(make_encoder((10,), 64)).__name__
    ('ConvEncoder', 'MLPEncoder')
    """
    if len(input_shape) == 1:
        return MLPEncoder(input_shape[0], out_dim, hidden_dim=max(2 * out_dim, 64))
    return ConvEncoder(input_shape, out_dim)


def make_decoder(z_dim, output_shape, hidden_dim):
    """:class:`ConvDecoder` for image shapes, :class:`MLPDecoder` for flat ones.

    Examples
    --------
    >>> from sklearn_disentangle.nn import make_decoder
    >>> type(make_decoder(4, (1, 32, 32), 64)).__name__, type(make_decoder(4, (10,), 64)).__name__
    ('ConvDecoder', 'MLPDecoder')
    """
    if len(output_shape) == 1:
        return MLPDecoder(z_dim, output_shape, hidden_dim=max(hidden_dim, 64))
    return ConvDecoder(z_dim, output_shape, hidden_dim)
