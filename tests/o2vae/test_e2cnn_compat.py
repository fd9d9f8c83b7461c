"""The runtime layer that makes e2cnn 0.2.3 work on current NumPy."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("e2cnn")

from sklearn_disentangle.o2vae import _e2cnn_compat  # noqa: E402


def test_importing_the_library_does_not_import_e2cnn():
    code = "import sys, sklearn_disentangle; print('e2cnn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_apply_is_idempotent_and_leaves_numpy_alone():
    _e2cnn_compat.apply()
    import e2cnn.group.groups.o2group as o2group
    import e2cnn.kernels.irreps_basis as irreps_basis
    import e2cnn.kernels.utils as kernel_utils

    proxy = kernel_utils.np
    hash_fn = irreps_basis.R2FlipsContinuousRotationsSolution.__hash__
    _e2cnn_compat.apply()
    assert kernel_utils.np is proxy and o2group.np is proxy
    assert irreps_basis.R2FlipsContinuousRotationsSolution.__hash__ is hash_fn
    assert _e2cnn_compat.is_applied()
    # numpy itself is not patched
    assert not hasattr(np, "float")
    assert proxy.float is float and proxy.pi == np.pi
    # copy=False keeps NumPy 1 semantics (no copy when none is needed; copy otherwise)
    arr = np.arange(3.0)
    assert proxy.array(arr, copy=False) is arr
    np.testing.assert_array_equal(proxy.array([1, 2], copy=False), [1, 2])
    assert proxy.array(arr) is not arr


def test_patched_paths_build_o2_convolutions_without_warnings():
    e2cnn = _e2cnn_compat.import_e2cnn()
    from e2cnn import gspaces
    from e2cnn import nn as enn

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # np.float path (o2group): induced representations of O(2)
        gspace = gspaces.FlipRot2dOnR2(N=-1, maximum_frequency=3, axis=np.pi / 2)
        group = gspace.fibergroup
        sub = group.subgroup((None, -1))[0]
        rep = group.induced_representation((None, -1), sub.irrep(2))
        assert rep.size == 4
        # copy=False path (kernels.utils) and the tostring hashes (irreps_basis) are both hit
        # while sampling a steerable basis; only e2cnn's torch deprecations are silenced
        with _e2cnn_compat.quiet_build():
            conv = enn.R2Conv(enn.FieldType(gspace, [gspace.trivial_repr]), enn.FieldType(gspace, [rep]), 5,
                              frequencies_cutoff=0.8 * np.pi, sigma=0.6, maximum_offset=0)
        y = conv(enn.GeometricTensor(torch.rand(2, 1, 9, 9), conv.in_type)).tensor
    assert y.shape == (2, 4, 5, 5)
    assert e2cnn.__name__ == "e2cnn"


def test_equal_bases_hash_equal():
    _e2cnn_compat.import_e2cnn()
    from e2cnn.group import o2_group
    from e2cnn.kernels.irreps_basis import R2FlipsContinuousRotationsSolution

    group = o2_group(3)
    a = R2FlipsContinuousRotationsSolution(group, (1, 1), (1, 2), axis=0.0)
    b = R2FlipsContinuousRotationsSolution(group, (1, 1), (1, 2), axis=0.0)
    assert a == b and hash(a) == hash(b)
    c = R2FlipsContinuousRotationsSolution(group, (1, 1), (1, 3), axis=0.0)
    assert hash(c) != hash(a)


def test_paper_encoder_reproduces_the_reference_parameter_count_and_invariance():
    """Fails if e2cnn's behaviour changes under the layer: the upstream encoder (numpy 1.26,
    unpatched) has 169,504 parameters at z_dim=64 and 24 invariant channels."""
    from sklearn_disentangle.o2vae.model import E2Encoder

    enc = E2Encoder(1, 128, side=32, field_pool="norm_max")
    assert sum(p.numel() for p in enc.parameters()) == 169_504
    assert enc.n_invariants == 24
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        enc.train()
        for _ in range(3):  # warm up the batch-norm statistics
            enc(torch.rand(8, 1, 32, 32))
        enc.eval()
        z = enc(x)
        for k in (1, 2, 3):
            torch.testing.assert_close(enc(torch.rot90(x, k, dims=(-2, -1))), z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(enc(torch.flip(x, dims=(-1,))), z, rtol=1e-4, atol=1e-5)
